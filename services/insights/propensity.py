"""Purchase propensity: the probability that a shopper buys within the next `horizon_days`.

Time split at as_of T with horizon h:
- train:    features at T−2h, label "bought in [T−2h, T−h)";
- held out: features at T−h,  label "bought in [T−h, T)" — the model trained on the train
  window is scored here (ROC-AUC, Brier, a 10-bin reliability table), next to the recency-only
  baseline fitted on the same train window;
- served:   the model is refitted on the held-out window (the latest labelled one) with the
  same number of boosting rounds and scores every shopper at T.
The rounds come from early stopping on a fifth of the train window's shoppers, picked by a
hash of their id (stable across runs and cuts).

A window holds every shopper with an event before its cut, so shoppers who never bought (only
returns, views, or low-rated reviews) are in, with recency NaN; their label is a first purchase.
Only events strictly before T are read: called with as_of = an earlier cut (the learned
ranker's) it sees what the shop knew then.

Features: the insights.activity columns at the cut, plus a few cheap ones from the basket
times (EXTRA_FEATURES). LightGBM, binary, small trees, seeded and deterministic.

Calibration, as measured on the whole UCI file: within its own month the raw model is
calibrated (on the train window's validation fifth it predicts 0.29 on average where 0.28
bought); on the held-out month it under-predicts every bin by a few points (0.30 against 0.34)
because more shoppers buy in November than in October. That is the season moving, not the
model's shape, and a recalibration fitted on past windows cannot know the next month's season,
so none is applied: the reliability table shows it and the served model, refitted on the latest
month, carries that month's level.

The baseline is honest: a logistic regression on log1p(days since the last purchase), a
never-bought shopper counting the days since first seen (the same rule as the segments).

Too little to learn from (a window under `min_shoppers`, or under `min_class` shoppers of
either label): the served propensity is the baseline refitted on the latest window with both
labels; with no such window, the latest window's purchase rate, Laplace-smoothed, for
everyone ("base rate"); with no labelled window at all (no event before T−h), NaN ("none").
`method` and `note` say which.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from services.errors import InvalidArgument
from services.insights.activity import ACTIVITY_COLUMNS, shopper_activity
from services.insights.history import DAY, baskets_of, positive_events

EXTRA_FEATURES: dict[str, str] = {
    "baskets_7d": "baskets in the 7 days before the cut",
    "baskets_14d": "baskets in the 14 days before the cut",
    "baskets_180d": "baskets in the 180 days before the cut",
    "basket_trend": "pace of the last 30 days over that of the last 90 ((b30 + 1) / (b90 / 3 + 1))",
    "overdue": "recency over the shopper's mean interval between baskets (NaN: under two baskets)",
    "last_gap_days": "days between the last two baskets (NaN: under two baskets)",
    "spend_90d": "spend in the 90 days before the cut",
    "active_months": "30-day periods of the last 360 days with a basket",
}
FEATURES = tuple(ACTIVITY_COLUMNS) + tuple(EXTRA_FEATURES)
RELIABILITY_BINS = 10
TOP_CONTRIBUTIONS = 3
MAX_ROUNDS = 1000
EARLY_STOPPING_ROUNDS = 50
VALIDATION_FOLDS = 5  # a fifth of the train window's shoppers decides the number of rounds
DEFAULT_ROUNDS = 100  # when the hash leaves that fifth (or the rest) empty: a window of a few shoppers
CURRENCY_SYMBOLS = {"GBP": "£", "USD": "$", "EUR": "€", "CNY": "¥", "JPY": "¥"}


@dataclass
class HeldOut:
    """A model's scores on the held-out window against what the shoppers did."""

    auc: float | None              # None: one label class only
    brier: float
    shoppers: int
    positives: int
    mean_predicted: float
    reliability: pd.DataFrame      # bin, lower, upper, count, mean_predicted, observed_rate (NaN: empty bin)

    def report(self) -> dict:
        return {
            "auc": None if self.auc is None else round(self.auc, 4),
            "brier": round(self.brier, 4),
            "shoppers": self.shoppers,
            "positives": self.positives,
            "observed_rate": round(self.positives / max(self.shoppers, 1), 4),
            "mean_predicted": round(self.mean_predicted, 4),
            "reliability": [
                {
                    "bin": int(row.bin),
                    "lower": round(float(row.lower), 2),
                    "upper": round(float(row.upper), 2),
                    "count": int(row.count),
                    "mean_predicted": None if np.isnan(row.mean_predicted) else round(float(row.mean_predicted), 4),
                    "observed_rate": None if np.isnan(row.observed_rate) else round(float(row.observed_rate), 4),
                }
                for row in self.reliability.itertuples()
            ],
        }


