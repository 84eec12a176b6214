"""The methods Tailor is measured against, one small class each.

Contract (one test runs it over every class): `__init__(**params)` stores parameters, nothing
else; `fit(train_events, items)` learns from an event log in the canonical schema and the
whole item table; `recommend(user_ids, k)` returns, for each shopper, k distinct item ids
from the table, best first (fewer only when the table holds fewer than k items). Shoppers
the log does not know get the method's fallback (popularity). Re-orders count: no method
leaves out what a shopper bought before.

What a shopper "bought" (`positive_events`): purchase events; in a log without purchases
(review-only data such as Amazon's), reviews rated 4 or more. Every method learns from those
positives only; `param_grid()` lists the settings tuning tries, best guess first.
"""

from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from scipy import sparse

from services.insights.history import positive_events


@dataclass
class Interactions:
    """Positives as a shopper × item matrix over the whole catalogue.

    counts[u, i] = baskets of shopper u holding item i (an event without a basket id is a
    basket of its own); last[u, i] = when u last bought i (seconds since the epoch).
    """

    user_ids: np.ndarray
    user_row: dict[str, int]
    item_ids: np.ndarray
    counts: sparse.csr_matrix
    last: sparse.csr_matrix
    end: pd.Timestamp | None  # the last positive event of the log

    @classmethod
    def from_events(cls, events: pd.DataFrame, items: pd.DataFrame) -> "Interactions":
        item_ids = items["item_id"].astype(str).to_numpy()
        item_row = pd.Series(np.arange(len(item_ids)), index=item_ids)
        bought = positive_events(events)
        bought = bought[bought["item_id"].isin(item_row.index)]
        session = bought["session_id"].fillna("").astype(str)
        basket = session.where(session != "", "#" + bought.index.astype(str))
        pairs = (
            pd.DataFrame({"user_id": bought["user_id"].astype(str), "item_id": bought["item_id"].astype(str), "basket": basket, "at": bought["timestamp"]})
            .groupby(["user_id", "item_id"], sort=True)
            .agg(baskets=("basket", "nunique"), last=("at", "max"))
            .reset_index()
        )
        user_ids = np.sort(pairs["user_id"].unique())
        user_row = {u: i for i, u in enumerate(user_ids)}
        pairs["row"] = pairs["user_id"].map(user_row).to_numpy()
        pairs["col"] = item_row.loc[pairs["item_id"]].to_numpy()
        pairs = pairs.sort_values(["row", "col"])
        # One structure for both matrices, so position j of counts.data and last.data is one pair.
        indptr = np.concatenate([[0], np.cumsum(np.bincount(pairs["row"], minlength=len(user_ids)))])
        indices = pairs["col"].to_numpy(np.int32)
        shape = (len(user_ids), len(item_ids))
        counts = sparse.csr_matrix((pairs["baskets"].to_numpy(np.float32), indices, indptr), shape=shape)
        seconds = (pd.to_datetime(pairs["last"], utc=True) - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy()
        last = sparse.csr_matrix((seconds, indices.copy(), indptr.copy()), shape=shape)
        end = bought["timestamp"].max() if len(bought) else None
        return cls(user_ids, user_row, item_ids, counts, last, end)

    def rows_of(self, user_ids: list[str]) -> np.ndarray:
        """Matrix row per shopper, -1 for one the log does not know."""
        return np.array([self.user_row.get(str(u), -1) for u in user_ids], dtype=np.int64)


def popularity_order(events: pd.DataFrame, items: pd.DataFrame, since: pd.Timestamp | None = None) -> np.ndarray:
    """Rows of `items`, most distinct buyers first (positives at or after `since` when given);
    ties by positive events, then by item id. Items nobody bought come last, by item id."""
    bought = positive_events(events)
    if since is not None:
        bought = bought[bought["timestamp"] >= since]
    stats = bought.groupby("item_id").agg(buyers=("user_id", "nunique"), events=("user_id", "size"))
    item_ids = items["item_id"].astype(str)
    frame = pd.DataFrame(
        {
            "buyers": stats["buyers"].reindex(item_ids).fillna(0).to_numpy(),
            "events": stats["events"].reindex(item_ids).fillna(0).to_numpy(),
            "item_id": item_ids.to_numpy(),
        }
    )
    return frame.sort_values(["buyers", "events", "item_id"], ascending=[False, False, True], kind="stable").index.to_numpy()


def complete(ranked: list[int], fallback: np.ndarray, k: int) -> list[int]:
    """`ranked` (rows, best first) without repeats, filled from `fallback` up to k rows."""
    out = list(dict.fromkeys(ranked))[:k]
    if len(out) < k:
        taken = set(out)
        for row in fallback:
            if len(out) == k:
                break
            if row not in taken:
                out.append(int(row))
                taken.add(row)
    return out


class Baseline:
    """Shared parts: parameters, the item table, a popularity fallback."""

    name: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, **params: Any):
        unknown = set(params) - set(self.defaults)
        if unknown:
            raise TypeError(f"{type(self).__name__}: unknown parameters {sorted(unknown)}")
        self.params = {**self.defaults, **params}

    @classmethod
    def param_grid(cls) -> list[dict[str, Any]]:
        """Settings tuning tries first (the first wins ties)."""
        return [{}]

    @classmethod
    def refine_grid(cls, best: dict[str, Any]) -> list[dict[str, Any]]:
        """Settings to try next around the best of param_grid (a second, narrower stage)."""
        return []

    def fit(self, events: pd.DataFrame, items: pd.DataFrame) -> "Baseline":
        self.item_ids_ = items["item_id"].astype(str).to_numpy()
        self.fallback_ = popularity_order(events, items)
        return self

    def recommend(self, user_ids: list[str], k: int) -> list[list[str]]:
        return [[str(self.item_ids_[row]) for row in rows] for rows in self.recommend_rows(list(user_ids), k)]

    def recommend_rows(self, user_ids: list[str], k: int) -> list[list[int]]:
        raise NotImplementedError


