"""Who one shopper is, as the published build learned it: what DescribeUser answers.

Everything is read from the build's tables (profiles, segments, propensity reasons, basket
rules, history); nothing is computed from the event log at request time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from services.insights.profiles import PRICE_BANDS, ProfileSummary, summarise

# Rules shown for the last basket.
BASKET_RULES = 3
# Items bought within this many days of the shopper's last purchase count as its last basket
# (a basket without a session id is the shopper's day).
LAST_BASKET_DAYS = 1.0


@dataclass(frozen=True)
class Affinity:
    id: str
    name: str
    share: float


@dataclass(frozen=True)
class Reason:
    feature: str
    value: float
    contribution: float
    phrase: str


@dataclass(frozen=True)
class Rule:
    antecedent_item_ids: tuple[str, ...]
    antecedent_titles: tuple[str, ...]
    consequent_item_id: str
    consequent_title: str
    support: float
    confidence: float
    lift: float


@dataclass(frozen=True)
class ShopperDescription:
    user_id: str
    build_id: str
    profile: ProfileSummary
    recency_days: float            # NaN: never bought
    frequency: int
    monetary: float
    r_score: int
    f_score: int
    m_score: int
    rfm: str
    tags: tuple[str, ...]
    categories: tuple[Affinity, ...]
    price_band: str
    price_bands: tuple[Affinity, ...]
    segment_id: int
    segment_name: str
    segment_description: str
    segment_tone: str
    segment_share: float
    propensity: float
    propensity_horizon_days: float
    propensity_model: str
    propensity_reasons: tuple[Reason, ...]
    last_basket_item_ids: tuple[str, ...]
    last_basket_date: str          # ISO date; "" when the shopper never bought
    rules: tuple[Rule, ...]


def describe_shopper(artifacts, user_id: str) -> ShopperDescription:
    """`artifacts`: a loaded services.artifacts.Artifacts. NotFound for a shopper it lacks."""
    row = artifacts.user_index(user_id)
    user = artifacts.users.iloc[row]
    manifest = artifacts.manifest
    segment = artifacts.segments.set_index("segment_id").loc[int(user["segment_id"])]
    category_names = artifacts.categories.set_index("category_id")["name"]
    reasons = artifacts.propensity_reasons.get(user_id, pd.DataFrame(columns=["feature", "value", "contribution", "phrase"]))
    basket_rows, basket_date = last_basket(artifacts.history, row)
    items = artifacts.items
    titles = items["title"].fillna("").astype(str).to_numpy()
    item_ids = items["item_id"].astype(str).to_numpy()
    relevant = artifacts.rules.relevant(basket_rows, top=BASKET_RULES) if len(basket_rows) else None
    rules = []
    for rule in relevant.itertuples() if relevant is not None else ():
        antecedent = [rule.antecedent_row] + ([rule.antecedent2_row] if rule.antecedent2_row >= 0 else [])
        rules.append(
            Rule(
                tuple(item_ids[a] for a in antecedent),
                tuple(titles[a] for a in antecedent),
                item_ids[rule.consequent_row],
                titles[rule.consequent_row],
                float(rule.support),
                float(rule.confidence),
                float(rule.lift),
            )
        )
    propensity = manifest.get("propensity", {})
    return ShopperDescription(
        user_id=user_id,
        build_id=artifacts.build_id,
        profile=summarise(user),
        recency_days=float(user["recency_days"]),
        frequency=int(user["frequency"]),
        monetary=float(user["monetary"]),
        r_score=int(user["r_score"]),
        f_score=int(user["f_score"]),
        m_score=int(user["m_score"]),
        rfm=str(user["rfm"]),
        tags=tuple(str(tag) for tag in user["interests"]),
        categories=tuple(
            Affinity(str(c), str(category_names.get(c, c)), float(share))
            for c, share in zip(user["categories"], user["category_affinity"])
        ),
        price_band=str(user["price_band"]),
        price_bands=price_bands(user),
        segment_id=int(user["segment_id"]),
        segment_name=str(segment["name"]),
        segment_description=str(segment["description"]),
        segment_tone=str(segment["tone"]),
        segment_share=float(segment["share"]),
        propensity=float(user["propensity"]),
        propensity_horizon_days=float(propensity.get("horizon_days", 0.0)),
        propensity_model=str(propensity.get("method", "")),
        propensity_reasons=tuple(
            Reason(str(r.feature), float(r.value), float(r.contribution), str(r.phrase)) for r in reasons.itertuples()
        ),
        last_basket_item_ids=tuple(item_ids[basket_rows]),
        last_basket_date=basket_date,
        rules=tuple(rules),
    )


def last_basket(history, user_row: int) -> tuple[np.ndarray, str]:
    """Item rows of the shopper's last basket (what they bought on their last purchase) and its date."""
    pairs = history.pairs_of(user_row)
    bought = history.pair_baskets[pairs] > 0
    days = history.pair_days_since[pairs][bought]
    if not len(days):
        return np.empty(0, np.int64), ""
    latest = float(np.nanmin(days))
    rows = history.pair_item[pairs][bought][days <= latest + LAST_BASKET_DAYS]
    return np.sort(rows), (history.as_of - pd.Timedelta(days=latest)).date().isoformat()


def price_bands(user: pd.Series) -> tuple[Affinity, ...]:
    """The shopper's shares of activity in each price band, largest first (none without prices)."""
    shares = np.asarray(user["price_band_affinity"], dtype=np.float64)
    bands = sorted(zip(PRICE_BANDS, shares), key=lambda pair: -pair[1])
    return tuple(Affinity(band, band, float(share)) for band, share in bands if share > 0)
