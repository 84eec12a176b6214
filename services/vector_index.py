"""FAISS index over L2-normalised item vectors: inner product = cosine similarity.

Exact (IndexFlatIP) up to a configurable size, HNSW above it. Ids are row numbers of the
build's item table.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from services.config import IndexConfig


@dataclass
class VectorIndex:
    index: faiss.Index
    kind: str  # "flat" or "hnsw"

    @property
    def size(self) -> int:
        return int(self.index.ntotal)

    @property
    def dimension(self) -> int:
        return int(self.index.d)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids) per query row; ids are -1 where fewer than k items exist."""
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        k = max(1, min(int(k), self.size))
        return self.index.search(queries, k)

    def save(self, path: Path) -> None:
        faiss.write_index(self.index, str(path))

    @classmethod
    def load(cls, path: Path, config: IndexConfig) -> "VectorIndex":
        index = faiss.read_index(str(path))
        if isinstance(index, faiss.IndexHNSWFlat):
            index.hnsw.efSearch = config.hnsw_ef_search
            return cls(index, "hnsw")
        return cls(index, "flat")


def build_index(vectors: np.ndarray, config: IndexConfig) -> VectorIndex:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n, dimension = vectors.shape
    if n <= config.exact_max_items:
        index = faiss.IndexFlatIP(dimension)
        kind = "flat"
    else:
        index = faiss.IndexHNSWFlat(dimension, config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = config.hnsw_ef_construction
        index.hnsw.efSearch = config.hnsw_ef_search
        kind = "hnsw"
    index.add(vectors)
    return VectorIndex(index, kind)
