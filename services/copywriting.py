"""Marketing copy for one (shopper, item): prompt, checks, repair and template fallback.

The flow (the engine itself lives elsewhere; nothing here imports vLLM):

    facts ──build_messages──▶ chat messages ─┐
    copy_json_schema(channel, language) ─────┴─▶ engine ──raw JSON text──▶ finalize ──▶ CopyOutcome

`finalize` parses the model's JSON and checks it; the outcome says which copy it returns:

- "model":    the model's copy as generated (only surrounding whitespace trimmed);
- "repaired": the model's copy with mechanical fixes of form: cut to the channel's length at a
              word boundary (zh: at a character) with an ellipsis, a word broken off by the
              decoder's maxLength dropped, the SMS opt-out suffix added, an unusable call to
              action (empty, cut off, junk, not an action) replaced by the default one, extra
              spaces / line breaks removed;
- "template": what the title and body say is unusable (no output, invalid JSON, empty fields,
              banned absolute terms, prices / percentages / discount claims / codes / numbers
              that the facts do not back, not about this product, placeholders or prompt
              echoes, wrong language), so `template_copy` writes the copy from the same facts.
              Content is never repaired: taking words out of a tiny model's sentence does not
              make it true.

`problems` says why, in short phrases. The model is small (SmolLM2-135M): "template" is an
ordinary answer, and the checks lean to rejecting.

Lengths are counted in characters (Unicode code points, as JSON schema's maxLength counts),
except SMS bodies, which are counted as the network does: GSM-7 septets (160 to a segment, the
GSM extension characters such as € taking two) when every character is in the GSM-7 alphabet,
UTF-16 units (70 to a segment) otherwise, so Chinese and emoji SMS fit 70.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import re
import unicodedata
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Callable

from services.errors import InvalidArgument

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

LANGUAGES = ("en", "zh")

# --------------------------------------------------------------------------------------------
# Channels
# --------------------------------------------------------------------------------------------

# GSM 03.38 alphabet (basic table and the extension table, whose characters take two septets).
_GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")
SMS_GSM7_SEGMENT = 160
SMS_UCS2_SEGMENT = 70


def sms_segment_usage(text: str) -> tuple[int, int]:
    """(units used, units in one segment) for an SMS of `text`.

    GSM-7 text: septets, 160 to a segment. Anything else is sent as UCS-2: UTF-16 units, 70.
    """
    if all(c in _GSM7_BASIC or c in _GSM7_EXTENSION for c in text):
        return sum(2 if c in _GSM7_EXTENSION else 1 for c in text), SMS_GSM7_SEGMENT
    return len(text.encode("utf-16-le")) // 2, SMS_UCS2_SEGMENT


@dataclass(frozen=True)
class ChannelSpec:
    """Length limits of a channel, in characters.

    `title_max`, `body_max`, `cta_max` are the English limits; the zh_* fields, where set, are
    the Chinese ones (a CJK character is about twice as wide on screen, and an SMS in Chinese
    is UCS-2: 70 to a segment). A limit of 0 means the channel has no such part (SMS has no
    title and no call-to-action button: its body is the whole message as sent).
    """

    name: str
    title_max: int
    body_max: int
    cta_max: int
    zh_title_max: int | None = None
    zh_body_max: int | None = None
    zh_cta_max: int | None = None
    opt_out: bool = False  # the body must end with the opt-out suffix (SMS)

    def title_limit(self, language: str) -> int:
        return self.zh_title_max if language == "zh" and self.zh_title_max is not None else self.title_max

    def body_limit(self, language: str) -> int:
        return self.zh_body_max if language == "zh" and self.zh_body_max is not None else self.body_max

    def cta_limit(self, language: str) -> int:
        return self.zh_cta_max if language == "zh" and self.zh_cta_max is not None else self.cta_max

    def body_length(self, text: str) -> int:
        """Units `text` takes in this channel's body: SMS units for SMS, else characters."""
        return sms_segment_usage(text)[0] if self.name == "sms" else len(text)

    def body_capacity(self, text: str, language: str) -> int:
        """The limit that applies to this `text`: an SMS body that is not GSM-7 gets 70."""
        limit = self.body_limit(language)
        if self.name == "sms":
            limit = min(limit, sms_segment_usage(text)[1])
        return limit

    def body_fits(self, text: str, language: str) -> bool:
        return self.body_length(text) <= self.body_capacity(text, language)


CHANNELS: dict[str, ChannelSpec] = {
    # Push: ~40 characters of title and two lines (~120) of body show on iOS and Android
    # before truncation; a button label is short.
    "push": ChannelSpec("push", 40, 120, 20, zh_title_max=20, zh_body_max=60, zh_cta_max=10),
    # SMS: one segment, opt-out suffix included; no title, no button.
    "sms": ChannelSpec(
        "sms", 0, SMS_GSM7_SEGMENT, 0, zh_title_max=0, zh_body_max=SMS_UCS2_SEGMENT, zh_cta_max=0, opt_out=True
    ),
    # E-mail: subject lines beyond ~60 characters are cut in most inboxes; a short body.
    "email": ChannelSpec("email", 60, 600, 25, zh_title_max=30, zh_body_max=300, zh_cta_max=10),
    # In-app banner: a heading and one or two lines.
    "banner": ChannelSpec("banner", 30, 80, 15, zh_title_max=15, zh_body_max=40, zh_cta_max=8),
}

OPT_OUT = {"en": "Reply STOP to opt out", "zh": "回T退订"}
# Forms of the opt-out suffix accepted as already present (compared case-insensitively).
_OPT_OUT_FORMS = {
    "en": ("reply stop to opt out", "reply stop to opt-out", "reply stop to unsubscribe", "text stop to opt out"),
    "zh": ("回t退订", "回td退订", "退订回t", "退订回td"),
}
_CHANNEL_WORDS = {"push": "push notification", "sms": "SMS", "email": "e-mail", "banner": "in-app banner"}
_DEFAULT_CTA = {"en": "Shop now", "zh": "立即查看"}


def _spec(channel: str) -> ChannelSpec:
    try:
        return CHANNELS[channel]
    except KeyError:
        raise InvalidArgument("channel", f"unknown channel {channel!r}; one of {', '.join(CHANNELS)}") from None


def _check_language(language: str) -> None:
    if language not in LANGUAGES:
        raise InvalidArgument("language", f"unknown language {language!r}; one of {', '.join(LANGUAGES)}")


# --------------------------------------------------------------------------------------------
# Facts
# --------------------------------------------------------------------------------------------

_CENT = Decimal("0.01")


