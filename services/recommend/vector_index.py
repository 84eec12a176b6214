"""FAISS index over L2-normalised item vectors: inner product = cosine similarity.

The build picks the index by catalogue size (`IndexConfig`; bench/bench_retrieval.py measures
the choice against exact search, one query per call):

- up to `exact_max_items` (20k): exact search, `IndexFlatIP` ("flat");
- above: an inverted file of √items × `ivf_lists_per_sqrt_item` lists (k-means on a sample, so
  it builds on two cores) holding product-quantised codes, 4 bits per 2 dimensions, scanned with
  FAISS's SIMD fast-scan; a query scans `ivf_probe_share` of the lists (at least `ivf_min_nprobe`)
  and its best k × `ivf_refine_factor` candidates are re-ranked with the exact vectors, so the
  scores returned are exact cosines ("ivf_pq4_refine"). `ivf_encoding: sq8` stores 8-bit scalar
  codes instead ("ivf_sq8_refine"); a refine factor of 0 keeps no exact copy ("ivf_pq4",
  "ivf_sq8": ranked by the codes' scores);
- an HNSW graph ("hnsw") for sizes up to `hnsw_max_items` when that is set (off by default:
  IVF measured as fast at the same recall and builds faster).

Search-time settings (nprobe, efSearch, the re-ranking factor) are not taken from the file:
`VectorIndex.load` sets them from the configuration. Ids are row numbers of the build's item table.

Filters (`allowed`, a boolean mask over ids) apply inside the search. A filter that leaves few
items (`filter_exact_max_items`) is answered exactly over those items, which is cheap when they
are few and is where an approximate search would miss; a wider one widens the approximate search
by 1 / (share of items allowed) — IVF probes that many more lists, HNSW keeps that many more
candidates — so it computes about as many distances as an unfiltered search, and a row it still
leaves short of k falls back to the exact search over the allowed items.

The re-ranking is done here rather than by `IndexRefine.search`, which (FAISS 1.15, two OpenMP
threads, other processes busy on the machine) took ~7 ms for one query against 0.7 ms on one thread.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import faiss
import numpy as np

from services.config import IndexConfig

KINDS = ("flat", "hnsw", "ivf_pq4", "ivf_pq4_refine", "ivf_sq8", "ivf_sq8_refine")
_MISSING = -np.finfo(np.float32).max  # FAISS's score for an inner-product slot with no item (id -1)


def index_kind(n_items: int, config: IndexConfig) -> str:
    """The kind of index `build_index` makes for a catalogue of this size."""
    if n_items <= config.exact_max_items:
        return "flat"
    if n_items <= config.hnsw_max_items:
        return "hnsw"
    return f"ivf_{config.ivf_encoding}" + ("_refine" if config.ivf_refine_factor > 0 else "")


def ivf_lists(n_items: int, config: IndexConfig) -> int:
    """IVF list count: `ivf_lists`, else `ivf_lists_per_sqrt_item` × √items; at most items / 39, the
    fewest training points per list k-means accepts."""
    wanted = config.ivf_lists or round(config.ivf_lists_per_sqrt_item * math.sqrt(n_items))
    return int(max(1, min(wanted, n_items // 39)))


def ivf_nprobe(nlist: int, config: IndexConfig) -> int:
    """Lists scanned per query: `ivf_nprobe`, else `ivf_probe_share` of them but at least `ivf_min_nprobe`."""
    wanted = config.ivf_nprobe or max(config.ivf_min_nprobe, math.ceil(config.ivf_probe_share * nlist))
    return int(max(1, min(wanted, nlist)))


def _ivf_part(index: faiss.Index) -> faiss.IndexIVF:
    if isinstance(index, faiss.IndexRefine):
        index = faiss.downcast_index(index.base_index)
    return faiss.extract_index_ivf(index)


def _kind_of(index: faiss.Index) -> str:
    if isinstance(index, faiss.IndexHNSW):
        return "hnsw"
    if isinstance(index, faiss.IndexRefine):
        return _kind_of(faiss.downcast_index(index.base_index)) + "_refine"
    if isinstance(index, faiss.IndexIVFPQFastScan):
        return "ivf_pq4"
    if isinstance(index, faiss.IndexIVFScalarQuantizer):
        return "ivf_sq8"
    if isinstance(index, faiss.IndexFlat):
        return "flat"
    raise ValueError(f"unsupported FAISS index {type(index).__name__}")


def _apply_search_settings(index: faiss.Index, kind: str, config: IndexConfig) -> None:
    if kind == "hnsw":
        index.hnsw.efSearch = config.hnsw_ef_search
    elif kind.startswith("ivf"):
        ivf = _ivf_part(index)
        ivf.nprobe = ivf_nprobe(ivf.nlist, config)
        if kind.endswith("_refine"):
            index.k_factor = max(1.0, config.ivf_refine_factor)


@dataclass
class VectorIndex:
    index: faiss.Index
    kind: str  # one of KINDS
    config: IndexConfig = field(default_factory=IndexConfig)

    @property
    def size(self) -> int:
        return int(self.index.ntotal)

    @property
    def dimension(self) -> int:
        return int(self.index.d)

    @cached_property
    def _exact_index(self) -> faiss.IndexFlat | None:
        """The full-precision vectors as a flat index (with a selector: exact search over the allowed rows)."""
        if self.kind == "flat":
            return self.index
        if self.kind == "hnsw":
            return faiss.downcast_index(self.index.storage)
        if self.kind.endswith("_refine"):
            return faiss.downcast_index(self.index.refine_index)
        return None

    @cached_property
    def _ivf(self) -> faiss.IndexIVF:
        return _ivf_part(self.index)

    def _approximate(self, queries: np.ndarray, k: int, selector=None, widen: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """The approximate search, its reach multiplied by `widen` (≥ 1) when a filter thins the items out."""
        if self.kind == "hnsw":
            ef = min(max(self.size, k), math.ceil(max(self.index.hnsw.efSearch, k) * widen))
            return self.index.search(queries, k, params=faiss.SearchParametersHNSW(sel=selector, efSearch=ef))
        ivf = self._ivf
        params = None
        if selector is not None:
            params = faiss.SearchParametersIVF(sel=selector, nprobe=min(ivf.nlist, math.ceil(ivf.nprobe * widen)))
        if not self.kind.endswith("_refine"):
            return ivf.search(queries, k, params=params)
        k_base = min(self.size, math.ceil(k * self.index.k_factor))
        _, candidates = ivf.search(queries, k_base, params=params)
        return self._rerank(queries, candidates, k)

    def _rerank(self, queries: np.ndarray, candidates: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact inner products of each query with its candidate ids (-1 = none); the best k, best first."""
        candidates = np.ascontiguousarray(candidates, dtype=np.int64)
        exact = np.empty(candidates.shape, dtype=np.float32)
        self._exact_index.compute_distance_subset(
            len(queries), faiss.swig_ptr(queries), candidates.shape[1], faiss.swig_ptr(exact), faiss.swig_ptr(candidates)
        )
        exact[candidates < 0] = _MISSING
        order = np.argsort(-exact, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(exact, order, axis=1), np.take_along_axis(candidates, order, axis=1)

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids) per query row, best first; ids are -1 where fewer than k items qualify.

        `allowed` (a boolean mask over ids) filters inside the search, so a strict filter still
        yields k results without over-fetching from the whole index."""
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        k = max(1, min(int(k), self.size))
        allowed = None if allowed is None else np.asarray(allowed, dtype=bool)
        n_allowed = self.size if allowed is None else int(np.count_nonzero(allowed))
        if n_allowed == self.size:
            return self.index.search(queries, k) if self.kind == "flat" else self._approximate(queries, k)
        bitmap = np.packbits(allowed, bitorder="little")  # bit i ↔ id i; alive until the searches return
        selector = faiss.IDSelectorBitmap(self.size, faiss.swig_ptr(bitmap))
        exact = self._exact_index
        if exact is not None and (self.kind == "flat" or n_allowed <= self.config.filter_exact_max_items):
            # Exact over the allowed rows: the flat scan skips every other row before computing a distance.
            return exact.search(queries, k, params=faiss.SearchParameters(sel=selector))
        scores, ids = self._approximate(queries, k, selector, widen=self.size / max(n_allowed, 1))
        short = (ids >= 0).sum(axis=1) < min(k, n_allowed)  # rows the approximate search left short of k
        if short.any():
            if exact is not None:
                params = faiss.SearchParameters(sel=selector)
                scores[short], ids[short] = exact.search(queries[short], k, params=params)
            else:  # every list: all allowed items, ranked by their quantised scores
                params = faiss.SearchParametersIVF(sel=selector, nprobe=self._ivf.nlist)
                scores[short], ids[short] = self._ivf.search(queries[short], k, params=params)
        return scores, ids

    def save(self, path: Path) -> None:
        faiss.write_index(self.index, str(path))

    @classmethod
    def load(cls, path: Path, config: IndexConfig) -> "VectorIndex":
        index = faiss.read_index(str(path))
        kind = _kind_of(index)
        _apply_search_settings(index, kind, config)
        return cls(index, kind, config)


def build_index(vectors: np.ndarray, config: IndexConfig) -> VectorIndex:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n, dimension = vectors.shape
    kind = index_kind(n, config)
    if kind == "flat":
        index = faiss.IndexFlatIP(dimension)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(dimension, config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = config.hnsw_ef_construction
    else:
        nlist = ivf_lists(n, config)
        if config.ivf_encoding == "pq4":
            if dimension % 4:
                raise ValueError(f"ivf_encoding pq4 needs a dimension divisible by 4, not {dimension}")
            encoding = f"PQ{dimension // 2}x4fs"  # 4 bits per 2 dimensions; fast scan wants an even count
        else:
            encoding = "SQ8"
        spec = f"IVF{nlist},{encoding}" + (",RFlat" if kind.endswith("_refine") else "")
        index = faiss.index_factory(dimension, spec, faiss.METRIC_INNER_PRODUCT)
        ivf = _ivf_part(index)
        ivf.cp.niter = config.ivf_train_iterations
        ivf.cp.seed = config.ivf_seed
        ivf.cp.spherical = True  # unit-length centroids: the largest inner product is then the nearest direction
        n_train = min(n, nlist * config.ivf_train_per_list)
        ivf.cp.max_points_per_centroid = math.ceil(n_train / nlist)  # k-means takes the whole sample
        if n_train < n:
            sample = np.sort(np.random.default_rng(config.ivf_seed).choice(n, n_train, replace=False))
            index.train(vectors[sample])
        else:
            index.train(vectors)
    _apply_search_settings(index, kind, config)
    index.add(vectors)
    return VectorIndex(index, kind, config)