@dataclass
class Propensity:
    as_of: pd.Timestamp
    horizon_days: float
    probability: pd.Series         # index user_id (every shopper with an event before as_of), in [0, 1]
    method: str                    # "lightgbm" | "recency baseline" | "base rate" | "none"
    note: str                      # why, when not "lightgbm"
    # Per shopper, the features that moved their score most: user_id, rank (1..3), feature,
    # value (the feature at as_of), contribution (signed, log-odds), phrase ("bought 2 days ago").
    contributions: pd.DataFrame
    importance: pd.DataFrame       # feature, gain, share: the served model's gain importance
    model: HeldOut | None          # the LightGBM trained on the train window (None: not trained)
    baseline: HeldOut | None       # the recency-only baseline from the same windows
    rounds: int                    # boosting rounds (0: no LightGBM)
    windows: pd.DataFrame          # window (train/held_out/served), cut, label_end, shoppers, positives
    # Set when the models learned from a sample of each window: {"fitted_on_shoppers": n, "of": all}.
    sampling: dict = field(default_factory=dict)

    def report(self) -> dict:
        return {
            "as_of": self.as_of.isoformat(),
            "horizon_days": self.horizon_days,
            "method": self.method,
            "note": self.note,
            "rounds": self.rounds,
            "shoppers": int(len(self.probability)),
            "mean_probability": None if self.probability.isna().all() else round(float(self.probability.mean()), 4),
            "windows": [
                {
                    "window": row.window,
                    "cut": row.cut.isoformat(),
                    "label_end": None if pd.isna(row.label_end) else row.label_end.isoformat(),
                    "shoppers": int(row.shoppers),
                    "positives": None if pd.isna(row.positives) else int(row.positives),
                }
                for row in self.windows.itertuples()
            ],
            "held_out": {
                "model": None if self.model is None else self.model.report(),
                "recency_baseline": None if self.baseline is None else self.baseline.report(),
            },
            "importance": [
                {"feature": row.feature, "share": round(float(row.share), 4)} for row in self.importance.head(10).itertuples()
            ],
        }


