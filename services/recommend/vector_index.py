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

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids) per query row; ids are -1 where fewer than k items qualify.

        `allowed` (a boolean mask over ids) filters inside the search, so a strict filter still
        yields k results without over-fetching from the whole index."""
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        k = max(1, min(int(k), self.size))
        if allowed is None or allowed.all():
            return self.index.search(queries, k)
        bitmap = np.packbits(allowed.astype(bool), bitorder="little")  # bit i ↔ id i
        selector = faiss.IDSelectorBitmap(self.size, faiss.swig_ptr(bitmap))
        if self.kind == "hnsw":
            params = faiss.SearchParametersHNSW(sel=selector, efSearch=max(self.index.hnsw.efSearch, k))
        else:
            params = faiss.SearchParameters(sel=selector)
        return self.index.search(queries, k, params=params)

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
