"""Proto ↔ domain: check request fields (errors name the proto field) and build responses."""

from __future__ import annotations

import math
import re
from dataclasses import asdict
from datetime import date

import numpy as np
import pandas as pd

from services.config import ServingConfig
from services.copywriting.facts import CopyOutcome, Promotion
from services.copywriting.layouts import TONES
from services.errors import InvalidArgument, excerpt
from services.insights.description import ShopperDescription
from services.recommend.candidates import SOURCE_NAMES
from services.recommend.filters import ItemFilter
from services.recommend.flow import RankedItem, ShopperQuery
from tailor.v1 import common_pb2, copy_pb2, marketing_pb2, ranking_pb2, retrieval_pb2

# Names the domain uses, read off the proto enums: CHANNEL_SMS → "sms"; UNSPECIFIED → the default.
CHANNELS = {value: name.removeprefix("CHANNEL_").lower() for name, value in common_pb2.Channel.items()}
CHANNELS[common_pb2.CHANNEL_UNSPECIFIED] = "push"
LANGUAGES = {value: name.removeprefix("LANGUAGE_").lower() for name, value in common_pb2.Language.items()}
del LANGUAGES[common_pb2.LANGUAGE_UNSPECIFIED]  # the configured default (copywriting.default_language)
COPY_SOURCES = {
    "model": copy_pb2.COPY_SOURCE_MODEL,
    "repaired": copy_pb2.COPY_SOURCE_REPAIRED,
    "template": copy_pb2.COPY_SOURCE_TEMPLATE,
}


def check_k(k: int, limits: ServingConfig, field: str = "k") -> int:
    if not 1 <= k <= limits.max_k:
        raise InvalidArgument(field, f"must be between 1 and {limits.max_k}, got {k}")
    return k


def check_user_id(user_id: str, limits: ServingConfig, field: str = "user_id") -> str:
    """A shopper id: not blank, at most max_id_chars characters, no control characters."""
    user_id = user_id.strip()
    if not user_id:
        raise InvalidArgument(field, "is required")
    if len(user_id) > limits.max_id_chars:
        raise InvalidArgument(field, f"has {len(user_id)} characters; at most {limits.max_id_chars}")
    if any(ord(c) < 32 or ord(c) == 127 for c in user_id):
        raise InvalidArgument(field, f"holds control characters: {excerpt(user_id, 24)}")
    return user_id


def check_item_ids(item_ids, limit: int, field: str = "item_ids", required: bool = True, *, limits: ServingConfig) -> list[str]:
    ids = list(item_ids)
    if not ids and required:
        raise InvalidArgument(field, "must hold at least one item id")
    if len(ids) > limit:
        raise InvalidArgument(field, f"holds {len(ids)} ids; at most {limit} are allowed")
    longest = limits.max_id_chars
    for position, item_id in enumerate(ids):
        if not item_id.strip():
            raise InvalidArgument(f"{field}[{position}]", "is empty")
        if len(item_id) > longest:
            raise InvalidArgument(f"{field}[{position}]", f"has {len(item_id)} characters; at most {longest}")
    return ids


def check_build_id(build_id: str, limits: ServingConfig, field: str = "build_id") -> str:
    """Empty (the build published now) or the id of a build, as answers carry it."""
    build_id = build_id.strip()
    if len(build_id) > limits.max_id_chars or any(not (c.isalnum() or c in "-_TZ") for c in build_id):
        raise InvalidArgument(field, f"is not a build id: {excerpt(build_id, 40)}")
    return build_id


def shopper_query(request, limits: ServingConfig, k: int) -> ShopperQuery:
    """The shopper part of a Recommend, Retrieve-by-user or Rank request."""
    user_id = request.user_id.strip()
    if not user_id and not request.cold_start:
        raise InvalidArgument("user_id", "is required (or set cold_start for a shopper without an id)")
    if len(user_id) > limits.max_id_chars:
        raise InvalidArgument("user_id", f"has {len(user_id)} characters; at most {limits.max_id_chars}")
    if any(ord(c) < 32 or ord(c) == 127 for c in user_id):
        raise InvalidArgument("user_id", f"holds control characters: {excerpt(user_id, 24)}")
    context = check_item_ids(request.context_item_ids, limits.max_context_items, "context_item_ids", required=False, limits=limits)
    return ShopperQuery(
        user_id=user_id,
        k=k,
        item_filter=item_filter(request.filter, limits),
        exclude_purchased=request.exclude_purchased,
        cold_start=request.cold_start,
        context_item_ids=tuple(context),
    )


