"""Offline evaluation: metrics against hand-computed examples, one contract over every
baseline, the time split (nothing on/after the cut-off is ever learnt from), the harness end
to end on the shipped sample, and `tailor evaluate`'s errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from clients.cli import app
from services.evaluation import baselines, harness, metrics
from services.evaluation.baselines import BASELINES, AnnOnly, Popularity, RecentPopularity, Repeat
from services.insights.history import positive_events
from services.evaluation.harness import EvaluationError, evaluate, time_split
from services.shop_data import ShopData, load_shop_data
from tests.conftest import SAMPLE, SHARED

runner = CliRunner()
SAMPLE_CUTOFF = pd.Timestamp("2011-09-01")
# Small grids keep the end-to-end run in seconds; the full grids run in `tailor evaluate`.
SMALL_GRIDS = {
    "recent_popularity": [{"days": 30}, {"days": 90}],
    "repeat": [{"days": 30}, {"days": 90}],
    "itemknn": [{"similarity": "cosine", "neighbours": 50}, {"similarity": "bm25", "neighbours": 50}],
    "als": [{"factors": 16, "regularization": 1.0, "alpha": 1.0, "weighting": w} for w in ("bm25", "plain")],
}


@pytest.fixture(scope="module")
def sample_shop() -> ShopData:
    return load_shop_data(SAMPLE)


def log(rows: list[tuple], items: tuple[str, ...] = ("A", "B", "C", "D", "E")) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(events, items) from rows of (user, item, day, basket[, event_type[, rating]])."""
    records = []
    for row in rows:
        user, item, day, basket, *rest = row
        kind = rest[0] if rest else "purchase"
        rating = rest[1] if len(rest) > 1 else np.nan
        records.append(
            {"user_id": user, "item_id": item, "event_type": kind, "session_id": basket, "quantity": 1.0,
             "price": 1.0, "timestamp": pd.Timestamp("2024-01-01") + pd.Timedelta(days=day), "text": "", "rating": rating}
        )
    table = pd.DataFrame({"item_id": list(items), "title": [f"item {i}" for i in items]})
    return pd.DataFrame(records), table


# --- metrics, by hand ------------------------------------------------------------------------

# ranked a b c d against truth {a, c, x}: hits at positions 1 and 3.
RANKED, TRUTH = ["a", "b", "c", "d"], {"a", "c", "x"}


def test_ndcg_discounts_each_hit_by_log2_of_its_position_plus_one_over_the_ideal_list():
    dcg = 1 / math.log2(2) + 1 / math.log2(4)                      # 1.5
    idcg = 1 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(4)  # three relevant items fit in k=4
    assert metrics.ndcg_at_k(RANKED, TRUTH, 4) == pytest.approx(dcg / idcg)
    assert metrics.ndcg_at_k(RANKED, TRUTH, 4) == pytest.approx(0.703918, abs=1e-6)
    # k=2: one hit at position 1; the ideal list holds min(3, 2) = 2 items.
    assert metrics.ndcg_at_k(RANKED, TRUTH, 2) == pytest.approx(1 / (1 + 1 / math.log2(3)))


def test_ndcg_is_one_for_an_ideal_list_even_when_the_truth_is_longer_than_k():
    assert metrics.ndcg_at_k(["a", "c"], TRUTH, 2) == pytest.approx(1.0)


def test_recall_is_hits_over_the_size_of_the_truth():
    assert metrics.recall_at_k(RANKED, TRUTH, 4) == pytest.approx(2 / 3)
    assert metrics.recall_at_k(RANKED, TRUTH, 2) == pytest.approx(1 / 3)


def test_average_precision_sums_precision_at_each_hit_over_min_of_k_and_truth():
    assert metrics.average_precision_at_k(RANKED, TRUTH, 4) == pytest.approx((1 / 1 + 2 / 3) / 3)
    assert metrics.average_precision_at_k(RANKED, TRUTH, 2) == pytest.approx(1 / 2)
    assert metrics.average_precision_at_k(["b", "a"], {"a"}, 10) == pytest.approx(1 / 2)


