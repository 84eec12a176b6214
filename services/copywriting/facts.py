"""Channels and their limits, and what a copy is written from: Promotion, CopyFacts, Copy,
CopyOutcome.

Lengths are counted in characters, except an SMS, which is the message as sent (signature, body,
opt-out) counted in segments as the network does (channels.sms_segments).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any
from datetime import date
from decimal import Decimal

from services.copywriting.channels import OPT_OUT_FORMS, SMS_MAX_SEGMENTS, sms_segments
from services.copywriting.text import cents, display_width, one_line
from services.errors import InvalidArgument, excerpt

LANGUAGES = ("en", "zh")


# --------------------------------------------------------------------------------------------
# Channels
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ChannelSpec:
    """Length limits of a channel in screen columns (text.display_width: a CJK character takes
    two), so one limit serves both languages. 0 means the channel has no such part (an SMS has
    no title and no button: its body is the whole message as sent, counted in segments)."""

    name: str
    title_max: int
    body_max: int
    cta_max: int
    opt_out: bool = False  # the message must end with the opt-out (SMS)

    def title_limit(self, language: str) -> int:
        return self.title_max

    def body_limit(self, language: str) -> int:
        return self.body_max

    def cta_limit(self, language: str) -> int:
        return self.cta_max

    def body_fits(self, text: str, language: str) -> bool:
        """An SMS (the message as sent) fits SMS_MAX_SEGMENTS segments; other bodies their limit."""
        if self.name == "sms":
            return sms_segments(text) <= SMS_MAX_SEGMENTS
        return display_width(text) <= self.body_limit(language)

    def body_problem(self, text: str, language: str) -> str:
        if self.body_fits(text, language):
            return ""
        if self.name == "sms":
            return f"SMS takes {sms_segments(text)} segments (at most {SMS_MAX_SEGMENTS})"
        return f"body too long ({display_width(text)} > {self.body_limit(language)} columns)"


CHANNELS: dict[str, ChannelSpec] = {
    # Push: ~40 characters of title and two lines (~120) of body show on iOS and Android
    # before truncation; a button label is short.
    "push": ChannelSpec("push", 40, 120, 20),
    # SMS: the message as sent (signature, body, opt-out) in at most SMS_MAX_SEGMENTS
    # concatenated segments (channels.sms_segments); no title, no button.
    "sms": ChannelSpec("sms", 0, 0, 0, opt_out=True),
    # E-mail: subject lines beyond ~60 characters are cut in most inboxes; the main text.
    "email": ChannelSpec("email", 60, 1200, 25),
    # In-app banner: a headline and one short line.
    "banner": ChannelSpec("banner", 30, 90, 15),
}


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


def channel_ellipsis(facts: CopyFacts) -> str:
    return "..." if facts.channel == "sms" and facts.language == "en" else "…"


# --------------------------------------------------------------------------------------------
# Facts
# --------------------------------------------------------------------------------------------


_CODE_RE = re.compile(r"[A-Za-z0-9_-]{1,20}")
DESCRIPTION_MAX = 80


@dataclass(frozen=True)
class Promotion:
    """A promotion the copy may mention. All fields empty means no promotion.

    Checked on construction (InvalidArgument naming promotion.<field>); `check_current` checks
    the end date against today, which the caller knows."""

    code: str = ""
    percent_off: float = 0.0
    amount_off: float = 0.0
    ends: str = ""  # ISO date
    description: str = ""
    # 满减: spend threshold_amount in one order, get threshold_reduction off.
    threshold_amount: float = 0.0
    threshold_reduction: float = 0.0
    free_shipping: bool = False
    # A named event as the request gave it (a key or a name of the shop's vocabulary).
    event: str = ""

    def __post_init__(self) -> None:
        for name in ("percent_off", "amount_off", "threshold_amount", "threshold_reduction"):
            value = getattr(self, name)
            if value is None or not math.isfinite(value) or value < 0:
                raise InvalidArgument(f"promotion.{name}", f"must be 0 or positive, got {value}")
        if self.percent_off >= 100:
            raise InvalidArgument("promotion.percent_off", f"must be below 100, got {self.percent_off}")
        if bool(self.threshold_amount) != bool(self.threshold_reduction):
            raise InvalidArgument("promotion.threshold_reduction", "set threshold_amount and threshold_reduction together")
        if self.threshold_reduction and self.threshold_reduction >= self.threshold_amount:
            raise InvalidArgument(
                "promotion.threshold_reduction",
                f"must be below threshold_amount {self.threshold_amount}, got {self.threshold_reduction}",
            )
        for name in ("code", "ends", "description", "event"):
            object.__setattr__(self, name, " ".join(str(getattr(self, name) or "").split()))
        if self.code and not _CODE_RE.fullmatch(self.code):
            raise InvalidArgument("promotion.code", f"letters, digits, '-' and '_', at most 20; got {excerpt(self.code)}")
        if len(self.description) > DESCRIPTION_MAX:
            raise InvalidArgument("promotion.description", f"at most {DESCRIPTION_MAX} characters, got {len(self.description)}")
        if len(self.event) > 40:
            raise InvalidArgument("promotion.event", f"at most 40 characters, got {len(self.event)}")
        if self.ends:
            try:
                date.fromisoformat(self.ends)
            except ValueError:
                raise InvalidArgument("promotion.ends", f"an ISO date such as 2026-12-31, got {excerpt(self.ends)}") from None

    def check_current(self, today: date) -> None:
        """A promotion that ended before `today` is not one to advertise."""
        if self.ends and date.fromisoformat(self.ends) < today:
            raise InvalidArgument("promotion.ends", f"{self.ends} is in the past (today is {today.isoformat()})")

    @property
    def is_empty(self) -> bool:
        return not (
            self.code or self.percent_off or self.amount_off or self.ends or self.description
            or self.threshold_amount or self.free_shipping or self.event
        )

    def price_after(self, price: float | None) -> float | None:
        """The price with the promotion, in cents; None without a price or a price reduction.
        (满减 applies to an order, not to one item's price.)"""
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
    reason: str = ""
    channel: str = "push"
    language: str = "en"
    promotion: Promotion = Promotion()
    tone: str = "friendly"
    # The promotion's event as the copy names it, in its language (the shop's vocabulary).
    event_name: str = ""

    def __post_init__(self) -> None:
        channel_spec(self.channel)
        check_language(self.language)
        if self.price is not None and (not math.isfinite(self.price) or self.price < 0):
            raise InvalidArgument("price", f"must be 0 or positive, got {self.price}")
        if self.promotion is None:
            object.__setattr__(self, "promotion", Promotion())
        for name in ("item_id", "title", "currency", "category", "brand", "segment", "reason", "tone", "event_name"):
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
    family: str = ""
    tone: str = ""
    model_words: str = ""  # the model's free words in the copy ("" for a template)
    sms_segments: int = 0
    email: Any = None  # channels.EmailMessage for e-mail
