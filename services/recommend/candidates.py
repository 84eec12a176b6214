"""Candidate products, from several sources behind one interface, merged with the source(s)
and score of every candidate kept.

Sources (each finds at most n allowed items, best first, with its own score):

- history      the shopper's own past items: bought (when the re-order rule allows them) or
               viewed, carted, searched; score = baskets, halved every 90 days since the last
               one, plus a little for interest events
- co_purchase  item-to-item collaborative filtering: neighbours in baskets of the shopper's
               items (and of the session's context items), summed by each item's weight
- rules        association rules over baskets (insights/basket_rules.py): the highest lift
               (> 1) of a rule from one of the shopper's items (bought, or viewed / carted)
               or the session's items to the item; an item whose recency-weighted baskets
               fall below one counts that much less
- als          shopper × item affinity of implicit ALS factors (collaborative filtering over
               shoppers; recommend/factors.py)
- ann          FAISS nearest neighbours of the shopper's profile vector (or of the mean vector
               of the context items)
- popular      distinct buyers over the whole log
- recent       distinct buyers in the last `ranking.recent_days`

A shopper unknown to the build (cold start) has no history and no profile vector, so the
same sources give popularity, recent popularity and the context items' neighbours.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Protocol

import numpy as np

from services.errors import InvalidArgument
from services.recommend.snapshot import Snapshot

HISTORY_HALF_LIFE_DAYS = 90.0
INTEREST_WEIGHT = 0.3


@dataclass(frozen=True)
class Shopper:
    """Who candidates are gathered for."""

    user_row: int | None        # row of the snapshot's history; None for a shopper it does not know
    items: np.ndarray           # item rows of the shopper's history (bought or shown interest)
    weights: np.ndarray         # how much each counts: recency-weighted baskets (+ interest)
    context: np.ndarray         # item rows of an anonymous session's recently viewed items
    vector: np.ndarray | None   # the profile vector, or the mean of the context items' vectors

    def item_weights(self, n_items: int) -> np.ndarray:
        """Weight per item row of what the shopper had: their history, and the session's
        context items at least as strong as their strongest item."""
        weights = np.zeros(n_items)
        np.add.at(weights, self.items, self.weights)
        if len(self.context):
            weights[self.context] += max(1.0, float(weights.max(initial=0.0)))
        return weights


def shopper_for(snapshot: Snapshot, user_row: int | None, context: np.ndarray | None = None) -> Shopper:
    context = np.asarray(context if context is not None else [], dtype=np.int64)
    items, weights, vector = np.empty(0, np.int64), np.empty(0), None
    if user_row is not None:
        h = snapshot.history
        pairs = h.pairs_of(user_row)
        items = h.pair_item[pairs]
        days = h.pair_days_since[pairs]
        decay = np.power(0.5, np.where(np.isnan(days), 0.0, days) / HISTORY_HALF_LIFE_DAYS)
        weights = h.pair_baskets[pairs] * decay + INTEREST_WEIGHT * h.pair_interest[pairs]
        user_vector = np.asarray(snapshot.user_vectors[user_row])
        if user_vector.any():
            vector = user_vector
    if vector is None and len(context):
        mean = np.asarray(snapshot.item_vectors[context], dtype=np.float32).mean(axis=0)
        norm = float(np.linalg.norm(mean))
        vector = mean / norm if norm > 0 else None
    return Shopper(user_row, items, weights, context, vector)


@dataclass(frozen=True)
class Found:
    """One source's answer: item rows, best first, and the source's scores for them."""

    rows: np.ndarray
    scores: np.ndarray

    @classmethod
    def none(cls) -> "Found":
        return cls(np.empty(0, np.int64), np.empty(0))

    @classmethod
    def top(cls, scores: np.ndarray, allowed: np.ndarray, n: int) -> "Found":
        """The n best allowed items with a positive score."""
        eligible = (allowed & (scores > 0)).nonzero()[0]
        if len(eligible) > n:
            eligible = eligible[(-scores[eligible]).argpartition(n - 1)[:n]]
        order = np.lexsort((eligible, -scores[eligible]))
        return cls(eligible[order], scores[eligible[order]])


class CandidateSource(Protocol):
    name: str

    def find(self, snapshot: Snapshot, shopper: Shopper, n: int, allowed: np.ndarray) -> Found: ...


class HistorySource:
    name = "history"

    def find(self, snapshot: Snapshot, shopper: Shopper, n: int, allowed: np.ndarray) -> Found:
        if not len(shopper.items):
            return Found.none()
        keep = allowed[shopper.items] & (shopper.weights > 0)
        rows, weights = shopper.items[keep], shopper.weights[keep]
        order = np.lexsort((rows, -weights))[:n]
        return Found(rows[order], weights[order])


class CoPurchaseSource:
    name = "co_purchase"

    def find(self, snapshot: Snapshot, shopper: Shopper, n: int, allowed: np.ndarray) -> Found:
        weights = shopper.item_weights(len(snapshot.items))
        if not weights.any():
            return Found.none()
        return Found.top(snapshot.co_purchase.neighbours(weights), allowed, n)


class RulesSource:
    name = "rules"

    def find(self, snapshot: Snapshot, shopper: Shopper, n: int, allowed: np.ndarray) -> Found:
        weights = shopper.item_weights(len(snapshot.items))
        sources = np.flatnonzero(weights > 0)
        rules = snapshot.signals.rules
        if not len(sources) or rules.lift_matrix.nnz == 0:
            return Found.none()
        # Each consequent's best rule, scaled by how much its antecedent weighs for the shopper
        # (a re-order of last week over a one-off of last year).
        return Found.top(rules.best_lifts(sources, np.minimum(weights[sources], 1.0)), allowed, n)


class AnnSource:
    name = "ann"

    def find(self, snapshot: Snapshot, shopper: Shopper, n: int, allowed: np.ndarray) -> Found:
        if shopper.vector is None or not allowed.any():
            return Found.none()
        scores, ids = snapshot.index.search(shopper.vector, n, allowed)
        keep = ids[0] >= 0
        return Found(ids[0][keep].astype(np.int64), scores[0][keep].astype(np.float64))


class AlsSource:
    name = "als"

    def find(self, snapshot: Snapshot, shopper: Shopper, n: int, allowed: np.ndarray) -> Found:
        if shopper.user_row is None:
            return Found.none()
        return Found.top(snapshot.factors.affinity(shopper.user_row).astype(np.float64), allowed, n)


class PopularSource:
    name = "popular"

    def find(self, snapshot: Snapshot, shopper: Shopper, n: int, allowed: np.ndarray) -> Found:
        order = snapshot.popular_order
        rows = order[allowed[order]][:n]
        return Found(rows, snapshot.history.item_buyers[rows])


class RecentSource:
    name = "recent"

    def find(self, snapshot: Snapshot, shopper: Shopper, n: int, allowed: np.ndarray) -> Found:
        order = snapshot.recent_order
        rows = order[allowed[order]][:n]
        rows = rows[snapshot.history.item_recent_buyers[rows] > 0]
        return Found(rows, snapshot.history.item_recent_buyers[rows])


SOURCES: tuple[CandidateSource, ...] = (
    HistorySource(),
    CoPurchaseSource(),
    RulesSource(),
    AlsSource(),
    AnnSource(),
    PopularSource(),
    RecentSource(),
)
SOURCE_NAMES = tuple(source.name for source in SOURCES)
# Every subset of the sources by its bits (CandidateSet._found_by: one byte, up to 8 sources),
# in SOURCE_NAMES order.
assert len(SOURCE_NAMES) <= 8
_SOURCE_SETS = tuple(
    tuple(name for bit, name in enumerate(SOURCE_NAMES) if mask >> bit & 1) for mask in range(1 << len(SOURCE_NAMES))
)


@dataclass(frozen=True)
class CandidateSet:
    """Merged candidates: item rows, and per source (columns in SOURCE_NAMES order) the score
    and 1-based rank it gave each row (NaN where that source did not find it)."""

    rows: np.ndarray
    scores: np.ndarray   # [n, len(SOURCE_NAMES)]
    ranks: np.ndarray    # [n, len(SOURCE_NAMES)]

    def __len__(self) -> int:
        return len(self.rows)

    def sources_of(self, position: int) -> tuple[str, ...]:
        return _SOURCE_SETS[self._found_by[position]]

    @cached_property
    def _found_by(self) -> list[int]:
        """Per row, the sources that found it as bits (bit c: SOURCE_NAMES[c])."""
        return np.packbits(~np.isnan(self.ranks), axis=1, bitorder="little")[:, 0].tolist()

    def subset(self, rows: np.ndarray) -> "CandidateSet":
        """These rows, in this order, with the sources and scores this set gave them (none for
        a row it does not hold)."""
        position = {int(r): p for p, r in enumerate(self.rows)}
        scores = np.full((len(rows), len(SOURCE_NAMES)), np.nan)
        ranks = np.full_like(scores, np.nan)
        for target, row in enumerate(rows):
            p = position.get(int(row))
            if p is not None:
                scores[target], ranks[target] = self.scores[p], self.ranks[p]
        return CandidateSet(np.asarray(rows, dtype=np.int64), scores, ranks)

    @classmethod
    def merge(cls, found: dict[str, Found]) -> "CandidateSet":
        parts = [(SOURCE_NAMES.index(name), f) for name, f in found.items() if len(f.rows)]
        if not parts:
            empty = np.empty((0, len(SOURCE_NAMES)))
            return cls(np.empty(0, np.int64), empty, empty.copy())
        found_rows = np.concatenate([f.rows for _, f in parts])
        # The distinct rows in order, and where each found row went (np.unique's answer, by
        # marking item rows instead of sorting).
        seen = np.zeros(int(found_rows.max()) + 1, dtype=bool)
        seen[found_rows] = True
        rows = seen.nonzero()[0]
        inverse = (np.cumsum(seen) - 1)[found_rows]
        # A source finds a row at most once: every (row, column) is written once, all sources together.
        columns = np.repeat([column for column, _ in parts], [len(f.rows) for _, f in parts])
        scores = np.full((len(rows), len(SOURCE_NAMES)), np.nan)
        ranks = np.full_like(scores, np.nan)
        scores[inverse, columns] = np.concatenate([f.scores for _, f in parts])
        ranks[inverse, columns] = np.concatenate([np.arange(1, len(f.rows) + 1) for _, f in parts])
        return cls(rows, scores, ranks)

    @classmethod
    def from_sources(cls, rows: np.ndarray, named: list[dict[str, float]]) -> "CandidateSet":
        """Candidates a caller already gathered (a direct Rank call): per row, source → score.
        Ranks are the order in which the caller listed each source's items."""
        scores = np.full((len(rows), len(SOURCE_NAMES)), np.nan)
        for position, by_source in enumerate(named):
            for name, score in by_source.items():
                scores[position, SOURCE_NAMES.index(name)] = score
        ranks = np.full_like(scores, np.nan)
        for column in range(len(SOURCE_NAMES)):
            present = np.flatnonzero(~np.isnan(scores[:, column]))
            ranks[present, column] = np.arange(1, len(present) + 1)
        return cls(np.asarray(rows, dtype=np.int64), scores, ranks)


def gather(snapshot: Snapshot, shopper: Shopper, allowed: np.ndarray) -> CandidateSet:
    ranking = snapshot.config.ranking
    found = {}
    for source in SOURCES:
        n = ranking.history_candidates if source.name == "history" else ranking.candidates_per_source
        found[source.name] = source.find(snapshot, shopper, n, allowed)
    return CandidateSet.merge(found)


def check_vector(vector: np.ndarray, dimension: int, field_name: str = "vector") -> np.ndarray:
    """A query vector of the index's dimension, finite and non-zero, L2-normalised."""
    vector = np.asarray(vector, dtype=np.float32).reshape(-1)
    if vector.size != dimension:
        raise InvalidArgument(f"{field_name}.values", f"has {vector.size} values; the index has dimension {dimension}")
    if not np.all(np.isfinite(vector)):
        raise InvalidArgument(f"{field_name}.values", "holds NaN or infinite values")
    norm = float(np.linalg.norm(vector))
    if norm == 0:
        raise InvalidArgument(f"{field_name}.values", "is all zeros")
    return vector / norm
