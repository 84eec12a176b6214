"""Market trends: weekly series, metrics, models against statsmodels, the trending score, the
backtest on the shipped sample, and the edge cases."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from services.errors import InvalidArgument
from services.insights import trends
from services.insights.forecasting import ARIMA_MODELS, fit_series, mase, wape
from services.insights.trends import MarketTrends, market_trends, weekly_baskets
from services.shop_data import load_shop_data

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "uci_online_retail_sample"
AS_OF = pd.Timestamp("2024-07-01 12:00")
ITEMS = pd.DataFrame({"item_id": ["A", "B", "C", "D"], "title": ["a", "b", "c", "d"]})
CATEGORY = np.array(["toys", "toys", "home", ""], dtype=object)  # D has no category


def log(rows) -> pd.DataFrame:
    """rows: (user, item, timestamp, session, event_type)."""
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "session_id", "event_type"])
    frame["timestamp"] = pd.to_datetime(frame["timestamp"])
    return frame.assign(quantity=1.0, price=1.0, text="", rating=np.nan)


def weekly_log(counts: dict[str, list[int]], as_of: pd.Timestamp = AS_OF) -> pd.DataFrame:
    """A log where item i sells counts[i][w] baskets in week w (the last entry = the last week),
    each basket one shopper's invoice in the middle of the week."""
    rows = []
    for item, weekly in counts.items():
        for w, n in enumerate(weekly):
            when = as_of - (len(weekly) - w) * trends.WEEK + pd.Timedelta(days=3)
            rows += [(f"{item}{w}u{k}", item, when, f"{item}-{w}-{k}", "purchase") for k in range(n)]
    # One view at the very start so the log covers every week.
    longest = max(len(weekly) for weekly in counts.values())
    rows.append(("viewer", "A", as_of - longest * trends.WEEK + pd.Timedelta(minutes=1), "", "view"))
    return log(rows)


@pytest.fixture(scope="module")
def sample():
    shop = load_shop_data(SAMPLE)
    category = np.array([t.split(" ")[0] if t else "" for t in shop.items["title"].fillna("")], dtype=object)
    as_of = shop.events["timestamp"].max() + pd.Timedelta(seconds=1)
    return shop, category, as_of


@pytest.fixture(scope="module")
def sample_trends(sample):
    shop, category, as_of = sample
    return market_trends(shop.events, shop.items, category, as_of, min_active_weeks=8)


# --- weekly series ------------------------------------------------------------------------------


def test_weeks_end_at_as_of_and_count_distinct_baskets():
    events = log(
        [
            ("v", "A", AS_OF - pd.Timedelta(days=20), "", "view"),  # the log starts here: 2 whole weeks
            ("u", "A", AS_OF - pd.Timedelta(minutes=1), "i1", "purchase"),  # last week
            ("u", "A", AS_OF - pd.Timedelta(minutes=1), "i1", "purchase"),  # same basket: counted once
            ("u", "B", AS_OF - pd.Timedelta(minutes=1), "i1", "purchase"),  # same basket, same category
            ("w", "A", AS_OF - pd.Timedelta(days=3), "i1", "purchase"),  # another shopper's "i1": another basket
            ("u", "C", AS_OF - pd.Timedelta(days=7, minutes=1), "", "purchase"),  # week before; basket = the day
            ("u", "C", AS_OF - pd.Timedelta(days=7, minutes=2), "", "purchase"),  # same day: same basket
            ("u", "D", AS_OF - pd.Timedelta(days=16), "i3", "purchase"),  # the leading partial week: left out
            ("u", "A", AS_OF - pd.Timedelta(days=2), "i4", "return"),  # a return is no sale
            ("u", "A", AS_OF, "i5", "purchase"),  # at as_of: not seen
        ]
    )
    week_starts, items, category_ids, categories = weekly_baskets(events, ITEMS, CATEGORY, AS_OF)
    assert list(week_starts) == [AS_OF - 2 * trends.WEEK, AS_OF - trends.WEEK]
    assert np.isnan(items[0, 0]), "weeks before the first sale are not part of the series"
    assert items[0, 1] == 2.0  # u's i1 and w's i1
    assert np.isnan(items[1, 0]) and items[1, 1] == 1.0
    assert items[2].tolist() == [1.0, 0.0]
    assert np.isnan(items[3]).all(), "D sold only in the leading partial week"
    assert category_ids.tolist() == ["home", "toys"]
    assert categories[0].tolist() == [1.0, 0.0]  # home: C's day basket
    assert np.isnan(categories[1, 0]) and categories[1, 1] == 2.0  # toys: i1 of u (A and B) and i1 of w


