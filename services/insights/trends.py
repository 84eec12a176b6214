"""Market trends: weekly sales per category and per item, a 4-week forecast per series chosen
by a rolling-origin backtest, and a trending score per item for the ranker and the copy.

Weekly series. Sales are *baskets*: distinct baskets (insights.history.baskets_of, per
shopper) holding the item, or any item of the category, per week. Counting baskets rather
than units keeps UCI's 80,000-unit lines from swamping a series. "Bought" is
insights.history.positive_events. Weeks end at `as_of`: week T-1 is the 7 days before it, so
the last week is complete; only whole weeks of the log are kept (UCI: 53 weeks, its leading
2.2 days are left out). A basket counts in the week of its first line. A series starts at its
first sale: weeks before an item's launch are not zeros of its series.

Eligible series: at least `min_active_weeks` weeks with a sale, and at least
`backtest_weeks + MIN_FIT_WEEKS` weeks long. Only these get a model.

Models and fitting (every model for all series at once, in numpy): see insights.forecasting.

Backtest. There are `backtest_weeks` (B) origins, T-B .. T-1. From each origin we forecast
horizons 1..H where the week is still in the log, so every target is one of the last B weeks:
26 points per series for B=8, H=4. Baselines are naive (the last week) and the mean of the last
4 weeks. Each series keeps the candidate with the least total absolute error; on one series
this is the same as the least WAPE. Ties go to the simpler model (MODELS order).
  WAPE (aggregate) = Σ|error| / Σ actual, over all the series' backtest points.
  MASE (per series) = mean |error| / mean |y_t - y_{t-1}| over the series before the first
  origin (the in-sample naive scale). The report gives the mean over series; a flat series,
  with scale 0, has no MASE.
The chosen model is picked on the same points it is scored on. That flatters it. The report
therefore also gives an out-of-sample variant: pick on the targets in the first half of the
window (weeks T-B .. T-B/2-1), then score on the origins of the second half. Those origins
come after every week used to pick.

Trending score (`trending`, one per item row, always finite, 0 = selling at its normal rate):
    trending = log((forecast_weekly + TREND_PRIOR) / (recent_weekly + TREND_PRIOR))
  where forecast_weekly is the mean forecast over the next H weeks and recent_weekly is the
  mean of the last 12 weeks of the item's series. An item without a model uses the mean of its
  last 4 weeks as its forecast. The prior (1 basket a week) shrinks sparse items toward 0. An
  item never sold scores 0.
`selling_fast` (for the copy): trending ≥ log(1.5) and at least 3 baskets in the last 4 weeks.

The ranker's internal cut runs the whole of this again on the events before the cut, backtest
included (insights.signals.fit_trends): models chosen at the end of the log would have been
picked on weeks after the cut. `backtest=False, models=...` fits given models at the one
origin `as_of` only (DEFAULT_MODEL where none is given), for a caller that already chose them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Mapping

import numpy as np
import pandas as pd
from scipy.stats import norm

from services.errors import InvalidArgument
from services.insights.forecasting import ES_MODELS, MODEL_FITS, MODELS, Fits, mase, naive_scale, wape
from services.insights.history import baskets_of, positive_events

WEEK = pd.Timedelta(days=7)
BASELINES = ("naive", "mean4")
# A series without a backtest (an internal cut) and no model given uses this one.
DEFAULT_MODEL = "ses"
# Weeks of fit a series needs before its first backtest origin.
MIN_FIT_WEEKS = 10
# Weeks behind "recent_weekly" (the denominator of the score) and behind the mean-of-4 baseline.
RECENT_WEEKS = 12
MEAN_WEEKS = 4
TREND_PRIOR = 1.0  # baskets a week
SELLING_FAST_SCORE = float(np.log(1.5))
SELLING_FAST_MIN_BASKETS = 3.0  # in the last MEAN_WEEKS weeks


# --- weekly series --------------------------------------------------------------------------


def weekly_baskets(
    events: pd.DataFrame, items: pd.DataFrame, item_category: np.ndarray, as_of: pd.Timestamp
) -> tuple[pd.DatetimeIndex, np.ndarray, np.ndarray, np.ndarray]:
    """(week starts, item counts [items × weeks], category ids, category counts [categories ×
    weeks]). Counts are distinct baskets a week, NaN before the series' first sale (all NaN: never
    sold). A category id "" (or missing) is no category."""
    as_of = pd.Timestamp(as_of)
    events = events[events["timestamp"] < as_of]
    categories = pd.Series(item_category, dtype=object).fillna("").astype(str).to_numpy()
    category_ids = np.unique(categories[categories != ""]).astype(object)
    category_code = pd.Series(np.arange(len(category_ids)), index=category_ids).reindex(categories).fillna(-1)
    category_code = category_code.to_numpy(np.int64)
    # Whole weeks of the log only; a log shorter than a week is one week.
    n_weeks = max(int((as_of - events["timestamp"].min()) // WEEK), 1) if len(events) else 0
    week_starts = pd.DatetimeIndex([as_of - (n_weeks - w) * WEEK for w in range(n_weeks)])

    bought = positive_events(events)
    item_row = pd.Series(np.arange(len(items)), index=items["item_id"].to_numpy())
    rows = item_row.reindex(bought["item_id"].to_numpy()).to_numpy()
    known = ~np.isnan(rows)
    lines = pd.DataFrame(
        {
            "item": rows[known].astype(np.int64),
            "basket": bought.groupby([bought["user_id"], baskets_of(bought)], sort=False).ngroup().to_numpy()[known],
            "weeks_back": ((as_of - bought["timestamp"]) // WEEK).to_numpy()[known],
        }
    )
    # A basket belongs to the week of its first line (the most weeks back).
    lines["weeks_back"] = lines.groupby("basket")["weeks_back"].transform("max")
    lines = lines[lines["weeks_back"] < n_weeks]
    lines["week"] = n_weeks - 1 - lines["weeks_back"].to_numpy()

    def counts(series: np.ndarray, n_series: int) -> np.ndarray:
        pairs = pd.DataFrame({"s": series, "basket": lines["basket"].to_numpy(), "week": lines["week"].to_numpy()})
        pairs = pairs[pairs["s"] >= 0].drop_duplicates(["s", "basket"])
        flat = np.bincount(pairs["s"].to_numpy() * n_weeks + pairs["week"].to_numpy(), minlength=n_series * n_weeks)
        table = flat.reshape(n_series, n_weeks).astype(np.float64)
        started = np.cumsum(table, axis=1) > 0
        return np.where(started, table, np.nan)

    item_counts = counts(lines["item"].to_numpy(), len(items))
    category_counts = counts(category_code[lines["item"].to_numpy()], len(category_ids))
    return week_starts, item_counts, category_ids, category_counts


def series_start(weeks: np.ndarray) -> np.ndarray:
    """Index of each row's first week with a sale (the number of weeks when never sold)."""
    started = ~np.isnan(weeks)
    if weeks.shape[1] == 0:
        return np.zeros(len(weeks), dtype=np.int64)
    return np.where(started.any(axis=1), started.argmax(axis=1), weeks.shape[1])


