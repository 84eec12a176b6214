"""Proto ↔ domain: check request fields (errors name the proto field) and build responses."""

from __future__ import annotations

import math
import re
from datetime import date

import numpy as np
import pandas as pd

from services.config import ServingConfig
from services.copywriting import CopyOutcome, Promotion
from services.errors import InvalidArgument
from services.recommend.ranking import RankedItem
from services.recommend.filters import ItemFilter
from tailor.v1 import common_pb2, copy_pb2, ranking_pb2

PROMOTION_CODE = re.compile(r"[A-Za-z0-9_-]{1,32}")
# Names the domain uses, read off the proto enums: CHANNEL_SMS → "sms"; UNSPECIFIED → the default.
CHANNELS = {value: name.removeprefix("CHANNEL_").lower() for name, value in common_pb2.Channel.items()}
CHANNELS[common_pb2.CHANNEL_UNSPECIFIED] = "push"
LANGUAGES = {value: name.removeprefix("LANGUAGE_").lower() for name, value in common_pb2.Language.items()}
LANGUAGES[common_pb2.LANGUAGE_UNSPECIFIED] = "en"
COPY_SOURCES = {
    "model": copy_pb2.COPY_SOURCE_MODEL,
    "repaired": copy_pb2.COPY_SOURCE_REPAIRED,
    "template": copy_pb2.COPY_SOURCE_TEMPLATE,
}


def check_k(k: int, limits: ServingConfig, field: str = "k") -> int:
    if not 1 <= k <= limits.max_k:
        raise InvalidArgument(field, f"must be between 1 and {limits.max_k}, got {k}")
    return k


def check_user_id(user_id: str, field: str = "user_id") -> str:
    if not user_id.strip():
        raise InvalidArgument(field, "is required")
    return user_id.strip()


def check_item_ids(item_ids, limit: int, field: str = "item_ids") -> list[str]:
    ids = list(item_ids)
    if not ids:
        raise InvalidArgument(field, "must hold at least one item id")
    if len(ids) > limit:
        raise InvalidArgument(field, f"holds {len(ids)} ids; at most {limit} are allowed")
    for position, item_id in enumerate(ids):
        if not item_id.strip():
            raise InvalidArgument(f"{field}[{position}]", "is empty")
    return ids


def check_texts(texts, limits: ServingConfig, field: str = "texts") -> list[str]:
    texts = list(texts)
    if not texts:
        raise InvalidArgument(field, "must hold at least one text")
    if len(texts) > limits.max_texts:
        raise InvalidArgument(field, f"holds {len(texts)} texts; at most {limits.max_texts} per request")
    return [check_text(text, limits, f"{field}[{position}]") for position, text in enumerate(texts)]


def check_text(text: str, limits: ServingConfig, field: str) -> str:
    if not text.strip():
        raise InvalidArgument(field, "is empty")
    if len(text) > limits.max_text_chars:
        raise InvalidArgument(field, f"has {len(text)} characters; at most {limits.max_text_chars}")
    return text


def check_short_text(text: str, field: str, limit: int) -> str:
    """An optional free-text field that goes into a prompt: bounded, one line."""
    if len(text) > limit:
        raise InvalidArgument(field, f"has {len(text)} characters; at most {limit}")
    return " ".join(text.split())


def channel_name(channel: int, field: str = "channel") -> str:
    if channel not in CHANNELS:
        raise InvalidArgument(field, f"unknown channel {channel}")
    return CHANNELS[channel]


def language_name(language: int, field: str = "language") -> str:
    if language not in LANGUAGES:
        raise InvalidArgument(field, f"unknown language {language}")
    return LANGUAGES[language]


def item_filter(message: common_pb2.ItemFilter, field: str = "filter") -> ItemFilter:
    if not math.isfinite(message.max_price) or message.max_price < 0:
        raise InvalidArgument(f"{field}.max_price", f"must be 0 (no limit) or positive, got {message.max_price}")
    return ItemFilter(
        categories=tuple(message.categories),
        in_stock_only=message.in_stock_only,
        exclude_item_ids=frozenset(message.exclude_item_ids),
        max_price=message.max_price,
    )


def promotion(message: common_pb2.Promotion, field: str = "promotion") -> Promotion:
    """Promotion checks its own amounts (InvalidArgument naming promotion.<field>)."""
    if message.ends:
        try:
            date.fromisoformat(message.ends.strip())
        except ValueError:
            raise InvalidArgument(f"{field}.ends", f"is not an ISO date (YYYY-MM-DD): {message.ends!r}") from None
    if message.code and not PROMOTION_CODE.fullmatch(message.code.strip()):
        raise InvalidArgument(f"{field}.code", "must be 1-32 letters, digits, '-' or '_'")
    check_short_text(message.description, f"{field}.description", 200)
    return Promotion(
        code=message.code.strip(),
        percent_off=message.percent_off,
        amount_off=message.amount_off,
        ends=message.ends.strip(),
        description=message.description.strip(),
    )


def item_message(row: pd.Series) -> common_pb2.Item:
    price = row["price"]
    has_price = price is not None and bool(np.isfinite(price))
    return common_pb2.Item(
        item_id=str(row["item_id"]),
        title=str(row["title"]),
        category=str(row["category"] or ""),
        brand=str(row["brand"] or ""),
        price=float(price) if has_price else 0.0,
        has_price=has_price,
        currency=str(row["currency"] or ""),
        in_stock=bool(row["in_stock"]),
    )


def ranked_message(ranked: RankedItem, row: pd.Series) -> ranking_pb2.RankedItem:
    return ranking_pb2.RankedItem(item=item_message(row), score=ranked.score, reasons=list(ranked.reasons))


def variant_message(outcome: CopyOutcome, item_id: str) -> copy_pb2.CopyVariant:
    return copy_pb2.CopyVariant(
        title=outcome.copy.title,
        body=outcome.copy.body,
        call_to_action=outcome.copy.call_to_action,
        item_id=item_id,
        source=COPY_SOURCES[outcome.source],
        fallback=outcome.source == "template",
        problems=list(outcome.problems),
    )
