"""Offline evaluation: one time split, every method side by side on the same shoppers.

    events before the cut-off ──▶ training log: Tailor's build, every baseline's fit
        └─ its last `validation_days` days ──▶ validation truth for tuning the baselines
    positives on/after the cut-off ──▶ truth: what each scored shopper bought

A shopper is scored when they bought before the cut-off and again on or after it; their
truth is the set of distinct items they bought on or after it (items bought before too count:
re-orders count). "Bought" is `insights.history.positive_events` (purchases; reviews rated ≥ 4 in
review-only data). Nothing learns or is tuned on events on/after the cut-off: every fit,
Tailor's build and all tuning see only the training log; baseline settings are chosen by
NDCG@k on a validation split inside it (the same rule: bought before the validation cut-off
and within the window), then refit on the whole training log. Tailor runs with the settings
it is given, through the one path Recommend serves (RecommendationFlow.recommend).
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from services.config import TailorConfig, load_config
from services.errors import TailorError
from services.evaluation import metrics
from services.evaluation.baselines import BASELINES, AnnOnly, Baseline
from services.insights.history import POSITIVE_RATING, positive_events
from services.shop_data import ShopData, load_shop_data

Progress = Callable[[str, int, int], None]
DEFAULT_HORIZON_DAYS = 30
# Fewer validation shoppers than this: the validation window widens (doubling) to find more.
MIN_VALIDATION_SHOPPERS = 100
METHODS = ("tailor", "popularity", "recent_popularity", "repeat", "itemknn", "ann", "als")
# Tailor's own list without the diversity re-rank (ranking.diversity = 0), from the same build.
WITHOUT_DIVERSITY = "tailor_without_diversity"
METRICS = ("ndcg", "recall", "map", "coverage", "diversity")


class EvaluationError(TailorError):
    """The evaluation cannot run as asked (a cut-off outside the data, no shopper to score)."""


def no_progress(step: str, done: int, total: int) -> None:
    pass


@dataclass(frozen=True)
class TimeSplit:
    cutoff: pd.Timestamp
    train: pd.DataFrame                 # every event (all types) strictly before the cut-off
    truth: dict[str, frozenset[str]]    # scored shopper → distinct items bought on/after the cut-off


def event_time(value: Any, events: pd.DataFrame) -> pd.Timestamp:
    """`value` (ISO text, date or Timestamp) as a Timestamp comparable with the log's timestamps."""
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError) as error:
        raise EvaluationError(f"cut-off {value!r} is not a date (YYYY-MM-DD expected)") from error
    if stamp is pd.NaT:
        raise EvaluationError(f"cut-off {value!r} is not a date (YYYY-MM-DD expected)")
    zone = getattr(events["timestamp"].dt, "tz", None)
    if zone is None:
        return stamp.tz_convert("UTC").tz_localize(None) if stamp.tzinfo else stamp
    return stamp.tz_localize(zone) if stamp.tzinfo is None else stamp.tz_convert(zone)


def default_cutoff(events: pd.DataFrame) -> pd.Timestamp:
    """DEFAULT_HORIZON_DAYS before the last event, at midnight."""
    return (events["timestamp"].max() - pd.Timedelta(days=DEFAULT_HORIZON_DAYS)).normalize()


def time_split(events: pd.DataFrame, cutoff: pd.Timestamp, until: pd.Timestamp | None = None) -> TimeSplit:
    """Training log before `cutoff`; truth from positives in [cutoff, until) (until: no end)."""
    before = events["timestamp"] < cutoff
    train = events[before]
    bought = positive_events(events)
    window = bought["timestamp"] >= cutoff
    if until is not None:
        window &= bought["timestamp"] < until
    after = bought[window]
    earlier_buyers = set(positive_events(train)["user_id"].astype(str))
    after = after[after["user_id"].astype(str).isin(earlier_buyers)]
    truth = {
        str(user): frozenset(map(str, group))
        for user, group in after.groupby("user_id", sort=True)["item_id"]
    }
    return TimeSplit(cutoff=cutoff, train=train, truth=truth)