def candidate_sources(candidates, limits: ServingConfig) -> tuple[list[str], list[dict[str, float]]]:
    """A Rank request's candidates: ids, and per id its source → score."""
    candidates = list(candidates)
    if len(candidates) > limits.max_candidates:
        raise InvalidArgument("candidates", f"holds {len(candidates)}; at most {limits.max_candidates} are allowed")
    ids, named = [], []
    for position, candidate in enumerate(candidates):
        if not candidate.item_id.strip():
            raise InvalidArgument(f"candidates[{position}].item_id", "is empty")
        if len(candidate.item_id) > limits.max_id_chars:
            raise InvalidArgument(f"candidates[{position}].item_id", f"has {len(candidate.item_id)} characters; at most {limits.max_id_chars}")
        if len(candidate.sources) > len(SOURCE_NAMES):
            raise InvalidArgument(f"candidates[{position}].sources", f"holds {len(candidate.sources)}; at most {len(SOURCE_NAMES)}")
        scores = {s.source: float(s.score) for s in candidate.sources}
        if not scores and candidate.source:
            scores = {candidate.source: float(candidate.score)}
        for source, score in scores.items():
            if source not in SOURCE_NAMES:
                raise InvalidArgument(
                    f"candidates[{position}].sources", f"unknown source {excerpt(source, 32)}; expected one of {', '.join(SOURCE_NAMES)}"
                )
            if not math.isfinite(score):
                raise InvalidArgument(f"candidates[{position}].sources", f"score for {source} is not finite")
        ids.append(candidate.item_id)
        named.append(scores)
    return ids, named


def candidate_message(item_id: str, scores: dict[str, float]) -> retrieval_pb2.Candidate:
    """`scores`: source → score, the source that ranked the item best first."""
    first = next(iter(scores), "")
    return retrieval_pb2.Candidate(
        item_id=item_id,
        score=scores.get(first, 0.0),
        source=first,
        sources=[retrieval_pb2.SourceScore(source=name, score=score) for name, score in scores.items()],
    )


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


def language_name(language: int, default: str = "en", field: str = "language") -> str:
    if language == common_pb2.LANGUAGE_UNSPECIFIED:
        return default
    if language not in LANGUAGES:
        raise InvalidArgument(field, f"unknown language {language}")
    return LANGUAGES[language]


def item_filter(message: common_pb2.ItemFilter, limits: ServingConfig, field: str = "filter") -> ItemFilter:
    if not math.isfinite(message.max_price) or message.max_price < 0:
        raise InvalidArgument(f"{field}.max_price", f"must be 0 (no limit) or positive, got {message.max_price}")
    if len(message.categories) > limits.max_filter_categories:
        raise InvalidArgument(f"{field}.categories", f"holds {len(message.categories)}; at most {limits.max_filter_categories}")
    for position, category in enumerate(message.categories):
        if len(category) > limits.max_text_chars // 10:
            raise InvalidArgument(f"{field}.categories[{position}]", f"has {len(category)} characters; at most {limits.max_text_chars // 10}")
    excluded = check_item_ids(message.exclude_item_ids, limits.max_candidates, f"{field}.exclude_item_ids", required=False, limits=limits)
    return ItemFilter(
        categories=tuple(message.categories),
        in_stock_only=message.in_stock_only,
        exclude_item_ids=frozenset(excluded),
        max_price=message.max_price,
    )


def promotion(message: common_pb2.Promotion, today: date, field: str = "promotion") -> Promotion:
    """Promotion checks its own fields (InvalidArgument naming promotion.<field>); here, also
    that it has not ended before `today`."""
    promo = Promotion(
        code=message.code.strip(),
        percent_off=message.percent_off,
        amount_off=message.amount_off,
        ends=message.ends.strip(),
        description=message.description.strip(),
        threshold_amount=message.threshold_amount,
        threshold_reduction=message.threshold_reduction,
        free_shipping=message.free_shipping,
        event=message.event.strip(),
    )
    promo.check_current(today)
    return promo


def tone(value: str, field: str = "tone") -> str:
    """"" (the bandit's or the segment's choice) or one of the known tones."""
    value = value.strip().lower()
    if value and value not in TONES:
        raise InvalidArgument(field, f"unknown tone {excerpt(value)}; one of {', '.join(TONES)}")
    return value