# --- the analysis ---------------------------------------------------------------------------


@dataclass
class MarketTrends:
    as_of: pd.Timestamp
    week_starts: pd.DatetimeIndex   # start of each week; week i covers [start, start + 7 days)
    # Baskets a week per category (index category id, columns week_starts), NaN before its
    # first sale; the same per item (index item_id, in item-row order).
    category_weeks: pd.DataFrame
    item_weeks: pd.DataFrame
    # One row per item row: item_id, category, active_weeks, eligible, model, forecast_weekly
    # (mean forecast over the next `horizon` weeks), recent_weekly (mean of its last 12 weeks),
    # trending (log ratio, see the module docstring), selling_fast.
    items: pd.DataFrame
    # Next `horizon` weeks of every eligible series: kind ("category" / "item"), series_id,
    # model, week_start, forecast, lower, upper.
    forecasts: pd.DataFrame
    # One row per eligible series (empty without a backtest): kind, series_id, model, points,
    # actual (Σ over the backtest points), abs_error_<candidate> (NaN: not a candidate),
    # abs_error_{chosen,naive,mean4}, wape_*, mase_*, scale, beats_baseline, and the
    # out-of-sample variant: oos_model, oos_actual, oos_abs_error_{chosen,naive,mean4}.
    backtest: pd.DataFrame
    seconds: float

    @property
    def trending(self) -> np.ndarray:
        """The trending score per item row (finite; 0 = selling at its normal rate)."""
        return self.items["trending"].to_numpy(np.float64)

    def models(self) -> dict[tuple[str, str], str]:
        """(kind, series id) → the model picked for it: pass to market_trends at a cut."""
        return {(k, s): m for k, s, m in zip(self.backtest["kind"], self.backtest["series_id"], self.backtest["model"])}

    def report(self) -> dict:
        """Key figures for the build manifest."""
        items = self.items
        with_sales = items["active_weeks"] > 0
        report = {
            "as_of": self.as_of.isoformat(),
            "weeks": len(self.week_starts),
            "series": {
                "categories": int(self.category_weeks.notna().any(axis=1).sum()),
                "items": int(with_sales.sum()),
            },
            "eligible": {
                "categories": int((self.forecasts.drop_duplicates(["kind", "series_id"])["kind"] == "category").sum()),
                "items": int(items["eligible"].sum()),
            },
            "backtest": {kind: _backtest_summary(self.backtest[self.backtest["kind"] == kind]) for kind in ("category", "item")},
            "trending": {
                "items_scored": int(len(items)),
                "by_model": int(items["eligible"].sum()),
                "rising": int((items["trending"] > 0).sum()),
                "falling": int((items["trending"] < 0).sum()),
                "selling_fast": int(items["selling_fast"].sum()),
                "top": items.sort_values("trending", ascending=False)["item_id"].head(5).astype(str).tolist(),
            },
            "seconds": round(float(self.seconds), 2),
        }
        return report

    # --- persistence: three tables, written and read here -----------------------------------

    def tables(self) -> dict[str, pd.DataFrame]:
        """items (one row per item row, with as_of and seconds), series (the weekly history of
        every series with a sale, then the forecast weeks of the eligible ones), backtest."""
        history = []
        for kind, table in (("category", self.category_weeks), ("item", self.item_weeks)):
            long = table.stack(future_stack=True).dropna().rename("actual").reset_index()
            long.columns = ["series_id", "week_start", "actual"]
            history.append(long.assign(kind=kind, model="", forecast=np.nan, lower=np.nan, upper=np.nan))
        series = pd.concat([*history, self.forecasts.assign(actual=np.nan)], ignore_index=True)
        series = series[["kind", "series_id", "model", "week_start", "actual", "forecast", "lower", "upper"]]
        series["series_id"] = series["series_id"].astype(str)
        return {
            "items": self.items.assign(as_of=self.as_of, seconds=float(self.seconds)),
            "series": series,
            "backtest": self.backtest,
        }

    @classmethod
    def from_tables(cls, items: pd.DataFrame, series: pd.DataFrame, backtest: pd.DataFrame) -> "MarketTrends":
        as_of = pd.Timestamp(items["as_of"].iloc[0]) if len(items) else pd.Timestamp(0)
        history = series[series["actual"].notna()]
        week_starts = pd.DatetimeIndex(np.sort(history["week_start"].unique()))

        def weeks_of(kind: str, index) -> pd.DataFrame:
            part = history[history["kind"] == kind]
            table = part.pivot(index="series_id", columns="week_start", values="actual")
            return table.reindex(index=index, columns=week_starts).rename_axis(index=None, columns=None)

        category_ids = np.sort(history.loc[history["kind"] == "category", "series_id"].unique())
        forecasts = series[series["actual"].isna()].drop(columns="actual").reset_index(drop=True)
        return cls(
            as_of=as_of,
            week_starts=week_starts,
            category_weeks=weeks_of("category", category_ids),
            item_weeks=weeks_of("item", items["item_id"].astype(str).to_numpy()),
            items=items.drop(columns=["as_of", "seconds"]),
            forecasts=forecasts,
            backtest=backtest,
            seconds=float(items["seconds"].iloc[0]) if len(items) else 0.0,
        )


