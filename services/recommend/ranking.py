"""First ranker: ANN similarity and popularity, owned items excluded, one reason per item.

The seam for the learned ranker of a later issue is `Ranker.rank`: same inputs, same output.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from services.artifacts import Artifacts
from services.config import RankingConfig
from services.recommend.filters import ItemFilter

RANKER_NAME = "similarity+popularity/v1"
# Below this cosine similarity, "similar to X you bought" is not a believable reason.
SIMILAR_REASON_MIN = 0.45


@dataclass(frozen=True)
class RankedItem:
    item_id: str
    score: float
    similarity: float
    popularity: float
    reasons: tuple[str, ...]


class Ranker:
    name = RANKER_NAME

    def __init__(self, artifacts: Artifacts, config: RankingConfig):
        self.artifacts = artifacts
        self.config = config
        self.items = artifacts.items

    def rank(self, user_id: str, item_ids: list[str], k: int, item_filter: ItemFilter = ItemFilter()) -> list[RankedItem]:
        user = self.artifacts.user_index(user_id)
        rows = self.artifacts.item_indices(item_ids)
        # Business rules: never an item the user owns, nothing the filter forbids, no duplicates.
        owned = self.artifacts.owned_by(user_id)
        allowed = item_filter.allowed(self.items)
        keep, seen = [], set()
        for row, item_id in zip(rows, item_ids):
            if item_id in owned or item_id in seen or not allowed[row]:
                continue
            seen.add(item_id)
            keep.append(int(row))
        if not keep:
            return []
        rows = np.array(keep)
        candidate_vectors = np.asarray(self.artifacts.item_vectors[rows])
        similarity = candidate_vectors @ np.asarray(self.artifacts.user_vectors[user])
        popularity = self.items["popularity"].to_numpy()[rows]
        score = self.config.similarity_weight * similarity + self.config.popularity_weight * popularity
        order = np.argsort(-score, kind="stable")[:k]
        reasons = self.reasons(user_id, rows[order], candidate_vectors[order])
        item_column = self.items["item_id"].to_numpy()
        return [
            RankedItem(str(item_column[rows[i]]), float(score[i]), float(similarity[i]), float(popularity[i]), reason)
            for i, reason in zip(order, reasons)
        ]

    def reasons(self, user_id: str, rows: np.ndarray, vectors: np.ndarray) -> list[tuple[str, ...]]:
        """Name the owned item each candidate is closest to; else say how popular it is."""
        owned = sorted(self.artifacts.owned_by(user_id))
        titles = self.items["title"].to_numpy()
        buyers = self.items["buyers"].to_numpy()
        closest_title, closest_sim = [None] * len(rows), np.zeros(len(rows))
        if owned:
            owned_rows = self.artifacts.item_indices(owned)
            similarity = vectors @ np.asarray(self.artifacts.item_vectors[owned_rows]).T
            best = similarity.argmax(axis=1)
            closest_sim = similarity[np.arange(len(rows)), best]
            closest_title = [titles[owned_rows[b]] for b in best]
        out = []
        for i, row in enumerate(rows):
            reasons = []
            if closest_title[i] is not None and closest_sim[i] >= SIMILAR_REASON_MIN:
                reasons.append(f"similar to {closest_title[i]} you bought")
            if buyers[row] > 0 and (not reasons or self.items["popularity"].iat[row] >= 0.5):
                reasons.append(f"popular: bought by {int(buyers[row])} shoppers")
            if not reasons:
                reasons.append("close to your taste")
            out.append(tuple(reasons))
        return out