FEEDBACK_EVENTS = {
    marketing_pb2.FEEDBACK_EVENT_IMPRESSION: "impression",
    marketing_pb2.FEEDBACK_EVENT_CLICK: "click",
    marketing_pb2.FEEDBACK_EVENT_PURCHASE: "purchase",
}


def feedback_event(value: int, field: str = "event_type") -> str:
    try:
        return FEEDBACK_EVENTS[value]
    except KeyError:
        raise InvalidArgument(field, f"must be IMPRESSION, CLICK or PURCHASE, got {value}") from None


def item_message(row) -> common_pb2.Item:
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


def item_messages(items: pd.DataFrame) -> dict[str, common_pb2.Item]:
    """Every catalog item as its proto, keyed by item id: made once per build, since reading
    pandas rows per request cost more than ranking them."""
    return {str(row["item_id"]): item_message(row) for row in items.to_dict("records")}


def ranked_messages(ranked: list[RankedItem], items: dict[str, common_pb2.Item]) -> list[ranking_pb2.RankedItem]:
    return [
        ranking_pb2.RankedItem(item=items[r.item_id], score=r.score, reasons=list(r.reasons), sources=list(r.sources))
        for r in ranked
    ]


def profile_message(profile) -> marketing_pb2.ProfileSummary:
    return marketing_pb2.ProfileSummary(**{**asdict(profile), "interests": list(profile.interests)})


def variant_message(outcome: CopyOutcome, item_id: str, variant_id: str = "", holdout: bool = False) -> copy_pb2.CopyVariant:
    variant = copy_pb2.CopyVariant(
        title=outcome.copy.title,
        body=outcome.copy.body,
        call_to_action=outcome.copy.call_to_action,
        item_id=item_id,
        source=COPY_SOURCES[outcome.source],
        fallback=outcome.source == "template",
        problems=list(outcome.problems),
        variant_id=variant_id,
        family=outcome.family,
        tone=outcome.tone,
        model_words=outcome.model_words,
        holdout=holdout,
    )
    if outcome.sms_segments:
        variant.sms, variant.sms_segments = outcome.copy.body, outcome.sms_segments
    if outcome.email is not None:
        e = outcome.email
        variant.email.CopyFrom(
            copy_pb2.EmailContent(subject=e.subject, preheader=e.preheader, html=e.html, text=e.text, headers=dict(e.headers))
        )
    return variant


def description_message(d: ShopperDescription) -> marketing_pb2.DescribeUserResponse:
    def affinity(a) -> marketing_pb2.Affinity:
        return marketing_pb2.Affinity(id=a.id, name=a.name, share=a.share)

    return marketing_pb2.DescribeUserResponse(
        user_id=d.user_id,
        build_id=d.build_id,
        profile=profile_message(d.profile),
        rfm=marketing_pb2.RfmScores(
            recency_days=-1.0 if np.isnan(d.recency_days) else d.recency_days,
            frequency=d.frequency,
            monetary=d.monetary,
            r_score=d.r_score,
            f_score=d.f_score,
            m_score=d.m_score,
            rfm=d.rfm,
        ),
        tags=list(d.tags),
        categories=[affinity(a) for a in d.categories],
        price_band=d.price_band,
        price_bands=[affinity(a) for a in d.price_bands],
        segment=marketing_pb2.Segment(
            segment_id=d.segment_id,
            name=d.segment_name,
            description=d.segment_description,
            tone=d.segment_tone,
            share=d.segment_share,
        ),
        propensity=marketing_pb2.Propensity(
            probability=d.propensity,
            horizon_days=d.propensity_horizon_days,
            model=d.propensity_model,
            top_features=[
                marketing_pb2.FeatureContribution(
                    feature=r.feature, value=r.value, contribution=r.contribution, phrase=r.phrase
                )
                for r in d.propensity_reasons
            ],
        ),
        last_basket_item_ids=list(d.last_basket_item_ids),
        last_basket_date=d.last_basket_date,
        rules=[
            marketing_pb2.BasketRule(
                antecedent_item_ids=list(r.antecedent_item_ids),
                antecedent_titles=list(r.antecedent_titles),
                consequent_item_id=r.consequent_item_id,
                consequent_title=r.consequent_title,
                support=r.support,
                confidence=r.confidence,
                lift=r.lift,
            )
            for r in d.rules
        ],
    )