def _backtest_summary(rows: pd.DataFrame) -> dict:
    """Aggregate WAPE, mean MASE, the share beating the better baseline, models picked."""
    summary: dict = {"series": int(len(rows)), "points": int(rows["points"].sum()) if len(rows) else 0}
    if not len(rows):
        return summary
    actual = float(rows["actual"].sum())
    summary["wape"] = {m: _ratio(rows[f"abs_error_{m}"].sum(), actual) for m in ("chosen", *BASELINES)}
    summary["mase"] = {m: _mean(rows[f"mase_{m}"]) for m in ("chosen", *BASELINES)}
    summary["mase_series"] = int(rows["mase_chosen"].notna().sum())
    summary["beats_better_baseline"] = round(float(rows["beats_baseline"].mean()), 4)
    summary["models"] = {m: int(n) for m, n in rows["model"].value_counts().sort_index().items()}
    summary["fallbacks"] = int((rows["model"] == "mean4").sum())
    oos = rows.dropna(subset=["oos_actual"])
    if len(oos):
        oos_actual = float(oos["oos_actual"].sum())
        better = np.minimum(oos["oos_abs_error_naive"], oos["oos_abs_error_mean4"])
        summary["out_of_sample"] = {
            "wape": {m: _ratio(oos[f"oos_abs_error_{m}"].sum(), oos_actual) for m in ("chosen", *BASELINES)},
            "beats_better_baseline": round(float((oos["oos_abs_error_chosen"] < better).mean()), 4),
        }
    return summary


