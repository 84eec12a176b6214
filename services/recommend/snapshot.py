"""The shop as known at one moment, in the arrays the candidate sources and the ranker read.

Serving builds one from a published build (the whole log); the ranker's training builds one
at an internal cut of the same log with the same functions, so features agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd

from services.config import TailorConfig
from services.insights.co_purchase import CoPurchase, co_purchase
from services.insights.history import ShopHistory, shop_history
from services.insights.profiles import user_vectors
from services.insights.signals import ShopSignals, signals_at
from services.recommend.factors import Factors, fit_factors
from services.recommend.filters import ItemColumns
from services.recommend.vector_index import VectorIndex


@dataclass
class Snapshot:
    items: pd.DataFrame            # the catalog; row i ↔ item vector i ↔ index id i
    item_vectors: np.ndarray       # float32, L2-normalised
    index: VectorIndex
    history: ShopHistory
    co_purchase: CoPurchase
    user_vectors: np.ndarray       # row i ↔ history.user_ids[i]
    factors: Factors               # ALS factors; user row i ↔ history.user_ids[i]
    signals: ShopSignals           # categories, trends, segments, propensity, basket rules
    config: TailorConfig

    @cached_property
    def titles(self) -> np.ndarray:
        return self.items["title"].fillna("").astype(str).to_numpy()

    @cached_property
    def item_ids(self) -> np.ndarray:
        return self.items["item_id"].astype(str).to_numpy()

    @cached_property
    def item_row(self) -> pd.Series:
        return pd.Series(np.arange(len(self.items)), index=self.item_ids)

    @cached_property
    def prices(self) -> np.ndarray:
        return pd.to_numeric(self.items["price"], errors="coerce").to_numpy(dtype=np.float64)

    @cached_property
    def item_columns(self) -> ItemColumns:
        return ItemColumns.of(self.items)

    @cached_property
    def reorderable(self) -> np.ndarray:
        ranking = self.config.ranking
        return self.history.reorderable(ranking.reorder_min_share, ranking.reorder_min_buyers)

    @cached_property
    def popular_order(self) -> np.ndarray:
        """Item rows by distinct buyers, most first (ties: by item row, so stable)."""
        return np.lexsort((np.arange(len(self.items)), -self.history.item_buyers))

    @cached_property
    def recent_order(self) -> np.ndarray:
        h = self.history
        return np.lexsort((np.arange(len(self.items)), -h.item_buyers, -h.item_recent_buyers))


def snapshot_at(
    events: pd.DataFrame,
    items: pd.DataFrame,
    item_vectors: np.ndarray,
    index: VectorIndex,
    as_of: pd.Timestamp,
    config: TailorConfig,
    item_category: np.ndarray | None = None,
) -> Snapshot:
    """What was known just before `as_of`, from the event log. `item_category`: the category
    id of each item row (None: the items' category_id column, else one category)."""
    before = events[events["timestamp"] < as_of]
    history = shop_history(before, items, as_of, config.ranking.recent_days)
    vectors = user_vectors(history.user_ids, items, item_vectors, before, config.profile)
    factors = fit_factors(before, items, history.user_ids, config.ranking)
    if item_category is None:
        item_category = items["category_id"].to_numpy() if "category_id" in items else np.full(len(items), "")
    signals = signals_at(before, items, item_category, history.user_ids, as_of, config)
    return Snapshot(items, item_vectors, index, history, co_purchase(before, items), vectors, factors, signals, config)
