"""The rules that decide what a shopper gets, top to bottom:

    shopper (known, or cold start with context items)
    → allowed items: the request's filter, then the owned-item rule (filters.repurchase_allowed)
    → candidates from every source, merged (candidates.gather)
    → features → learned ranker (or the blend) → diversity re-rank (MMR) → top k with reasons
    → the headline item the copy is about (headline_item)

Recommend (serving), direct Retrieve/Rank calls and `tailor evaluate` all go through this one
class, on the build it holds.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from services.errors import InvalidArgument, NotFound
from services.recommend.candidates import SOURCE_NAMES, CandidateSet, Shopper, gather, shopper_for
from services.recommend.features import candidate_features
from services.recommend.filters import ItemFilter, repurchase_allowed
from services.recommend.ranking import Ranker, diversify
from services.recommend.reasons import co_purchase_links, explain
from services.recommend.snapshot import Snapshot


@dataclass(frozen=True)
class ShopperQuery:
    """Who the list is for and what it may hold."""

    user_id: str = ""
    k: int = 10
    item_filter: ItemFilter = field(default_factory=ItemFilter)
    # Only items new to this shopper (discovery campaigns).
    exclude_purchased: bool = False
    # An unknown shopper gets a list (popularity, recent popularity, context neighbours)
    # instead of NOT_FOUND.
    cold_start: bool = False
    # An anonymous session's recently viewed items.
    context_item_ids: tuple[str, ...] = ()


def unpersonalized(query: ShopperQuery) -> ShopperQuery:
    """The same request without the shopper, for one who turned personalization off: the
    cold-start path's popular and trending products, nothing of their profile or session."""
    return replace(query, user_id="", cold_start=True, context_item_ids=(), exclude_purchased=False)


@dataclass(frozen=True)
class RankedItem:
    item_id: str
    score: float
    sources: tuple[str, ...]
    reasons: tuple[str, ...]