class Popularity(Baseline):
    """The same list for everyone: items by distinct buyers over the whole training log."""

    name = "popularity"

    def recommend_rows(self, user_ids, k):
        top = [int(r) for r in self.fallback_[:k]]
        return [list(top) for _ in user_ids]


class RecentPopularity(Baseline):
    """Items by distinct buyers over the last `days` days of the training log, then all-time."""

    name = "recent_popularity"
    defaults = {"days": 30}

    @classmethod
    def param_grid(cls):
        return [{"days": d} for d in (30, 7, 14, 60, 90, 180, 365)]

    def fit(self, events, items):
        super().fit(events, items)
        bought = positive_events(events)
        since = bought["timestamp"].max() - pd.Timedelta(days=self.params["days"]) if len(bought) else None
        self.recent_ = complete([int(r) for r in popularity_order(events, items, since)], self.fallback_, len(items))
        return self

    def recommend_rows(self, user_ids, k):
        top = self.recent_[:k]
        return [list(top) for _ in user_ids]


class Repeat(Baseline):
    """Buy again: the shopper's own items, most baskets first, ties by the latest purchase;
    then filled with recent popularity over the last `days` days."""

    name = "repeat"
    defaults = {"days": 30}

    @classmethod
    def param_grid(cls):
        return RecentPopularity.param_grid()

    def fit(self, events, items):
        super().fit(events, items)
        self.matrix_ = Interactions.from_events(events, items)
        self.recent_ = RecentPopularity(days=self.params["days"]).fit(events, items).recent_
        return self

    def recommend_rows(self, user_ids, k):
        counts, last = self.matrix_.counts, self.matrix_.last
        out = []
        for row in self.matrix_.rows_of(user_ids):
            own: list[int] = []
            if row >= 0:
                start, stop = counts.indptr[row], counts.indptr[row + 1]
                cols = counts.indices[start:stop]
                # lexsort: last key first; most baskets, then most recent, then catalogue order.
                order = np.lexsort((cols, -last.data[start:stop], -counts.data[start:stop]))
                own = [int(c) for c in cols[order]]
            out.append(complete(own, np.asarray(self.recent_), k))
        return out


def _implicit_threads():
    """implicit runs its own threads; OpenBLAS's pool on top of them slows it down many times."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1, "blas")


class ItemKNN(Baseline):
    """Item-item nearest neighbours (implicit's CosineRecommender or BM25Recommender, K
    neighbours per item) over the shopper × item matrix of baskets (or 0/1 when `binary`).
    A shopper's score for an item sums its similarity to what they bought; owned items stay."""

    name = "itemknn"
    defaults = {"similarity": "cosine", "neighbours": 100, "binary": False}

    @classmethod
    def param_grid(cls):
        return [
            {"similarity": s, "neighbours": n, "binary": b}
            for s, n, b in itertools.product(("cosine", "bm25"), (200, 50, 1000), (False, True))
        ]

    @classmethod
    def refine_grid(cls, best):
        return [{**best, "neighbours": n} for n in (20, 100, 500, 2000) if n != best["neighbours"]]

    def fit(self, events, items):
        from implicit.nearest_neighbours import BM25Recommender, CosineRecommender
        from implicit.utils import ParameterWarning

        super().fit(events, items)
        self.matrix_ = Interactions.from_events(events, items)
        self.user_items_ = self.matrix_.counts.copy()
        if self.params["binary"]:
            self.user_items_.data[:] = 1.0
        kind = {"cosine": CosineRecommender, "bm25": BM25Recommender}[self.params["similarity"]]
        self.model_ = kind(K=self.params["neighbours"])
        with _implicit_threads(), warnings.catch_warnings():
            # BM25Recommender hands its own COO matrix on and warns about it.
            warnings.simplefilter("ignore", ParameterWarning)
            self.model_.fit(self.user_items_, show_progress=False)
        return self

    def recommend_rows(self, user_ids, k):
        # A zero score means no neighbour of anything the shopper bought: fall back instead.
        return implicit_lists(self.model_, self.user_items_, self.matrix_.rows_of(user_ids), k, self.fallback_, positive_only=True)