def purchase_propensity(
    events: pd.DataFrame,
    as_of: pd.Timestamp,
    horizon_days: float = 30.0,
    seed: int = 0,
    currency: str = "",
    min_shoppers: int = 100,
    min_class: int = 10,
    num_leaves: int = 7,
    learning_rate: float = 0.05,
    num_threads: int = 1,
    fit_max_shoppers: int | None = None,
) -> Propensity:
    """Propensity to buy within `horizon_days` after `as_of`, for every shopper with an event
    before `as_of`, from the events before `as_of` only.

    horizon_days and seed are InsightsConfig's propensity_horizon_days and seed; `currency`
    (ISO code) only formats the phrases. One thread by default: LightGBM on a few thousand
    rows is quick on one core, and its OpenMP threads spun 20× slower on a busy shared one.
    Above `fit_max_shoppers` shoppers in a window, the models learn from a seeded sample of
    that many; they are still scored on the whole held-out window and score every shopper."""
    if horizon_days <= 0:
        raise InvalidArgument("horizon_days", f"must be positive, got {horizon_days}")
    as_of = pd.Timestamp(as_of)
    events = events[events["timestamp"] < as_of]
    horizon = pd.Timedelta(days=horizon_days)
    baskets = basket_table(events)
    bought = positive_events(events)

    served_x = propensity_features(events, baskets, as_of)
    windows = []
    for window, cut in (("train", as_of - 2 * horizon), ("held_out", as_of - horizon)):
        x = propensity_features(events, baskets, cut)
        later = bought[(bought["timestamp"] >= cut) & (bought["timestamp"] < cut + horizon)]
        y = x.index.isin(later["user_id"].unique()).astype(np.int64)
        windows.append((window, cut, cut + horizon, x, y))
    (_, _, _, train_x, train_y), (_, _, _, held_x, held_y) = windows
    window_table = pd.DataFrame(
        [(w, cut, end, len(y), int(y.sum())) for w, cut, end, _, y in windows]
        + [("served", as_of, pd.NaT, len(served_x), np.nan)],
        columns=["window", "cut", "label_end", "shoppers", "positives"],
    )
    baseline = None
    if two_classes(train_y) and len(held_y):
        baseline = held_out_scores(fit_recency_baseline(train_x, train_y).predict(held_x), held_y)
    common = {"as_of": as_of, "horizon_days": horizon_days, "baseline": baseline, "windows": window_table}

    def learnable(y: np.ndarray) -> bool:
        return len(y) >= min_shoppers and min(y.sum(), len(y) - y.sum()) >= min_class

    if not (learnable(train_y) and learnable(held_y)):
        reason = (
            f"too little to learn from (a window needs {min_shoppers}+ shoppers and {min_class}+ of each "
            f"label; train {len(train_y)} shoppers / {int(train_y.sum())} bought, held out "
            f"{len(held_y)} / {int(held_y.sum())})"
        )
        return fallback_propensity(served_x, [(held_x, held_y), (train_x, train_y)], reason, currency, common)

    params = {
        "objective": "binary",
        "learning_rate": learning_rate,
        "num_leaves": num_leaves,
        "min_data_in_leaf": 20,
        "lambda_l2": 1.0,
        "seed": seed,
        "deterministic": True,
        "force_col_wise": True,
        "num_threads": num_threads,
        "verbose": -1,
    }
    rng = np.random.default_rng(seed)
    (fit_train_x, fit_train_y), (fit_held_x, fit_held_y) = (
        fit_sample(x, y, fit_max_shoppers, rng) for x, y in ((train_x, train_y), (held_x, held_y))
    )
    rounds = boosting_rounds(params, fit_train_x, fit_train_y)
    evaluated = lgb.train(params, lgb.Dataset(fit_train_x, fit_train_y), num_boost_round=rounds)
    served = lgb.train(params, lgb.Dataset(fit_held_x, fit_held_y), num_boost_round=rounds)
    contrib = served.predict(served_x, pred_contrib=True)  # per feature, then the bias: log-odds
    gain = served.feature_importance("gain")
    importance = pd.DataFrame({"feature": list(FEATURES), "gain": gain, "share": gain / max(gain.sum(), 1e-12)})
    return Propensity(
        probability=pd.Series(1.0 / (1.0 + np.exp(-contrib.sum(axis=1))), index=served_x.index, name="propensity"),
        method="lightgbm",
        note="",
        contributions=top_contributions(served_x, contrib[:, :-1], list(FEATURES), currency),
        importance=importance.sort_values("gain", ascending=False, kind="stable").reset_index(drop=True),
        model=held_out_scores(evaluated.predict(held_x), held_y),
        rounds=rounds,
        sampling={} if len(fit_held_y) == len(held_y) else {"fitted_on_shoppers": len(fit_held_y), "of": len(held_y)},
        **common,
    )


def fit_sample(
    features: pd.DataFrame, labels: np.ndarray, limit: int | None, rng: np.random.Generator
) -> tuple[pd.DataFrame, np.ndarray]:
    """At most `limit` shoppers of a window, drawn without replacement, kept in their order."""
    if limit is None or len(labels) <= limit:
        return features, labels
    rows = np.sort(rng.choice(len(labels), size=limit, replace=False))
    return features.iloc[rows], labels[rows]


