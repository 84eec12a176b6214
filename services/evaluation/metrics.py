"""Ranking metrics for offline evaluation: pure functions over one list or a run of lists.

Relevance is binary: an item is relevant to a shopper when it is in their truth set (the
distinct items they bought on or after the cut-off; items they also bought before count).
A ranked list is best first; an item repeated in a list counts at its first position only,
and only the first k positions count.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence

import numpy as np


def _hits(ranked: Sequence, truth: Collection, k: int) -> list[bool]:
    """hit[i] for positions 1..k of `ranked` (a repeated item is a miss after its first position)."""
    seen: set = set()
    out = []
    for item in list(ranked)[:k]:
        out.append(item in truth and item not in seen)
        seen.add(item)
    return out


def ndcg_at_k(ranked: Sequence, truth: Collection, k: int) -> float:
    """NDCG@k = DCG@k / IDCG@k.

    DCG@k = sum over positions i = 1..k holding a relevant item of 1 / log2(i + 1).
    IDCG@k is the DCG of an ideal list: min(|truth|, k) relevant items at positions 1, 2, ….
    An empty truth set scores 0.
    """
    if not truth or k <= 0:
        return 0.0
    dcg = sum(1.0 / np.log2(i + 2) for i, hit in enumerate(_hits(ranked, truth, k)) if hit)
    idcg = sum(1.0 / np.log2(i + 2) for i in range(min(len(truth), k)))
    return float(dcg / idcg)


def recall_at_k(ranked: Sequence, truth: Collection, k: int) -> float:
    """Recall@k = (relevant items among the first k) / |truth|. An empty truth set scores 0."""
    if not truth or k <= 0:
        return 0.0
    return sum(_hits(ranked, truth, k)) / len(truth)


def average_precision_at_k(ranked: Sequence, truth: Collection, k: int) -> float:
    """AP@k = (sum over positions i = 1..k holding a relevant item of precision@i) / min(k, |truth|),
    where precision@i = (relevant items among the first i) / i. MAP@k is its mean over shoppers.
    An empty truth set scores 0.
    """
    if not truth or k <= 0:
        return 0.0
    found, total = 0, 0.0
    for i, hit in enumerate(_hits(ranked, truth, k), start=1):
        if hit:
            found += 1
            total += found / i
    return total / min(k, len(truth))


def catalogue_coverage(lists: Iterable[Sequence], catalogue_size: int, k: int | None = None) -> float:
    """Coverage = distinct items recommended (first k of each list) across all shoppers / catalogue size."""
    if catalogue_size <= 0:
        return 0.0
    shown = {item for ranked in lists for item in (list(ranked) if k is None else list(ranked)[:k])}
    return len(shown) / catalogue_size


def intra_list_diversity(vectors: np.ndarray) -> float | None:
    """Intra-list diversity of one list = mean over its unordered pairs of (1 − cosine similarity)
    between the items' vectors (rows of `vectors`, in any norm; a zero vector counts as
    similarity 0). None for a list of fewer than two items: it has no pairs.
    """
    vectors = np.asarray(vectors, dtype=np.float64)
    n = len(vectors)
    if n < 2:
        return None
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit = np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)
    cosine = unit @ unit.T
    upper = np.triu_indices(n, k=1)
    return float(np.mean(1.0 - cosine[upper]))


def mean_intra_list_diversity(lists_of_vectors: Iterable[np.ndarray]) -> float:
    """Mean over shoppers of intra_list_diversity; lists without a pair are left out (0 if none has one)."""
    values = [d for d in (intra_list_diversity(v) for v in lists_of_vectors) if d is not None]
    return float(np.mean(values)) if values else 0.0


def score_run(
    lists: dict[str, Sequence],
    truth: dict[str, Collection],
    k: int,
    catalogue_size: int,
    item_vectors: np.ndarray | None = None,
    item_row: dict | None = None,
) -> dict[str, float]:
    """All metrics of one method's run: mean NDCG@k, Recall@k and MAP@k over the shoppers in
    `truth` (a shopper with no list scores 0), coverage over the catalogue, and mean
    intra-list diversity when item vectors (and item id → row) are given.
    """
    shoppers = list(truth)
    ranked = {user: list(lists.get(user, ()))[:k] for user in shoppers}
    result = {
        "ndcg": float(np.mean([ndcg_at_k(ranked[u], truth[u], k) for u in shoppers])) if shoppers else 0.0,
        "recall": float(np.mean([recall_at_k(ranked[u], truth[u], k) for u in shoppers])) if shoppers else 0.0,
        "map": float(np.mean([average_precision_at_k(ranked[u], truth[u], k) for u in shoppers])) if shoppers else 0.0,
        "coverage": catalogue_coverage(ranked.values(), catalogue_size),
    }
    if item_vectors is not None and item_row is not None:
        result["diversity"] = mean_intra_list_diversity(
            np.asarray(item_vectors[[item_row[i] for i in dict.fromkeys(ranked[u]) if i in item_row]]) for u in shoppers
        )
    return result
