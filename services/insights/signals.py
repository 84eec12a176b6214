"""What the analyses of this package tell the ranker, as arrays over item rows and user rows.

The learned ranker trains on features at an internal cut and serves on features at the end of
the log, so each signal must mean the same at both moments: `signals_at` fits every analysis
again on the events before the cut, with the same functions and settings the build uses at the
end (segment_shoppers, purchase_propensity, fit_trends with its own backtest, mine_rules), and
`ShopSignals.from_analyses` turns either moment's analyses into the arrays the ranker reads.
Serving makes them from the tables the build stored (Artifacts.signals), through the same
ShopSignals.of.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from services.config import TailorConfig
from services.insights.activity import shopper_activity
from services.insights.basket_rules import BasketRules, basket_rules
from services.insights.propensity import Propensity, purchase_propensity
from services.insights.segments import Segments, fit_segments
from services.insights.trends import MarketTrends, market_trends


@dataclass
class ShopSignals:
    item_category: np.ndarray      # int code per item row (the category ids, factorised, sorted)
    trending: np.ndarray           # per item row: log ratio of forecast to recent sales (0: normal)
    selling_fast: np.ndarray       # bool per item row
    segment_archetype: np.ndarray  # per user row: the segment's archetype code (stable across fits)
    propensity: np.ndarray         # per user row: probability of buying within the horizon
    rules: BasketRules
    propensity_method: str = ""    # how the propensity was made ("lightgbm", "recency baseline", …)

    @classmethod
    def of(
        cls,
        item_category: np.ndarray,
        trend_items: pd.DataFrame,
        segment_ids: np.ndarray,
        segments_table: pd.DataFrame,
        propensity: np.ndarray,
        rules: BasketRules,
        propensity_method: str = "",
    ) -> "ShopSignals":
        """The one way the arrays are made, from a fit (from_analyses) or from a build's tables
        (Artifacts.signals): category ids per item row, the trends' per-item table, segment ids
        and propensities per user row."""
        archetype = segments_table.set_index("segment_id")["archetype_code"]
        return cls(
            item_category=pd.factorize(np.asarray(item_category, dtype=object), sort=True)[0].astype(np.int64),
            trending=trend_items["trending"].to_numpy(np.float64),
            selling_fast=trend_items["selling_fast"].to_numpy(bool),
            segment_archetype=archetype.reindex(np.asarray(segment_ids)).to_numpy(np.float64),
            propensity=np.asarray(propensity, dtype=np.float64),
            rules=rules,
            propensity_method=propensity_method,
        )

    @classmethod
    def from_analyses(
        cls,
        item_category: np.ndarray,
        user_ids: np.ndarray,
        segments: Segments,
        propensity: Propensity,
        trends: MarketTrends,
        rules: BasketRules,
    ) -> "ShopSignals":
        return cls.of(
            item_category,
            trends.items,
            segments.segment_id.reindex(user_ids).to_numpy(),
            segments.table,
            propensity.probability.reindex(user_ids).to_numpy(),
            rules,
            propensity.method,
        )


def signals_at(
    events: pd.DataFrame,
    items: pd.DataFrame,
    item_category: np.ndarray,
    user_ids: np.ndarray,
    as_of: pd.Timestamp,
    config: TailorConfig,
) -> ShopSignals:
    """The signals as the shop knew them just before `as_of` (the ranker's internal cut): the
    trend models too are chosen by a backtest over the weeks before the cut, never after it."""
    insights = config.insights
    before = events[events["timestamp"] < as_of]
    activity = shopper_activity(before, as_of, user_ids)
    segments = segment_shoppers(activity, config)
    propensity = purchase_propensity(
        before, as_of, insights.propensity_horizon_days, seed=insights.seed, fit_max_shoppers=insights.fit_max_shoppers
    )
    trends = fit_trends(before, items, item_category, as_of, config)
    rules = mine_rules(before, items, config)
    return ShopSignals.from_analyses(item_category, user_ids, segments, propensity, trends, rules)


def segment_shoppers(activity: pd.DataFrame, config: TailorConfig, currency: str = "") -> Segments:
    insights = config.insights
    return fit_segments(
        activity,
        segments_min=insights.segments_min,
        segments_max=insights.segments_max,
        segment_sample=insights.segment_sample,
        segment_min_share=insights.segment_min_share,
        seed=insights.seed,
        currency=currency,
        fit_max_shoppers=insights.fit_max_shoppers,
    )


def fit_trends(
    events: pd.DataFrame, items: pd.DataFrame, item_category: np.ndarray, as_of: pd.Timestamp, config: TailorConfig
) -> MarketTrends:
    insights = config.insights
    return market_trends(
        events,
        items,
        item_category,
        as_of,
        min_active_weeks=insights.trend_min_active_weeks,
        backtest_weeks=insights.trend_backtest_weeks,
        horizon=insights.trend_horizon,
        arima_items=insights.trend_arima_items,
    )


def mine_rules(events: pd.DataFrame, items: pd.DataFrame, config: TailorConfig) -> BasketRules:
    insights = config.insights
    return basket_rules(
        events,
        items,
        min_support=insights.rules_min_support,
        min_confidence=insights.rules_min_confidence,
        rules_per_item=insights.rules_per_item,
    )