def validation_split(train: pd.DataFrame, cutoff: pd.Timestamp, days: float) -> TimeSplit:
    """The last `days` days of the training log as validation; widened (doubling, up to half
    the log's span) while it scores fewer than MIN_VALIDATION_SHOPPERS shoppers."""
    start = train["timestamp"].min()
    span_days = (cutoff - start) / pd.Timedelta(days=1)
    days = min(days, span_days / 2)
    split = time_split(train, cutoff - pd.Timedelta(days=days), until=cutoff)
    while len(split.truth) < MIN_VALIDATION_SHOPPERS and days * 2 <= span_days / 2:
        days *= 2
        split = time_split(train, cutoff - pd.Timedelta(days=days), until=cutoff)
    return split


def ranked_ndcg(lists: list[list[str]], users: list[str], truth: dict[str, frozenset[str]], k: int) -> float:
    return float(np.mean([metrics.ndcg_at_k(ranked, truth[u], k) for ranked, u in zip(lists, users)])) if users else 0.0


def tune(
    method: type[Baseline],
    split: TimeSplit,
    items: pd.DataFrame,
    k: int,
    seed: int,
    progress: Progress = no_progress,
    grid: list[dict] | None = None,
) -> tuple[dict, float | None, int]:
    """(settings, validation NDCG@k, settings tried): the best of `grid` (default the method's
    param_grid, then its refine_grid around the winner); the first tried wins ties.

    A method with `iteration_checkpoints` is fitted once per setting and scored after each of
    those iteration counts, so iterations are tuned without refitting.
    """
    users = list(split.truth)
    step = f"tune {method.name}"
    stages = [grid] if grid is not None else [method.param_grid()]
    if len(stages[0]) <= 1 or not users:
        progress(step, 1, 1)
        return (dict(stages[0][0]) if stages[0] else {}), None, 0
    seeded = {"seed": seed} if "seed" in method.defaults else {}
    checkpoints = tuple(getattr(method, "iteration_checkpoints", ()))
    best: tuple[float, dict] | None = None
    tried: set[tuple] = set()

    def consider(score: float, params: dict) -> None:
        nonlocal best
        if best is None or score > best[0]:
            best = (score, params)

    def run(settings: list[dict], done: int, total: int) -> int:
        for params in settings:
            params = {name: value for name, value in params.items() if not (checkpoints and name == "iterations")}
            key = tuple(sorted(params.items()))
            if key in tried:
                continue
            tried.add(key)
            if checkpoints:
                model = method(**params, **seeded, iterations=max(checkpoints))

                def checkpoint(iterations: int, model=model, params=params) -> None:
                    if iterations in checkpoints:
                        score = ranked_ndcg(model.recommend(users, k), users, split.truth, k)
                        consider(score, {**params, "iterations": iterations})

                model.fit(split.train, items, callback=checkpoint)
            else:
                model = method(**params, **seeded).fit(split.train, items)
                consider(ranked_ndcg(model.recommend(users, k), users, split.truth, k), params)
            done += 1
            progress(step, done, max(total, done))
        return done

    first = stages[0]
    done = run(first, 0, len(first) + (0 if grid is not None else len(method.refine_grid(first[0]))))
    if grid is None:
        refine = method.refine_grid(best[1])
        done = run(refine, done, done + len(refine))
    progress(step, done, done)
    return best[1], best[0], len(tried)


