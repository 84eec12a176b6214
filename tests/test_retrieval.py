"""FAISS retrieval: exact search finds a planted neighbour, HNSW keeps recall, filters hold."""

from __future__ import annotations

import numpy as np
import pytest

from services.config import IndexConfig
from services.recommend.candidates import Retriever
from services.recommend.filters import ItemFilter
from services.recommend.vector_index import build_index


def unit_rows(rng, n, d=64):
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_exact_index_finds_a_planted_neighbour():
    rng = np.random.default_rng(7)
    vectors = unit_rows(rng, 2_000)
    query = unit_rows(rng, 1)[0]
    planted = query + 0.01 * unit_rows(rng, 1)[0]
    vectors[1234] = planted / np.linalg.norm(planted)
    index = build_index(vectors, IndexConfig())
    assert index.kind == "flat"
    scores, ids = index.search(query, 5)
    assert ids[0][0] == 1234
    assert scores[0][0] == pytest.approx(float(vectors[1234] @ query), abs=1e-5)
    assert list(scores[0]) == sorted(scores[0], reverse=True)


def test_hnsw_recall_against_exact():
    rng = np.random.default_rng(11)
    vectors, queries = unit_rows(rng, 5_000), unit_rows(rng, 200)
    exact = build_index(vectors, IndexConfig(exact_max_items=10_000))
    hnsw = build_index(vectors, IndexConfig(exact_max_items=1_000))
    assert (exact.kind, hnsw.kind) == ("flat", "hnsw")
    k = 10
    _, truth = exact.search(queries, k)
    _, found = hnsw.search(queries, k)
    recall = np.mean([len(set(t) & set(f)) / k for t, f in zip(truth, found)])
    assert recall >= 0.95, f"HNSW recall@10 {recall:.3f}"


def test_index_round_trips_through_a_file(tmp_path):
    from services.recommend.vector_index import VectorIndex

    rng = np.random.default_rng(3)
    vectors = unit_rows(rng, 1_500)
    config = IndexConfig(exact_max_items=1_000, hnsw_ef_search=64)
    build_index(vectors, config).save(tmp_path / "x.faiss")
    loaded = VectorIndex.load(tmp_path / "x.faiss", config)
    assert loaded.kind == "hnsw" and loaded.size == 1_500 and loaded.index.hnsw.efSearch == 64


def test_user_candidates_exclude_what_the_user_owns(sample_artifacts):
    retriever = Retriever(sample_artifacts)
    for user_id in sample_artifacts.users["user_id"].head(20):
        found = retriever.for_user(user_id, 20)
        assert len(found) == 20
        assert not {c.item_id for c in found} & sample_artifacts.owned_by(user_id)
        assert [c.score for c in found] == sorted((c.score for c in found), reverse=True)


def test_filters_never_shorten_the_list_silently(sample_artifacts):
    retriever = Retriever(sample_artifacts)
    items = sample_artifacts.items
    cheap = float(items["price"].quantile(0.2))
    user_id = sample_artifacts.users.sort_values("purchase_count").iloc[-1]["user_id"]
    found = retriever.for_user(user_id, 15, ItemFilter(max_price=cheap))
    assert len(found) == 15
    prices = items.set_index("item_id").loc[[c.item_id for c in found], "price"]
    assert (prices <= cheap).all()
    excluded = frozenset(c.item_id for c in found[:5])
    again = retriever.for_user(user_id, 15, ItemFilter(max_price=cheap, exclude_item_ids=excluded))
    assert len(again) == 15 and not excluded & {c.item_id for c in again}


def test_text_query_finds_matching_titles(sample_artifacts, sample_config):
    from services.recommend.embedding import TextEmbedder

    vector = TextEmbedder(sample_config).embed(["cake stand"])[0]
    found = Retriever(sample_artifacts).search(vector, 5)
    titles = sample_artifacts.items.set_index("item_id").loc[[c.item_id for c in found], "title"]
    assert any("CAKE" in title for title in titles), list(titles)


@pytest.mark.parametrize("exact_max_items", [10_000, 100])
def test_a_strict_filter_still_fills_k_from_either_index(exact_max_items):
    rng = np.random.default_rng(5)
    vectors = unit_rows(rng, 3_000)
    index = build_index(vectors, IndexConfig(exact_max_items=exact_max_items))
    allowed = np.zeros(3_000, dtype=bool)
    allowed[rng.choice(3_000, 40, replace=False)] = True  # 1.3% of the catalogue
    scores, ids = index.search(vectors[0], 10, allowed)
    assert (ids[0] >= 0).all() and allowed[ids[0]].all()
    # The exact answer among the allowed items.
    truth = np.argsort(-(vectors[allowed] @ vectors[0]))[:10]
    expected = np.flatnonzero(allowed)[truth]
    assert len(set(ids[0]) & set(expected)) >= (10 if index.kind == "flat" else 9)
