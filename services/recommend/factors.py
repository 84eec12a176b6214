"""Latent factors of shoppers and items: implicit ALS (the `implicit` package) over what each
shopper bought (and liked), for the "als" candidate source and the ranker's affinity feature.

The recipe is implicit's own for implicit feedback (its lastfm example): BM25-weighted counts
of baskets, then ALS. It is fitted in the build, once at the ranker's internal cut and once on
the whole log, with fixed settings (ranking.als_*); nothing is tuned on later events.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import sparse
from threadpoolctl import threadpool_limits

from services.config import RankingConfig
from services.insights.history import baskets_of, positive_events


@dataclass
class Factors:
    users: np.ndarray   # float32 [n_users, f]; row i ↔ the history's user row i (zeros: no purchase)
    items: np.ndarray   # float32 [n_items, f]

    def affinity(self, user_row: int, item_rows: np.ndarray | None = None) -> np.ndarray:
        items = self.items if item_rows is None else self.items[item_rows]
        return items @ self.users[user_row]


def fit_factors(events: pd.DataFrame, items: pd.DataFrame, user_ids: np.ndarray, config: RankingConfig) -> Factors:
    from implicit.als import AlternatingLeastSquares
    from implicit.nearest_neighbours import bm25_weight

    liked = positive_events(events)
    user_row = pd.Series(np.arange(len(user_ids)), index=user_ids)
    item_row = pd.Series(np.arange(len(items)), index=items["item_id"].to_numpy())
    frame = pd.DataFrame(
        {
            "u": user_row.reindex(liked["user_id"].to_numpy()).to_numpy(),
            "i": item_row.reindex(liked["item_id"].to_numpy()).to_numpy(),
            "basket": baskets_of(liked).to_numpy(),
        }
    ).dropna()
    counts = frame.groupby(["u", "i"])["basket"].nunique()
    shape = (len(user_ids), len(items))
    if counts.empty:
        return Factors(np.zeros((shape[0], config.als_factors), np.float32), np.zeros((shape[1], config.als_factors), np.float32))
    matrix = sparse.csr_matrix(
        (
            counts.to_numpy(np.float32),
            (counts.index.get_level_values("u").astype(np.int64), counts.index.get_level_values("i").astype(np.int64)),
        ),
        shape=shape,
    )
    weighted = bm25_weight(matrix, K1=100, B=0.8).tocsr().astype(np.float32)
    # implicit parallelises itself; OpenBLAS's own pool on top of it slows it down (its advice).
    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(
            factors=config.als_factors,
            regularization=config.als_regularization,
            alpha=config.als_alpha,
            iterations=config.als_iterations,
            random_state=config.seed,
            calculate_training_loss=False,
        )
        model.fit(weighted, show_progress=False)
    users = np.asarray(model.user_factors, dtype=np.float32)
    users[np.asarray(matrix.sum(axis=1)).ravel() == 0] = 0.0  # a shopper with no purchase has no taste yet
    return Factors(users, np.asarray(model.item_factors, dtype=np.float32))
