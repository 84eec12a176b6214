"""FAISS retrieval: exact search finds a planted neighbour, every index kind keeps recall against
exact search and survives a round trip through a file, filters hold."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from services.config import IndexConfig
from services.recommend.filters import ItemFilter
from services.recommend.flow import RecommendationFlow, ShopperQuery
from services.recommend.vector_index import VectorIndex, build_index, index_kind, ivf_lists, ivf_nprobe


@pytest.fixture(autouse=True)
def one_faiss_thread():
    """One FAISS thread: the HNSW graph and k-means come out the same every run, and a busy 2-core
    machine does not leave a second OpenMP thread waiting for a core (seconds become minutes)."""
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(threads)


def unit_rows(rng, n, d=64):
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def clustered_rows(rng, n, d=64, clusters=60):
    """Unit rows around a few centres, like embeddings (uniform noise has no neighbourhoods to index)."""
    centres = rng.standard_normal((clusters, d)).astype(np.float32)
    x = centres[rng.integers(0, clusters, n)] + 0.8 * rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# Thresholds forced low so that a few thousand rows build every kind.
KIND_CONFIGS = {
    "flat": IndexConfig(),
    "hnsw": IndexConfig(exact_max_items=500, hnsw_max_items=100_000),
    "ivf_pq4_refine": IndexConfig(exact_max_items=500),
    "ivf_sq8_refine": IndexConfig(exact_max_items=500, ivf_encoding="sq8"),
    "ivf_pq4": IndexConfig(exact_max_items=500, ivf_refine_factor=0),
    "ivf_sq8": IndexConfig(exact_max_items=500, ivf_encoding="sq8", ivf_refine_factor=0),
}
# ivf_pq4 ranks by 4-bit codes alone: it is built and filtered correctly but is no match for exact search.
MIN_RECALL = {"flat": 1.0, "ivf_pq4": 0.4}


def recall(truth, found):
    return float(np.mean([len(set(t) & set(f) - {-1}) / len(t) for t, f in zip(truth, found)]))


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


def test_the_index_is_chosen_by_size():
    config = IndexConfig()
    assert index_kind(20_000, config) == "flat"
    assert index_kind(20_001, config) == index_kind(1_000_000, config) == "ivf_pq4_refine"
    assert index_kind(50_000, IndexConfig(hnsw_max_items=100_000)) == "hnsw"
    assert index_kind(200_000, IndexConfig(hnsw_max_items=100_000, ivf_encoding="sq8")) == "ivf_sq8_refine"
    # √items × 4 lists; 5% of them scanned, at least 64 (bench/bench_retrieval.py measured these).
    assert (ivf_lists(1_000_000, config), ivf_nprobe(4_000, config)) == (4_000, 200)
    assert (ivf_lists(50_000, config), ivf_nprobe(894, config)) == (894, 64)
    assert ivf_lists(3_000, config) == 3_000 // 39  # never fewer than 39 training points a list
    assert ivf_nprobe(4_000, IndexConfig(ivf_nprobe=10)) == 10


@pytest.mark.parametrize("kind", sorted(KIND_CONFIGS))
def test_every_index_kind_keeps_recall_against_exact(kind):
    rng = np.random.default_rng(11)
    vectors, queries = clustered_rows(rng, 5_000), clustered_rows(rng, 200)
    exact = build_index(vectors, IndexConfig(exact_max_items=10_000))
    index = build_index(vectors, KIND_CONFIGS[kind])
    assert (exact.kind, index.kind) == ("flat", kind)
    k = 10
    _, truth = exact.search(queries, k)
    scores, found = index.search(queries, k)
    assert (found >= 0).all()
    assert recall(truth, found) >= MIN_RECALL.get(kind, 0.95), f"{kind} recall@10 {recall(truth, found):.3f}"
    assert (np.diff(scores, axis=1) <= 1e-6).all()  # best first
    if kind in ("flat", "hnsw") or kind.endswith("_refine"):  # scores are exact cosines
        np.testing.assert_allclose(scores, np.einsum("qd,qkd->qk", queries, vectors[found]), atol=1e-5)


@pytest.mark.parametrize("kind", sorted(set(KIND_CONFIGS) - {"flat"}))
def test_index_round_trips_through_a_file_with_search_settings_from_the_config(tmp_path, kind):
    rng = np.random.default_rng(3)
    vectors, queries = clustered_rows(rng, 3_000), clustered_rows(rng, 20)
    built = build_index(vectors, KIND_CONFIGS[kind])
    built.save(tmp_path / "x.faiss")
    same = VectorIndex.load(tmp_path / "x.faiss", KIND_CONFIGS[kind])
    assert (same.kind, same.size, same.dimension) == (kind, 3_000, 64)
    for a, b in zip(built.search(queries, 10), same.search(queries, 10)):
        np.testing.assert_array_equal(a, b)
    # Search-time settings come from the configuration, not from the file.
    other = KIND_CONFIGS[kind].model_copy(update={"hnsw_ef_search": 40, "ivf_nprobe": 7, "ivf_refine_factor": 3.0})
    loaded = VectorIndex.load(tmp_path / "x.faiss", other)
    if kind == "hnsw":
        assert loaded.index.hnsw.efSearch == 40
    else:
        assert loaded._ivf.nprobe == 7 and loaded._ivf.nlist == ivf_lists(3_000, other)
    if kind.endswith("_refine"):
        assert loaded.index.k_factor == 3.0


def test_retrieve_by_user_leaves_out_what_the_user_owns_when_asked(sample_artifacts, sample_config):
    flow = RecommendationFlow(sample_artifacts, sample_config)
    for user_id in sample_artifacts.users["user_id"].head(20):
        found = flow.retrieve(ShopperQuery(user_id=user_id, k=20, exclude_purchased=True))
        assert len(found) == 20 and len({item_id for item_id, _ in found}) == 20
        assert not {item_id for item_id, _ in found} & sample_artifacts.owned_by(user_id)
        assert all(sources for _, sources in found)


def test_filters_never_shorten_the_list_silently(sample_artifacts, sample_config):
    flow = RecommendationFlow(sample_artifacts, sample_config)
    items = sample_artifacts.items
    cheap = float(items["price"].quantile(0.2))
    user_id = sample_artifacts.users.sort_values("purchase_count").iloc[-1]["user_id"]
    vector = np.asarray(sample_artifacts.user_vectors[sample_artifacts.user_index(user_id)])
    found = flow.similar(vector, 15, ItemFilter(max_price=cheap))
    assert len(found) == 15
    prices = items.set_index("item_id").loc[[item_id for item_id, _ in found], "price"]
    assert (prices <= cheap).all()
    assert [score for _, score in found] == sorted((score for _, score in found), reverse=True)
    excluded = frozenset(item_id for item_id, _ in found[:5])
    again = flow.similar(vector, 15, ItemFilter(max_price=cheap, exclude_item_ids=excluded))
    assert len(again) == 15 and not excluded & {item_id for item_id, _ in again}


def test_text_query_finds_matching_titles(sample_artifacts, sample_config):
    from services.recommend.embedding import TextEmbedder

    vector = TextEmbedder(sample_config).embed(["cake stand"])[0]
    found = RecommendationFlow(sample_artifacts, sample_config).similar(vector, 5, ItemFilter())
    titles = sample_artifacts.items.set_index("item_id").loc[[item_id for item_id, _ in found], "title"]
    assert any("CAKE" in title for title in titles), list(titles)


@pytest.mark.parametrize("exact_filter", [True, False], ids=["exact-over-allowed", "approximate"])
@pytest.mark.parametrize("kind", sorted(KIND_CONFIGS))
def test_a_strict_filter_still_fills_k_from_every_index(kind, exact_filter):
    rng = np.random.default_rng(5)
    vectors = clustered_rows(rng, 3_000)
    config = KIND_CONFIGS[kind].model_copy(update={"filter_exact_max_items": 20_000 if exact_filter else 0})
    index = build_index(vectors, config)
    assert index.kind == kind
    allowed = np.zeros(3_000, dtype=bool)
    allowed[rng.choice(3_000, 40, replace=False)] = True  # 1.3% of the catalogue
    queries = clustered_rows(rng, 20)
    scores, ids = index.search(queries, 10, allowed)
    assert (ids >= 0).all() and allowed[ids].all()
    # The exact answer among the allowed items.
    expected = np.flatnonzero(allowed)[np.argsort(-(queries @ vectors[allowed].T), axis=1)[:, :10]]
    assert recall(expected, ids) >= MIN_RECALL.get(kind, 0.9 if exact_filter or kind == "hnsw" else 0.95)
    # Fewer allowed items than k: all of them, then -1.
    few = np.zeros(3_000, dtype=bool)
    few[[3, 1_000, 2_999]] = True
    _, ids = index.search(queries[:2], 10, few)
    assert all(set(row[:3]) == {3, 1_000, 2_999} and (row[3:] == -1).all() for row in ids)


@pytest.mark.parametrize("kind", sorted(set(KIND_CONFIGS) - {"flat", "ivf_pq4"}))
def test_a_wide_filter_keeps_recall_among_the_allowed_items(kind):
    rng = np.random.default_rng(8)
    vectors, queries = clustered_rows(rng, 5_000), clustered_rows(rng, 100)
    config = KIND_CONFIGS[kind].model_copy(update={"filter_exact_max_items": 100})  # 1,500 allowed: approximate
    index = build_index(vectors, config)
    allowed = rng.random(5_000) < 0.3
    _, ids = index.search(queries, 10, allowed)
    assert (ids >= 0).all() and allowed[ids].all()
    expected = np.flatnonzero(allowed)[np.argsort(-(queries @ vectors[allowed].T), axis=1)[:, :10]]
    assert recall(expected, ids) >= 0.95, f"{kind} filtered recall@10 {recall(expected, ids):.3f}"
