"""The prompt: chat messages carrying the facts, and the JSON schema for the engine's
constrained decoding (maxLength from the channel's limits in the copy's language).
"""

from __future__ import annotations

import re

from services.copywriting.facts import OPT_OUT, ChannelSpec, CopyFacts, channel_spec, check_language
from services.copywriting.text import display_title, format_price, nice_runs, one_line, percent_text

_CHANNEL_WORDS = {"push": "push notification", "sms": "SMS", "email": "e-mail", "banner": "in-app banner"}


def _opt_out_reserve(language: str) -> int:
    """Characters the opt-out suffix takes, with its joiner (". " or "，")."""
    return len(OPT_OUT[language]) + (2 if language == "en" else 1)


def schema_body_max(spec: ChannelSpec, language: str) -> int:
    limit = spec.body_limit(language)
    return limit - _opt_out_reserve(language) if spec.opt_out else limit


def copy_json_schema(channel: str, language: str) -> dict:
    """JSON schema for the engine's constrained decoding: title, body, call_to_action strings.

    maxLength comes from the channel's limits in `language`. For SMS the title and the call to
    action must be empty and the body leaves room for the opt-out suffix that `finalize` adds.
    """
    spec = channel_spec(channel)
    check_language(language)
    title_max, cta_max = spec.title_limit(language), spec.cta_limit(language)

    def string(min_length: int, max_length: int) -> dict:
        return {"type": "string", "minLength": min(min_length, max_length), "maxLength": max_length}

    return {
        "type": "object",
        "properties": {
            "title": string(1, title_max),
            "body": string(1, schema_body_max(spec, language)),
            "call_to_action": string(1, cta_max),
        },
        "required": ["title", "body", "call_to_action"],
        "additionalProperties": False,
    }


_EMAIL_RE = re.compile(r"\S+@\S+\.\w+")
_PHONE_RE = re.compile(r"\+?\d[\d\s().-]{7,}\d")


def prompt_text(text: str, max_len: int, scrub: bool = False) -> str:
    """One line, at most `max_len` characters; with `scrub`, e-mail- and phone-like text removed."""
    text = one_line(text)
    if scrub:
        text = one_line(_PHONE_RE.sub(" ", _EMAIL_RE.sub(" ", text)))
    return text if len(text) <= max_len else text[: max_len - 1].rstrip() + "…"


def _promotion_terms(facts: CopyFacts) -> str:
    promo = facts.promotion
    parts = []
    if promo.percent_off:
        parts.append(f"{percent_text(promo.percent_off)}% off")
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
        text = f"{prompt_text(promo.description, 80)}. {text}" if text else prompt_text(promo.description, 80)
    return text.strip()


def build_messages(facts: CopyFacts) -> list[dict[str, str]]:
    """System and user chat messages carrying the facts, the shopper's tags and the limits.

    Only fields of `facts` go in (it has no user id, name, e-mail or phone), each on one line
    and cut short; shopper-side free text is also scrubbed of anything e-mail- or phone-like.
    """
    spec = channel_spec(facts.channel)
    lang = facts.language
    system = (
        f"You write {_CHANNEL_WORDS[spec.name]} marketing copy for an online shop. "
        "Reply with JSON only (title, body, call_to_action). "
        "Use only the facts given: never invent prices, discounts or claims. "
        "No superlatives (best, No.1, 最), no placeholders, no links."
    )
    lines = [f"Product: {prompt_text(display_title(facts.title), 80)}"]
    if facts.price is not None:
        lines.append(f"Price: {format_price(facts.price, facts.currency)}")
    else:
        lines.append("Price: not given; do not mention a price")
    if facts.category:
        lines.append(f"Category: {prompt_text(facts.category, 40)}")
    if facts.brand:
        lines.append(f"Brand: {prompt_text(facts.brand, 40)}")
    if facts.promotion.is_empty:
        lines.append("Promotion: none; do not mention discounts, sales or free offers")
    else:
        lines.append(f"Promotion: {_promotion_terms(facts)}")
    interests = [prompt_text(t, 24, scrub=True) for t in facts.interests[:5]]
    if any(interests):
        lines.append(f"Shopper likes: {', '.join(t for t in interests if t)}")
    if facts.segment:
        lines.append(f"Shopper type: {prompt_text(facts.segment, 24, scrub=True)}")
    recent = [prompt_text(display_title(t), 40, scrub=True) for t in facts.recent_titles[:3]]
    if any(recent):
        lines.append(f"Recently bought: {'; '.join(t for t in recent if t)}")
    if facts.reason:
        lines.append(f"Why this product: {prompt_text(nice_runs(facts.reason), 100, scrub=True)}")
    if facts.goes_with:
        lines.append(f"Often bought with it: {prompt_text(display_title(facts.goes_with), 40, scrub=True)}")
    lines.append(f"Tone: {prompt_text(facts.tone, 20) or 'friendly'}")
    if lang == "zh":
        lines.append("Write in Simplified Chinese; keep the product name as given.")
    else:
        lines.append("Write in English.")
    if spec.opt_out:
        lines.append(
            f"Limits: title and call_to_action empty; body at most {schema_body_max(spec, lang)} characters "
            "(the opt-out text is added for you)."
        )
    else:
        lines.append(
            f"Limits: title at most {spec.title_limit(lang)} characters, body at most {spec.body_limit(lang)}, "
            f"call_to_action at most {spec.cta_limit(lang)}."
        )
    return [{"role": "system", "content": system}, {"role": "user", "content": "\n".join(lines)}]