def test_no_hit_or_no_truth_scores_zero_and_a_repeated_item_counts_once():
    for metric in (metrics.ndcg_at_k, metrics.recall_at_k, metrics.average_precision_at_k):
        assert metric(["b", "d"], TRUTH, 2) == 0.0
        assert metric(["a"], set(), 2) == 0.0
    assert metrics.recall_at_k(["a", "a", "a"], {"a", "c"}, 3) == pytest.approx(1 / 2)
    assert metrics.ndcg_at_k(["a", "a"], {"a", "c"}, 2) == pytest.approx(1 / (1 + 1 / math.log2(3)))


def test_coverage_is_distinct_items_recommended_over_the_catalogue():
    assert metrics.catalogue_coverage([["a", "b"], ["b", "c"]], 10) == pytest.approx(0.3)
    assert metrics.catalogue_coverage([["a", "b", "c"], ["d"]], 10, k=1) == pytest.approx(0.2)


def test_diversity_is_the_mean_pairwise_cosine_distance_within_a_list():
    east, north = [1.0, 0.0], [0.0, 2.0]
    assert metrics.intra_list_diversity(np.array([east, north])) == pytest.approx(1.0)
    # pairs: (east, east) 0, (east, north) 1, (east, north) 1
    assert metrics.intra_list_diversity(np.array([east, east, north])) == pytest.approx(2 / 3)
    assert metrics.intra_list_diversity(np.array([east])) is None
    # the mean over lists leaves out a list without pairs
    lists = [np.array([east, north]), np.array([east, east]), np.array([east])]
    assert metrics.mean_intra_list_diversity(lists) == pytest.approx(0.5)


def test_a_run_is_scored_as_the_mean_over_shoppers_and_a_missing_list_scores_zero():
    vectors = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    row = {"a": 0, "b": 1, "c": 2}
    run = {"u1": ["a", "b"], "u2": ["c", "a"]}
    truth = {"u1": {"a"}, "u2": {"b"}, "u3": {"a"}}
    scores = metrics.score_run(run, truth, 2, catalogue_size=4, item_vectors=vectors, item_row=row)
    assert scores["ndcg"] == pytest.approx(1 / 3)
    assert scores["recall"] == pytest.approx(1 / 3)
    assert scores["map"] == pytest.approx(1 / 3)
    assert scores["coverage"] == pytest.approx(3 / 4)
    assert scores["diversity"] == pytest.approx((1.0 + 0.0) / 2)


# --- baselines ---------------------------------------------------------------------------------


def contract_methods(sample_artifacts):
    return [cls() for cls in BASELINES] + [AnnOnly(sample_artifacts)]


def test_every_method_gives_k_distinct_known_items_and_the_same_list_twice(sample_shop, sample_artifacts):
    items = sample_shop.items.reset_index(drop=True)
    known = set(items["item_id"])
    users = sorted(sample_shop.events["user_id"].unique())[:8] + ["no such shopper"]
    for method in contract_methods(sample_artifacts):
        first = method.fit(sample_shop.events, items).recommend(users, 10)
        again = type(method)(**({"artifacts": sample_artifacts} if isinstance(method, AnnOnly) else {}))
        second = again.fit(sample_shop.events, items).recommend(users, 10)
        assert len(first) == len(users), method.name
        for ranked in first:
            assert len(ranked) == 10 and len(set(ranked)) == 10, method.name
            assert set(ranked) <= known, method.name
        assert first == second, f"{method.name} is not deterministic"


def test_every_baseline_refuses_unknown_settings():
    for cls in BASELINES:
        with pytest.raises(TypeError):
            cls(no_such_setting=1)
        for params in cls.param_grid():
            cls(**params)