def test_a_single_basket_and_items_never_sold_get_finite_scores():
    events = log([("u", "A", AS_OF - pd.Timedelta(days=1), "i1", "purchase")])
    result = market_trends(events, ITEMS, CATEGORY, AS_OF)
    assert len(result.week_starts) == 1  # a log shorter than a week is one week
    assert np.isfinite(result.trending).all()
    assert result.trending[1:].tolist() == [0.0, 0.0, 0.0]
    assert result.trending[0] == pytest.approx(0.0), "one basket is its own normal"
    assert result.items["model"].tolist() == ["recent_mean", "none", "none", "none"]
    report = result.report()
    assert report["eligible"] == {"categories": 0, "items": 0}
    assert report["backtest"]["item"] == {"series": 0, "points": 0}


def test_an_empty_log_gives_zero_scores_and_an_empty_report():
    empty = log([])
    result = market_trends(empty, ITEMS, CATEGORY, AS_OF)
    assert result.trending.tolist() == [0.0] * 4 and len(result.week_starts) == 0
    assert result.report()["series"] == {"categories": 0, "items": 0}


def test_bad_arguments_are_named():
    events = weekly_log({"A": [1, 2]})
    with pytest.raises(InvalidArgument, match="item_category"):
        market_trends(events, ITEMS, CATEGORY[:2], AS_OF)
    with pytest.raises(InvalidArgument, match="horizon"):
        market_trends(events, ITEMS, CATEGORY, AS_OF, horizon=0)
    with pytest.raises(InvalidArgument, match="models"):
        market_trends(events, ITEMS, CATEGORY, AS_OF, backtest=False, models={("item", "A"): "prophet"})


# --- metrics ------------------------------------------------------------------------------------


def test_wape_and_mase_by_hand():
    actual = np.array([10.0, 0.0, 5.0, np.nan])
    forecast = np.array([8.0, 1.0, 5.0, 3.0])
    assert wape(actual, forecast) == pytest.approx(3.0 / 15.0)
    # History steps |2-4|, |5-2|, |5-5| → scale 5/3; mean error over 3 known points = 1.
    assert mase(actual, forecast, np.array([4.0, 2.0, 5.0, 5.0])) == pytest.approx(1.0 / (5.0 / 3.0))
    assert np.isnan(mase(actual, forecast, np.array([3.0, 3.0, 3.0]))), "a flat history has no scale"
    assert np.isnan(wape(np.zeros(3), np.ones(3)))


# --- models against statsmodels -----------------------------------------------------------------

WEEKLY = np.array(
    [12, 15, 11, 14, 18, 16, 13, 17, 20, 19, 22, 18, 21, 25, 23, 20, 24, 27, 26, 22, 28, 30, 27, 29, 33, 31, 28, 34, 36, 32],
    dtype=float,
)


