"""Marketing copy for one (shopper, item): a channel layout (template family) filled with facts
and the model's free words, checked before it leaves.

    facts.py        channels and their limits, Promotion, CopyFacts, Copy, CopyOutcome
    channels.py     what each channel sends: SMS segments and rendering, e-mail (HTML, text, headers)
    text.py         text helpers the others share: one line, CJK, display titles, prices, cutting
    vocabulary.py   the shop's bilingual terms (categories, tags, events); vocabulary.yaml for the demo shop
    hooks.py        the model's free words: the completion prompt and the grammar that bounds them
    hook_checks.py  what a reader rejects in free words; CatalogNames (another product named)
    checks.py       check_copy: what the whole copy says and its form, against the facts
    layouts.py      the template families per channel: lay_out(facts, hook, family)
    engine.py       LLMEngine, the only module that imports vLLM
    writer.py       CopyWriter: facts from a build, hooks sampled and judged, variants laid out

This package imports neither engine.py nor writer.py: import those from their modules.
"""

from services.copywriting.checks import check_copy
from services.copywriting.facts import CHANNELS, LANGUAGES, ChannelSpec, Copy, CopyFacts, CopyOutcome, Promotion
from services.copywriting.text import display_title, format_price

__all__ = [
    "CHANNELS",
    "LANGUAGES",
    "ChannelSpec",
    "Copy",
    "CopyFacts",
    "CopyOutcome",
    "Promotion",
    "check_copy",
    "display_title",
    "format_price",
]