def test_popularity_counts_distinct_buyers_not_purchases():
    events, items = log([("u1", "A", 0, "1"), ("u1", "A", 1, "2"), ("u1", "A", 2, "3"), ("u2", "B", 0, "4"), ("u3", "B", 1, "5")])
    assert Popularity().fit(events, items).recommend(["u1"], 2) == [["B", "A"]]


def test_recent_popularity_ranks_the_window_first_then_everything_else():
    events, items = log([("u1", "A", 0, "1"), ("u2", "A", 1, "2"), ("u3", "A", 2, "3"), ("u4", "B", 99, "4"), ("u5", "C", 100, "5")])
    assert RecentPopularity(days=10).fit(events, items).recommend(["u1"], 3) == [["B", "C", "A"]]
    assert RecentPopularity(days=365).fit(events, items).recommend(["u1"], 3) == [["A", "B", "C"]]


def test_repeat_puts_most_bought_first_breaks_ties_by_recency_then_fills_with_recent_popularity():
    events, items = log(
        [("u1", "A", 0, "1"), ("u1", "B", 1, "2"), ("u1", "B", 2, "3"), ("u1", "C", 3, "4"),
         # two lines of one basket are one purchase
         ("u1", "A", 4, "5"), ("u1", "A", 4, "5"),
         ("u2", "D", 20, "6"), ("u3", "D", 20, "7"), ("u4", "E", 20, "8")]
    )
    model = Repeat(days=7).fit(events, items)
    assert model.recommend(["u1"], 5) == [["A", "B", "C", "D", "E"]]
    assert model.recommend(["u2"], 2) == [["D", "E"]]


def test_reviews_rated_four_or_more_are_the_positives_when_nobody_purchases():
    events, _ = log([("u1", "A", 0, "", "review", 5.0), ("u1", "B", 0, "", "review", 2.0), ("u2", "C", 0, "", "review", 4.0)])
    assert sorted(positive_events(events)["item_id"]) == ["A", "C"]
    with_purchase, _ = log([("u1", "A", 0, "", "review", 5.0), ("u1", "B", 0, "1")])
    assert list(positive_events(with_purchase)["item_id"]) == ["B"]


def test_tuning_picks_the_setting_with_the_best_validation_ndcg_and_refines_around_it():
    # u1..u4 rebought what they had: repeat wins; the fill window decides nothing here.
    rows = [(u, "A", 0, f"{u}-0") for u in ("u1", "u2", "u3", "u4")] + [(u, "A", 40, f"{u}-1") for u in ("u1", "u2", "u3", "u4")]
    events, items = log(rows)
    split = time_split(events, pd.Timestamp("2024-01-20"))
    params, score, tried = harness.tune(Repeat, split, items, 3, seed=0)
    assert score == pytest.approx(1.0) and params == Repeat.param_grid()[0] and tried == len(Repeat.param_grid())


# --- the time split: nothing on/after the cut-off is learnt from --------------------------------


def planted(shop: ShopData, cutoff: pd.Timestamp) -> ShopData:
    """The sample plus item PLANTED, bought by every shopper, only on/after the cut-off."""
    items = pd.concat([shop.items, shop.items.iloc[[0]].assign(item_id="PLANTED", title="Planted teapot")], ignore_index=True)
    late = pd.DataFrame(
        {"user_id": sorted(shop.events["user_id"].unique())}
    ).assign(item_id="PLANTED", event_type="purchase", session_id="late", quantity=1.0, price=1.0,
             timestamp=cutoff + pd.Timedelta(days=2), text="", rating=np.nan)
    return ShopData(items=items, events=pd.concat([shop.events, late], ignore_index=True), report=shop.report)