def _ratio(numerator: float, denominator: float) -> float | None:
    return round(float(numerator) / denominator, 4) if denominator > 0 else None


def _mean(values: pd.Series) -> float | None:
    values = values.dropna()
    return round(float(values.mean()), 4) if len(values) else None


def market_trends(
    events: pd.DataFrame,
    items: pd.DataFrame,
    item_category: np.ndarray,
    as_of: pd.Timestamp,
    min_active_weeks: int = 26,
    backtest_weeks: int = 8,
    horizon: int = 4,
    arima_items: int = 200,
    backtest: bool = True,
    models: Mapping[tuple[str, str], str] | None = None,
    interval: float = 0.8,
) -> MarketTrends:
    """Weekly series from events strictly before `as_of`, a model per eligible series, its
    forecast and each item's trending score. `item_category` holds the category id of each
    item row. With `backtest=False`, each series gets the model `models` names for it (from
    an earlier run's `models()`), else DEFAULT_MODEL, fitted only at `as_of`."""
    began = time.perf_counter()
    item_category = np.asarray(item_category, dtype=object)
    if len(item_category) != len(items):
        raise InvalidArgument("item_category", f"has {len(item_category)} entries for {len(items)} items")
    for name, value in (("min_active_weeks", min_active_weeks), ("backtest_weeks", backtest_weeks), ("horizon", horizon)):
        if value < 1:
            raise InvalidArgument(name, f"must be at least 1, got {value}")
    if not 0 < interval < 1:
        raise InvalidArgument("interval", f"must be in (0, 1), got {interval}")
    unknown = sorted(set((models or {}).values()) - set(MODELS) - {"mean4"})
    if unknown:
        raise InvalidArgument("models", f"unknown models {unknown}; known: {list(MODELS)}")
    as_of = pd.Timestamp(as_of)
    week_starts, item_counts, category_ids, category_counts = weekly_baskets(events, items, item_category, as_of)
    n_weeks = len(week_starts)
    item_ids = items["item_id"].astype(str).to_numpy()

    # Eligible series, categories first, then items.
    weeks = np.vstack([category_counts, item_counts])
    kinds = np.array(["category"] * len(category_ids) + ["item"] * len(items), dtype=object)
    series_ids = np.concatenate([category_ids.astype(str), item_ids]).astype(object)
    kind_code = (kinds == "item").astype(np.int64)  # model parameters are pooled per kind
    start = series_start(weeks)
    active = (np.nan_to_num(weeks) > 0).sum(axis=1)
    eligible = (active >= min_active_weeks) & (n_weeks - start >= backtest_weeks + MIN_FIT_WEEKS)
    rows = np.flatnonzero(eligible)
    totals = np.nansum(weeks[rows], axis=1)
    item_rank = pd.Series(np.where(kinds[rows] == "item", -totals, np.inf)).rank(method="first").to_numpy()
    with_arima = (kinds[rows] == "category") | (item_rank <= arima_items)

    if backtest:
        origins = list(range(n_weeks - backtest_weeks, n_weeks + 1))
        candidates = {m: np.ones(len(rows), bool) if m in ES_MODELS else with_arima for m in MODELS}
    else:
        origins = [n_weeks]
        given = models or {}
        wanted = np.array([given.get((k, s), DEFAULT_MODEL) for k, s in zip(kinds[rows], series_ids[rows])], dtype=object)
        # Fitted over the same pools as with a backtest (the parameters are pooled), kept where wanted.
        pools = {m: np.ones(len(rows), bool) if m in ES_MODELS else with_arima for m in MODELS}
        candidates = {m: (pools[m] | (wanted == m)) & (wanted == m).any() for m in MODELS}
    fits: dict[str, tuple[np.ndarray, Fits]] = {}
    for model, use in candidates.items():
        if use.any():
            fitted = rows[use]
            fitted_model = MODEL_FITS[model](weeks[fitted], start[fitted], kind_code[fitted], origins, horizon)
            fits[model] = (np.flatnonzero(use), fitted_model)

    # Forecasts per origin: [eligible, origins, H] for each candidate, NaN where not fitted.
    shape = (len(rows), len(origins), horizon)
    forecast = {m: np.full(shape, np.nan) for m in fits}
    variance = {m: np.full(shape, np.nan) for m in fits}
    for model, (where, fitted) in fits.items():
        forecast[model][where] = fitted.forecast
        variance[model][where] = fitted.variance

    table = pd.DataFrame(columns=["kind", "series_id", *BACKTEST_COLUMNS])
    if backtest:
        table = _backtest(weeks[rows], origins, forecast, backtest_weeks, horizon)
        chosen = table["model"].to_numpy(dtype=object)
        table.insert(0, "series_id", series_ids[rows])
        table.insert(0, "kind", kinds[rows])
    else:
        chosen = wanted
    # The final forecast: the chosen model at origin n_weeks; mean-of-4 (no interval) when it failed.
    last = len(origins) - 1
    recent4 = _mean_of_last(weeks[rows], n_weeks, MEAN_WEEKS)
    final = np.tile(recent4[:, None], (1, horizon))
    final_var = np.full((len(rows), horizon), np.nan)
    for model in fits:
        pick = chosen == model
        final[pick] = forecast[model][pick, last]
        final_var[pick] = variance[model][pick, last]
    failed = ~np.isfinite(final).all(axis=1)
    final[failed] = recent4[failed, None]
    chosen = np.where(failed, "mean4", chosen)

    z = norm.ppf(0.5 + interval / 2)
    spread = z * np.sqrt(final_var)
    future = pd.DatetimeIndex([as_of + h * WEEK for h in range(horizon)])
    forecasts = pd.DataFrame(
        {
            "kind": np.repeat(kinds[rows], horizon),
            "series_id": np.repeat(series_ids[rows], horizon),
            "model": np.repeat(chosen, horizon),
            "week_start": np.tile(future, len(rows)),
            "forecast": final.ravel(),
            "lower": np.clip(final - spread, 0.0, None).ravel(),
            "upper": (final + spread).ravel(),
        }
    )

    # Items: the score from the forecast (eligible) or the mean of the last 4 weeks.
    item_part = slice(len(category_ids), len(kinds))
    item_weeks_array = weeks[item_part]
    recent = _mean_of_last(item_weeks_array, n_weeks, RECENT_WEEKS)
    forecast_weekly = _mean_of_last(item_weeks_array, n_weeks, MEAN_WEEKS)
    item_model = np.where(active[item_part] > 0, "recent_mean", "none").astype(object)
    eligible_items = rows[kinds[rows] == "item"] - len(category_ids)
    forecast_weekly[eligible_items] = final[kinds[rows] == "item"].mean(axis=1)
    item_model[eligible_items] = chosen[kinds[rows] == "item"]
    trending = np.log((forecast_weekly + TREND_PRIOR) / (recent + TREND_PRIOR))
    last4_baskets = np.nansum(item_weeks_array[:, max(n_weeks - MEAN_WEEKS, 0):], axis=1)
    item_table = pd.DataFrame(
        {
            "item_id": item_ids,
            "category": item_category.astype(str),
            "active_weeks": active[item_part].astype(np.int64),
            "eligible": eligible[item_part],
            "model": item_model.astype(str),
            "forecast_weekly": forecast_weekly,
            "recent_weekly": recent,
            "trending": trending,
            "selling_fast": (trending >= SELLING_FAST_SCORE) & (last4_baskets >= SELLING_FAST_MIN_BASKETS),
        }
    )
    return MarketTrends(
        as_of=as_of,
        week_starts=week_starts,
        category_weeks=pd.DataFrame(category_counts, index=category_ids.astype(str), columns=week_starts),
        item_weeks=pd.DataFrame(item_counts, index=item_ids, columns=week_starts),
        items=item_table,
        forecasts=forecasts,
        backtest=table,
        seconds=time.perf_counter() - began,
    )