def _cents(value: float | Decimal) -> Decimal:
    return Decimal(str(value)).quantize(_CENT, rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class Promotion:
    """A promotion the copy may mention. All fields empty means no promotion."""

    code: str = ""
    percent_off: float = 0.0
    amount_off: float = 0.0
    ends: str = ""  # ISO date, as given
    description: str = ""

    def __post_init__(self) -> None:
        for name in ("percent_off", "amount_off"):
            value = getattr(self, name)
            if value is None or not math.isfinite(value) or value < 0:
                raise InvalidArgument(f"promotion.{name}", f"must be 0 or positive, got {value}")
        if self.percent_off >= 100:
            raise InvalidArgument("promotion.percent_off", f"must be below 100, got {self.percent_off}")
        for name in ("code", "ends", "description"):
            object.__setattr__(self, name, " ".join(str(getattr(self, name) or "").split()))

    @property
    def is_empty(self) -> bool:
        return not (self.code or self.percent_off or self.amount_off or self.ends or self.description)

    def price_after(self, price: float | None) -> float | None:
        """The price with the promotion, in cents; None without a price or a price reduction."""
        if price is None or not (self.percent_off or self.amount_off):
            return None
        value = Decimal(str(price))
        if self.percent_off:
            value = _cents(value * (Decimal(1) - Decimal(str(self.percent_off)) / 100))
        if self.amount_off:
            value = _cents(value - Decimal(str(self.amount_off)))
        return float(max(value, Decimal(0)))


@dataclass(frozen=True)
class CopyFacts:
    """Everything the copy may say. Shopper side: tags and titles only, never personal data."""

    item_id: str
    title: str
    price: float | None
    currency: str
    category: str = ""
    brand: str = ""
    interests: tuple[str, ...] = ()
    segment: str = ""
    recent_titles: tuple[str, ...] = ()
    # What shoppers most often buy with the item (its top basket rule): a cross-sell line.
    goes_with: str = ""
    reason: str = ""
    channel: str = "push"
    language: str = "en"
    promotion: Promotion = Promotion()
    tone: str = "friendly"

    def __post_init__(self) -> None:
        _spec(self.channel)
        _check_language(self.language)
        if self.price is not None and (not math.isfinite(self.price) or self.price < 0):
            raise InvalidArgument("price", f"must be 0 or positive, got {self.price}")
        if self.promotion is None:
            object.__setattr__(self, "promotion", Promotion())
        for name in ("item_id", "title", "currency", "category", "brand", "segment", "goes_with", "reason", "tone"):
            object.__setattr__(self, name, _one_line(str(getattr(self, name) or "")))
        object.__setattr__(self, "currency", self.currency.upper())
        for name in ("interests", "recent_titles"):
            given = getattr(self, name) or ()
            values = tuple(_one_line(str(v)) for v in ((given,) if isinstance(given, str) else given))
            object.__setattr__(self, name, tuple(v for v in values if v))


@dataclass(frozen=True)
class Copy:
    title: str
    body: str
    call_to_action: str


@dataclass(frozen=True)
class CopyOutcome:
    copy: Copy
    source: str  # "model" | "repaired" | "template"
    problems: tuple[str, ...]


# --------------------------------------------------------------------------------------------
# Text helpers
# --------------------------------------------------------------------------------------------

_CJK_RE = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_MASK = "\ue000"  # stands in for the product's own name while checking (private use: no letter)


def _one_line(text: str) -> str:
    return " ".join("".join(c if unicodedata.category(c)[0] != "C" else " " for c in text).split())


def _has_cjk(text: str) -> bool:
    return bool(_CJK_RE.search(text))


def _mostly_cjk(text: str) -> bool:
    # A CJK character carries about as much as three Latin letters (a word is ~1.7 characters
    # against ~5 letters), so compare on that scale.
    cjk = len(_CJK_RE.findall(text))
    latin = sum(1 for c in text if c.isalpha() and not _CJK_RE.match(c) and c != _MASK)
    return cjk > 0 and 3 * cjk >= latin


def _is_cjk_or_punct(c: str) -> bool:
    return bool(_CJK_RE.match(c)) or unicodedata.category(c).startswith("P") or c in "\u3000"


_SMALL_WORDS = frozenset("a an and as at by for in of on or the to with".split())
_ACRONYMS = frozenset("LED USB UK USA EU DVD CD TV XL XXL XXXL XS DIY BBQ PVC UV NYC II III IV VIP".split())


@functools.lru_cache(maxsize=4096)
def display_title(title: str) -> str:
    """The product name as copy shows it: UPPER CASE catalogue titles in title case.

    "WHITE HANGING HEART T-LIGHT HOLDER" → "White Hanging Heart T-Light Holder"; titles already
    in mixed case are kept; letters right after a digit ("500g", "3D", "1.8M") are kept.
    """
    t = _one_line(title)
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


_UPPER_RUN_RE = re.compile(r"\b[A-Z0-9][A-Z0-9'&/.,-]*(?:\s+[A-Z0-9][A-Z0-9'&/.,-]*)*\b")


def _nice_runs(text: str) -> str:
    """Title-case runs of UPPER CASE words (other products' catalogue titles inside a reason)."""

    def fix(m: re.Match) -> str:
        run = m.group(0)
        words = [w for w in re.findall(r"[A-Za-z]+", run)]
        if sum(len(w) >= 2 for w in words) < 2:
            return run
        return display_title(run)

    return _UPPER_RUN_RE.sub(fix, text)


_SYMBOLS = {"GBP": "£", "USD": "$", "EUR": "€", "CNY": "¥"}


def format_price(amount: float, currency: str) -> str:
    """£2.95, $3.00, €1,299.50, ¥12.00; unknown currency "12.50 XYZ"; no currency "12.50"."""
    value = _cents(amount)
    text = f"{value:,.2f}"
    currency = (currency or "").upper()
    if currency in _SYMBOLS:
        return _SYMBOLS[currency] + text
    return f"{text} {currency}" if currency else text


def _percent_text(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _stable_choice(facts: CopyFacts, n: int) -> int:
    key = f"{facts.item_id}\x1f{facts.channel}\x1f{facts.language}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:4], "big") % n


# --------------------------------------------------------------------------------------------
# JSON schema and prompt
# --------------------------------------------------------------------------------------------


def _opt_out_reserve(language: str) -> int:
    """Characters the opt-out suffix takes, with its joiner (". " or "，")."""
    return len(OPT_OUT[language]) + (2 if language == "en" else 1)


def _schema_body_max(spec: ChannelSpec, language: str) -> int:
    limit = spec.body_limit(language)
    return limit - _opt_out_reserve(language) if spec.opt_out else limit


def copy_json_schema(channel: str, language: str) -> dict:
    """JSON schema for the engine's constrained decoding: title, body, call_to_action strings.

    maxLength comes from the channel's limits in `language`. For SMS the title and the call to
    action must be empty and the body leaves room for the opt-out suffix that `finalize` adds.
    """
    spec = _spec(channel)
    _check_language(language)
    title_max, cta_max = spec.title_limit(language), spec.cta_limit(language)

    def string(min_length: int, max_length: int) -> dict:
        return {"type": "string", "minLength": min(min_length, max_length), "maxLength": max_length}

    return {
        "type": "object",
        "properties": {
            "title": string(1, title_max),
            "body": string(1, _schema_body_max(spec, language)),
            "call_to_action": string(1, cta_max),
        },
        "required": ["title", "body", "call_to_action"],
        "additionalProperties": False,
    }


_EMAIL_RE = re.compile(r"\S+@\S+\.\w+")
_PHONE_RE = re.compile(r"\+?\d[\d\s().-]{7,}\d")


def _prompt_text(text: str, max_len: int, scrub: bool = False) -> str:
    """One line, at most `max_len` characters; with `scrub`, e-mail- and phone-like text removed."""
    text = _one_line(text)
    if scrub:
        text = _one_line(_PHONE_RE.sub(" ", _EMAIL_RE.sub(" ", text)))
    return text if len(text) <= max_len else text[: max_len - 1].rstrip() + "…"


def _promotion_terms(facts: CopyFacts) -> str:
    promo = facts.promotion
    parts = []
    if promo.percent_off:
        parts.append(f"{_percent_text(promo.percent_off)}% off")
    if promo.amount_off:
        parts.append(f"{format_price(promo.amount_off, facts.currency)} off")
    text = " plus ".join(parts)
    if promo.code:
        text += f" with code {promo.code}"
    if promo.ends:
        text += f" until {promo.ends}"
    after = promo.price_after(facts.price)
    if after is not None:
        text += f"; price with it {format_price(after, facts.currency)}"
    if promo.description:
        text = f"{_prompt_text(promo.description, 80)}. {text}" if text else _prompt_text(promo.description, 80)
    return text.strip()


def build_messages(facts: CopyFacts) -> list[dict[str, str]]:
    """System and user chat messages carrying the facts, the shopper's tags and the limits.

    Only fields of `facts` go in (it has no user id, name, e-mail or phone), each on one line
    and cut short; shopper-side free text is also scrubbed of anything e-mail- or phone-like.
    """
    spec = _spec(facts.channel)
    lang = facts.language
    system = (
        f"You write {_CHANNEL_WORDS[spec.name]} marketing copy for an online shop. "
        "Reply with JSON only (title, body, call_to_action). "
        "Use only the facts given: never invent prices, discounts or claims. "
        "No superlatives (best, No.1, 最), no placeholders, no links."
    )
    lines = [f"Product: {_prompt_text(display_title(facts.title), 80)}"]
    if facts.price is not None:
        lines.append(f"Price: {format_price(facts.price, facts.currency)}")
    else:
        lines.append("Price: not given; do not mention a price")
    if facts.category:
        lines.append(f"Category: {_prompt_text(facts.category, 40)}")
    if facts.brand:
        lines.append(f"Brand: {_prompt_text(facts.brand, 40)}")
    if facts.promotion.is_empty:
        lines.append("Promotion: none; do not mention discounts, sales or free offers")
    else:
        lines.append(f"Promotion: {_promotion_terms(facts)}")
    interests = [_prompt_text(t, 24, scrub=True) for t in facts.interests[:5]]
    if any(interests):
        lines.append(f"Shopper likes: {', '.join(t for t in interests if t)}")
    if facts.segment:
        lines.append(f"Shopper type: {_prompt_text(facts.segment, 24, scrub=True)}")
    recent = [_prompt_text(display_title(t), 40, scrub=True) for t in facts.recent_titles[:3]]
    if any(recent):
        lines.append(f"Recently bought: {'; '.join(t for t in recent if t)}")
    if facts.reason:
        lines.append(f"Why this product: {_prompt_text(_nice_runs(facts.reason), 100, scrub=True)}")
    if facts.goes_with:
        lines.append(f"Often bought with it: {_prompt_text(display_title(facts.goes_with), 40, scrub=True)}")
    lines.append(f"Tone: {_prompt_text(facts.tone, 20) or 'friendly'}")
    if lang == "zh":
        lines.append("Write in Simplified Chinese; keep the product name as given.")
    else:
        lines.append("Write in English.")
    if spec.opt_out:
        lines.append(
            f"Limits: title and call_to_action empty; body at most {_schema_body_max(spec, lang)} characters "
            "(the opt-out text is added for you)."
        )
    else:
        lines.append(
            f"Limits: title at most {spec.title_limit(lang)} characters, body at most {spec.body_limit(lang)}, "
            f"call_to_action at most {spec.cta_limit(lang)}."
        )
    return [{"role": "system", "content": system}, {"role": "user", "content": "\n".join(lines)}]


# --------------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------------

# Placeholders, markup, prompt echoes and other junk (compared case-insensitively).
_JUNK = (
    "[", "]", "{", "}", "<", ">", "\\", "`", "@", "http", "www.", "title:", "body:", "price:",
    "product:", "promotion:", "limits:", "tone:", "call_to_action", "cta:", "json",
    "company name", "product name", "brand name", "your name", "customer name", "lorem ipsum",
    "placeholder", "n/a", "null", "undefined",
    # the prompt's own labels and instructions echoed back
    "shopper likes", "shopper type", "recently bought", "why this product", "write in english",
    "write in simplified", "at most", "opt-out text", "do not mention", "no promotion", "not given",
)

# Absolute terms of advertising law (PRC Advertising Law art. 9(3) and the regulators' lists)
# and their English counterparts; checked in every language. 最 is allowed in 最近 ("recently").
_BANNED_ZH = (
    "最(?!近)", "第一", "唯一", "首个", "首选", "国家级", "国际级", "世界级", "全球级", "顶级", "顶尖",
    "极品", "极致", "万能", "独一无二", "史无前例", "绝无仅有", "王牌", "冠军", "至尊", "巅峰", "终极",
    "领先", "独家", "完美", "百分百", "绝对", "无敌", "零风险", "特供", "专供", "全网首发", "万人疯抢",
)
_BANNED_EN = (
    r"best(?:[- ]?sell(?:er|ers|ing))?", r"best[- ]ever", r"no\.?\s?1(?!\d)", r"number\s(?:one|1)(?!\d)",
    r"#\s?1(?!\d)", r"top\s?1(?!\d)", r"guarantee[sd]?", r"cheapest", r"lowest", r"world[- ]class",
    r"finest", r"greatest", r"ultimate", r"unbeatable", r"unrivall?ed", r"unmatched", r"unparalleled",
    r"top[- ]rated", r"highest[- ]quality", r"risk[- ]free", r"miracle", r"100\s?%", r"100 percent",
)
_BANNED_RE = re.compile(
    "|".join([f"(?<![A-Za-z0-9]){p}(?![A-Za-z0-9])" for p in _BANNED_EN] + list(_BANNED_ZH)), re.IGNORECASE
)

_NUM = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"
_PRE = r"US\$|HK\$|A\$|C\$|\$|£|€|¥|￥|(?<![A-Za-z])(?:GBP|USD|EUR|CNY|RMB|JPY)(?![A-Za-z])"
_SUF = (
    r"\s?(?:GBP|USD|EUR|CNY|RMB|JPY)(?![A-Za-z])|\s?(?:元|块钱|块|英镑|美元|欧元|£|\$|€|¥|￥)"
    r"|\s(?:pounds?|dollars?|euros?|quid|pence)(?![A-Za-z])|p(?![A-Za-z])"
)
_MONEY_RE = re.compile(
    rf"(?P<pre>{_PRE})\s?(?P<a>{_NUM})"
    rf"|(?<![\d.,])(?P<b>{_NUM})(?P<suf>{_SUF})"
    rf"|(?<![\d.,])(?P<c>\d{{1,3}}(?:,\d{{3}})+\.\d{{1,2}}|\d+\.\d{{1,2}})(?!\.?\d|\s?(?:%|％|percent|per cent|折))",
    re.IGNORECASE,
)
_CURRENCY_OF = {
    "£": {"GBP"}, "gbp": {"GBP"}, "pound": {"GBP"}, "pounds": {"GBP"}, "quid": {"GBP"}, "pence": {"GBP"},
    "p": {"GBP"}, "英镑": {"GBP"},
    "$": {"USD", "CAD", "AUD", "NZD", "HKD", "SGD"}, "us$": {"USD"}, "hk$": {"HKD"}, "a$": {"AUD"},
    "c$": {"CAD"}, "usd": {"USD"}, "dollar": {"USD", "CAD", "AUD", "NZD", "HKD", "SGD"},
    "dollars": {"USD", "CAD", "AUD", "NZD", "HKD", "SGD"}, "美元": {"USD"},
    "€": {"EUR"}, "eur": {"EUR"}, "euro": {"EUR"}, "euros": {"EUR"}, "欧元": {"EUR"},
    "¥": {"CNY", "JPY"}, "￥": {"CNY", "JPY"}, "cny": {"CNY"}, "rmb": {"CNY"}, "元": {"CNY"}, "块": {"CNY"},
    "块钱": {"CNY"}, "jpy": {"JPY"},
}
_PERCENT_RE = re.compile(r"(?<![\d.])(\d+(?:\.\d+)?)\s?(?:%|％|percent(?![A-Za-z])|per cent(?![A-Za-z]))", re.IGNORECASE)
_ZH_DIGITS = {"一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
_ZHE_RE = re.compile(r"(?<![\d.])(\d(?:\.\d)?|[一二两三四五六七八九]{1,2})\s?折(?![叠])")
_CLAIM_EN_RE = re.compile(
    r"(?<![-A-Za-z])(?:on sale|sale|discount\w*|save|saving\w*|coupon\w*|voucher\w*|promo\w*|clearance|"
    r"half[- ]price|reduced|markdown|special offer|deals?|bargain\w*)(?![-A-Za-z])|\d\s?off(?![A-Za-z])",
    re.IGNORECASE,
)
_CLAIM_ZH_RE = re.compile(r"打折|折扣|优惠|促销|特价|特惠|立减|满减|秒杀|降价|半价|清仓|让利|限时|大促|折起")
_FREE_RE = re.compile(r"(?<![-A-Za-z])free(?![-A-Za-z])|免费|包邮|赠品|赠送|买一送一|免单", re.IGNORECASE)
_CODE_KEY_RE = re.compile(
    r"(?<![A-Za-z])(?:promo\s?code|discount\s?code|coupon\s?code|voucher\s?code|code|coupon|voucher)(?![A-Za-z])"
    r"[\s:：#'\"“‘]*([A-Za-z0-9][A-Za-z0-9_-]{2,})",
    re.IGNORECASE,
)
_CODE_KEY_ZH_RE = re.compile(r"(?:优惠码|折扣码|兑换码|券码|口令)[\s:：#'\"“‘]*([A-Za-z0-9][A-Za-z0-9_-]{2,})")
_CODE_SHAPE_RE = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2,}\d{1,4}[A-Z0-9]*(?![A-Za-z0-9])")
_CURRENCY_CODE_AMOUNT_RE = re.compile(r"(?:GBP|USD|EUR|CNY|RMB|JPY)\d+", re.IGNORECASE)


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()


def _product_names(facts: CopyFacts) -> list[str]:
    names = {_one_line(facts.title), display_title(facts.title), facts.brand}
    return sorted((n for n in names if len(n) >= 2), key=len, reverse=True)


@functools.lru_cache(maxsize=4096)
def _flexible(text: str) -> re.Pattern:
    return re.compile(r"\s+".join(re.escape(w) for w in text.split()), re.IGNORECASE)


def _balanced(text: str) -> bool:
    return text.count('"') % 2 == 0 and all(text.count(a) == text.count(b) for a, b in ("()", "[]", "“”"))


def _tail_phrases(facts: CopyFacts) -> list[str]:
    """The name's last words, two or more (catalogue names end in the product: "…Cake Tins")."""
    words = display_title(facts.title).split()
    phrases = [" ".join(words[-k:]).lstrip("-–,;:/&+ ") for k in range(len(words) - 1, 1, -1)]
    return [p for p in dict.fromkeys(phrases) if len(p) >= 5 and _balanced(p)]


def _mask(text: str, facts: CopyFacts) -> str:
    """`text` with the product's own name (whole, or cut with an ellipsis) replaced by _MASK.

    The name is a given fact: a number, a bracket or a word such as "best" inside it
    ("BEST DAD CANDLE LETTERS", "GARLAND, MAGIC GARDEN 1.8M") is not the copy's claim.
    """
    for name in _product_names(facts):
        text = _flexible(name).sub(_MASK, text)
    for phrase in _tail_phrases(facts):  # "Bullet Bin" of "PINK/WHITE "KEEP CLEAN" BULLET BIN"
        text = _flexible(phrase).sub(_MASK, text)
    # A name cut short ("White Hanging Heart…"): the longest run of text before an ellipsis
    # that is a prefix of a name.
    targets = [_norm(n) for n in _product_names(facts)]
    for ellipsis in ("…", "..."):
        pos = text.find(ellipsis)
        while pos != -1:
            head = text[:pos].rstrip()
            best = None
            longest = max((len(t) for t in targets), default=0)
            for start in range(max(0, len(head) - longest - 8), len(head) - 2):
                before = head[start - 1] if start else " "
                if not (before.isspace() or before == _MASK or _is_cjk_or_punct(before) or _is_cjk_or_punct(head[start])):
                    continue  # not at the start of a word
                piece = _norm(head[start:])
                if len(piece) >= 3 and any(t.startswith(piece) for t in targets):
                    best = start
                    break
            if best is not None:
                text = text[:best] + _MASK + text[pos + len(ellipsis) :]
                pos = text.find(ellipsis, best + 1)
            else:
                pos = text.find(ellipsis, pos + len(ellipsis))
    return text


def _junk_problems(masked: str) -> list[str]:
    low = masked.casefold()
    found = [j for j in _JUNK if j in low]
    if re.search(r"(?<![A-Za-z])(?:xxx+|tbd|todo)(?![A-Za-z])", low):
        found.append("xxx/tbd")
    return ["placeholder or junk text: " + ", ".join(f"'{j}'" for j in found)] if found else []


def _repetitive(masked: str) -> bool:
    """A word three times running, a phrase three times, or a character six times running."""
    low = masked.casefold()
    words = re.findall(r"\w+", low)
    trigrams = [tuple(words[i : i + 3]) for i in range(len(words) - 2)]
    return bool(
        re.search(r"(.)\1{5,}", low)
        or any(trigrams.count(t) >= 3 for t in set(trigrams))
        or any(words[i] == words[i + 1] == words[i + 2] for i in range(len(words) - 2))
    )


def _banned_problems(masked: str) -> list[str]:
    seen: list[str] = []
    for m in _BANNED_RE.finditer(masked):
        term = m.group(0)
        if term.casefold() not in (s.casefold() for s in seen):
            seen.append(term)
    return [f"banned term '{t}'" for t in seen]


def _money_values(text: str) -> list[tuple[Decimal, str | None, str]]:
    """(amount, currency marker or None, text as written) for each money amount in `text`."""
    out = []
    for m in _MONEY_RE.finditer(text):
        if m.group("a"):
            number, marker = m.group("a"), m.group("pre")
        elif m.group("b"):
            number, marker = m.group("b"), m.group("suf").strip()
        else:
            number, marker = m.group("c"), None
        value = Decimal(number.replace(",", ""))
        if marker is not None and marker.casefold() in ("p", "pence"):
            value = value / 100
        out.append((value, marker, m.group(0).strip()))
    return out


def _percent_values(text: str) -> list[tuple[Decimal, str]]:
    """(percent off, text as written): "20%", "20 percent", and Chinese 折 ("8折" = 20% off)."""
    out = [(Decimal(m.group(1)), m.group(0)) for m in _PERCENT_RE.finditer(text)]
    for m in _ZHE_RE.finditer(text):
        digits = m.group(1)
        if digits[0] in _ZH_DIGITS:
            tenths = Decimal(_ZH_DIGITS[digits[0]]) + (Decimal(_ZH_DIGITS[digits[1]]) / 10 if len(digits) > 1 else 0)
        else:
            tenths = Decimal(digits)
        out.append((Decimal(100) - tenths * 10, m.group(0)))
    if "半价" in text:
        out.append((Decimal(50), "半价"))
    return out


def _money(value: Decimal | float) -> str:
    return f"{Decimal(str(value)).quantize(_CENT, rounding=ROUND_HALF_UP)}"


def _fact_texts(facts: CopyFacts) -> list[str]:
    promo = facts.promotion
    return [
        facts.title, facts.category, facts.brand, facts.reason, facts.goes_with, *facts.recent_titles, *facts.interests,
        promo.code, promo.ends, promo.description, _percent_text(promo.percent_off), _percent_text(promo.amount_off),
    ]


def _fact_problems(text: str, facts: CopyFacts) -> list[str]:
    """Prices, percentages, discount claims and promotion codes against the facts."""
    promo = facts.promotion
    problems: list[str] = []

    # Promotion codes.
    codes = [m.group(1) for m in _CODE_KEY_RE.finditer(text) if any(c.isdigit() for c in m.group(1)) or m.group(1).isupper()]
    codes += [m.group(1) for m in _CODE_KEY_ZH_RE.finditer(text)]
    codes += [  # code-shaped words ("SAVE10"), not "MP3" or "GBP3"
        m.group(0)
        for m in _CODE_SHAPE_RE.finditer(text)
        if len(m.group(0)) >= 5 and not _CURRENCY_CODE_AMOUNT_RE.fullmatch(m.group(0))
    ]
    for code in dict.fromkeys(codes):
        if promo.code and code.casefold() == promo.code.casefold():
            continue
        if promo.code:
            problems.append(f"promotion code '{code}' does not match '{promo.code}'")
        else:
            problems.append(f"promotion code '{code}' but the promotion has no code")

    # Numbers: the promotion's own code and end date are not amounts.
    for given in (promo.code, promo.ends):
        if given:
            text = _flexible(given).sub(" ", text)
    description = promo.description

    allowed: list[Decimal] = []
    price = _cents(facts.price) if facts.price is not None else None
    after = promo.price_after(facts.price)
    if price is not None:
        allowed.append(price)
    if after is not None:
        allowed += [_cents(after), price - _cents(after)]
    if promo.amount_off:
        allowed.append(_cents(promo.amount_off))
    allowed += [v for v, _, _ in _money_values(description)]
    wrong = 0
    for value, marker, written in _money_values(text):
        if marker is not None and facts.currency:
            currencies = _CURRENCY_OF.get(marker.casefold(), set())
            if currencies and facts.currency not in currencies:
                problems.append(f"currency '{marker}' in '{written}' does not match {facts.currency}")
        if any(abs(value - a) < Decimal("0.005") for a in allowed):
            continue
        wrong += 1
        if wrong > 3:
            continue
        if price is None:
            problems.append(f"price {_money(value)} mentioned but the item has no price")
        elif after is not None:
            problems.append(
                f"price {_money(value)} does not match item price {_money(price)} or promotion price {_money(after)}"
            )
        else:
            problems.append(f"price {_money(value)} does not match item price {_money(price)}")

    if wrong > 3:
        problems.append(f"{wrong - 3} more amounts that match no price")
    allowed_pct = [Decimal(str(promo.percent_off))] if promo.percent_off else []
    allowed_pct += [v for v, _ in _percent_values(description)]
    for value, written in _percent_values(text):
        if any(abs(value - a) < Decimal("0.005") for a in allowed_pct):
            continue
        shown = f"{written} ({_percent_text(float(value))}% off)" if "折" in written or "半" in written else written
        if promo.is_empty:
            problems.append(f"percentage {shown} but there is no promotion")
        elif promo.percent_off:
            problems.append(f"percentage {shown} does not match promotion {_percent_text(promo.percent_off)}% off")
        else:
            problems.append(f"percentage {shown} but the promotion has no percentage off")

    # Any other number (a year, a size, a count) must come from the facts.
    rest = _CODE_SHAPE_RE.sub(" ", _ZHE_RE.sub(" ", _PERCENT_RE.sub(" ", _MONEY_RE.sub(" ", text))))
    known = set(re.findall(r"\d+", " ".join(_fact_texts(facts))))
    for number in dict.fromkeys(re.findall(r"\d+", rest)):
        if number not in known:
            problems.append(f"number {number} is not in the facts")

    if promo.is_empty:
        for m in list(_CLAIM_EN_RE.finditer(text)) + list(_CLAIM_ZH_RE.finditer(text)) + list(_FREE_RE.finditer(text)):
            problems.append(f"discount claim '{m.group(0)}' but there is no promotion")
    elif not _FREE_RE.search(description):
        for m in _FREE_RE.finditer(text):
            problems.append(f"'{m.group(0)}' claim is not part of the promotion")
    return problems


_STOPWORDS = frozenset(
    "the and for with from set pack of in on to a an by your you our this that its it new assorted "
    "small large medium mini big jumbo tiny little design designs style styles colour color colours colors "
    "piece pieces pcs box".split()
)
_WEAK = frozenset(
    "white black red pink blue green yellow orange purple grey gray brown gold silver cream ivory "
    "natural clear vintage retro".split()
)


def _stem(word: str) -> str:
    w = word.casefold().replace("’", "'")
    if w.endswith("'s"):
        w = w[:-2]
    w = w.strip("'")
    if len(w) > 4 and w.endswith("ies"):
        return w[:-3] + "y"
    if len(w) > 3 and w.endswith("s") and not w.endswith("ss"):
        return w[:-1]
    return w


@functools.lru_cache(maxsize=4096)
def _name_keys(title: str) -> tuple[frozenset[str], frozenset[str]]:
    """(significant words, stemmed; CJK bigrams) of a product name."""
    title = _one_line(title)
    words = [_stem(w) for w in re.findall(r"[A-Za-z][A-Za-z'’]*", title)]
    words = [w for w in words if len(w) >= 3 and w not in _STOPWORDS]
    strong = [w for w in words if w not in _WEAK]
    keys = set(strong or words)
    if not keys:
        keys = {w.casefold() for w in re.findall(r"[A-Za-z0-9]{2,}", title)}
    cjk = "".join(_CJK_RE.findall(title))
    grams = {cjk[i : i + 2] for i in range(len(cjk) - 1)} or set(cjk)
    return frozenset(keys), frozenset(grams)


def _text_words(text: str) -> set[str]:
    return {_stem(w) for w in re.findall(r"[A-Za-z0-9][A-Za-z0-9'’]*", text)}


def _names(text: str, title: str, exclude: frozenset[str] = frozenset()) -> bool:
    """Does `text` name the product called `title`: two of its significant words (one if it
    has only one), or two of its CJK bigrams? `exclude`: words that do not count."""
    keys, grams = _name_keys(title)
    keys = keys - exclude
    if not keys and not grams:
        return False
    found = len(keys & _text_words(text)) + sum(1 for g in grams if g in text)
    return found >= min(2, len(keys) + len(grams))


def _mentions_product(text: str, facts: CopyFacts) -> bool:
    """Does `text` name the product (see _names), or its brand?"""
    if facts.brand and _flexible(facts.brand).search(text):
        return True
    keys, grams = _name_keys(facts.title)
    if not keys and not grams:
        return True  # nothing to look for (an empty title)
    return _names(text, facts.title)


def _other_products(facts: CopyFacts) -> list[str]:
    """Names of other products the facts carry: recent purchases, catalogue titles in the reason."""
    in_reason = [m.group(0) for m in _UPPER_RUN_RE.finditer(facts.reason) if len(re.findall(r"[A-Za-z]{2,}", m.group(0))) >= 2]
    return list(dict.fromkeys([*facts.recent_titles, *([facts.goes_with] if facts.goes_with else []), *in_reason]))


def _about_another_product(body: str, facts: CopyFacts) -> str:
    """The other product `body` names while not naming this one, or ""."""
    if _mentions_product(body, facts):
        return ""
    ours = _name_keys(facts.title)[0]
    for other in _other_products(facts):
        if _names(body, other, exclude=ours):
            return display_title(other)
    return ""


def _language_problems(masked_body: str, language: str) -> list[str]:
    if language == "zh" and not _has_cjk(masked_body):
        return ["language: Chinese requested but the body has no Chinese"]
    if language == "en" and _mostly_cjk(masked_body):
        return ["language: English requested but the body is mostly Chinese"]
    return []


def _content_problems(copy: Copy, facts: CopyFacts) -> list[str]:
    """Everything about what the copy says (not its length): junk, banned terms, facts, language."""
    fields = [x for x in (copy.title, copy.body, copy.call_to_action) if x]
    masked = _mask("\n".join(fields), facts)
    problems = _junk_problems(masked)
    if any(_repetitive(_mask(x, facts)) for x in fields):
        problems.append("repetitive text")
    problems += _banned_problems(masked) + _fact_problems(masked, facts)
    if not _mentions_product(f"{copy.title}\n{copy.body}", facts):
        problems.append("copy does not mention the product")
    other = _about_another_product(copy.body, facts)
    if other:
        problems.append(f"body is about another product ('{other}')")
    bare_body, bare_title = (_norm(re.sub(r"[^\w\s]", " ", x)) for x in (copy.body, copy.title))
    if copy.title and bare_body and bare_body in bare_title:
        problems.append("body only repeats the title")
    problems += _language_problems(_mask(copy.body, facts), facts.language)
    return problems


_CTA_VERBS = frozenset(
    "shop buy get discover see view explore order grab find browse check take learn add claim treat try "
    "start unlock reserve book join visit open tap click pick choose gift meet read watch redeem use show "
    "light bring make give".split()
)
_CTA_ZH_RE = re.compile(r"[看买购抢领选逛试订查享戳点逛]")


def _cut_off(text: str, limit: int, facts: CopyFacts) -> bool:
    """Did constrained decoding stop this field mid-word at its maxLength?

    It did when the field fills the limit and ends in a Latin letter or digit that does not
    finish a word of the facts ("…T-Light Ho", "…you kn"; not "…Included", "…£2.95").
    """
    if not (limit > 0 and len(text) >= limit and text[-1].isascii() and text[-1].isalnum()):
        return False
    last = re.search(r"[A-Za-z0-9]+$", text).group(0).casefold()
    if len(last) == 1 and last.isalpha():  # "…Heart T": a lone letter finishes nothing
        return True
    known = " ".join([*_fact_texts(facts), display_title(facts.title), *_CTA["en"]])
    if facts.price is not None:
        known += " " + format_price(facts.price, facts.currency)
    return last not in {w.casefold() for w in re.findall(r"[A-Za-z0-9]+", known)}


def _cta_problem(cta: str, facts: CopyFacts) -> str:
    """Why the model's call to action can't be a button label, or ""."""
    lang, limit = facts.language, CHANNELS[facts.channel].cta_limit(facts.language)
    if not cta:
        return "empty"
    if len(cta) > limit:
        return f"too long ({len(cta)} > {limit} characters)"
    if _cut_off(cta, limit, facts):
        return f"cut off mid-word ('{cta}')"
    if (lang == "zh" and not _has_cjk(cta)) or (lang == "en" and _mostly_cjk(cta)):
        return f"in the wrong language ('{cta}')"
    masked = _mask(cta, facts)
    found = _junk_problems(masked) + _banned_problems(masked) + _fact_problems(masked, facts)
    if found:
        return f"'{cta}': {found[0]}"
    first = re.findall(r"[A-Za-z]+", cta)
    if lang == "en" and (not first or first[0].lower() not in _CTA_VERBS):
        return f"not an action ('{cta}')"
    if lang == "zh" and not _CTA_ZH_RE.search(cta):
        return f"not an action ('{cta}')"
    return ""


def _has_opt_out(body: str, language: str) -> bool:
    tail = body.rstrip(" .!。！").casefold()
    return any(tail.endswith(form) for form in _OPT_OUT_FORMS[language])


def _limit_problems(copy: Copy, facts: CopyFacts) -> list[str]:
    """Everything about form: lengths, empty parts, the SMS opt-out suffix."""
    spec, lang = CHANNELS[facts.channel], facts.language
    problems = []
    title_max, cta_max = spec.title_limit(lang), spec.cta_limit(lang)
    if len(copy.title) > title_max:
        problems.append(f"title too long ({len(copy.title)} > {title_max} characters)")
    if title_max and not copy.title.strip():
        problems.append("title empty")
    if not spec.body_fits(copy.body, lang):
        problems.append(f"body too long ({spec.body_length(copy.body)} > {spec.body_capacity(copy.body, lang)})")
    if not re.search(r"\w", copy.body):
        problems.append("body empty")
    if len(copy.call_to_action) > cta_max:
        problems.append(f"call to action too long ({len(copy.call_to_action)} > {cta_max} characters)")
    if cta_max and not copy.call_to_action.strip():
        problems.append("call to action empty")
    if spec.opt_out and not _has_opt_out(copy.body, lang):
        problems.append("opt-out suffix missing")
    return problems


def check_copy(copy: Copy, facts: CopyFacts) -> list[str]:
    """Every problem `finalize` would find in `copy` as it stands (empty: ready to send)."""
    return _content_problems(copy, facts) + _limit_problems(copy, facts)


# --------------------------------------------------------------------------------------------
# Repair
# --------------------------------------------------------------------------------------------

_TRAILING = " ,;:-/&、，；：（(“‘\"'"
_TO_GSM7 = str.maketrans({"’": "'", "‘": "'", "“": '"', "”": '"', "–": "-", "—": "-", "…": "...", "\u00a0": " "})


def _ellipsis(facts: CopyFacts) -> str:
    return "..." if facts.channel == "sms" and facts.language == "en" else "…"


def _boundaries(text: str, language: str) -> list[int]:
    """Positions where `text` may be cut, longest first: before a space or next to a CJK
    character (CJK has no spaces); for zh also next to punctuation. Never inside a Latin word
    or a number."""
    if language == "zh":  # not inside "T-Light", "Girl's", "1.8M", "Pink/White"
        is_edge = lambda c: _is_cjk_or_punct(c) and c not in "-'’./&+"  # noqa: E731
    else:
        is_edge = lambda c: bool(_CJK_RE.match(c))  # noqa: E731
    return [i for i in range(len(text) - 1, 0, -1) if text[i].isspace() or is_edge(text[i - 1]) or is_edge(text[i])]


def _cut_candidates(text: str, language: str, ellipsis: str) -> list[str]:
    out = []
    for i in _boundaries(text, language):
        head = text[:i].rstrip(_TRAILING)
        while " " in head and head.rsplit(" ", 1)[1].lower() in _SMALL_WORDS:  # not "Tin in…"
            head = head.rsplit(" ", 1)[0].rstrip(_TRAILING)
        if head and head + ellipsis not in out:
            out.append(head + ellipsis)
    return out


def _cut(text: str, fits: Callable[[str], bool], language: str, ellipsis: str) -> str:
    """`text` if it fits, else its longest cut at a word boundary (zh: character) plus `ellipsis`."""
    if fits(text):
        return text
    for candidate in _cut_candidates(text, language, ellipsis):
        if fits(candidate):
            return candidate
    for i in range(len(text) - 1, 0, -1):  # one long word: cut inside it
        candidate = text[:i].rstrip(_TRAILING) + ellipsis
        if fits(candidate):
            return candidate
    return ""


def _split_opt_out(body: str, language: str) -> tuple[str, bool]:
    """(body without a trailing opt-out suffix, whether it had one)."""
    if not _has_opt_out(body, language):
        return body, False
    stripped = body.rstrip(" .!。！")
    low = stripped.casefold()
    for form in _OPT_OUT_FORMS[language]:
        if low.endswith(form):
            return stripped[: len(stripped) - len(form)].rstrip(" ,，"), True
    return body, False  # pragma: no cover - _has_opt_out said it ends with one


def _add_opt_out(body: str, language: str) -> str:
    body = body.rstrip()
    if language == "zh":
        joiner = "" if not body or body[-1] in "。！？!?." else "，"
        return f"{body}{joiner}{OPT_OUT['zh']}"
    joiner = " " if not body or body[-1] in ".!?" else ". "
    return f"{body}{joiner}{OPT_OUT['en']}".lstrip()


def _repair(copy: Copy, facts: CopyFacts) -> tuple[Copy, list[str]]:
    """Mechanical fixes of form (never of content): whitespace, lengths, CTA, SMS suffix."""
    spec, lang = CHANNELS[facts.channel], facts.language
    ellipsis = _ellipsis(facts)
    notes: list[str] = []
    title, cta = _one_line(copy.title), _one_line(copy.call_to_action)
    if spec.name == "email":
        body = "\n".join(" ".join(line.split()) for line in copy.body.strip().splitlines()).strip()
        body = re.sub(r"\n{3,}", "\n\n", body)
    else:
        body = _one_line(copy.body)
    if (title, body, cta) != (copy.title, copy.body, copy.call_to_action):
        notes.append("extra spaces or line breaks removed")

    title_max, cta_max = spec.title_limit(lang), spec.cta_limit(lang)
    # A field that fills its maxLength and ends in a letter was stopped mid-word by the
    # constrained decoder ("White Hanging Heart T-Light Ho"): drop the broken word.
    if title_max and _cut_off(title, title_max, facts):
        notes.append("title cut off mid-word at the length limit: last word dropped")
        title = (_cut_candidates(title, lang, "…") or [title])[0]
    body_max = _schema_body_max(spec, lang)
    if _cut_off(_split_opt_out(body, lang)[0] if spec.opt_out else body, body_max, facts):
        notes.append("body cut off mid-word at the length limit: last word dropped")
        body = (_cut_candidates(body, lang, ellipsis) or [body])[0]

    if title_max == 0 and title:
        notes.append(f"title dropped: {spec.name} has no title")
        title = ""
    elif len(title) > title_max:
        notes.append(f"title too long ({len(title)} > {title_max} characters): cut")
        title = _cut(title, lambda s: len(s) <= title_max, lang, ellipsis)

    if cta_max == 0:
        if cta:
            notes.append(f"call to action dropped: {spec.name} has none")
            cta = ""
    else:
        why = _cta_problem(cta, facts)
        if why:  # a button label is not worth the whole copy: the standard one stands in
            notes.append(f"call to action {why}: default used")
            cta = _DEFAULT_CTA[lang]

    if spec.opt_out:
        if lang == "en":
            gsm = body.translate(_TO_GSM7)
            if gsm != body:
                notes.append("characters outside the SMS alphabet replaced")
                body = gsm
        core, had = _split_opt_out(body, lang)
        if not had:
            notes.append("opt-out suffix added")
        if not (had and spec.body_fits(body, lang)):
            fitted = _cut(core, lambda s: spec.body_fits(_add_opt_out(s, lang), lang), lang, ellipsis)
            if fitted != core:
                full = body if had else _add_opt_out(core, lang)
                notes.append(
                    f"body too long for one SMS ({spec.body_length(full)} > {spec.body_capacity(full, lang)}): cut"
                )
            body = _add_opt_out(fitted, lang)
    elif not spec.body_fits(body, lang):
        limit = spec.body_limit(lang)
        notes.append(f"body too long ({len(body)} > {limit} characters): cut")
        body = _cut(body, lambda s: len(s) <= limit, lang, ellipsis)
    return Copy(title, body, cta), notes


# --------------------------------------------------------------------------------------------
# finalize
# --------------------------------------------------------------------------------------------


def _dedupe(items: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def _parse(raw: str | None, facts: CopyFacts) -> tuple[Copy | None, list[str]]:
    """The model's copy (surrounding whitespace trimmed) and what is structurally wrong with it."""
    if raw is None:
        return None, ["no output from the engine"]
    try:
        data = json.loads(raw)
    except (ValueError, TypeError):
        return None, ["invalid JSON"]
    if not isinstance(data, dict):
        return None, ["invalid JSON: not an object"]
    problems = []
    fields = {}
    for name in ("title", "body", "call_to_action"):
        value = data.get(name)
        if name not in data:
            problems.append(f"missing field '{name}'")
            value = ""
        elif not isinstance(value, str):
            problems.append(f"field '{name}' is not a string")
            value = ""
        fields[name] = value.strip()
    copy = Copy(fields["title"], fields["body"], fields["call_to_action"])
    spec = CHANNELS[facts.channel]
    if spec.title_limit(facts.language) and not copy.title and "missing field 'title'" not in problems:
        problems.append("title empty")
    if not re.search(r"\w", copy.body) and "missing field 'body'" not in problems:
        problems.append("body empty")
    return copy, problems


def finalize(raw: str | None, facts: CopyFacts) -> CopyOutcome:
    """Check the engine's text for `facts`; return it, a repaired version, or the template.

    `raw` is the engine's JSON text, or None when the engine failed or timed out. Problems
    with what the title and body say (banned terms, facts, junk, language, another product)
    lead to the template; problems of form (length, a word broken off at maxLength, SMS
    suffix, whitespace) are repaired, and so is the call to action, a button label that the
    default one replaces. Never raises for anything in `raw`.
    """
    copy, problems = _parse(raw, facts)
    if copy is not None and not problems:
        problems = _content_problems(dataclasses.replace(copy, call_to_action=""), facts)
    if copy is None or problems:
        return CopyOutcome(template_copy(facts), "template", _dedupe(problems))
    repaired, notes = _repair(copy, facts)
    after = check_copy(repaired, facts)
    if after:  # a cut removed what made it right (e.g. the product's name): the template stands in
        return CopyOutcome(template_copy(facts), "template", _dedupe(notes + after))
    return CopyOutcome(repaired, "repaired" if notes else "model", _dedupe(notes))


# --------------------------------------------------------------------------------------------
# Template
# --------------------------------------------------------------------------------------------

_CTA = {"en": ("Shop now", "Take a look", "See it now"), "zh": ("立即查看", "去看看", "马上选购")}


def _interest(facts: CopyFacts) -> str:
    for tag in facts.interests:
        tag = _one_line(tag)
        if not tag or len(tag) > 24 or not re.search(r"[^\W\d_]", tag):
            continue
        if facts.language == "en" and _has_cjk(tag):
            continue
        return tag.lower() if facts.language == "en" and tag.isupper() else tag
    return ""


def _reason(facts: CopyFacts) -> str:
    reason = _one_line(facts.reason).rstrip(".。!！ ")
    if not reason or len(reason) > 90:
        return ""
    if facts.language == "zh":
        return reason if _has_cjk(reason) else ""
    if _has_cjk(reason):
        return ""
    reason = _nice_runs(reason)
    return reason[0].upper() + reason[1:]


def _hooks(facts: CopyFacts, family: int) -> list[str]:
    tag, reason = _interest(facts), _reason(facts)
    if facts.language == "zh":
        by_tag = [f"您喜欢{tag}，这款值得一看。", f"因为您喜欢{tag}。", f"送给爱{tag}的您。"][family] if tag else ""
        by_reason = f"{reason}。" if reason else ""
    else:
        by_tag = [f"Picked for your love of {tag}.", f"Because you like {tag}.", f"A find for {tag} fans."][family] if tag else ""
        by_reason = f"{reason}." if reason else ""
    hooks = [by_reason, by_tag] if family % 2 == 0 else [by_tag, by_reason]
    return [h for h in hooks if h] + [""]


def _main_clause(lang: str, family: int, name: str, price: str) -> str:
    if lang == "zh":
        if name and price:
            return [f"{name}，仅需{price}。", f"为您推荐{name}，售价{price}。", f"{name}，现售{price}。"][family]
        if name:
            return [f"{name}，值得一看。", f"为您推荐{name}。", f"来看看{name}。"][family]
        if price:
            return [f"仅需{price}。", f"售价{price}。", f"只要{price}。"][family]
        return ""
    if name and price:
        return [f"{name}, just {price}.", f"{name} is {price}.", f"Take a look at {name}: {price}."][family]
    if name:
        return [f"{name}.", f"Meet {name}.", f"Take a look at {name}."][family]
    if price:
        return [f"Just {price}.", f"Only {price}.", f"Yours for {price}."][family]
    return ""


def _core_phrases(name: str, facts: CopyFacts, limit: int) -> list[str]:
    """Runs of whole words from inside the name that still name the product ("Cake Tins" of
    "Set of 3 Cake Tins Pantry Design"), longest first, within `limit`; only runs with
    nothing a check could trip on (digits, brackets, banned words), as they are not masked."""
    words = name.split()
    runs = set()
    for i in range(len(words)):
        for j in range(i + 1, len(words) + 1):
            run = " ".join(words[i:j]).strip(_TRAILING + ".")
            if len(run) > limit:
                break
            if run and not re.search(r"\d", run) and _balanced(run) and _mentions_product(run, facts):
                runs.add(run)
    clean = [r for r in runs if not _junk_problems(r) and not _banned_problems(r)]
    return sorted(clean, key=lambda r: (-len(r), r))


def _bare_clause(lang: str, name: str, price: str) -> str:
    """The product and its price, hardly anything else: for tight channels. (The Chinese
    needs a word of its own: the name may be English, and the body must read as Chinese.)"""
    if lang == "zh":
        if name and price:
            return f"{name}仅{price}。"
        return f"看看{name}。" if name else (f"仅{price}。" if price else "")
    return ", ".join(x for x in (name, price) if x) + "." if (name or price) else ""


def _promo_levels(facts: CopyFacts) -> list[str]:
    """Ways to state the promotion, fullest first; [""] without one. The code is always kept."""
    promo = facts.promotion
    if promo.is_empty:
        return [""]
    zh = facts.language == "zh"
    money = lambda v: format_price(v, facts.currency)  # noqa: E731
    pct = _percent_text(promo.percent_off) if promo.percent_off else ""
    amount = money(promo.amount_off) if promo.amount_off else ""
    after = promo.price_after(facts.price)
    desc = _prompt_text(promo.description, 60).rstrip(".。!！:：")
    # The operator's description leads only in the copy's language (it stays if it is the
    # only term the promotion has).
    desc_fits = _has_cjk(desc) if zh else not _mostly_cjk(desc)
    if zh:
        off = "".join([f"立享{pct}%折扣" if pct else "", ("再减" if pct else "立减") + amount if amount else ""])
        code = f"，优惠码{promo.code}" if promo.code else ""
        ends = f"，截至{promo.ends}" if promo.ends else ""
        now = f"，到手价{money(after)}" if after is not None else ""
        lead, end = (f"{desc}：" if desc and desc_fits else ""), "。"
        if off:
            cores = [off + code + ends + now, off + code + ends, off + code]
        elif code:
            cores = [f"使用优惠码{promo.code}{ends}", f"使用优惠码{promo.code}"]
        else:
            cores = [f"{desc}{ends}", desc] if desc else [ends.lstrip("，")]
            lead = ""
    else:
        off = " plus ".join(x for x in [f"{pct}% off" if pct else "", f"{amount} off" if amount else ""] if x)
        code = f" with code {promo.code}" if promo.code else ""
        ends = f" until {promo.ends}" if promo.ends else ""
        now = f", making it {money(after)}" if after is not None else ""
        lead, end = (f"{desc}: " if desc and desc_fits else ""), "."
        if off:
            cores = [off + code + ends + now, off + code + ends, off + code]
        elif code:
            cores = [f"Use code {promo.code}{ends}", f"Use code {promo.code}"]
        else:
            cores = [f"{desc}{ends}", desc] if desc else [f"Offer ends {promo.ends}"]
            lead = ""
    levels = [lead + cores[0] + end] if lead else []
    levels += [c + end for c in cores if c]
    return list(dict.fromkeys(levels))


def _join(parts: list[str], lang: str) -> str:
    text = ("" if lang == "zh" else " ").join(p for p in parts if p)
    return re.sub(r"(…|\.\.\.)[.。]", r"\1", text)  # "…Tablets..." not "…Tablets...."


def template_copy(facts: CopyFacts) -> Copy:
    """Copy written from the facts alone, within the channel's limits, in en or zh.

    Deterministic: the phrasing (one of three families) is chosen by a stable hash of item id,
    channel and language. Parts are dropped (hook, promotion details) or the product name cut
    until the copy fits; the result passes every check of `finalize`.
    """
    spec, lang = CHANNELS[facts.channel], facts.language
    family = _stable_choice(facts, 3)
    ellipsis = _ellipsis(facts)
    name = display_title(facts.title) or ("这款商品" if lang == "zh" else "this item")
    price = format_price(facts.price, facts.currency) if facts.price is not None else ""
    cta = _CTA[lang][family] if spec.cta_limit(lang) else ""

    titles = [""]
    title_max = spec.title_limit(lang)
    if title_max:
        if lang == "zh":
            shapes = [[name], [f"为您精选：{name}", name], [f"{name} {price}" if price else name, name]][family]
        else:
            shapes = [[name], [f"For you: {name}", name], [f"{name}, {price}" if price else name, name]][family]
        titles = [t for t in dict.fromkeys(shapes) if len(t) <= title_max]
        cuts = [c for c in _cut_candidates(name, lang, "…") if len(c) <= title_max]
        # Short titles that still name the product first: a cut ("White Hanging Heart…"), else
        # the name's last words ("Bullet Bin"), only then a cut that names nothing ("Pink/White…").
        naming = [c for c in cuts if _mentions_product(c, facts)][:2]
        tails = [t for t in _tail_phrases(facts) if len(t) <= title_max and _mentions_product(t, facts)][:1]
        titles += naming + tails + _core_phrases(name, facts, title_max)[:1] + [c for c in cuts if c not in naming][:1]
        if not titles:
            titles = [_cut(name, lambda s: len(s) <= title_max, lang, "…")]

    cuts = _cut_candidates(name, lang, ellipsis)[:40]
    if spec.opt_out:
        names = [name] + cuts  # the body is all there is: it must name the product
    else:  # the title names the product: rather no name in the body than a stub of one
        long_cuts = [c for c in cuts if len(c) >= 0.6 * len(name)]
        names = [name] + long_cuts + [""] + [c for c in cuts if c not in long_cuts]
    hooks = _hooks(facts, family)
    promos = _promo_levels(facts)
    inline_cta = ""
    if spec.opt_out:
        inline_cta = f"{_CTA[lang][family]}{'。' if lang == 'zh' else '.'}"

    def bodies():
        for n in names:
            for main in dict.fromkeys([_main_clause(lang, family, n, price), _bare_clause(lang, n, price)]):
                for promo in promos:
                    for hook in hooks:
                        parts = [hook, main, promo] if family == 1 else [main, promo, hook]
                        for extra in ([inline_cta, ""] if inline_cta else [""]):
                            body = _join(parts + [extra], lang)
                            if body:
                                yield _add_opt_out(body, lang) if spec.opt_out else body

    def plain_bodies():
        for promo in (promos[-1], ""):
            for n in names:
                body = _join([_bare_clause(lang, n, price), promo], lang)
                if body:
                    yield _add_opt_out(body, lang) if spec.opt_out else body

    for candidates in (bodies, plain_bodies):
        for title in titles:
            for body in candidates():
                copy = Copy(title, body, cta)
                if spec.body_fits(body, lang) and not check_copy(copy, facts):
                    return copy
    # Nothing passed (a product name of nothing but junk, say): the product's name, cut to fit.
    finish = (lambda s: _add_opt_out(s, lang)) if spec.opt_out else (lambda s: s)
    short = _cut(name, lambda s: spec.body_fits(finish(_bare_clause(lang, s, "")), lang), lang, ellipsis)
    return Copy(titles[0], finish(_bare_clause(lang, short, "")), cta)