class ALS(Baseline):
    """Implicit ALS (Hu, Koren and Volinsky 2008) from the `implicit` package. Confidence is
    alpha · w where the shopper bought (implicit's form; 1 elsewhere), w = baskets
    ("plain") or their BM25 weight (K1=100, B=0.8, implicit's example values); owned items
    stay (filter_already_liked_items=False)."""

    name = "als"
    defaults = {"factors": 64, "regularization": 10.0, "alpha": 1.0, "iterations": 15, "weighting": "bm25", "seed": 0}
    # Tuning fits once per setting and scores the model after each of these iteration counts.
    iteration_checkpoints = (5, 10, 15, 20)

    @classmethod
    def param_grid(cls):
        """Stage one, at 64 factors: weighting × regularization × alpha."""
        return [
            {"weighting": w, "regularization": r, "alpha": a, "factors": 64}
            for w, r, a in itertools.product(("bm25", "plain"), (10.0, 1.0, 50.0), (1.0, 0.3, 3.0))
        ]

    @classmethod
    def refine_grid(cls, best):
        """Stage two: the number of factors at the best weighting, regularization and alpha."""
        return [{**best, "factors": f} for f in (32, 128, 256) if f != best["factors"]]

    def weighted(self, counts: sparse.csr_matrix) -> sparse.csr_matrix:
        from implicit.nearest_neighbours import bm25_weight

        if self.params["weighting"] == "bm25":
            return bm25_weight(counts, K1=100, B=0.8).tocsr().astype(np.float32)
        return counts.astype(np.float32)

    def fit(self, events, items, callback=None):
        """`callback(iterations_done)` runs after every iteration (tuning scores the model
        there, so one fit tries every iteration count of the grid)."""
        from implicit.cpu.als import AlternatingLeastSquares

        super().fit(events, items)
        self.matrix_ = Interactions.from_events(events, items)
        self.user_items_ = self.weighted(self.matrix_.counts)
        with _implicit_threads():  # the model checks the BLAS threads when it is made
            self.model_ = AlternatingLeastSquares(
                factors=self.params["factors"],
                regularization=self.params["regularization"],
                alpha=self.params["alpha"],
                iterations=self.params["iterations"],
                random_state=self.params["seed"],
            )
            self.model_.fit(
                self.user_items_,
                show_progress=False,
                callback=(lambda iteration, elapsed, loss: callback(iteration + 1)) if callback else None,
            )
        return self

    def recommend_rows(self, user_ids, k):
        return implicit_lists(self.model_, self.user_items_, self.matrix_.rows_of(user_ids), k, self.fallback_)


def implicit_lists(model, user_items, rows: np.ndarray, k: int, fallback, positive_only: bool = False) -> list[list[int]]:
    """Lists from an `implicit` model for shopper rows (-1: unknown to it), owned items kept
    (re-orders count), each completed from `fallback`."""
    known = rows[rows >= 0]
    scored: dict[int, list[int]] = {}
    if len(known):
        with _implicit_threads():
            ids, scores = model.recommend(known, user_items[known], N=k, filter_already_liked_items=False)
        for row, line_ids, line_scores in zip(known, ids, scores):
            scored[int(row)] = [int(i) for i, s in zip(line_ids, line_scores) if i >= 0 and (s > 0 or not positive_only)]
    return [complete(scored.get(int(row), []), fallback, k) for row in rows]


class AnnOnly(Baseline):
    """Tailor's retrieval alone: the build's user vector against its FAISS index, nearest
    items first, owned items not left out. Learns nothing itself: it reads a build (made from
    the same training events), so `fit` only keeps the popularity fallback (for shoppers the
    build does not know or whose vector is zero)."""

    name = "ann"

    def __init__(self, artifacts=None, **params):
        super().__init__(**params)
        self.artifacts = artifacts

    def fit(self, events, items):
        super().fit(events, items)
        build_ids = self.artifacts.items["item_id"].astype(str).to_numpy()
        if not np.array_equal(build_ids, self.item_ids_):
            raise ValueError("AnnOnly: the build's item table differs from the one given to fit")
        return self

    def recommend_rows(self, user_ids, k):
        artifacts = self.artifacts
        user_row = artifacts.user_row
        out = []
        for user in user_ids:
            row = user_row.get(str(user))
            found: list[int] = []
            if row is not None:
                vector = np.asarray(artifacts.user_vectors[int(row)], dtype=np.float32)
                if np.any(vector):
                    _, ids = artifacts.index.search(vector.reshape(1, -1), k)
                    found = [int(i) for i in ids[0] if i >= 0]
            out.append(complete(found, self.fallback_, k))
        return out


BASELINES: tuple[type[Baseline], ...] = (Popularity, RecentPopularity, Repeat, ItemKNN, ALS)