def test_ses_matches_statsmodels_at_its_parameters_and_nearly_its_optimum():
    from statsmodels.tsa.holtwinters import SimpleExpSmoothing

    fit = fit_series(WEEKLY, "ses", horizon=4)
    alpha, level = fit["params"]["alpha"], fit["params"]["initial"][0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fixed = SimpleExpSmoothing(WEEKLY, initialization_method="known", initial_level=level).fit(
            smoothing_level=alpha, optimized=False
        )
        optimal = SimpleExpSmoothing(WEEKLY, initialization_method="estimated").fit()
    np.testing.assert_allclose(fit["forecast"], fixed.forecast(4), rtol=1e-8)
    assert fixed.sse <= optimal.sse * 1.02, "the grid optimum is within 2% of statsmodels' SSE"
    assert (fit["lower"] < fit["forecast"]).all() and (fit["forecast"] < fit["upper"]).all()
    assert np.all(np.diff(fit["upper"] - fit["lower"]) > 0), "intervals widen with the horizon"


def test_damped_holt_matches_statsmodels_at_its_parameters():
    from statsmodels.tsa.holtwinters import Holt

    fit = fit_series(WEEKLY, "holt_damped", horizon=4)
    p = fit["params"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fixed = Holt(
            WEEKLY, damped_trend=True, initialization_method="known", initial_level=p["initial"][0], initial_trend=p["initial"][1]
        ).fit(smoothing_level=p["alpha"], smoothing_trend=p["beta_share"], damping_trend=p["phi"], optimized=False)
    np.testing.assert_allclose(fit["forecast"], fixed.forecast(4), rtol=1e-8)
    assert fit["forecast"][-1] > WEEKLY[-8:].mean(), "the trend carries on"


def test_ar_models_match_statsmodels_autoreg():
    from statsmodels.tsa.ar_model import AutoReg

    level = fit_series(WEEKLY - WEEKLY.mean() * 0.5, "arima_100c", horizon=3)
    reference = AutoReg(WEEKLY - WEEKLY.mean() * 0.5, lags=1, trend="c").fit()
    assert level["params"]["const"] == pytest.approx(reference.params[0])
    assert level["params"]["phi"] == pytest.approx(reference.params[1])
    np.testing.assert_allclose(level["forecast"], reference.forecast(3), rtol=1e-8)

    differenced = fit_series(WEEKLY, "arima_110", horizon=3)
    steps = AutoReg(np.diff(WEEKLY), lags=1, trend="n").fit()
    assert differenced["params"]["phi"] == pytest.approx(steps.params[0])
    np.testing.assert_allclose(differenced["forecast"], WEEKLY[-1] + np.cumsum(steps.forecast(3)), rtol=1e-8)


# --- the trending score -------------------------------------------------------------------------


def test_rising_items_score_positive_and_falling_ones_negative():
    weeks = 40
    rising = [5 + w // 2 for w in range(weeks)]
    falling = [25 - w // 2 for w in range(weeks)]
    steady = [10] * weeks
    # 10 active weeks, too few for a model: the shrunk ratio of its last 4 weeks to its last 12.
    late = [int(w % 6 == 0) for w in range(36)] + [2, 3, 4, 5]
    events = weekly_log({"A": rising, "B": falling, "C": steady, "D": late})
    result = market_trends(events, ITEMS, CATEGORY, AS_OF)
    by_item = result.items.set_index("item_id")
    assert by_item.loc[["A", "B", "C"], "eligible"].all() and not by_item.loc["D", "eligible"]
    assert by_item.loc["A", "trending"] > 0.1
    assert by_item.loc["B", "trending"] < -0.1
    assert abs(by_item.loc["C", "trending"]) < 0.05
    assert by_item.loc["D", "model"] == "recent_mean"
    assert by_item.loc["D", "trending"] == pytest.approx(np.log((14 / 4 + 1) / (15 / 12 + 1)))
    assert by_item.loc["A", "selling_fast"] == (by_item.loc["A", "trending"] >= trends.SELLING_FAST_SCORE)
    # The category forecast carries an interval around it.
    toys = result.forecasts[result.forecasts["series_id"] == "toys"]
    assert len(toys) == 4 and (toys["lower"] <= toys["forecast"]).all() and (toys["forecast"] <= toys["upper"]).all()


def test_a_cut_without_backtest_uses_the_given_models():
    weeks = 40
    events = weekly_log({"A": [5 + w // 2 for w in range(weeks)], "B": [25 - w // 2 for w in range(weeks)], "C": [10] * weeks})
    full = market_trends(events, ITEMS, CATEGORY, AS_OF)
    cut = market_trends(events, ITEMS, CATEGORY, AS_OF - 4 * trends.WEEK, backtest=False, models={("item", "A"): "holt_damped"})
    assert len(cut.backtest) == 0 and cut.report()["backtest"]["item"]["series"] == 0
    models = cut.items.set_index("item_id")["model"]
    assert models["A"] == "holt_damped" and models["B"] == trends.DEFAULT_MODEL
    assert np.isfinite(cut.trending).all()
    assert set(full.models()) == {("category", "home"), ("category", "toys"), ("item", "A"), ("item", "B"), ("item", "C")}


# --- backtest on the shipped sample -------------------------------------------------------------


def test_backtest_on_the_sample_reports_figures_that_add_up(sample_trends):
    report = sample_trends.report()
    assert set(report) >= {"as_of", "weeks", "series", "eligible", "backtest", "trending", "seconds"}
    table = sample_trends.backtest
    for kind, key in (("category", "categories"), ("item", "items")):
        part = table[table["kind"] == kind]
        summary = report["backtest"][kind]
        assert summary["series"] == report["eligible"][key] == len(part) > 0
        assert sum(summary["models"].values()) == summary["series"]
        assert set(summary["models"]) <= set(trends.MODELS) | {"mean4"}
        assert summary["points"] == 26 * summary["series"]  # 4+4+4+4+4+3+2+1 per series
        assert summary["wape"]["chosen"] == pytest.approx(part["abs_error_chosen"].sum() / part["actual"].sum(), abs=1e-4)
        better = np.minimum(part["abs_error_naive"], part["abs_error_mean4"])
        assert summary["beats_better_baseline"] == pytest.approx((part["abs_error_chosen"] < better).mean(), abs=1e-4)
        assert set(summary["wape"]) == set(summary["mase"]) == {"chosen", "naive", "mean4"}
        assert set(summary["out_of_sample"]) == {"wape", "beats_better_baseline"}
        # The chosen model is the candidate of least error on the backtest points.
        candidates = part[[f"abs_error_{m}" for m in trends.MODELS]].min(axis=1)
        np.testing.assert_allclose(part["abs_error_chosen"], candidates)
    items = report["eligible"]["items"]
    assert sample_trends.items["eligible"].sum() == items
    assert report["trending"]["items_scored"] == len(sample_trends.items)
    assert np.isfinite(sample_trends.trending).all()


def test_items_outside_the_arima_pool_get_only_exponential_smoothing(sample):
    shop, category, as_of = sample
    result = market_trends(shop.events, shop.items, category, as_of, min_active_weeks=8, arima_items=0)
    items = result.backtest[result.backtest["kind"] == "item"]
    assert set(items["model"]) <= set(trends.ES_MODELS)
    assert items[[f"abs_error_{m}" for m in ARIMA_MODELS]].isna().all().all()


def test_failed_fits_fall_back_to_the_four_week_mean(sample, monkeypatch):
    shop, category, as_of = sample

    def failing(weeks, start, groups, origins, horizon):
        nan = np.full((len(weeks), len(origins), horizon), np.nan)
        return trends.Fits(nan, nan, [{}] * len(weeks))

    monkeypatch.setattr(trends, "MODEL_FITS", {m: failing for m in trends.MODELS})
    result = market_trends(shop.events, shop.items, category, as_of, min_active_weeks=8)
    report = result.report()
    assert report["backtest"]["item"]["fallbacks"] == report["eligible"]["items"] > 0
    assert np.isfinite(result.trending).all()


def test_tables_round_trip(sample_trends):
    loaded = MarketTrends.from_tables(**sample_trends.tables())
    assert loaded.report() == sample_trends.report()
    np.testing.assert_array_equal(loaded.trending, sample_trends.trending)
    pd.testing.assert_frame_equal(loaded.item_weeks, sample_trends.item_weeks, check_names=False, check_freq=False)
