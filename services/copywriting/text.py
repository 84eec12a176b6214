"""Text helpers shared by the prompt, the checks, the repair and the template.

Money in cents, one-line text, CJK detection, catalogue titles as copy shows them, prices and
percentages as written, and cutting text at a word boundary (zh: at a character) with an ellipsis.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from decimal import ROUND_HALF_UP, Decimal
from typing import Callable

CENT = Decimal("0.01")


def cents(value: float | Decimal) -> Decimal:
    return Decimal(str(value)).quantize(CENT, rounding=ROUND_HALF_UP)


CJK_RE = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
MASK = "\ue000"  # stands in for the product's own name while checking (private use: no letter)


def one_line(text: str) -> str:
    return " ".join("".join(c if unicodedata.category(c)[0] != "C" else " " for c in text).split())


def has_cjk(text: str) -> bool:
    return bool(CJK_RE.search(text))


def mostly_cjk(text: str) -> bool:
    # A CJK character carries about as much as three Latin letters (a word is ~1.7 characters
    # against ~5 letters), so compare on that scale.
    cjk = len(CJK_RE.findall(text))
    latin = sum(1 for c in text if c.isalpha() and not CJK_RE.match(c) and c != MASK)
    return cjk > 0 and 3 * cjk >= latin


def display_width(text: str) -> int:
    """Columns `text` takes on a phone screen: CJK characters and full-width punctuation two,
    others one. Channel limits are in columns, so one limit serves English and Chinese."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def is_cjk_or_punct(c: str) -> bool:
    return bool(CJK_RE.match(c)) or unicodedata.category(c).startswith("P") or c in "\u3000"


_SMALL_WORDS = frozenset("a an and as at by for in of on or the to with".split())
_ACRONYMS = frozenset("LED USB UK USA EU DVD CD TV XL XXL XXXL XS DIY BBQ PVC UV NYC II III IV VIP".split())


@functools.lru_cache(maxsize=4096)
def display_title(title: str) -> str:
    """The product name as copy shows it: UPPER CASE catalogue titles in title case.

    "WHITE HANGING HEART T-LIGHT HOLDER" → "White Hanging Heart T-Light Holder"; titles already
    in mixed case are kept; letters right after a digit ("500g", "3D", "1.8M") are kept.
    """
    t = one_line(title)
    letters = [c for c in t if c.isascii() and c.isalpha()]
    if not letters or sum(c.isupper() for c in letters) / len(letters) < 0.8:
        return t
    out: list[str] = []
    last = 0
    first = True
    for m in re.finditer(r"[A-Za-z][A-Za-z']*", t):
        word = m.group(0)
        out.append(t[last : m.start()])
        if m.start() > 0 and t[m.start() - 1].isdigit():
            pass
        elif word.upper() in _ACRONYMS:
            word = word.upper()
        elif not first and word.lower() in _SMALL_WORDS:
            word = word.lower()
        else:
            word = word[0].upper() + word[1:].lower()
        first = False
        out.append(word)
        last = m.end()
    out.append(t[last:])
    return "".join(out)


UPPER_RUN_RE = re.compile(r"\b[A-Z0-9][A-Z0-9'&/.,-]*(?:\s+[A-Z0-9][A-Z0-9'&/.,-]*)*\b")


def nice_runs(text: str) -> str:
    """Title-case runs of UPPER CASE words (other products' catalogue titles inside a reason)."""

    def fix(m: re.Match) -> str:
        run = m.group(0)
        words = [w for w in re.findall(r"[A-Za-z]+", run)]
        if sum(len(w) >= 2 for w in words) < 2:
            return run
        return display_title(run)

    return UPPER_RUN_RE.sub(fix, text)


_SYMBOLS = {"GBP": "£", "USD": "$", "EUR": "€", "CNY": "¥"}


def format_price(amount: float, currency: str) -> str:
    """£2.95, $3.00, €1,299.50, ¥12.00; unknown currency "12.50 XYZ"; no currency "12.50"."""
    value = cents(amount)
    text = f"{value:,.2f}"
    currency = (currency or "").upper()
    if currency in _SYMBOLS:
        return _SYMBOLS[currency] + text
    return f"{text} {currency}" if currency else text


def percent_text(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


# --------------------------------------------------------------------------------------------
# Cutting at a word boundary
# --------------------------------------------------------------------------------------------

TRAILING = " ,;:-/&、，；：（(“‘\"'"


def _boundaries(text: str, language: str) -> list[int]:
    """Positions where `text` may be cut, longest first: before a space or next to a CJK
    character (CJK has no spaces); for zh also next to punctuation. Never inside a Latin word
    or a number."""
    if language == "zh":  # not inside "T-Light", "Girl's", "1.8M", "Pink/White"
        is_edge = lambda c: is_cjk_or_punct(c) and c not in "-'’./&+"  # noqa: E731
    else:
        is_edge = lambda c: bool(CJK_RE.match(c))  # noqa: E731
    return [i for i in range(len(text) - 1, 0, -1) if text[i].isspace() or is_edge(text[i - 1]) or is_edge(text[i])]


def cut_candidates(text: str, language: str, ellipsis: str) -> list[str]:
    out = []
    for i in _boundaries(text, language):
        head = text[:i].rstrip(TRAILING)
        while " " in head and head.rsplit(" ", 1)[1].lower() in _SMALL_WORDS:  # not "Tin in…"
            head = head.rsplit(" ", 1)[0].rstrip(TRAILING)
        if head and head + ellipsis not in out:
            out.append(head + ellipsis)
    return out


def cut(text: str, fits: Callable[[str], bool], language: str, ellipsis: str) -> str:
    """`text` if it fits, else its longest cut at a word boundary (zh: character) plus `ellipsis`."""
    if fits(text):
        return text
    for candidate in cut_candidates(text, language, ellipsis):
        if fits(candidate):
            return candidate
    for i in range(len(text) - 1, 0, -1):  # one long word: cut inside it
        candidate = text[:i].rstrip(TRAILING) + ellipsis
        if fits(candidate):
            return candidate
    return ""
