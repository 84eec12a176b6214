"""Channels and their limits, and what a copy is written from: Promotion, CopyFacts, Copy,
CopyOutcome.

Lengths are counted in characters (Unicode code points, as JSON schema's maxLength counts),
except SMS bodies, which are counted as the network does: GSM-7 septets (160 to a segment, the
GSM extension characters such as € taking two) when every character is in the GSM-7 alphabet,
UTF-16 units (70 to a segment) otherwise, so Chinese and emoji SMS fit 70.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal

from services.copywriting.text import cents, one_line
from services.errors import InvalidArgument

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
OPT_OUT_FORMS = {
    "en": ("reply stop to opt out", "reply stop to opt-out", "reply stop to unsubscribe", "text stop to opt out"),
    "zh": ("回t退订", "回td退订", "退订回t", "退订回td"),
}

# The call to action that stands in for an unusable one, and the template's (one per phrasing
# family; the checks know their words too).
DEFAULT_CTA = {"en": "Shop now", "zh": "立即查看"}
CTA = {"en": ("Shop now", "Take a look", "See it now"), "zh": ("立即查看", "去看看", "马上选购")}


def channel_spec(channel: str) -> ChannelSpec:
    try:
        return CHANNELS[channel]
    except KeyError:
        raise InvalidArgument("channel", f"unknown channel {channel!r}; one of {', '.join(CHANNELS)}") from None


def check_language(language: str) -> None:
    if language not in LANGUAGES:
        raise InvalidArgument("language", f"unknown language {language!r}; one of {', '.join(LANGUAGES)}")


def has_opt_out(body: str, language: str) -> bool:
    tail = body.rstrip(" .!。！").casefold()
    return any(tail.endswith(form) for form in OPT_OUT_FORMS[language])


def add_opt_out(body: str, language: str) -> str:
    body = body.rstrip()
    if language == "zh":
        joiner = "" if not body or body[-1] in "。！？!?." else "，"
        return f"{body}{joiner}{OPT_OUT['zh']}"
    joiner = " " if not body or body[-1] in ".!?" else ". "
    return f"{body}{joiner}{OPT_OUT['en']}".lstrip()


def channel_ellipsis(facts: CopyFacts) -> str:
    return "..." if facts.channel == "sms" and facts.language == "en" else "…"


# --------------------------------------------------------------------------------------------
# Facts
# --------------------------------------------------------------------------------------------


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
            value = cents(value * (Decimal(1) - Decimal(str(self.percent_off)) / 100))
        if self.amount_off:
            value = cents(value - Decimal(str(self.amount_off)))
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
        channel_spec(self.channel)
        check_language(self.language)
        if self.price is not None and (not math.isfinite(self.price) or self.price < 0):
            raise InvalidArgument("price", f"must be 0 or positive, got {self.price}")
        if self.promotion is None:
            object.__setattr__(self, "promotion", Promotion())
        for name in ("item_id", "title", "currency", "category", "brand", "segment", "goes_with", "reason", "tone"):
            object.__setattr__(self, name, one_line(str(getattr(self, name) or "")))
        object.__setattr__(self, "currency", self.currency.upper())
        for name in ("interests", "recent_titles"):
            given = getattr(self, name) or ()
            values = tuple(one_line(str(v)) for v in ((given,) if isinstance(given, str) else given))
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