def two_classes(labels: np.ndarray) -> bool:
    return 0 < labels.sum() < len(labels)


def fallback_propensity(
    served_x: pd.DataFrame, windows: list[tuple[pd.DataFrame, np.ndarray]], reason: str, currency: str, common: dict
) -> Propensity:
    """The recency baseline refitted on the latest window with both labels; else the latest
    window's smoothed purchase rate; else NaN."""
    for x, y in windows:
        if not two_classes(y):
            continue
        refit = fit_recency_baseline(x, y)
        recency = served_x["recency_days"].to_numpy()
        contributions = pd.DataFrame(
            {
                "user_id": served_x.index.to_numpy(),
                "rank": 1,
                "feature": "recency_days",
                "value": recency,
                "contribution": refit.coefficient * (recency_feature(served_x) - refit.mean_log_recency),
                "phrase": phrases("recency_days", recency, currency),
            }
        )
        return Propensity(
            probability=pd.Series(refit.predict(served_x), index=served_x.index, name="propensity"),
            method="recency baseline",
            note=reason + ": the recency baseline serves",
            contributions=contributions,
            importance=pd.DataFrame({"feature": ["recency_days"], "gain": [np.nan], "share": [1.0]}),
            model=None,
            rounds=0,
            **common,
        )
    labelled = [y for _, y in windows if len(y)]
    # Laplace-smoothed: five shoppers who all bought do not make a certainty.
    rate = float((labelled[0].sum() + 1) / (len(labelled[0]) + 2)) if labelled else np.nan
    why = ": one label class only, the window's purchase rate serves" if labelled else ": no shopper before the windows' cuts"
    return Propensity(
        probability=pd.Series(rate, index=served_x.index, name="propensity", dtype=np.float64),
        method="base rate" if labelled else "none",
        note=reason + why,
        contributions=pd.DataFrame(
            {
                "user_id": pd.Series(dtype=str),
                "rank": pd.Series(dtype=np.int64),
                "feature": pd.Series(dtype=str),
                "value": pd.Series(dtype=np.float64),
                "contribution": pd.Series(dtype=np.float64),
                "phrase": pd.Series(dtype=str),
            }
        ),
        importance=pd.DataFrame({"feature": pd.Series(dtype=str), "gain": pd.Series(dtype=float), "share": pd.Series(dtype=float)}),
        model=None,
        rounds=0,
        **common,
    )


def basket_table(events: pd.DataFrame) -> pd.DataFrame:
    """One row per bought basket: user_id, t (its first event), spend."""
    bought = positive_events(events)
    lines = pd.DataFrame(
        {
            "user_id": bought["user_id"].array,  # as in shopper_activity: no Python string per event
            "basket": baskets_of(bought).array,
            "t": bought["timestamp"].to_numpy(),
            "spend": bought["quantity"].fillna(1.0).to_numpy() * np.nan_to_num(bought["price"].to_numpy(np.float64, na_value=np.nan)),
        }
    )
    table = lines.groupby(["user_id", "basket"], sort=False).agg(t=("t", "min"), spend=("spend", "sum")).reset_index()
    return table.sort_values(["user_id", "t"], kind="stable").reset_index(drop=True)


