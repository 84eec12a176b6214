"""The recommendation flow: one contract over every candidate source and every ranker, the
owned-item rule, filters, cold start, reasons, diversity, and direct ranking."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from services.config import IndexConfig, TailorConfig
from services.errors import InvalidArgument, NotFound
from services.recommend.candidates import SOURCES, CandidateSet, gather, shopper_for
from services.recommend.filters import ItemFilter, repurchase_allowed
from services.recommend.flow import RecommendationFlow, ShopperQuery
from services.recommend.ranking import BlendRanker, diversify, train_ranker
from services.recommend.snapshot import snapshot_at
from services.recommend.vector_index import build_index
from services.shop_data import load_shop_data
from conftest import SAMPLE


@pytest.fixture(scope="module")
def flow(sample_artifacts, sample_config) -> RecommendationFlow:
    return RecommendationFlow(sample_artifacts, sample_config)


@pytest.fixture(scope="module")
def sample_events():
    return load_shop_data(SAMPLE).events


@pytest.fixture(scope="module")
def learned(sample_artifacts, sample_config, sample_events):
    """A LambdaRank model trained on the sample (the sample is below the default threshold,
    so the build itself uses the blend; lowering it here exercises the learned path)."""
    config = sample_config.model_copy(update={"ranking": sample_config.ranking.model_copy(update={"min_training_shoppers": 10})})
    trained = train_ranker(
        sample_events, sample_artifacts.items, np.asarray(sample_artifacts.item_vectors), sample_artifacts.index, config
    )
    assert trained.report["kind"] == "lightgbm", trained.report
    return trained


def shoppers(artifacts, n=15) -> list[str]:
    return list(artifacts.users.sort_values(["purchase_count", "user_id"], ascending=[False, True])["user_id"].head(n))


# --- one contract over every candidate source ----------------------------------------------


@pytest.mark.parametrize("source", SOURCES, ids=lambda s: s.name)
def test_every_source_keeps_the_contract(source, flow, sample_artifacts):
    snapshot = flow.snapshot
    rng = np.random.default_rng(0)
    for user_id in shoppers(sample_artifacts):
        shopper = shopper_for(snapshot, snapshot.history.user_row(user_id))
        allowed = rng.random(len(snapshot.items)) < 0.7
        found = source.find(snapshot, shopper, 20, allowed)
        assert len(found.rows) == len(found.scores) <= 20
        assert len(set(found.rows.tolist())) == len(found.rows), "no duplicates"
        assert allowed[found.rows].all(), "only allowed items"
        assert (np.diff(found.scores) <= 1e-9).all(), "best first"
        assert np.isfinite(found.scores).all()
        nothing = source.find(snapshot, shopper, 20, np.zeros(len(snapshot.items), dtype=bool))
        assert len(nothing.rows) == 0


def test_merged_candidates_name_every_source_that_found_them(flow, sample_artifacts):
    snapshot = flow.snapshot
    shopper = shopper_for(snapshot, snapshot.history.user_row(shoppers(sample_artifacts)[0]))
    allowed = np.ones(len(snapshot.items), dtype=bool)
    merged = gather(snapshot, shopper, allowed)
    separately = {s.name: set(s.find(snapshot, shopper, 50 if s.name != "history" else 300, allowed).rows.tolist()) for s in SOURCES}
    for position, row in enumerate(merged.rows):
        assert set(merged.sources_of(position)) == {name for name, rows in separately.items() if row in rows}
    assert set(merged.rows.tolist()) == set().union(*separately.values())


# --- one contract over every ranker ---------------------------------------------------------


@pytest.fixture(scope="module", params=["blend", "lightgbm"])
def ranked_flow(request, flow, learned):
    if request.param == "blend":
        flow.ranker = BlendRanker()
    else:
        flow.ranker = learned.ranker
    yield flow
    flow.ranker = BlendRanker()


def test_every_ranker_gives_k_distinct_items_best_first_with_reasons(ranked_flow, sample_artifacts):
    for user_id in shoppers(sample_artifacts):
        ranked = ranked_flow.recommend(ShopperQuery(user_id=user_id, k=10))
        assert len(ranked) == 10
        assert len({r.item_id for r in ranked}) == 10
        assert all(r.reasons and all(r.reasons) for r in ranked)
        assert all(r.sources for r in ranked)
        again = ranked_flow.recommend(ShopperQuery(user_id=user_id, k=10))
        assert [r.item_id for r in again] == [r.item_id for r in ranked], "deterministic"


def test_without_diversity_the_list_follows_the_score(ranked_flow, sample_artifacts):
    ranking = ranked_flow.snapshot.config.ranking
    original = ranking.diversity
    try:
        ranking.diversity = 0.0
        for user_id in shoppers(sample_artifacts, 5):
            scores = [r.score for r in ranked_flow.recommend(ShopperQuery(user_id=user_id, k=10))]
            assert scores == sorted(scores, reverse=True)
    finally:
        ranking.diversity = original


def test_a_batch_ranks_as_each_request_alone(ranked_flow, sample_artifacts):
    jobs = [(*ranked_flow.candidates(ShopperQuery(user_id=u, k=5)), 5) for u in shoppers(sample_artifacts, 6)]
    together = ranked_flow.rank_many(jobs)
    alone = [ranked_flow.rank(shopper, candidates, k) for shopper, candidates, k in jobs]
    assert [[r.item_id for r in one] for one in together] == [[r.item_id for r in one] for one in alone]


def test_the_learned_ranker_reports_validation_and_importances(learned):
    report = learned.report
    assert 0 < report["validation"]["ndcg_at_10"] <= 1 and report["validation"]["rounds"] >= 1
    assert set(report["importance"]) == set(report["features"])
    assert 0 < report["candidate_recall"] <= 1


def test_above_fit_max_shoppers_the_ranker_learns_from_a_sample_and_says_so(learned, sample_artifacts, sample_config, sample_events):
    assert learned.sampling == {}
    labelled = learned.report["labelled_shoppers"]
    ranking = sample_config.ranking.model_copy(update={"min_training_shoppers": 5, "fit_max_shoppers": labelled - 3})
    config = sample_config.model_copy(update={"ranking": ranking})
    trained = train_ranker(
        sample_events, sample_artifacts.items, np.asarray(sample_artifacts.item_vectors), sample_artifacts.index, config
    )
    assert trained.sampling == {"fitted_on_shoppers": labelled - 3, "of": labelled}
    assert trained.report["labelled_shoppers"] == labelled
    assert trained.report["training_rows"] < learned.report["training_rows"]


# --- the owned-item rule ---------------------------------------------------------------------


def test_a_one_off_item_the_shopper_bought_never_comes_back_and_a_reordered_one_can(flow, sample_artifacts):
    snapshot = flow.snapshot
    came_back = 0
    for user_id in sample_artifacts.users["user_id"]:
        row = snapshot.history.user_row(user_id)
        owned = set(snapshot.history.acquired(row).tolist())
        for ranked in flow.recommend(ShopperQuery(user_id=user_id, k=30)):
            item = int(snapshot.item_row[ranked.item_id])
            if item in owned:
                assert snapshot.reorderable[item], f"one-off item {ranked.item_id} offered again to {user_id}"
                came_back += 1
    assert came_back > 0, "in a shop of re-orders, some re-orderable items must come back"


def test_exclude_purchased_offers_only_what_is_new_to_the_shopper(flow, sample_artifacts):
    for user_id in shoppers(sample_artifacts):
        owned = sample_artifacts.owned_by(user_id)
        ranked = flow.recommend(ShopperQuery(user_id=user_id, k=20, exclude_purchased=True))
        assert len(ranked) == 20 and not {r.item_id for r in ranked} & owned


def test_the_rule_on_crafted_events():
    """Item R is re-ordered by two shoppers, item O never; u owns both."""
    items = pd.DataFrame({"item_id": ["R", "O", "N"], "title": ["Tea", "Pot", "Cup"], "price": [1.0, 2.0, 3.0]})
    rows = [
        ("u", "R", "2024-01-01", "i1"), ("u", "R", "2024-02-01", "i2"), ("u", "O", "2024-01-01", "i1"),
        ("v", "R", "2024-01-05", "i3"), ("v", "R", "2024-02-05", "i4"), ("v", "N", "2024-02-05", "i4"),
    ]
    events = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "session_id"])
    events["timestamp"] = pd.to_datetime(events["timestamp"])
    events = events.assign(event_type="purchase", quantity=1.0, price=1.0, text="", rating=np.nan)
    vectors = np.eye(3, 8, dtype=np.float32)
    config = TailorConfig()
    snapshot = snapshot_at(events, items, vectors, build_index(vectors, IndexConfig()), pd.Timestamp("2024-03-01"), config)
    assert snapshot.reorderable.tolist() == [True, False, False]
    u = snapshot.history.user_row("u")
    owned = snapshot.history.acquired(u)
    everything = np.ones(3, dtype=bool)
    assert repurchase_allowed(everything, owned, snapshot.reorderable, "reorderable").tolist() == [True, False, True]
    assert repurchase_allowed(everything, owned, snapshot.reorderable, "never").tolist() == [False, False, True]
    assert repurchase_allowed(everything, owned, snapshot.reorderable, "always").tolist() == [True, True, True]
    found = gather(snapshot, shopper_for(snapshot, u), repurchase_allowed(everything, owned, snapshot.reorderable, "reorderable"))
    assert set(found.rows.tolist()) == {0, 2}
    # u re-ordered R after 31 days: the history knows the interval.
    pairs = snapshot.history.pairs_of(u)
    interval = dict(zip(snapshot.history.pair_item[pairs].tolist(), snapshot.history.pair_interval[pairs].tolist()))
    assert interval[0] == pytest.approx(31.0) and np.isnan(interval[1])


# --- filters, cold start, errors ------------------------------------------------------------


def test_filters_are_honoured(flow, sample_artifacts):
    items = sample_artifacts.items.set_index("item_id")
    cheap = float(items["price"].quantile(0.3))
    excluded = frozenset(items.index[:200])
    user_id = shoppers(sample_artifacts)[0]
    ranked = flow.recommend(ShopperQuery(user_id=user_id, k=15, item_filter=ItemFilter(max_price=cheap, exclude_item_ids=excluded)))
    assert len(ranked) == 15
    assert all(items.loc[r.item_id, "price"] <= cheap and r.item_id not in excluded for r in ranked)
    assert flow.recommend(ShopperQuery(user_id=user_id, k=5, item_filter=ItemFilter(categories=("no such category",)))) == []


def test_an_unknown_shopper_with_cold_start_gets_a_list(flow, sample_artifacts):
    with pytest.raises(NotFound, match="user_id"):
        flow.recommend(ShopperQuery(user_id="stranger", k=5))
    with pytest.raises(InvalidArgument, match="user_id"):
        flow.recommend(ShopperQuery(user_id="", k=5))
    ranked = flow.recommend(ShopperQuery(user_id="stranger", k=5, cold_start=True))
    assert len(ranked) == 5 and all(set(r.sources) <= {"popular", "recent"} for r in ranked)
    viewed = sample_artifacts.items["item_id"].iloc[5]
    with_context = flow.recommend(ShopperQuery(cold_start=True, k=10, context_item_ids=(viewed,)))
    assert len(with_context) == 10
    assert any({"co_purchase", "ann"} & set(r.sources) for r in with_context), "the context item's neighbours"
    with pytest.raises(NotFound, match=r"context_item_ids\[1\]"):
        flow.recommend(ShopperQuery(cold_start=True, k=3, context_item_ids=(viewed, "NO-SUCH-ITEM")))


def test_reasons_say_why_in_words(flow, sample_artifacts):
    reasons = [reason for user_id in shoppers(sample_artifacts) for r in flow.recommend(ShopperQuery(user_id=user_id, k=10)) for reason in r.reasons]
    assert any(reason.startswith("you order this about every ") for reason in reasons)
    titles = set(sample_artifacts.items["title"])
    for reason in reasons:
        if reason.startswith("often bought with "):
            assert reason.removeprefix("often bought with ") in titles


def test_a_direct_rank_of_the_flows_own_candidates_matches_recommend(flow, sample_artifacts):
    for user_id in shoppers(sample_artifacts, 5):
        query = ShopperQuery(user_id=user_id, k=10)
        _, candidates = flow.candidates(query)
        ids = [str(flow.snapshot.item_ids[r]) for r in candidates.rows]
        shopper, explicit = flow.explicit_candidates(query, ids, None)
        assert [r.item_id for r in flow.rank(shopper, explicit, 10)] == [r.item_id for r in flow.recommend(query)]


def test_explicit_candidates_follow_the_rules(flow, sample_artifacts):
    user_id = shoppers(sample_artifacts)[0]
    owned = sorted(sample_artifacts.owned_by(user_id))
    ids = owned[:5] + owned[:5]
    shopper, candidates = flow.explicit_candidates(ShopperQuery(user_id=user_id, k=5, exclude_purchased=True), ids, None)
    assert len(candidates) == 0
    with pytest.raises(NotFound, match=r"item_ids\[1\]"):
        flow.explicit_candidates(ShopperQuery(user_id=user_id, k=5), [owned[0], "NOPE"], None)


def test_diversity_trades_score_for_variety():
    rng = np.random.default_rng(1)
    base = rng.standard_normal(16)
    vectors = np.array([base + 0.01 * rng.standard_normal(16) for _ in range(10)] + list(rng.standard_normal((10, 16))))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    scores = np.linspace(2.0, 1.0, 20)  # the ten near-duplicates score highest
    plain = diversify(scores, vectors, 5, 0.0)
    assert plain.tolist() == [0, 1, 2, 3, 4]
    varied = diversify(scores, vectors, 5, 0.5)
    assert varied[0] == 0 and len(set(varied.tolist()) & set(range(10))) < 5


def test_candidate_sets_from_a_caller_keep_their_sources():
    merged = CandidateSet.from_sources(np.array([4, 2]), [{"ann": 0.9, "popular": 10.0}, {"history": 2.0}])
    assert merged.sources_of(0) == ("ann", "popular") and merged.sources_of(1) == ("history",)