def test_the_split_trains_only_on_events_before_the_cutoff_and_scores_what_came_after(sample_shop):
    shop = planted(sample_shop, SAMPLE_CUTOFF)
    split = time_split(shop.events, SAMPLE_CUTOFF)
    assert split.train["timestamp"].max() < SAMPLE_CUTOFF
    assert "PLANTED" not in set(split.train["item_id"])
    bought = positive_events(shop.events)
    before = set(bought[bought["timestamp"] < SAMPLE_CUTOFF]["user_id"])
    assert set(split.truth) == before  # every shopper bought PLANTED after the cut-off
    assert all("PLANTED" in truth for truth in split.truth.values())
    # re-orders count: an item bought before and after is in the truth
    late = bought[bought["timestamp"] >= SAMPLE_CUTOFF]
    reorders = late.merge(bought[bought["timestamp"] < SAMPLE_CUTOFF], on=["user_id", "item_id"])
    assert len(reorders) and all(item in split.truth[user] for user, item in zip(reorders["user_id"], reorders["item_id"]))


def test_an_item_bought_only_after_the_cutoff_is_never_in_a_baseline_trained_before_it(sample_shop):
    shop = planted(sample_shop, SAMPLE_CUTOFF)
    split = time_split(shop.events, SAMPLE_CUTOFF)
    items = shop.items.reset_index(drop=True)
    users = list(split.truth)
    for cls in BASELINES:
        model = cls().fit(split.train, items)
        assert not any("PLANTED" in ranked[:20] for ranked in model.recommend(users, 20)), cls.name
    assert "PLANTED" in set(baselines.Popularity().fit(shop.events, items).recommend(users[:1], 1)[0])


def test_the_validation_split_lies_inside_the_training_period(sample_shop):
    split = time_split(sample_shop.events, SAMPLE_CUTOFF)
    validation = harness.validation_split(split.train, SAMPLE_CUTOFF, 30)
    assert validation.cutoff < SAMPLE_CUTOFF
    assert validation.train["timestamp"].max() < validation.cutoff
    assert validation.truth


# --- the harness end to end ----------------------------------------------------------------------


def test_evaluate_scores_every_method_on_the_sample_and_nothing_sees_the_future(sample_shop, sample_config, monkeypatch, tmp_path):
    shop = planted(sample_shop, SAMPLE_CUTOFF)
    latest_seen: dict[str, pd.Timestamp] = {}

    def spy(name, fit):
        def wrapped(self, events, items, *args, **kwargs):
            latest_seen[name] = max(latest_seen.get(name, events["timestamp"].min()), events["timestamp"].max())
            assert "PLANTED" not in set(events["item_id"])
            return fit(self, events, items, *args, **kwargs)

        return wrapped

    for cls in BASELINES + (AnnOnly,):
        monkeypatch.setattr(cls, "fit", spy(cls.name, cls.fit))
    import services.build

    build = services.build.build_from_shop_data

    def spied_build(shop_data, *args, **kwargs):
        latest_seen["tailor"] = shop_data.events["timestamp"].max()
        assert "PLANTED" not in set(shop_data.events["item_id"])
        return build(shop_data, *args, **kwargs)

    monkeypatch.setattr(services.build, "build_from_shop_data", spied_build)
    steps = []
    result = evaluate(shop, "2011-09-01", 5, sample_config, lambda step, done, total: steps.append(step), tmp_path, grids=SMALL_GRIDS)

    assert set(latest_seen) == set(harness.METHODS)
    assert all(seen < SAMPLE_CUTOFF for seen in latest_seen.values()), latest_seen
    assert result["k"] == 5 and result["cutoff"].startswith("2011-09-01") and result["shoppers_scored"] > 0
    assert set(result["methods"]) == set(harness.METHODS) | {harness.WITHOUT_DIVERSITY}
    assert result["methods"]["tailor"]["params"]["ranker"] in ("blend", "lightgbm")
    versus = result["tailor_vs_best_other"]
    assert versus["method"] in set(harness.METHODS) - {"tailor"}
    assert versus["ndcg_ratio"] == pytest.approx(result["methods"]["tailor"]["ndcg"] / result["methods"][versus["method"]]["ndcg"], rel=1e-3)
    for name, scores in result["methods"].items():
        for metric in harness.METRICS:
            assert 0.0 <= scores[metric] <= 1.0, (name, metric)
    assert result["methods"]["als"]["params"]["weighting"] in ("bm25", "plain")
    assert result["validation"]["shoppers"] > 0
    assert "score tailor" in steps and "tune als" in steps
    json.dumps(result)  # the --json file is this object
    assert not any(tmp_path.iterdir()), "the temporary build is left behind"