def propensity_features(events: pd.DataFrame, baskets: pd.DataFrame, cut: pd.Timestamp) -> pd.DataFrame:
    """FEATURES at `cut`, one row per shopper with an event before it (index user_id)."""
    table = shopper_activity(events, cut)
    before = baskets[baskets["t"] < cut]
    age = (cut - before["t"]).dt.total_seconds().to_numpy() / DAY
    for days in (7, 14, 180):
        table[f"baskets_{days}d"] = before[age <= days].groupby("user_id").size().reindex(table.index, fill_value=0).astype(np.float64)
    table["basket_trend"] = (table["baskets_30d"] + 1.0) / (table["baskets_90d"] / 3.0 + 1.0)
    table["overdue"] = table["recency_days"] / table["mean_interval_days"].where(table["mean_interval_days"] > 0)
    gaps = before.groupby("user_id")["t"].diff().dt.total_seconds() / DAY
    table["last_gap_days"] = gaps.groupby(before["user_id"]).last().reindex(table.index)
    table["spend_90d"] = before[age <= 90].groupby("user_id")["spend"].sum().reindex(table.index, fill_value=0.0)
    last_year = age < 360
    periods = pd.Series((age[last_year] // 30).astype(np.int64), index=before.index[last_year])
    table["active_months"] = periods.groupby(before["user_id"][last_year]).nunique().reindex(table.index, fill_value=0)
    return table[list(FEATURES)].astype(np.float64)


@dataclass
class RecencyBaseline:
    """p = sigmoid(intercept + coefficient · log1p(recency)), recency of a never-bought
    shopper = days since first seen."""

    intercept: float
    coefficient: float
    mean_log_recency: float  # of the window it was fitted on: contributions are relative to it

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(self.intercept + self.coefficient * recency_feature(features))))


def recency_feature(features: pd.DataFrame) -> np.ndarray:
    recency = features["recency_days"].fillna(features["tenure_days"])
    return np.log1p(recency.to_numpy(np.float64).clip(min=0.0))


def fit_recency_baseline(features: pd.DataFrame, labels: np.ndarray) -> RecencyBaseline:
    x = recency_feature(features)
    fitted = LogisticRegression().fit(x[:, None], labels)
    return RecencyBaseline(float(fitted.intercept_[0]), float(fitted.coef_[0, 0]), float(x.mean()))


def boosting_rounds(params: dict, features: pd.DataFrame, labels: np.ndarray) -> int:
    """Rounds by early stopping on a hash-picked fifth of the window's shoppers."""
    fold = pd.util.hash_array(features.index.to_numpy(dtype=object).astype(str)) % VALIDATION_FOLDS
    valid = fold == 0
    if valid.all() or not valid.any():
        return DEFAULT_ROUNDS
    train_set = lgb.Dataset(features[~valid], labels[~valid])
    valid_set = lgb.Dataset(features[valid], labels[valid], reference=train_set)
    booster = lgb.train(
        params, train_set, num_boost_round=MAX_ROUNDS, valid_sets=[valid_set],
        callbacks=[lgb.early_stopping(EARLY_STOPPING_ROUNDS, verbose=False)],
    )
    return max(int(booster.best_iteration), 1)


def held_out_scores(predicted: np.ndarray, labels: np.ndarray) -> HeldOut:
    predicted = np.asarray(predicted, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, RELIABILITY_BINS + 1)
    bins = np.clip((predicted * RELIABILITY_BINS).astype(np.int64), 0, RELIABILITY_BINS - 1)
    count = np.bincount(bins, minlength=RELIABILITY_BINS)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_predicted = np.bincount(bins, predicted, RELIABILITY_BINS) / count
        observed = np.bincount(bins, labels, RELIABILITY_BINS) / count
    reliability = pd.DataFrame(
        {
            "bin": np.arange(RELIABILITY_BINS),
            "lower": edges[:-1],
            "upper": edges[1:],
            "count": count,
            "mean_predicted": mean_predicted,
            "observed_rate": observed,
        }
    )
    both = 0 < labels.sum() < len(labels)
    return HeldOut(
        auc=float(roc_auc_score(labels, predicted)) if both else None,
        brier=float(np.mean((predicted - labels) ** 2)) if len(labels) else float("nan"),
        shoppers=int(len(labels)),
        positives=int(labels.sum()),
        mean_predicted=float(predicted.mean()) if len(labels) else float("nan"),
        reliability=reliability,
    )


