"""An independent audit of delivered copy variants: does every message keep the shop's rules?

    .venv/bin/python bench/copy_audit.py VARIANTS.jsonl --catalog ITEMS.parquet \
        [--banned services/copywriting/banned_terms.yaml] [--json OUT.json] [--show-failures N]

It reads one JSON object per line (user_id, item_id, item_title, price, promo_price, code, reason,
channel, language, title, body, cta, source, variant_id, family; optionally promotion, currency,
shop_name, sms), checks each variant against the seven rules below, prints a table of failures per
rule (overall and by source), the pass rate, and the first N failing variants; `--json` writes
{"variants", "passed", "pass_rate", "failures": {rule: count}, "examples": [...], ...}. It always
exits 0 (unreadable lines are counted, not fatal).

This is deliberately a *second reader*: it shares no code with services/copywriting (only the
policy data file banned_terms.yaml), so a bug in the product's own checks is not repeated here.

Text handling. Every copy field is NFKC-normalised first (full-width digits/letters/％/￥ become
ASCII, "…" becomes "..."). Product titles are matched as *token sequences*: a token is a run of
Latin letters/digits, lower-cased, so "T-LIGHT" = "t light" = "T‑Light", "50'S" = "50's", double
spaces do not matter, an ALL-CAPS catalogue title matches its Title-Case display form, and matches
are whole-word (a CJK character is a word boundary, so "RED RETROSPOT手提袋" names the product).

The rules (names as printed and in the JSON):

1. product_named — title + body (for sms: body and the "sms" text) names the product:
   * the whole title as a token sequence; or
   * for a long title (>= 4 words) a clear part of it: a contiguous run of the title's tokens that
     holds at least two *significant* words (>= 3 chars with a letter, not a filler word such as
     "set", "of", "pack", "assorted", "small"), e.g. "Retrospot Charlotte Bag" for RED RETROSPOT CHARLOTTE BAG
     ... no: that title has 4 words, so "retrospot charlotte" or "charlotte bag" both count; or
   * the title cut by an ellipsis ("..." / "…", optional space before it) after at least half of its
     characters, possibly mid-word: "White Hanging Heart T-Li…".
   The product's title is the row's item_title; the catalogue title of item_id is accepted too.
2. no_other_product — no other catalogue title of >= 2 words (and >= 2 tokens) appears, whole-word
   and case-insensitive, in title/body/cta/sms, unless it is a contiguous part of this product's
   title (or equal to it: duplicate titles) or it appears in `reason` (a cited past purchase).
   Matcher: a dict from a title's first two tokens to the titles starting with them; one pass
   over the copy's tokens.
3. facts_match — after masking the product title (whole, parts, cut forms), catalogue titles cited
   in the reason, the code, the 【signature】 and shop_name:
   * money: "£12.50", "$3", "€4", "¥8", "GBP 12.50", "12.50 GBP", "12.50元/块/英镑/美元/欧元",
     "5 pounds", "99p", Chinese "满50" / "减10" / "立减10" / "省10", and any bare number with
     exactly two decimals ("12.50", not part of a date after "ends/until/截止/至" and not followed
     by a unit letter). Each must equal (±0.005) price, promo_price, price − promo_price (the
     saving), or a promotion's amount_off / threshold / reduction. When the currency is known (the
     row's "currency", else the catalogue's), a symbol of another currency fails too.
   * percentages ("20%", "20 percent", "百分之20", "8折" = 20% off, "85折" = 15% off) must equal
     the promotion's percent_off, or the percent off derived from price/promo_price (rounded,
     floored or ceiled).
   * a code-like token right after "code" / "promo code" / "优惠码" / "折扣码" / "兑换码" / "券码"
     (en: contains a digit or is ALL CAPS, >= 3 chars; zh: any Latin/digit token) must equal
     `code` (case-insensitive); with no code, any such token fails.
4. no_banned_term — the policy file's zh patterns anywhere, its en patterns as whole words
   (case-insensitive), both languages' lists on every copy (the policy says "checked in every
   language"), over title/body/cta/sms after masking only the product title (whole, parts, cut
   forms), the code, the 【signature】 and shop_name.
5. sms_limits — channel sms: the message as sent ("sms" if present, else body) is <= 3 segments
   (GSM-7 with its extension table counted as 2 septets and never split across parts: 160 / 153
   per part; otherwise UCS-2 in UTF-16 units: 70 / 67, surrogate pairs never split) and ends with
   the opt-out: en "Reply STOP", zh "回T退订" or "退订回T" (case-insensitive), trailing
   whitespace/punctuation allowed.
6. no_stray_latin — language zh: after masking the product title (whole, parts, cut forms, any
   case), catalogue titles cited in the reason (a cited purchase is a product name, not a stray
   word), the code, currency codes (GBP, USD, ...), the 【signature】, shop_name and the opt-out
   marker, no Latin-letter word remains in title/body/cta/sms.
7. not_empty — body non-empty; title and cta non-empty unless channel is sms.

API (importable):  load_catalog(path) -> CatalogIndex;  CatalogIndex(items: {item_id: title},
currencies=None);  load_banned(path) -> Banned;  audit_variant(row, catalog_index, banned) ->
list[str] (failed rule names, in RULES order);  explain_variant(...) -> dict[rule, detail];
audit_rows(rows, catalog_index, banned, show=...) -> report dict;  main(argv=None) -> 0.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_BANNED = ROOT / "services" / "copywriting" / "banned_terms.yaml"

RULES: dict[str, str] = {
    "product_named": "copy names the product (title, clear part, or ellipsis cut)",
    "no_other_product": "no other catalogue product named (reason-cited allowed)",
    "facts_match": "money / percentages / code equal the facts",
    "no_banned_term": "no banned term outside title, code, signature",
    "sms_limits": "SMS <= 3 segments and ends with opt-out",
    "no_stray_latin": "zh copy has no stray Latin word",
    "not_empty": "title / body / cta present",
}

# ---------------------------------------------------------------------------------------------
# Tokens

_TOKEN = re.compile(r"[0-9a-z\u00df-\u00f6\u00f8-\u00ff]+")
_FILLER = frozenset(
    "a an and the of in on with for to from by at or set sets pack packs box boxes assorted asstd "
    "assort small large mini medium big size pcs pc piece pieces".split()
)


def nfkc(text: object) -> str:
    return unicodedata.normalize("NFKC", text if isinstance(text, str) else ("" if text is None else str(text)))


def tokens(text: str) -> list[tuple[str, int, int]]:
    """(token, start, end) over `text` (already NFKC); tokens lower-cased, offsets into `text`."""
    low = text.lower()
    if len(low) != len(text):  # a rare char whose lower() changes length: fall back char by char
        low = "".join(c.lower() if len(c.lower()) == 1 else c for c in text)
    return [(m.group(), m.start(), m.end()) for m in _TOKEN.finditer(low)]


def _significant(tok: str) -> bool:
    return len(tok) >= 3 and any(c.isalpha() for c in tok) and tok not in _FILLER


@dataclass(frozen=True)
class Title:
    """A catalogue title prepared for matching."""

    text: str  # NFKC, whitespace-collapsed
    toks: tuple[str, ...]
    tok_ends: tuple[int, ...]  # end offset of each token in `text`
    tok_starts: tuple[int, ...]
    words: int

    @classmethod
    def of(cls, title: object) -> "Title":
        text = " ".join(nfkc(title).split())
        ts = tokens(text)
        return cls(text, tuple(t for t, _, _ in ts), tuple(e for _, _, e in ts),
                   tuple(s for _, s, _ in ts), len(text.split()))

    @property
    def long(self) -> bool:
        return self.words >= 4


def _find_seq(text_toks: Sequence[str], seq: Sequence[str]) -> list[int]:
    n = len(seq)
    if not n:
        return []
    first = seq[0]
    return [i for i in range(len(text_toks) - n + 1) if text_toks[i] == first and tuple(text_toks[i:i + n]) == tuple(seq)]


def _is_subseq(small: Sequence[str], big: Sequence[str]) -> bool:
    return bool(small) and bool(_find_seq(big, small))


def title_spans(text: str, title: Title, parts: bool = True) -> list[tuple[int, int, str]]:
    """Char spans of `text` that name `title`: (start, end, kind) with kind 'full', 'part', 'cut'.

    'part' (only for long titles, when `parts`): a maximal run of text tokens equal to a contiguous
    run of title tokens holding >= 2 significant words. 'cut': the title's prefix (>= half its
    characters; the last token may be cut mid-word) directly followed by an ellipsis.
    """
    tt = tokens(text)
    if not tt or not title.toks:
        return []
    ttoks = [t for t, _, _ in tt]
    spans: list[tuple[int, int, str]] = []
    n = len(title.toks)
    half = len(title.text) / 2
    for i in range(len(tt)):
        for j in range(n):
            # a run must start where no longer run (from i-1, j-1) already covers it
            if i > 0 and j > 0 and ttoks[i - 1] == title.toks[j - 1]:
                continue
            k = 0
            while i + k < len(tt) and j + k < n and ttoks[i + k] == title.toks[j + k]:
                k += 1
            start = tt[i][1]
            if k and j == 0 and k == n:
                spans.append((start, tt[i + k - 1][2], "full"))
                continue
            # cut form: the title's first k tokens, maybe a cut-off next token, then an ellipsis
            if j == 0 and k < n:
                cands = []  # (end of the cut in text, title characters it covers)
                if k:
                    cands.append((tt[i + k - 1][2], title.tok_ends[k - 1]))
                if i + k < len(tt) and title.toks[k].startswith(ttoks[i + k]):
                    cands.append((tt[i + k][2], title.tok_starts[k] + len(ttoks[i + k])))
                for text_end, covered in cands:
                    rest = text[text_end:]
                    gap = len(rest) - len(rest.lstrip(" "))
                    if covered >= half and rest[gap:].startswith(("...", "\u2026")):
                        spans.append((start, text_end + gap + (3 if rest[gap:].startswith("...") else 1), "cut"))
                        break
            if parts and title.long and k >= 2:
                if sum(_significant(t) for t in title.toks[j:j + k]) >= 2:
                    spans.append((start, tt[i + k - 1][2], "part"))
    return spans


# ---------------------------------------------------------------------------------------------
# Catalogue

class CatalogIndex:
    """Titles by item_id, and a matcher for every title of >= 2 words in a text."""

    def __init__(self, items: dict[str, str], currencies: dict[str, str] | None = None):
        self.titles: dict[str, Title] = {str(k): Title.of(v) for k, v in items.items()}
        self.currencies = {str(k): str(v).upper() for k, v in (currencies or {}).items() if v}
        by_text: dict[tuple[str, ...], Title] = {}
        for t in self.titles.values():
            if t.words >= 2 and len(t.toks) >= 2:
                by_text.setdefault(t.toks, t)
        self.first2: dict[tuple[str, str], list[Title]] = {}
        for toks, t in by_text.items():
            self.first2.setdefault((toks[0], toks[1]), []).append(t)
        for lst in self.first2.values():
            lst.sort(key=lambda t: -len(t.toks))

    def __len__(self) -> int:
        return len(self.titles)

    def find(self, text: str) -> list[tuple[Title, int, int]]:
        """Every catalogue title (>= 2 words) named in `text`: (title, char start, char end)."""
        tt = tokens(text)
        ttoks = [t for t, _, _ in tt]
        out = []
        for i in range(len(tt) - 1):
            for t in self.first2.get((ttoks[i], ttoks[i + 1]), ()):
                n = len(t.toks)
                if tuple(ttoks[i:i + n]) == t.toks:
                    out.append((t, tt[i][1], tt[i + n - 1][2]))
        return out


def load_catalog(path: str | Path) -> CatalogIndex:
    import pandas as pd

    cols = ["item_id", "title"]
    try:
        df = pd.read_parquet(path, columns=cols + ["currency"])
    except Exception:
        df = pd.read_parquet(path, columns=cols)
    ids = df["item_id"].astype(str).tolist()
    cur = dict(zip(ids, df["currency"].tolist())) if "currency" in df else None
    return CatalogIndex(dict(zip(ids, df["title"].tolist())), cur)


# ---------------------------------------------------------------------------------------------
# Banned terms

@dataclass
class Banned:
    zh: list[re.Pattern] = field(default_factory=list)
    en: list[re.Pattern] = field(default_factory=list)

    def find(self, text: str) -> list[str]:
        hits = [m.group() for p in self.zh for m in p.finditer(text)]
        hits += [m.group() for p in self.en for m in p.finditer(text)]
        return hits


def make_banned(zh: Iterable[str] = (), en: Iterable[str] = ()) -> Banned:
    return Banned(
        [re.compile(p) for p in zh],
        [re.compile(r"(?<![A-Za-z0-9])(?:" + p + r")(?![A-Za-z0-9])", re.IGNORECASE) for p in en],
    )


def load_banned(path: str | Path = DEFAULT_BANNED) -> Banned:
    import yaml

    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    return make_banned(data.get("zh") or [], data.get("en") or [])


# ---------------------------------------------------------------------------------------------
# SMS segments

_GSM_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    "ÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXT = set("^{}\\[~]|€\f")


def sms_segments(text: str) -> tuple[int, str]:
    """(segments, encoding) for `text` as sent: 'GSM-7' or 'UCS-2'."""
    if all(c in _GSM_BASIC or c in _GSM_EXT for c in text):
        units = [2 if c in _GSM_EXT else 1 for c in text]
        single, part, enc = 160, 153, "GSM-7"
    else:
        units = [2 if ord(c) > 0xFFFF else 1 for c in text]
        single, part, enc = 70, 67, "UCS-2"
    total = sum(units)
    if total <= single:
        return 1, enc
    segs, used = 1, 0
    for u in units:  # an escape pair / surrogate pair never splits across parts
        if used + u > part:
            segs, used = segs + 1, 0
        used += u
    return segs, enc


_OPT_OUT = {
    # "Reply STOP", and its usual completions ("… to opt out", "… to unsubscribe", "… to end").
    "en": re.compile(r"(?:reply|text)\s+stop(?:\s+to\s+(?:opt[\s-]?out|unsubscribe|end|stop))?[\s.!。！)）\]】]*\Z", re.IGNORECASE),
    "zh": re.compile(r"(?:回\s*[TtＴｔ]\s*退订|退订\s*回\s*[TtＴｔ])[\s.!。！)）\]】]*\Z"),
}
_OPT_OUT_MASK = re.compile(r"回\s*[Tt]\s*退订|退订\s*回\s*[Tt]|reply\s+stop", re.IGNORECASE)

# ---------------------------------------------------------------------------------------------
# Amounts

_NUM = r"(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)"
_CUR_PRE = r"US\$|HK\$|A\$|C\$|£|\$|€|¥|GBP|USD|EUR|RMB|CNY|HKD|JPY"
_CUR_SUF = r"元|块|英镑|美元|欧元|镑|GBP|USD|EUR|RMB|CNY|HKD|JPY|pounds?|euros?|dollars?|quid"
_MONEY = re.compile(
    rf"(?P<pre>{_CUR_PRE})\s?(?P<n1>{_NUM})"
    rf"|(?<![\d.,])(?P<n2>{_NUM})\s?(?P<suf>{_CUR_SUF})(?![A-Za-z])"
    rf"|(?<![\d.,])(?P<n3>\d{{1,2}})p(?![A-Za-z0-9])"
    rf"|(?P<zh>满|立减|减|省)\s?(?P<n4>{_NUM})(?!\s?[件个份套张只次单])"
    rf"|(?<![\d.,])(?P<n5>\d+\.\d{{2}})(?!\.?\d|\s?[A-Za-z%折])",
    re.IGNORECASE,
)
_DATE_LEAD = re.compile(r"(?:ends?|until|till|thru|through|by|on|截止|截至|至|到)\s*\Z", re.IGNORECASE)
_PERCENT = re.compile(rf"(?P<n>{_NUM})\s?(?:%|percent\b|per\s?cent\b)|百分之\s?(?P<z>{_NUM})", re.IGNORECASE)
_ZHE = re.compile(r"(?<![\d.])(?P<n>\d+(?:\.\d+)?)\s?折")
_CODE_EN = re.compile(
    r"\b(?:promo|discount|coupon|voucher|offer)?\s*code\b\s*[:=]?\s*(?:is\s+)?[\"'“”‘’「『【(\[]?\s*"
    r"(?P<tok>[A-Za-z0-9][A-Za-z0-9_-]*)", re.IGNORECASE)
_CODE_ZH = re.compile(r"(?:优惠码|折扣码|兑换码|优惠券码|券码|口令)\s*[:=是为]?\s*[\"“「『【(\[]?\s*(?P<tok>[A-Za-z0-9][A-Za-z0-9_-]*)")
_CURRENCY_OF = {
    "£": {"GBP"}, "gbp": {"GBP"}, "英镑": {"GBP"}, "镑": {"GBP"}, "pound": {"GBP"}, "pounds": {"GBP"},
    "quid": {"GBP"}, "p": {"GBP"},
    "$": {"USD", "AUD", "CAD", "HKD", "SGD", "NZD", "TWD"}, "us$": {"USD"}, "usd": {"USD"},
    "美元": {"USD"}, "dollar": {"USD", "AUD", "CAD", "HKD", "SGD", "NZD"}, "dollars": {"USD", "AUD", "CAD", "HKD", "SGD", "NZD"},
    "hk$": {"HKD"}, "hkd": {"HKD"}, "a$": {"AUD"}, "c$": {"CAD"},
    "€": {"EUR"}, "eur": {"EUR"}, "欧元": {"EUR"}, "euro": {"EUR"}, "euros": {"EUR"},
    "¥": {"CNY", "JPY", "RMB"}, "元": {"CNY", "RMB"}, "块": {"CNY", "RMB"}, "rmb": {"CNY", "RMB"},
    "cny": {"CNY", "RMB"}, "jpy": {"JPY"},
}
_SIGNATURE = re.compile(r"【[^】]*】")
_CURRENCY_WORDS = re.compile(r"(?<![A-Za-z])(?:GBP|USD|EUR|RMB|CNY|HKD|JPY|AUD|CAD|SGD)(?![A-Za-z])", re.IGNORECASE)
_LATIN_WORD = re.compile(r"[A-Za-z\u00c0-\u024f]+")


def _num(s: str) -> float:
    return float(s.replace(",", ""))


def _f(x: object) -> float | None:
    if x is None or isinstance(x, bool):
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v


def _eq(a: float, allowed: Iterable[float]) -> bool:
    return any(abs(a - b) < 0.005 for b in allowed)


def _mask(text: str, spans: Iterable[tuple[int, int]]) -> str:
    chars = list(text)
    for s, e in spans:
        for i in range(max(s, 0), min(e, len(chars))):
            chars[i] = " "
    return "".join(chars)


def _literal_spans(text: str, literal: str, word: bool = True) -> list[tuple[int, int]]:
    if not literal:
        return []
    pat = re.escape(literal)
    if word:
        pat = r"(?<![A-Za-z0-9])" + pat + r"(?![A-Za-z0-9])"
    return [m.span() for m in re.finditer(pat, text, re.IGNORECASE)]


# ---------------------------------------------------------------------------------------------
# The audit

@dataclass
class _Ctx:
    row: dict
    channel: str
    language: str
    fields: dict[str, str]  # NFKC copy fields: title, body, cta, sms (as present)
    product: list[Title]
    code: str
    reason: str
    shop: str


def _context(row: dict, index: CatalogIndex) -> _Ctx:
    channel = nfkc(row.get("channel")).strip().lower()
    language = nfkc(row.get("language")).strip().lower()
    fields = {k: nfkc(row.get(k)) for k in ("title", "body", "cta")}
    if isinstance(row.get("sms"), str):
        fields["sms"] = nfkc(row["sms"])
    product: list[Title] = []
    for t in (row.get("item_title"), index.titles.get(str(row.get("item_id"))) if row.get("item_id") is not None else None):
        if isinstance(t, Title):
            t = t.text
        if t and str(t).strip():
            tt = Title.of(t)
            if tt.toks and all(tt.toks != p.toks for p in product):
                product.append(tt)
    return _Ctx(row, channel, language, fields, product, nfkc(row.get("code") or "").strip(),
                nfkc(row.get("reason") or ""), nfkc(row.get("shop_name") or "").strip())


def _product_spans(ctx: _Ctx, text: str) -> list[tuple[int, int]]:
    return [(s, e) for t in ctx.product for s, e, _ in title_spans(text, t)]


def _reason_titles(ctx: _Ctx, index: CatalogIndex) -> set[tuple[str, ...]]:
    return {t.toks for t, _, _ in index.find(ctx.reason)} if ctx.reason else set()


def _common_mask(ctx: _Ctx, text: str) -> list[tuple[int, int]]:
    spans = _product_spans(ctx, text)
    spans += _literal_spans(text, ctx.code)
    spans += [m.span() for m in _SIGNATURE.finditer(text)]
    spans += _literal_spans(text, ctx.shop)
    return spans


def _check_named(ctx: _Ctx) -> str | None:
    if not ctx.product:
        return "no product title known"
    texts = [ctx.fields.get("body", "")]
    if ctx.channel == "sms":
        texts.append(ctx.fields.get("sms", ""))
    else:
        texts.insert(0, ctx.fields.get("title", ""))
    for text in texts:
        for t in ctx.product:
            if title_spans(text, t):
                return None
    return f"does not name {ctx.product[0].text!r}"


def _check_others(ctx: _Ctx, index: CatalogIndex) -> str | None:
    cited = _reason_titles(ctx, index)
    found = []
    for name, text in ctx.fields.items():
        for t, _, _ in index.find(text):
            if t.toks in cited or any(_is_subseq(t.toks, p.toks) for p in ctx.product):
                continue
            if t.text not in found:
                found.append(t.text)
    return f"names {', '.join(repr(x) for x in found)}" if found else None


def _facts(ctx: _Ctx) -> tuple[list[float], list[float]]:
    row = ctx.row
    price, promo = _f(row.get("price")), _f(row.get("promo_price"))
    promotion = row.get("promotion") if isinstance(row.get("promotion"), dict) else {}
    money = [v for v in (price, promo) if v is not None]
    if price is not None and promo is not None and price > promo:
        money.append(round(price - promo, 2))
    for k in ("amount_off", "threshold", "reduction"):
        v = _f(promotion.get(k))
        if v is not None:
            money.append(v)
    pct = []
    v = _f(promotion.get("percent_off"))
    if v is not None:
        pct.append(v)
    if price and promo is not None and price > promo:
        off = (1 - promo / price) * 100
        pct += [round(off), math.floor(off), math.ceil(off)]
    return money, pct


def _check_facts(ctx: _Ctx, index: CatalogIndex) -> str | None:
    money_ok, pct_ok = _facts(ctx)
    currency = nfkc(ctx.row.get("currency") or index.currencies.get(str(ctx.row.get("item_id")), "")).upper()
    problems: list[str] = []
    cited = _reason_titles(ctx, index)
    for name, raw in ctx.fields.items():
        # the code first (before the code itself is masked)
        for pat, en in ((_CODE_EN, True), (_CODE_ZH, False)):
            for m in pat.finditer(raw):
                tok = m.group("tok")
                if ctx.code and tok.upper() == ctx.code.upper():
                    continue
                codeish = (not en) or (len(tok) >= 3 and (any(c.isdigit() for c in tok) or tok == tok.upper()))
                if codeish and (not en or tok.lower() not in {"at", "is", "the", "to", "for", "and"}):
                    problems.append(f"{name}: code {tok!r} != {ctx.code!r}")
        spans = _common_mask(ctx, raw)
        spans += [(s, e) for t, s, e in index.find(raw) if t.toks in cited]
        text = _mask(raw, spans)
        for m in _MONEY.finditer(text):
            n = m.group("n1") or m.group("n2") or m.group("n3") or m.group("n4") or m.group("n5")
            if m.group("n5") and _DATE_LEAD.search(text[:m.start()]):
                continue
            value = _num(n)
            unit = (m.group("pre") or m.group("suf") or "").lower()
            if m.group("n3"):
                value, unit = value / 100, "p"
            if not _eq(value, money_ok):
                problems.append(f"{name}: amount {m.group().strip()!r} not in {sorted(set(money_ok))}")
            elif currency and unit and unit in _CURRENCY_OF and currency not in _CURRENCY_OF[unit]:
                problems.append(f"{name}: {m.group().strip()!r} is not {currency}")
        for m in _PERCENT.finditer(text):
            value = _num(m.group("n") or m.group("z"))
            if not _eq(value, pct_ok):
                problems.append(f"{name}: percentage {m.group().strip()!r} not in {sorted(set(pct_ok))}")
        for m in _ZHE.finditer(text):
            v = _num(m.group("n"))
            off = 100 - v * 10 if v < 10 else 100 - v if v < 100 else None
            if off is None or not _eq(off, pct_ok):
                problems.append(f"{name}: discount {m.group()!r} not in {sorted(set(pct_ok))}% off")
    return "; ".join(problems) if problems else None


def _check_banned(ctx: _Ctx, banned: Banned) -> str | None:
    hits = []
    for name, raw in ctx.fields.items():
        text = _mask(raw, _common_mask(ctx, raw))
        hits += [f"{name}: {h!r}" for h in banned.find(text)]
    return "; ".join(hits) if hits else None


def _check_sms(ctx: _Ctx) -> str | None:
    if ctx.channel != "sms":
        return None
    raw = ctx.row.get("sms") if isinstance(ctx.row.get("sms"), str) else ctx.row.get("body")
    raw = raw if isinstance(raw, str) else ""
    problems = []
    segs, enc = sms_segments(raw)
    if segs > 3:
        problems.append(f"{segs} segments ({enc}, {len(raw)} chars)")
    lang = "zh" if ctx.language.startswith("zh") else "en"
    if not _OPT_OUT[lang].search(raw.strip()):
        problems.append(f"no {lang} opt-out at the end")
    return "; ".join(problems) if problems else None


def _check_latin(ctx: _Ctx, index: CatalogIndex) -> str | None:
    if not ctx.language.startswith("zh"):
        return None
    cited = _reason_titles(ctx, index)
    stray = []
    for name, raw in ctx.fields.items():
        spans = _common_mask(ctx, raw)
        spans += [(s, e) for t, s, e in index.find(raw) if t.toks in cited]
        spans += [m.span() for m in _CURRENCY_WORDS.finditer(raw)]
        spans += [m.span() for m in _OPT_OUT_MASK.finditer(raw)]
        text = _mask(raw, spans)
        stray += [f"{name}: {m.group()!r}" for m in _LATIN_WORD.finditer(text)]
    return "; ".join(stray) if stray else None


def _check_empty(ctx: _Ctx) -> str | None:
    need = ["body"] if ctx.channel == "sms" else ["title", "body", "cta"]
    empty = [k for k in need if not ctx.fields.get(k, "").strip()]
    return f"empty {', '.join(empty)}" if empty else None


def explain_variant(row: dict, catalog_index: CatalogIndex, banned: Banned) -> dict[str, str]:
    """{rule: what failed} for every rule the variant breaks (empty dict: it passes)."""
    ctx = _context(row, catalog_index)
    checks = {
        "product_named": lambda: _check_named(ctx),
        "no_other_product": lambda: _check_others(ctx, catalog_index),
        "facts_match": lambda: _check_facts(ctx, catalog_index),
        "no_banned_term": lambda: _check_banned(ctx, banned),
        "sms_limits": lambda: _check_sms(ctx),
        "no_stray_latin": lambda: _check_latin(ctx, catalog_index),
        "not_empty": lambda: _check_empty(ctx),
    }
    out = {}
    for rule, check in checks.items():
        detail = check()
        if detail:
            out[rule] = detail
    return out


def audit_variant(row: dict, catalog_index: CatalogIndex, banned: Banned) -> list[str]:
    """The rules `row` fails, in RULES order (empty list: the variant passes)."""
    return list(explain_variant(row, catalog_index, banned))


# ---------------------------------------------------------------------------------------------
# Report

def read_variants(path: str | Path) -> tuple[list[dict], int]:
    rows, bad = [], 0
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                bad += 1
                continue
            if isinstance(obj, dict):
                rows.append(obj)
            else:
                bad += 1
    return rows, bad


def _example(row: dict, fails: dict[str, str]) -> dict:
    keys = ("variant_id", "user_id", "item_id", "item_title", "channel", "language", "source", "family",
            "price", "promo_price", "code", "title", "body", "cta")
    ex = {k: row.get(k) for k in keys if k in row}
    if "sms" in row:
        ex["sms"] = row["sms"]
    ex["failures"] = fails
    return ex


def audit_rows(rows: Iterable[dict], catalog_index: CatalogIndex, banned: Banned, show: int = 10,
               per_rule: int = 5, max_examples: int = 50) -> dict:
    n = passed = 0
    failures = {r: 0 for r in RULES}
    by_source: dict[str, dict] = {}
    by_chan: dict[str, dict] = {}
    failing: list[dict] = []
    per_rule_ex: dict[str, list[int]] = {r: [] for r in RULES}
    for row in rows:
        n += 1
        fails = explain_variant(row, catalog_index, banned)
        for bucket, key in ((by_source, str(row.get("source"))), (by_chan, f"{row.get('channel')}/{row.get('language')}")):
            b = bucket.setdefault(key, {"variants": 0, "passed": 0, "failures": {r: 0 for r in RULES}})
            b["variants"] += 1
            b["passed"] += not fails
            for r in fails:
                b["failures"][r] += 1
        if not fails:
            passed += 1
            continue
        for r in fails:
            failures[r] += 1
        if len(failing) < max_examples * 20:  # keep memory bounded on huge files
            failing.append(_example(row, fails))
            for r in fails:
                if len(per_rule_ex[r]) < per_rule:
                    per_rule_ex[r].append(len(failing) - 1)
    chosen: list[int] = list(range(min(show, len(failing))))
    for r in RULES:
        for i in per_rule_ex[r]:
            if i not in chosen:
                chosen.append(i)
    for i in range(len(failing)):
        if len(chosen) >= max(max_examples, show):
            break
        if i not in chosen:
            chosen.append(i)
    return {
        "variants": n,
        "passed": passed,
        "pass_rate": passed / n if n else 0.0,
        "failures": failures,
        "rules": RULES,
        "by_source": by_source,
        "by_channel_language": by_chan,
        "examples": [failing[i] for i in chosen],
        "first_failures": failing[:show],
    }


def _print(report: dict, show: int, unreadable: int) -> None:
    from rich.console import Console
    from rich.table import Table

    import shutil

    con = Console(width=max(shutil.get_terminal_size((140, 24)).columns, 120))
    n = report["variants"]
    sources = sorted(report["by_source"])
    table = Table(title=f"Copy audit: {n} variants")
    table.add_column("rule")
    table.add_column("what it checks")
    table.add_column("failures", justify="right")
    table.add_column("% of variants", justify="right")
    for s in sources:
        table.add_column(f"{s} ({report['by_source'][s]['variants']})", justify="right")
    for rule, desc in RULES.items():
        c = report["failures"][rule]
        table.add_row(rule, desc, str(c), f"{100 * c / n:.1f}%" if n else "-",
                      *[str(report["by_source"][s]["failures"][rule]) for s in sources])
    table.add_row("[b]passed[/b]", "all rules hold", f"[b]{report['passed']}[/b]",
                  f"[b]{100 * report['pass_rate']:.1f}%[/b]",
                  *[f"{report['by_source'][s]['passed']}" for s in sources])
    con.print(table)
    ct = Table(title="By channel / language")
    for col in ("channel/language", "variants", "passed", "pass rate"):
        ct.add_column(col, justify="right" if col != "channel/language" else "left")
    for k, b in sorted(report["by_channel_language"].items()):
        ct.add_row(k, str(b["variants"]), str(b["passed"]), f"{100 * b['passed'] / b['variants']:.1f}%")
    con.print(ct)
    con.print(f"pass rate: [b]{report['passed']}/{n} = {100 * report['pass_rate']:.2f}%[/b]"
              + (f"  ({unreadable} unreadable lines skipped)" if unreadable else ""))
    for ex in report["first_failures"][:show]:
        con.rule(f"{ex.get('variant_id')}  user={ex.get('user_id')} item={ex.get('item_id')} "
                 f"{ex.get('channel')}/{ex.get('language')} source={ex.get('source')}")
        con.print({k: ex.get(k) for k in ("item_title", "price", "promo_price", "code", "title", "body", "cta", "sms") if k in ex},
                  markup=False)
        for rule, detail in ex["failures"].items():
            con.print(f"  [red]{rule}[/red]: ", end="")
            con.print(detail, markup=False)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("variants", help="JSONL of delivered copy variants")
    ap.add_argument("--catalog", required=True, help="items parquet (item_id, title[, currency])")
    ap.add_argument("--banned", default=str(DEFAULT_BANNED), help="banned-terms policy YAML")
    ap.add_argument("--json", dest="json_out", help="write the report as JSON here")
    ap.add_argument("--show-failures", type=int, default=10, metavar="N", help="print the first N failing variants")
    args = ap.parse_args(argv)

    index = load_catalog(args.catalog)
    banned = load_banned(args.banned)
    rows, unreadable = read_variants(args.variants)
    report = audit_rows(rows, index, banned, show=max(args.show_failures, 0))
    report["unreadable_lines"] = unreadable
    _print(report, max(args.show_failures, 0), unreadable)
    if args.json_out:
        out = {k: v for k, v in report.items() if k != "first_failures"}
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps(out, ensure_ascii=False, indent=2, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