def evaluate(
    data: str | Path | ShopData,
    cutoff: Any = None,
    k: int = 10,
    config: TailorConfig | None = None,
    progress: Progress = no_progress,
    workdir: Path | None = None,
    validation_days: float = DEFAULT_HORIZON_DAYS,
    seed: int = 0,
    grids: dict[str, list[dict]] | None = None,
) -> dict:
    """Every method on one time split; the result is what `tailor evaluate --json` writes.

    `cutoff` defaults to DEFAULT_HORIZON_DAYS before the last event; `grids` replaces a
    baseline's tuning grid by name (tests use small ones); `workdir` holds the temporary
    Tailor build (default: the system's temporary folder).
    """
    if k < 1:
        raise EvaluationError(f"k must be at least 1, not {k}")
    started = time.perf_counter()
    config = config or load_config()
    if isinstance(data, ShopData):
        shop, data_path = data, Path("<in memory>")
    else:
        data_path = Path(data)
        progress("load data", 0, 1)
        shop = load_shop_data(data_path)
        progress("load data", 1, 1)
    split = split_for(shop.events, cutoff)
    items = shop.items.reset_index(drop=True)
    validation = validation_split(split.train, split.cutoff, validation_days)

    tuned, lists, seconds = run_baselines(split, validation, items, k, seed, progress, grids or {})
    with tempfile.TemporaryDirectory(prefix="tailor-evaluate-", dir=workdir) as scratch:
        train_shop = ShopData(items=shop.items, events=split.train, report=shop.report)
        artifacts, seconds["tailor build steps"] = build_tailor(train_shop, data_path, Path(scratch), config, progress)
        ranker = artifacts.manifest["ranker"]
        # Which ranker Tailor's build chose, and why (the blend where the log is too small).
        tailor_ranker = {
            "ranker": ranker["kind"],
            **({"why": ranker["why"]} if "why" in ranker else {}),
            **({"ranker_validation_ndcg_at_10": ranker["validation"]["ndcg_at_10"]} if "validation" in ranker else {}),
        }
        for name, run in (("tailor", run_tailor), ("ann", run_ann)):
            clock = time.perf_counter()
            lists[name] = run(artifacts, config, split, items, k, progress)
            seconds[name] = round(time.perf_counter() - clock, 1)
        if config.ranking.diversity > 0:
            # The same build without the diversity re-rank: what diversity costs in accuracy.
            plain = config.model_copy(update={"ranking": config.ranking.model_copy(update={"diversity": 0.0})})
            lists[WITHOUT_DIVERSITY] = run_tailor(artifacts, plain, split, items, k, progress)
        item_vectors = np.asarray(artifacts.item_vectors)
        item_row = dict(zip(artifacts.items["item_id"].astype(str), range(len(artifacts.items))))

    results: dict[str, dict] = {}
    for done, name in enumerate(METHODS + tuple(name for name in lists if name not in METHODS)):
        scores = metrics.score_run(dict(zip(split.truth, lists[name])), split.truth, k, len(items), item_vectors, item_row)
        results[name] = {metric: round(scores[metric], 6) for metric in METRICS}
        if name == "tailor":
            results[name]["params"] = tailor_ranker
        if name in tuned:
            params, score, tried = tuned[name]
            results[name]["params"] = {
                **params, "validation_ndcg": None if score is None else round(score, 6), "settings_tried": tried
            }
        progress("metrics", done + 1, len(lists))
    seconds["total"] = round(time.perf_counter() - started, 1)
    events = shop.events
    best_other = max((m for m in METHODS if m != "tailor"), key=lambda m: results[m]["ndcg"])
    return {
        "k": k,
        "cutoff": split.cutoff.isoformat(),
        "shoppers_scored": len(split.truth),
        "methods": results,
        "tailor_vs_best_other": {
            "method": best_other,
            "ndcg_ratio": round(results["tailor"]["ndcg"] / results[best_other]["ndcg"], 4) if results[best_other]["ndcg"] else None,
            "diversity_weight": config.ranking.diversity,
        },
        "validation": {
            "cutoff": validation.cutoff.isoformat(),
            "days": round((split.cutoff - validation.cutoff) / pd.Timedelta(days=1), 1),
            "shoppers": len(validation.truth),
            "metric": f"ndcg@{k}",
        },
        "data": {
            "path": str(data_path),
            "source": shop.report.source if shop.report is not None else "",
            "items": len(items),
            "training_events": len(split.train),
            "first_event": events["timestamp"].min().isoformat(),
            "last_event": events["timestamp"].max().isoformat(),
            "positives": "purchase" if (events["event_type"] == "purchase").any() else f"review rated >= {POSITIVE_RATING:g}",
        },
        "seconds": seconds,
    }


