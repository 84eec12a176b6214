"""Candidate products by ANN search over item vectors, with the request's filters applied."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from services.artifacts import Artifacts
from services.errors import InvalidArgument
from services.recommend.filters import ItemFilter


@dataclass(frozen=True)
class Candidate:
    item_id: str
    score: float
    source: str


class Retriever:
    def __init__(self, artifacts: Artifacts):
        self.artifacts = artifacts
        self.index = artifacts.index
        self.items = artifacts.items

    def user_vector(self, user_id: str) -> np.ndarray:
        return np.asarray(self.artifacts.user_vectors[self.artifacts.user_index(user_id)])

    def check_vector(self, vector: np.ndarray, field_name: str = "vector") -> np.ndarray:
        vector = np.asarray(vector, dtype=np.float32).reshape(-1)
        if vector.size != self.index.dimension:
            raise InvalidArgument(
                f"{field_name}.values", f"has {vector.size} values; the index has dimension {self.index.dimension}"
            )
        if not np.all(np.isfinite(vector)):
            raise InvalidArgument(f"{field_name}.values", "holds NaN or infinite values")
        norm = float(np.linalg.norm(vector))
        if norm == 0:
            raise InvalidArgument(f"{field_name}.values", "is all zeros")
        return vector / norm

    def search(self, vector: np.ndarray, k: int, item_filter: ItemFilter = ItemFilter()) -> list[Candidate]:
        """Top-k allowed items by cosine similarity; the filter applies inside the FAISS search."""
        allowed = item_filter.allowed(self.items)
        if not allowed.any():
            return []
        scores, ids = self.index.search(vector, k, allowed)
        item_ids = self.items["item_id"].to_numpy()
        return [Candidate(str(item_ids[i]), float(s), "ann") for i, s in zip(ids[0], scores[0]) if i >= 0]

    def for_user(self, user_id: str, k: int, item_filter: ItemFilter = ItemFilter(), exclude_owned: bool = True) -> list[Candidate]:
        vector = self.user_vector(user_id)
        if exclude_owned:
            owned = self.artifacts.owned_by(user_id)
            item_filter = ItemFilter(
                item_filter.categories, item_filter.in_stock_only, item_filter.exclude_item_ids | owned, item_filter.max_price
            )
        if not np.any(vector):
            # A user with no positive event yet (e.g. only returns): most popular items instead.
            return self.popular(k, item_filter)
        return self.search(vector, k, item_filter)

    def popular(self, k: int, item_filter: ItemFilter = ItemFilter()) -> list[Candidate]:
        allowed = item_filter.allowed(self.items)
        ranked = self.items.loc[allowed].sort_values("popularity", ascending=False, kind="stable").head(k)
        return [Candidate(str(i), float(p), "popular") for i, p in zip(ranked["item_id"], ranked["popularity"])]
