"""Purchase propensity on the shipped UCI sample and on crafted logs: the time split, the
baseline beside the model, contributions, and every fallback."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from services.errors import InvalidArgument
from services.insights.propensity import FEATURES, held_out_scores, phrases, purchase_propensity
from services.shop_data import load_shop_data

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "uci_online_retail_sample"


@pytest.fixture(scope="module")
def sample_events() -> pd.DataFrame:
    return load_shop_data(SAMPLE).events


def end_of(events: pd.DataFrame) -> pd.Timestamp:
    return events["timestamp"].max() + pd.Timedelta(seconds=1)


def frame(rows) -> pd.DataFrame:
    events = pd.DataFrame(rows, columns=["user_id", "item_id", "event_type", "timestamp", "session_id"])
    events["timestamp"] = pd.to_datetime(events["timestamp"])
    return events.assign(quantity=1.0, price=2.0, text="", rating=np.nan)


def habits_log(seed: int = 1) -> tuple[pd.DataFrame, pd.Timestamp]:
    """400 shoppers over a year: regulars who buy every 1-3 weeks and one-off buyers; whether
    a shopper buys next month follows their habit, which recency alone only half tells."""
    rng = np.random.default_rng(seed)
    as_of = pd.Timestamp("2024-12-31")
    rows = []
    for n in range(400):
        user, regular = f"u{n}", n % 2 == 0
        if regular:
            gap = rng.uniform(7, 21)
            days = np.arange(rng.uniform(0, gap), 360, gap)
        else:
            days = rng.uniform(0, 360, size=int(rng.integers(1, 3)))
        for b, d in enumerate(days):
            rows.append((user, f"i{rng.integers(50)}", "purchase", as_of - pd.Timedelta(days=float(d)), f"{user}-{b}"))
    return frame(rows), as_of


@pytest.fixture(scope="module")
def habits_propensity():
    events, as_of = habits_log()
    return purchase_propensity(events, as_of, min_shoppers=100, min_class=10), as_of


def test_the_model_beats_recency_on_shoppers_with_habits(habits_propensity):
    propensity, as_of = habits_propensity
    assert propensity.method == "lightgbm" and propensity.rounds >= 1
    assert propensity.model.auc > propensity.baseline.auc and propensity.model.auc > 0.85
    assert propensity.model.brier < propensity.baseline.brier
    windows = propensity.windows.set_index("window")
    assert windows.loc["train", "cut"] == as_of - pd.Timedelta(days=60)
    assert windows.loc["held_out", "cut"] == as_of - pd.Timedelta(days=30)
    assert windows.loc["held_out", "shoppers"] == propensity.model.shoppers == propensity.baseline.shoppers
    assert propensity.probability.between(0, 1).all() and len(propensity.probability) == 400
    # Reliability bins cover every held-out shopper once.
    reliability = propensity.model.reliability
    assert reliability["count"].sum() == propensity.model.shoppers and len(reliability) == 10
    assert abs(propensity.importance["share"].sum() - 1) < 1e-9
    assert set(propensity.importance["feature"]) == set(FEATURES)
    report = json.loads(json.dumps(propensity.report(), allow_nan=False))
    assert report["held_out"]["model"]["auc"] > report["held_out"]["recency_baseline"]["auc"]


def test_each_shopper_is_explained_by_their_own_top_three_features(habits_propensity):
    propensity, _ = habits_propensity
    contributions = propensity.contributions
    assert len(contributions) == 3 * len(propensity.probability)
    assert (contributions.groupby("user_id")["rank"].apply(list) == pd.Series([[1, 2, 3]] * 400, index=propensity.probability.index)).all()
    # Ranked by the size of the contribution, whatever its sign.
    size = contributions["contribution"].abs().to_numpy().reshape(-1, 3)
    assert (np.diff(size, axis=1) <= 1e-12).all()
    assert contributions["phrase"].str.len().gt(0).all()
    recency = contributions[contributions["feature"] == "recency_days"]
    assert recency["phrase"].tolist() == phrases("recency_days", recency["value"].to_numpy(), "")


def test_above_fit_max_shoppers_the_model_learns_from_a_sample_and_scores_everyone(habits_propensity):
    whole, as_of = habits_propensity
    assert whole.sampling == {}
    events, _ = habits_log()
    sampled = purchase_propensity(events, as_of, min_shoppers=100, min_class=10, fit_max_shoppers=250)
    held_out = whole.model.shoppers  # the shoppers seen before the held-out window's cut
    assert sampled.sampling == {"fitted_on_shoppers": 250, "of": held_out}
    assert sampled.method == "lightgbm"
    assert sampled.probability.index.equals(whole.probability.index)
    assert sampled.model.shoppers == held_out  # judged on the whole held-out window
    assert sampled.model.auc > sampled.baseline.auc
    again = purchase_propensity(events, as_of, min_shoppers=100, min_class=10, fit_max_shoppers=250)
    pd.testing.assert_series_equal(again.probability, sampled.probability)


def test_only_events_before_as_of_are_read(sample_events):
    cut = pd.Timestamp("2011-11-01")
    settings = {"min_shoppers": 20, "min_class": 5}
    whole = purchase_propensity(sample_events, cut, **settings)
    before = purchase_propensity(sample_events[sample_events["timestamp"] < cut], cut, **settings)
    assert whole.method == "lightgbm"
    pd.testing.assert_series_equal(whole.probability, before.probability)
    pd.testing.assert_frame_equal(whole.contributions, before.contributions)
    assert whole.model.auc == before.model.auc


def test_a_run_is_repeatable(sample_events):
    settings = {"min_shoppers": 20, "min_class": 5}
    first = purchase_propensity(sample_events, end_of(sample_events), **settings)
    second = purchase_propensity(sample_events, end_of(sample_events), **settings)
    pd.testing.assert_series_equal(first.probability, second.probability)
    assert first.rounds == second.rounds and first.model.brier == second.model.brier


def test_the_shipped_sample_is_too_small_and_falls_back_to_recency(sample_events):
    propensity = purchase_propensity(sample_events, end_of(sample_events), currency="GBP")
    assert propensity.method == "recency baseline" and "too little to learn from" in propensity.note
    assert propensity.model is None and propensity.baseline is not None and propensity.baseline.auc is not None
    assert len(propensity.probability) == 50 and propensity.probability.between(0, 1).all()
    # Fewer days since the last purchase, higher propensity.
    recency = propensity.contributions.set_index("user_id")["value"]
    bought = recency.dropna().index
    order = np.argsort(recency[bought].to_numpy())
    assert (np.diff(propensity.probability[bought].to_numpy()[order]) <= 1e-12).all()
    assert set(propensity.contributions["feature"]) == {"recency_days"}
    report = json.loads(json.dumps(propensity.report(), allow_nan=False))
    assert report["method"] == "recency baseline" and report["held_out"]["model"] is None


def test_one_label_class_serves_the_smoothed_purchase_rate():
    # Five shoppers who buy in every window: nothing to tell apart.
    rows = [(f"u{i}", "a", "purchase", day, f"s{i}-{day}") for i in range(5) for day in ("2023-12-01", "2024-01-10", "2024-02-10")]
    propensity = purchase_propensity(frame(rows), pd.Timestamp("2024-03-01"))
    assert propensity.method == "base rate" and "one label class" in propensity.note
    assert np.allclose(propensity.probability, 6 / 7)  # (5 + 1) / (5 + 2)
    assert propensity.contributions.empty
    json.dumps(propensity.report(), allow_nan=False)


def test_a_single_basket_leaves_no_window_to_learn_from():
    events = frame([("u", "a", "purchase", "2024-02-20", "i1"), ("u", "b", "purchase", "2024-02-20", "i1")])
    propensity = purchase_propensity(events, pd.Timestamp("2024-03-01"))
    assert propensity.method == "none" and propensity.probability.index.tolist() == ["u"]
    assert propensity.probability.isna().all()
    assert propensity.windows["shoppers"].tolist() == [0, 0, 1]
    report = json.loads(json.dumps(propensity.report(), allow_nan=False))
    assert report["mean_probability"] is None


def test_an_empty_log_is_no_crash_and_a_bad_horizon_is_refused():
    events = frame([])
    propensity = purchase_propensity(events, pd.Timestamp("2024-03-01"))
    assert propensity.method == "none" and propensity.probability.empty
    with pytest.raises(InvalidArgument, match="horizon_days"):
        purchase_propensity(events, pd.Timestamp("2024-03-01"), horizon_days=0)


def test_never_bought_and_one_event_shoppers_are_in_every_window_they_reached():
    events = frame(
        [
            ("returner", "a", "return", "2023-12-01", ""),
            ("buyer", "a", "purchase", "2023-12-02", "i1"),
            ("buyer", "a", "purchase", "2024-02-20", "i2"),
            ("viewer", "a", "view", "2024-02-15", ""),
        ]
    )
    propensity = purchase_propensity(events, pd.Timestamp("2024-03-01"))
    assert propensity.method == "recency baseline"
    assert propensity.windows["shoppers"].tolist() == [2, 2, 3]  # the viewer arrived after both cuts
    assert propensity.windows["positives"].tolist()[:2] == [0, 1]
    phrase = propensity.contributions.set_index("user_id")["phrase"]
    assert phrase["returner"] == "never bought" and phrase["viewer"] == "never bought"
    assert phrase["buyer"] == "bought 10 days ago"  # 2024 is a leap year
    assert propensity.probability["buyer"] > propensity.probability["returner"]


def test_phrases_say_the_figure_in_words():
    assert phrases("recency_days", np.array([0.2, 2.0, np.nan]), "") == ["bought today", "bought 2 days ago", "never bought"]
    assert phrases("baskets_90d", np.array([7.0, 1.0]), "") == ["7 baskets in the last 90 days", "1 basket in the last 90 days"]
    assert phrases("monetary", np.array([3100.0]), "GBP") == ["£3,100 spent in all"]
    assert phrases("active_months", np.array([5.0]), "") == ["bought in 5 of the last 12 months"]
    assert phrases("mean_interval_days", np.array([np.nan]), "") == ["fewer than two baskets"]
    for feature in FEATURES:
        figure, unknown = phrases(feature, np.array([3.0, np.nan]), "EUR")
        assert figure and "_" not in figure and unknown, (feature, figure, unknown)


def test_held_out_scores_bin_the_predictions():
    scores = held_out_scores(np.array([0.05, 0.08, 0.55, 0.95, 1.0]), np.array([0, 1, 1, 1, 1]))
    bins = scores.reliability.set_index("bin")
    assert bins.loc[0, "count"] == 2 and bins.loc[0, "observed_rate"] == 0.5
    assert bins.loc[9, "count"] == 2 and bins.loc[9, "mean_predicted"] == pytest.approx(0.975)
    assert np.isnan(bins.loc[3, "observed_rate"])
    assert scores.auc == pytest.approx(1.0) and scores.brier == pytest.approx(np.mean([0.05**2, 0.92**2, 0.45**2, 0.05**2, 0]))
    assert held_out_scores(np.array([0.2, 0.3]), np.array([0, 0])).auc is None