def split_for(events: pd.DataFrame, cutoff: Any) -> TimeSplit:
    """The split at `cutoff` (default: DEFAULT_HORIZON_DAYS before the last event), or why there is none."""
    if events.empty:
        raise EvaluationError("the data holds no events")
    first, last = events["timestamp"].min(), events["timestamp"].max()
    cutoff = default_cutoff(events) if cutoff is None else event_time(cutoff, events)
    if not first < cutoff <= last:
        raise EvaluationError(
            f"cut-off {cutoff.isoformat()} is outside the data's time span "
            f"({first.isoformat()} … {last.isoformat()}): it must leave events before and on/after it"
        )
    split = time_split(events, cutoff)
    if not split.truth:
        raise EvaluationError(
            f"no shopper to score at cut-off {cutoff.isoformat()}: nobody bought both before and on/after it"
        )
    return split


def run_baselines(
    split: TimeSplit, validation: TimeSplit, items: pd.DataFrame, k: int, seed: int, progress: Progress, grids: dict
) -> tuple[dict, dict[str, list[list[str]]], dict]:
    """Tune every baseline on the validation split, refit it on the whole training log, list."""
    seconds: dict[str, Any] = {}
    clock = time.perf_counter()
    tuned = {
        method.name: tune(method, validation, items, k, seed, progress, grids.get(method.name)) for method in BASELINES
    }
    seconds["tuning"] = round(time.perf_counter() - clock, 1)
    users = list(split.truth)
    lists = {}
    for method in BASELINES:
        clock = time.perf_counter()
        progress(f"fit {method.name}", 0, 1)
        seeded = {"seed": seed} if "seed" in method.defaults else {}
        lists[method.name] = method(**tuned[method.name][0], **seeded).fit(split.train, items).recommend(users, k)
        progress(f"fit {method.name}", 1, 1)
        seconds[method.name] = round(time.perf_counter() - clock, 1)
    return tuned, lists, seconds


def build_tailor(shop: ShopData, data_path: Path, scratch: Path, config: TailorConfig, progress: Progress):
    """(the build's Artifacts, seconds per build step): Tailor's own build of the training log."""
    from services.artifacts import Artifacts
    from services.build import build_from_shop_data

    spent: dict[str, float] = {}
    last_report = [time.perf_counter()]

    def timed(step: str, done: int, total: int) -> None:
        """Pass the build's progress on; the time since the last report goes to this step."""
        now = time.perf_counter()
        spent[step] = spent.get(step, 0.0) + now - last_report[0]
        last_report[0] = now
        progress(step, done, total)

    artifacts_dir = scratch / "artifacts"
    build_from_shop_data(shop, data_path, artifacts_dir, config, timed, force=True)
    return Artifacts.open(artifacts_dir, config.index), {step: round(s, 1) for step, s in spent.items()}


def run_tailor(artifacts, config: TailorConfig, split: TimeSplit, items, k: int, progress: Progress) -> list[list[str]]:
    """Tailor's lists: RecommendationFlow.recommend, the path Recommend serves, one shopper at a time."""
    from services.recommend.flow import RecommendationFlow, ShopperQuery

    flow = RecommendationFlow(artifacts, config)
    users = list(split.truth)
    lists = []
    for done, user in enumerate(users):
        lists.append([ranked.item_id for ranked in flow.recommend(ShopperQuery(user_id=user, k=k))])
        if done % 25 == 0 or done + 1 == len(users):
            progress("score tailor", done + 1, len(users))
    return lists


def run_ann(artifacts, config: TailorConfig, split: TimeSplit, items, k: int, progress: Progress) -> list[list[str]]:
    """The build's user vectors against its FAISS index alone."""
    progress("score ann", 0, 1)
    lists = AnnOnly(artifacts).fit(split.train, items).recommend(list(split.truth), k)
    progress("score ann", 1, 1)
    return lists
