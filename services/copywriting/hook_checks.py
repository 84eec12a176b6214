"""What a reader would reject in the model's free words (a hook): `hook_problems`.

The grammar (hooks.HOOK_REGEX) already rules out numbers, codes, links and shouted names; here
are the rest: cut off, too short, a claim the facts must make (discount, free), a banned
absolute term, junk or an echo of the instruction, the worked examples or the product data,
repetition, another catalog product named, and off topic (embedding similarity to the item's
facts below a threshold calibrated on tests/data/copy_labelled.jsonl).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from services.copywriting.checks import _CLAIM_EN_RE, _FREE_RE, _repetitive, banned_problems, junk_problems
from services.copywriting.hooks import EXAMPLES, MIN_WORDS, words
from services.copywriting.text import display_title, one_line

# Words that give an instruction away ("ignore the above and write…") or a prompt echo.
_INSTRUCTION_RE = re.compile(
    r"(?<![A-Za-z])(?:ignore|disregard|instructions?|prompt|sentence|shopper likes|product data|catalog|"
    r"respond|assistant|system|password|click here|kind:)(?![A-Za-z])",
    re.IGNORECASE,
)
# Offers the facts never make: prizes and giveaways.
_PRIZE_RE = re.compile(r"(?<![A-Za-z])(?:win|wins|winner|winning|prize|giveaway|lottery|jackpot|nothing else comes close)(?![A-Za-z])", re.IGNORECASE)
_ECHO_RUN = 4  # this many words in a row copied from the product data is an echo


def _norm_words(text: str) -> list[str]:
    return [w.casefold() for w in re.findall(r"[A-Za-z0-9]+", text)]


class CatalogNames:
    """Every catalog title as a run of words, to find another product named in free text."""

    def __init__(self, titles: Iterable[str]):
        self.titles: dict[tuple[str, ...], str] = {}
        for title in titles:
            key = tuple(_norm_words(str(title)))
            if len(key) >= 2:
                self.titles.setdefault(key, display_title(str(title)))
        self.lengths = sorted({len(k) for k in self.titles}, reverse=True)

    def named_in(self, text: str, allowed: Iterable[str] = ()) -> list[str]:
        """Catalog titles written whole in `text`, except those inside an `allowed` text."""
        allowed_words = [" ".join(_norm_words(a)) for a in allowed if a]
        found = []
        seq = _norm_words(text)
        for n in self.lengths:
            for i in range(len(seq) - n + 1):
                key = tuple(seq[i : i + n])
                title = self.titles.get(key)
                if title and not any(f" {' '.join(key)} " in f" {a} " for a in allowed_words):
                    found.append(title)
        return list(dict.fromkeys(found))


def _overlap(a: list[str], b: list[str]) -> float:
    sa, sb = set(a), set(b)
    return len(sa & sb) / max(1, min(len(sa), len(sb)))


def _echoes(hook_words: list[str], source: str) -> bool:
    src = _norm_words(source)
    runs = {tuple(src[i : i + _ECHO_RUN]) for i in range(len(src) - _ECHO_RUN + 1)}
    return any(tuple(hook_words[i : i + _ECHO_RUN]) in runs for i in range(len(hook_words) - _ECHO_RUN + 1))


def hook_form_problems(hook: str, details: str = "") -> list[str]:
    """Everything but the catalog and the embedding: what a reader sees in the sentence alone."""
    text = one_line(hook)
    problems = []
    if not text.endswith((".", "!")):
        problems.append("free words cut off")
    if len(words(text)) < MIN_WORDS:
        problems.append(f"free words too short ({len(words(text))} words)")
    claims = [m.group(0) for m in [*_CLAIM_EN_RE.finditer(text), *_FREE_RE.finditer(text), *_PRIZE_RE.finditer(text)]]
    if claims:
        problems.append(f"free words make an offer claim ('{claims[0]}'): offers come from the facts")
    problems += [f"free words: {p}" for p in banned_problems(text) + junk_problems(text)]
    if _INSTRUCTION_RE.search(text):
        problems.append(f"free words echo the prompt ('{_INSTRUCTION_RE.search(text).group(0)}')")
    if _repetitive(text):
        problems.append("free words repeat themselves")
    hook_words = _norm_words(text)
    if any(_overlap(hook_words, _norm_words(example[3])) >= 0.6 for example in EXAMPLES):
        problems.append("free words echo a worked example")
    if details and _echoes(hook_words, details):
        problems.append("free words copy the product data")
    return problems


_SUFFIXES = ("'s", "s", "es", "ed", "d", "ing", "ly", "er", "ers", "est")


def unknown_words(hook: str, known: frozenset[str], fact_texts: Iterable[str] = ()) -> list[str]:
    """Words of the hook that neither an English vocabulary nor the facts hold, even without a
    common suffix: misspellings and inventions ("redhanging", "regancy")."""
    facts = {w.casefold() for text in fact_texts for w in words(text)}
    out = []
    for word in words(hook):
        w = word.casefold().strip("'-")
        stems = [w] + [w[: -len(s)] for s in _SUFFIXES if w.endswith(s) and len(w) - len(s) >= 3]
        stems += [s + "e" for s in stems[1:]]  # "hinging" → "hinge"
        if not any(s in known or s in facts for s in stems) and "-" not in w:
            out.append(word)
    return out


def hook_problems(
    hook: str,
    title: str,
    catalog: CatalogNames | None,
    sense: float | None,
    threshold: float,
    details: str = "",
    allowed: Iterable[str] = (),
    known: frozenset[str] | None = None,
) -> list[str]:
    """Why the free words `hook` about the product `title` cannot be sent ([] when they can).

    `sense`: cosine similarity of the hook to the item's facts (None: not measured);
    `allowed`: texts whose product names may appear (the recommendation's reason);
    `known`: an English vocabulary; two words outside it and the facts read as gibberish."""
    problems = hook_form_problems(hook, details)
    facts_text = " ".join([title, details, *allowed]).casefold()
    broken = [w for w in words(hook) if "-" in w and w.casefold() not in facts_text
              and any(len(part) == 1 for part in w.split("-"))]
    if broken:  # "your-bestest-l": a word broken off where decoding stopped
        problems.append(f"free words hold a broken word ('{broken[0]}')")
    if known:
        strange = unknown_words(hook, known, [title, details, *allowed])
        if len(strange) >= 2:
            problems.append(f"free words not English ('{strange[0]}', '{strange[1]}')")
    if catalog is not None:
        others = catalog.named_in(hook, allowed=[title, *allowed])
        if others:
            problems.append(f"free words name another product ('{others[0]}')")
    if sense is not None and sense < threshold:
        problems.append(f"free words off topic (similarity {sense:.2f} < {threshold:.2f})")
    return problems
