"""Marketing copy for one (shopper, item): prompt, checks, repair and template fallback.

The flow:

    facts ──build_messages──▶ chat messages ─┐
    copy_json_schema(channel, language) ─────┴─▶ engine ──raw JSON text──▶ finalize ──▶ CopyOutcome

    facts.py      channels and their limits (SMS segments), Promotion, CopyFacts, Copy, CopyOutcome
    text.py       text helpers the others share: one line, CJK, display titles, prices, cutting
    prompt.py     build_messages and copy_json_schema (constrained decoding)
    checks.py     check_copy: what the copy says and its form, against the facts
    repair.py     finalize: parse, check, repair of form, or the template
    templates.py  template_copy: copy from the facts alone
    engine.py     LLMEngine, the only module that imports vLLM
    writer.py     CopyWriter: the facts for (user, item) from a build, and checked variants

This package imports neither engine.py nor writer.py: import those from their modules.
"""

from services.copywriting.checks import check_copy
from services.copywriting.facts import (
    CHANNELS,
    LANGUAGES,
    OPT_OUT,
    ChannelSpec,
    Copy,
    CopyFacts,
    CopyOutcome,
    Promotion,
    sms_segment_usage,
)
from services.copywriting.prompt import build_messages, copy_json_schema
from services.copywriting.repair import finalize
from services.copywriting.templates import template_copy
from services.copywriting.text import display_title, format_price

__all__ = [
    "CHANNELS",
    "LANGUAGES",
    "OPT_OUT",
    "ChannelSpec",
    "Copy",
    "CopyFacts",
    "CopyOutcome",
    "Promotion",
    "build_messages",
    "check_copy",
    "copy_json_schema",
    "display_title",
    "finalize",
    "format_price",
    "sms_segment_usage",
    "template_copy",
]