def top_contributions(features: pd.DataFrame, contrib: np.ndarray, names: list[str], currency: str) -> pd.DataFrame:
    """The TOP_CONTRIBUTIONS features of largest |contribution| per shopper, as a tidy table."""
    n, top = len(features), min(TOP_CONTRIBUTIONS, contrib.shape[1])
    order = np.argsort(-np.abs(contrib), axis=1, kind="stable")[:, :top]
    rows = np.repeat(np.arange(n), top)
    columns = order.ravel()
    table = pd.DataFrame(
        {
            "user_id": features.index.to_numpy()[rows],
            "rank": np.tile(np.arange(1, top + 1), n),
            "feature": np.asarray(names, dtype=object)[columns],
            "value": features.to_numpy()[rows, columns],
            "contribution": contrib[rows, columns],
        }
    )
    # Filled as one array and set once: writing into the string column feature by feature
    # copied all of it each time (minutes at a million shoppers).
    phrase = np.empty(len(table), dtype=object)
    values = table["value"].to_numpy()
    for feature, positions in table.groupby("feature").indices.items():
        phrase[positions] = phrases(feature, values[positions], currency)
    table["phrase"] = phrase.astype(str) if len(table) else ""
    return table


def _count(value: float, one: str, many: str) -> str:
    n = int(round(value))
    return f"{n} {one if n == 1 else many}"


def phrases(feature: str, values: np.ndarray, currency: str) -> list[str]:
    """A shopper-level phrase for each value of one feature: "bought 2 days ago"."""
    symbol = CURRENCY_SYMBOLS.get(currency, f"{currency} " if currency else "")

    def days_ago(v: float, verb: str) -> str:
        return f"{verb} today" if v < 1 else f"{verb} {_count(v, 'day', 'days')} ago"

    def phrase(v: float) -> str:
        if np.isnan(v):
            return {
                "recency_days": "never bought",
                "avg_basket_value": "no basket yet",
                "mean_interval_days": "fewer than two baskets",
                "overdue": "fewer than two baskets",
                "last_gap_days": "fewer than two baskets",
                "mean_unit_price": "unit prices unknown",
                "mean_rating": "no rating given",
            }.get(feature, f"{feature} unknown")
        if feature.startswith("baskets_") and feature.endswith("d"):
            return f"{_count(v, 'basket', 'baskets')} in the last {feature[8:-1]} days"
        match feature:
            case "recency_days":
                return days_ago(v, "bought")
            case "inactive_days":
                return days_ago(v, "last seen")
            case "tenure_days":
                return days_ago(v, "first seen")
            case "frequency":
                return f"{_count(v, 'basket', 'baskets')} in all"
            case "monetary":
                return f"{symbol}{v:,.0f} spent in all"
            case "spend_90d":
                return f"{symbol}{v:,.0f} spent in the last 90 days"
            case "avg_basket_value":
                return f"{symbol}{v:,.0f} a basket on average"
            case "mean_unit_price":
                return f"pays {symbol}{v:,.2f} a unit on average"
            case "distinct_items":
                return f"{_count(v, 'different item', 'different items')} bought"
            case "units":
                return f"{_count(v, 'unit', 'units')} bought"
            case "mean_interval_days":
                return f"a basket every {_count(v, 'day', 'days')} on average"
            case "last_gap_days":
                return f"{_count(v, 'day', 'days')} between the last two baskets"
            case "overdue":
                return f"{v:.1f}× the usual gap since the last basket"
            case "basket_trend":
                return "buying faster than usual" if v > 1.05 else ("buying slower than usual" if v < 0.95 else "buying at the usual pace")
            case "mean_rating":
                return f"rates {v:.1f}/5 on average"
            case "active_months":
                return f"bought in {int(round(v))} of the last 12 months"
            case "events":
                return _count(v, "action in the shop", "actions in the shop")
            case "views" | "carts" | "searches" | "reviews" | "returns":
                word = {"searches": ("search", "searches")}.get(feature, (feature[:-1], feature))
                return _count(v, *word)
        return f"{feature} {v:g}"

    return [phrase(float(v)) for v in values]