def test_evaluate_refuses_a_cutoff_outside_the_data_or_one_with_nobody_to_score(sample_shop, sample_config):
    with pytest.raises(EvaluationError, match="outside the data's time span"):
        evaluate(sample_shop, "2030-01-01", 10, sample_config)
    with pytest.raises(EvaluationError, match="not a date"):
        evaluate(sample_shop, "ninth of November", 10, sample_config)
    events, items = log([("u1", "A", 0, "1"), ("u2", "B", 40, "2")])
    with pytest.raises(EvaluationError, match="no shopper to score"):
        evaluate(ShopData(items, events, report=None), "2024-01-20", 10, sample_config)


def test_the_default_cutoff_is_thirty_days_before_the_last_event(sample_shop):
    last = sample_shop.events["timestamp"].max()
    assert harness.default_cutoff(sample_shop.events) == (last - pd.Timedelta(days=30)).normalize()


# --- the command line ----------------------------------------------------------------------------


def test_evaluate_command_rejects_a_bad_date_before_reading_anything(tmp_path):
    result = runner.invoke(app, ["evaluate", "--data", str(tmp_path / "nowhere"), "--cutoff", "2011-13-45"])
    assert result.exit_code == 2
    assert "not an ISO date" in " ".join(result.output.split())


def test_evaluate_command_says_when_the_cutoff_is_outside_the_data():
    result = runner.invoke(app, ["evaluate", "--data", str(SAMPLE), "--cutoff", "1999-01-01"])
    assert result.exit_code == 2
    assert "outside the data's time span" in " ".join(result.output.split())


def test_evaluate_command_says_when_nobody_bought_before_and_after(tmp_path):
    data = tmp_path / "shop"
    data.mkdir()
    (data / "items.csv").write_text("item_id,title,price\nA1,Teapot,12.5\nA2,Scarf,3\n")
    (data / "events.csv").write_text(
        "user_id,item_id,event_type,timestamp\nu1,A1,purchase,2024-01-02\nu2,A2,purchase,2024-03-03\n"
    )
    result = runner.invoke(app, ["evaluate", "--data", str(data), "--cutoff", "2024-02-01"])
    assert result.exit_code == 2
    assert "no shopper to score" in " ".join(result.output.split())


def test_help_lists_the_evaluate_command():
    result = runner.invoke(app, ["evaluate", "--help"])
    assert result.exit_code == 0
    for option in ("--data", "--cutoff", "--k", "--json", "--config"):
        assert option in result.output


# --- the shared data sets (slow) ---------------------------------------------------------------------

UCI = SHARED / "uci_online_retail"
AMAZON = SHARED / "amazon_reviews_2018_small"


@pytest.mark.slow
@pytest.mark.skipif(not UCI.is_dir(), reason=f"{UCI} is not here")
def test_the_uci_split_scores_the_shoppers_who_bought_before_and_after_9_november_2011():
    shop = load_shop_data(UCI)
    split = time_split(shop.events, pd.Timestamp("2011-11-09"))
    assert len(split.truth) == 1_395
    assert split.train["timestamp"].max() < pd.Timestamp("2011-11-09")


@pytest.mark.slow
@pytest.mark.skipif(not AMAZON.is_dir(), reason=f"{AMAZON} is not here")
def test_amazon_reviews_rated_four_or_more_are_what_shoppers_bought():
    shop = load_shop_data(AMAZON)
    bought = positive_events(shop.events)
    assert len(bought) and (bought["event_type"] == "review").all() and (bought["rating"] >= 4).all()
    assert time_split(shop.events, pd.Timestamp("2017-01-01")).truth