def _mean_of_last(weeks: np.ndarray, n_weeks: int, k: int) -> np.ndarray:
    """Mean of each series' last k weeks (fewer when the series is shorter; 0 when never sold)."""
    if n_weeks == 0:
        return np.zeros(len(weeks))
    tail = weeks[:, max(n_weeks - k, 0):]
    counted = (~np.isnan(tail)).sum(axis=1)
    return np.where(counted > 0, np.nansum(tail, axis=1) / np.maximum(counted, 1), 0.0)


BACKTEST_COLUMNS = [
    "model", "points", "actual", *(f"abs_error_{m}" for m in (*MODELS, "chosen", *BASELINES)),
    *(f"wape_{m}" for m in ("chosen", *BASELINES)), *(f"mase_{m}" for m in ("chosen", *BASELINES)),
    "scale", "beats_baseline", "oos_model", "oos_actual", *(f"oos_abs_error_{m}" for m in ("chosen", *BASELINES)),
]


def _backtest(
    weeks: np.ndarray, origins: list[int], forecast: dict[str, np.ndarray], backtest_weeks: int, horizon: int
) -> pd.DataFrame:
    """Per series: the candidate with the least absolute error over the backtest points, its
    and the baselines' errors, WAPE and MASE, and the out-of-sample variant."""
    n_series, n_weeks = weeks.shape
    if n_series == 0:
        return pd.DataFrame(columns=BACKTEST_COLUMNS)
    backtest_origins = np.array(origins[:-1])
    target = backtest_origins[:, None] + np.arange(horizon)[None, :]  # [origins, H]
    in_log = target < n_weeks
    actual = np.where(in_log[None], weeks[:, np.minimum(target, n_weeks - 1)], np.nan)  # [N, origins, H]
    predictions = {m: f[:, :-1] for m, f in forecast.items()}
    mean4 = np.stack([_mean_of_last(weeks[:, :o], o, MEAN_WEEKS) for o in backtest_origins], axis=1)
    predictions["naive"] = np.repeat(weeks[:, backtest_origins - 1, None], horizon, axis=2)
    predictions["mean4"] = np.repeat(mean4[:, :, None], horizon, axis=2)
    candidates = [m for m in MODELS if m in forecast]

    def abs_error(prediction: np.ndarray, where: np.ndarray) -> np.ndarray:
        """Σ|error| per series over the points `where`; inf when a prediction is missing
        (not a candidate of the series, or a failed fit)."""
        error = np.abs(actual - prediction)
        counted = np.where(where[None], np.nan_to_num(error), 0.0)
        return np.where(where[None] & np.isnan(error), np.inf, counted).sum(axis=(1, 2))

    def pick(where: np.ndarray) -> np.ndarray:
        """Per series the candidate of least error on `where` (ties: the simpler); none: mean4."""
        if not candidates:
            return np.full(n_series, "mean4", dtype=object)
        cost = np.stack([abs_error(predictions[m], where) for m in candidates], axis=1)
        names = np.array(candidates, dtype=object)[np.argmin(cost, axis=1)]
        return np.where(np.isfinite(cost.min(axis=1)), names, "mean4")

    def prediction_of(names: np.ndarray) -> np.ndarray:
        out = np.full(actual.shape, np.nan)
        for m in set(names):
            out[names == m] = predictions[m][names == m]
        return out

    chosen = pick(in_log)
    scored = {"chosen": prediction_of(chosen), "naive": predictions["naive"], "mean4": predictions["mean4"]}
    history = weeks[:, : origins[0]]  # NaN before the series' start
    table = pd.DataFrame({"model": chosen, "points": int(in_log.sum()), "actual": np.nansum(actual, axis=(1, 2))})
    for m in MODELS:
        error = abs_error(predictions[m], in_log) if m in predictions else np.full(n_series, np.inf)
        table[f"abs_error_{m}"] = np.where(np.isfinite(error), error, np.nan)
    for m, prediction in scored.items():
        table[f"abs_error_{m}"] = abs_error(prediction, in_log)
        table[f"wape_{m}"] = wape(actual, prediction, axis=(1, 2))
        table[f"mase_{m}"] = mase(actual, prediction, history, axis=(1, 2))
    table["scale"] = naive_scale(history)
    table["beats_baseline"] = table["abs_error_chosen"] < np.minimum(table["abs_error_naive"], table["abs_error_mean4"])

    # Out of sample: pick on targets before the window's second half, score on its origins.
    half = n_weeks - backtest_weeks // 2
    table["oos_model"], table["oos_actual"] = None, np.nan
    for m in ("chosen", *BASELINES):
        table[f"oos_abs_error_{m}"] = np.nan
    if backtest_weeks >= 2:
        oos_model = pick(in_log & (target < half))
        score = in_log & (backtest_origins[:, None] >= half)
        table["oos_model"] = oos_model
        table["oos_actual"] = np.where(score[None], actual, 0.0).sum(axis=(1, 2))
        table["oos_abs_error_chosen"] = abs_error(prediction_of(oos_model), score)
        for m in BASELINES:
            table[f"oos_abs_error_{m}"] = abs_error(predictions[m], score)
    return table