class RecommendationFlow:
    """The flow over one published build (Artifacts), with the configuration's ranking rules."""

    def __init__(self, artifacts, config):
        self.snapshot: Snapshot = artifacts.snapshot(config)
        self.ranker: Ranker = artifacts.ranker
        self.build_id: str = artifacts.build_id
        self.everything = np.ones(len(self.snapshot.items), dtype=bool)

    # --- the whole path ----------------------------------------------------------------------

    def recommend(self, query: ShopperQuery) -> list[RankedItem]:
        shopper, candidates = self.candidates(query)
        return self.rank(shopper, candidates, query.k)

    def candidates(self, query: ShopperQuery) -> tuple[Shopper, CandidateSet]:
        shopper = self.shopper(query)
        return shopper, gather(self.snapshot, shopper, self.allowed(query, shopper))

    def rank(self, shopper: Shopper, candidates: CandidateSet, k: int) -> list[RankedItem]:
        if not len(candidates):
            return []
        features = candidate_features(self.snapshot, shopper, candidates)
        return self.finish(shopper, candidates, features, self.ranker.score(features), k)

    def finish(self, shopper: Shopper, candidates: CandidateSet, features: np.ndarray, scores: np.ndarray, k: int) -> list[RankedItem]:
        """Scores → diversity re-rank → the top k with reasons (split from `rank` so a batch of
        requests can share one model call)."""
        chosen = diversify(scores, self.snapshot.item_vectors, k, self.snapshot.config.ranking.diversity, rows=candidates.rows)
        rows = candidates.rows[chosen]
        links = co_purchase_links(self.snapshot, shopper, rows)
        reasons = explain(self.snapshot, shopper, candidates, chosen, features, links)
        return [
            RankedItem(item_id=str(item_id), score=score, sources=candidates.sources_of(p), reasons=why)
            for item_id, score, p, why in zip(self.snapshot.item_ids[rows].tolist(), scores[chosen].tolist(), chosen.tolist(), reasons)
        ]

    def rank_many(self, jobs: list[tuple[Shopper, CandidateSet, int]]) -> list[list[RankedItem]]:
        """Several requests' candidates ranked with one model call (the Rank deployment batches)."""
        features = [candidate_features(self.snapshot, shopper, candidates) for shopper, candidates, _ in jobs]
        sizes = [len(f) for f in features]
        scores = self.ranker.score(np.vstack(features)) if sum(sizes) else np.empty(0)
        out, start = [], 0
        for (shopper, candidates, k), f, size in zip(jobs, features, sizes):
            part = scores[start : start + size]
            start += size
            out.append(self.finish(shopper, candidates, f, part, k) if size else [])
        return out

    def retrieve(self, query: ShopperQuery) -> list[tuple[str, dict[str, float]]]:
        """Merged candidates without ranking: best rank in any source first (then found by more
        sources); each with its sources and their scores, the source that ranked it best first."""
        _, candidates = self.candidates(query)
        if not len(candidates):
            return []
        best = np.nanmin(candidates.ranks, axis=1)
        found_by = (~np.isnan(candidates.ranks)).sum(axis=1)
        order = np.lexsort((candidates.rows, -found_by, best))[: query.k]
        out = []
        for p in order:
            columns = [c for c in np.argsort(candidates.ranks[p], kind="stable") if not np.isnan(candidates.ranks[p, c])]
            out.append((str(self.snapshot.item_ids[candidates.rows[p]]), {SOURCE_NAMES[c]: float(candidates.scores[p, c]) for c in columns}))
        return out

    def similar(self, vector: np.ndarray, k: int, item_filter: ItemFilter) -> list[tuple[str, float]]:
        """Items nearest a query vector (text or vector retrieval), allowed by the filter."""
        allowed = self.everything if item_filter.is_empty else item_filter.allowed(self.snapshot.item_columns)
        if not allowed.any():
            return []
        scores, ids = self.snapshot.index.search(vector, k, allowed)
        return [(str(self.snapshot.item_ids[i]), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0]

    # --- the steps ---------------------------------------------------------------------------

    def shopper(self, query: ShopperQuery) -> Shopper:
        context = self.item_rows(query.context_item_ids, "context_item_ids")
        user_row = self.snapshot.history.user_row(query.user_id) if query.user_id else None
        if user_row is None and not query.cold_start:
            if not query.user_id:
                raise InvalidArgument("user_id", "is required unless cold_start is set")
            raise NotFound("user_id", f"no user {query.user_id[:64]!r} in build {self.build_id}; set cold_start for a list anyway")
        return shopper_for(self.snapshot, user_row, context)

    def allowed(self, query: ShopperQuery, shopper: Shopper) -> np.ndarray:
        allowed = self.everything if query.item_filter.is_empty else query.item_filter.allowed(self.snapshot.item_columns)
        if shopper.user_row is None:
            return allowed
        policy = "never" if query.exclude_purchased else self.snapshot.config.ranking.repurchase_policy
        return repurchase_allowed(allowed, self.snapshot.history.acquired(shopper.user_row), self.snapshot.reorderable, policy)

    def item_rows(self, item_ids, field_name: str) -> np.ndarray:
        if not len(item_ids):
            return np.empty(0, np.int64)
        rows = self.snapshot.item_row.reindex(list(item_ids))
        missing = np.flatnonzero(rows.isna().to_numpy())
        if len(missing):
            first = int(missing[0])
            raise NotFound(f"{field_name}[{first}]", f"no item {str(item_ids[first])[:64]!r} in build {self.build_id}")
        return rows.to_numpy(dtype=np.int64)

    def explicit_candidates(self, query: ShopperQuery, item_ids: list[str], sources: list[dict[str, float]] | None) -> tuple[Shopper, CandidateSet]:
        """A direct Rank call's candidates. With their sources and scores they are ranked as
        given; without, each takes the sources and scores the flow's own gathering gives it,
        so a direct Rank call ranks on the same features as Recommend. Either way the filter
        and the owned-item rule apply, and duplicates are dropped."""
        shopper = self.shopper(query)
        rows = self.item_rows(item_ids, "item_ids")
        allowed = self.allowed(query, shopper)
        keep = np.zeros(len(rows), dtype=bool)
        _, first = np.unique(rows, return_index=True)
        keep[first] = True
        keep &= allowed[rows]
        rows, named = rows[keep], [n for n, k in zip(sources, keep) if k] if sources is not None else None
        if named is None:
            return shopper, gather(self.snapshot, shopper, allowed).subset(rows)
        return shopper, CandidateSet.from_sources(rows, named)

    def headline(self, ranked: list[RankedItem], amount_off: float) -> tuple[int, str | None]:
        """Which item the copy is about: the first a fixed amount off can apply to (priced
        above it), or the first for no promotion or a percentage. With no item the amount
        fits: the first item, without the promotion, and a note that says why."""
        for position, item in enumerate(ranked):
            price = self.snapshot.prices[int(self.snapshot.item_row[item.item_id])]
            if amount_off <= 0 or not np.isfinite(price) or price > amount_off:
                return position, None
        return 0, f"promotion not applied: amount_off {amount_off:.2f} is not below the price of any recommended item"
