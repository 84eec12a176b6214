"""The ranker: LightGBM LambdaRank over candidate features, trained in `tailor build` on a
time split inside the log; a documented blend where the log is too small to learn from.

Training: features come from everything before an internal cut `ranking.label_days` before
the end of the log (the same candidate sources and features serving uses, at that moment);
labels are graded by how many baskets held the item in the days after the cut (1, 2, 3+).
Shoppers are split 80/20 by a hash of their id; the 20 % stop the boosting early and give
the validation NDCG@10 kept in the manifest, next to the blend's on the same shoppers. The
model is then refitted on all shoppers with the chosen number of rounds.

The blend (when fewer than `ranking.min_training_shoppers` shoppers bought after the cut) is
a weighted reciprocal-rank fusion of the sources (Cormack et al. 2009, k = 10):
    Σ_source weight / (10 + rank in that source)   weights: history 1.0, co_purchase 0.5,
                                                    als 0.3, recent 0.2, popular 0.1
  + 0.02·ann_similarity  (breaks ties between items only popularity found)
so re-orders lead, then what sells with them, then what is popular now. Each row's score
depends on that row alone, as the learned ranker's does, so batching changes nothing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from services.config import TailorConfig
from services.insights.history import baskets_of, positive_events
from services.recommend.candidates import gather, shopper_for
from services.recommend.features import FEATURES, candidate_features
from services.recommend.filters import repurchase_allowed
from services.recommend.snapshot import Snapshot, snapshot_at
from services.recommend.vector_index import VectorIndex

BLEND_WEIGHTS = {"history": 1.0, "co_purchase": 0.5, "als": 0.3, "recent": 0.2, "popular": 0.1}
ANN_WEIGHT = 0.02
RRF_K = 10.0
VALIDATION_SHARE = 0.2
EVAL_AT = 10
MAX_GRADE = 3


class BlendRanker:
    name = "blend/v1"

    def score(self, features: np.ndarray) -> np.ndarray:
        total = np.zeros(len(features))
        for source, weight in BLEND_WEIGHTS.items():
            rank = features[:, FEATURES.index(f"{source}_rank")]
            total += np.where(np.isnan(rank), 0.0, weight / (RRF_K + np.nan_to_num(rank, nan=1.0)))
        return total + ANN_WEIGHT * np.nan_to_num(features[:, FEATURES.index("ann_similarity")], nan=0.0)


class LearnedRanker:
    name = "lightgbm-lambdarank/v1"

    def __init__(self, booster):
        self.booster = booster

    def score(self, features: np.ndarray) -> np.ndarray:
        if not len(features):
            return np.empty(0)
        # One thread: a request's few hundred rows cost less than waking a pool.
        return self.booster.predict(features, num_threads=1)

    @classmethod
    def load(cls, path: Path) -> "LearnedRanker":
        import lightgbm as lgb

        return cls(lgb.Booster(model_file=str(path)))


Ranker = BlendRanker | LearnedRanker


def load_ranker(model_file: Path, manifest: dict) -> Ranker:
    kind = manifest.get("ranker", {}).get("kind", "blend")
    return LearnedRanker.load(model_file) if kind == "lightgbm" else BlendRanker()


# --- training ----------------------------------------------------------------------------------

Progress = Callable[[str, int, int], None]


@dataclass
class TrainingResult:
    ranker: Ranker
    report: dict = field(default_factory=dict)
    # Set when it learned from a sample of the labelled shoppers: {"fitted_on_shoppers": n, "of": all}.
    sampling: dict = field(default_factory=dict)

    def save(self, model_file: Path) -> None:
        if isinstance(self.ranker, LearnedRanker):
            self.ranker.booster.save_model(str(model_file))


def graded_labels(events: pd.DataFrame, start: pd.Timestamp, user_ids: np.ndarray, item_row: pd.Series) -> dict[int, dict[int, int]]:
    """user row → {item row: grade}: baskets holding the item on/after `start` (purchases, or
    reviews rated 4+: what the evaluation counts as a hit), capped at MAX_GRADE."""
    liked = positive_events(events)
    after = liked[liked["timestamp"] >= start]
    user_row = pd.Series(np.arange(len(user_ids)), index=user_ids)
    frame = pd.DataFrame(
        {
            "u": user_row.reindex(after["user_id"].to_numpy()).to_numpy(),
            "i": item_row.reindex(after["item_id"].to_numpy()).to_numpy(),
            "basket": baskets_of(after).to_numpy(),
        }
    ).dropna()
    grades = frame.groupby(["u", "i"])["basket"].nunique().clip(upper=MAX_GRADE)
    labels: dict[int, dict[int, int]] = {}
    for (u, i), grade in grades.items():
        labels.setdefault(int(u), {})[int(i)] = int(grade)
    return labels


def validation_user(user_id: str) -> bool:
    return int(hashlib.sha1(user_id.encode()).hexdigest()[:8], 16) % 100 < VALIDATION_SHARE * 100


def ndcg_at(scores: np.ndarray, labels: np.ndarray, groups: np.ndarray, k: int = EVAL_AT) -> float:
    """Mean NDCG@k over groups with gains 2^grade − 1 (LightGBM's default label_gain)."""
    values, start = [], 0
    for size in groups:
        s, y = scores[start : start + size], labels[start : start + size]
        start += size
        gains = np.power(2.0, y) - 1
        discount = 1 / np.log2(np.arange(2, k + 2))
        top = np.argsort(-s, kind="stable")[:k]
        ideal = np.sort(gains)[::-1][:k]
        values.append(float((gains[top] * discount[: len(top)]).sum() / (ideal * discount[: len(ideal)]).sum()))
    return float(np.mean(values)) if values else 0.0


def train_ranker(
    events: pd.DataFrame,
    items: pd.DataFrame,
    item_vectors: np.ndarray,
    index: VectorIndex,
    config: TailorConfig,
    progress: Progress = lambda *_: None,
    item_category: np.ndarray | None = None,
) -> TrainingResult:
    """`item_category`: the build's category of each item row, as snapshot_at takes it."""
    ranking = config.ranking
    end = events["timestamp"].max()
    cut = end - pd.Timedelta(days=ranking.label_days)
    report = {"label_days": ranking.label_days, "internal_cut": cut.isoformat(), "features": list(FEATURES)}
    if cut <= events["timestamp"].min():
        return TrainingResult(BlendRanker(), {**report, "kind": "blend", "why": "the log is shorter than the label window"})

    progress("train ranker", 0, 1)
    snapshot = snapshot_at(events, items, item_vectors, index, cut, config, item_category)
    # Shown beside the build's own: a propensity made another way at the cut than at the end
    # (a small shop falls back to recency) means the feature shifted between training and serving.
    report["propensity_method_at_cut"] = snapshot.signals.propensity_method
    labels = graded_labels(events, cut, snapshot.history.user_ids, snapshot.item_row)
    users = sorted(labels)
    report["labelled_shoppers"] = len(users)
    if len(users) < ranking.min_training_shoppers:
        why = f"{len(users)} shoppers bought after the internal cut; the learned ranker needs {ranking.min_training_shoppers}"
        return TrainingResult(BlendRanker(), {**report, "kind": "blend", "why": why})
    sampling = {}
    if len(users) > ranking.fit_max_shoppers:
        # Candidates are gathered shopper by shopper, as serving does: a sample keeps this stage
        # to minutes on a million shoppers, and LambdaRank learns as well from 20,000 lists.
        picked = np.random.default_rng(ranking.seed).choice(len(users), size=ranking.fit_max_shoppers, replace=False)
        users = [users[i] for i in np.sort(picked)]
        sampling = {"fitted_on_shoppers": len(users), "of": report["labelled_shoppers"]}
        report["training_shoppers_sampled"] = len(users)

    matrices, grades, groups, is_valid = [], [], [], []
    found_positives = all_positives = 0
    for done, u in enumerate(users):
        X, y, positives = training_group(snapshot, u, labels[u])
        all_positives += len(labels[u])
        found_positives += positives
        if positives:  # a list without a positive teaches LambdaRank nothing
            matrices.append(X)
            grades.append(y)
            groups.append(len(y))
            is_valid.append(validation_user(str(snapshot.history.user_ids[u])))
        if done % 200 == 0 or done == len(users) - 1:
            progress("train ranker", done + 1, len(users) + 1)
    report["candidate_recall"] = round(found_positives / max(all_positives, 1), 4)
    report["training_rows"] = int(sum(groups))
    if len(groups) < ranking.min_training_shoppers:
        why = f"only {len(groups)} shoppers had a later purchase among their candidates"
        return TrainingResult(BlendRanker(), {**report, "kind": "blend", "why": why})

    booster, validation = fit_lambdarank(matrices, grades, np.array(groups), np.array(is_valid), config)
    progress("train ranker", len(users) + 1, len(users) + 1)
    importance = dict(zip(FEATURES, booster.feature_importance("gain").round(1).tolist()))
    report.update(
        kind="lightgbm",
        validation=validation,
        importance=dict(sorted(importance.items(), key=lambda kv: -kv[1])),
    )
    return TrainingResult(LearnedRanker(booster), report, sampling)


def training_group(snapshot: Snapshot, user_row: int, labels: dict[int, int]) -> tuple[np.ndarray, np.ndarray, int]:
    """One shopper's candidates at the cut, exactly as serving would gather them, with grades."""
    shopper = shopper_for(snapshot, user_row)
    allowed = repurchase_allowed(
        np.ones(len(snapshot.items), dtype=bool),
        snapshot.history.acquired(user_row),
        snapshot.reorderable,
        snapshot.config.ranking.repurchase_policy,
    )
    candidates = gather(snapshot, shopper, allowed)
    y = np.array([labels.get(int(row), 0) for row in candidates.rows], dtype=np.int32)
    return candidate_features(snapshot, shopper, candidates), y, int((y > 0).sum())


def fit_lambdarank(matrices, grades, groups: np.ndarray, is_valid: np.ndarray, config: TailorConfig):
    import lightgbm as lgb

    ranking = config.ranking
    params = {
        "objective": "lambdarank",
        "metric": "ndcg",
        "eval_at": [EVAL_AT],
        "learning_rate": ranking.learning_rate,
        "num_leaves": ranking.num_leaves,
        "min_data_in_leaf": 50,
        "feature_fraction": 0.9,
        "bagging_fraction": 0.9,
        "bagging_freq": 1,
        "lambdarank_truncation_level": 2 * EVAL_AT,
        "seed": ranking.seed,
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": 2,
        "verbosity": -1,
    }
    X = np.vstack(matrices)
    y = np.concatenate(grades)
    row_valid = np.repeat(is_valid, groups)
    train = lgb.Dataset(X[~row_valid], y[~row_valid], group=groups[~is_valid], feature_name=list(FEATURES))
    valid = lgb.Dataset(X[row_valid], y[row_valid], group=groups[is_valid], reference=train)
    booster = lgb.train(
        params,
        train,
        num_boost_round=ranking.boost_rounds,
        valid_sets=[valid],
        callbacks=[lgb.early_stopping(30, verbose=False)],
    )
    rounds = max(int(booster.best_iteration or ranking.boost_rounds), 1)
    valid_scores = booster.predict(X[row_valid], num_iteration=rounds)
    blend_scores = np.concatenate(
        [BlendRanker().score(m) for m, v in zip(matrices, is_valid) if v]
    ) if is_valid.any() else np.empty(0)
    validation = {
        "shoppers": int(is_valid.sum()),
        "rounds": rounds,
        "ndcg_at_10": round(ndcg_at(valid_scores, y[row_valid], groups[is_valid]), 4),
        "blend_ndcg_at_10": round(ndcg_at(blend_scores, y[row_valid], groups[is_valid]), 4),
    }
    # Refit on every shopper with the chosen number of rounds.
    final = lgb.train(params, lgb.Dataset(X, y, group=groups, feature_name=list(FEATURES)), num_boost_round=rounds)
    return final, validation


def diversify(scores: np.ndarray, vectors: np.ndarray, k: int, weight: float, rows: np.ndarray | None = None) -> np.ndarray:
    """Positions of a k-long list chosen by maximal marginal relevance: each next item is the
    one with the best (1 − weight)·relevance − weight·(its highest cosine to an item already
    chosen); relevance is the score rescaled to [0, 1] over the list. weight 0: plain order.
    Candidate p's vector is vectors[p], or vectors[rows[p]] when rows are given (the whole
    item table: only the pool's vectors are then copied)."""
    order = np.argsort(-scores, kind="stable")
    if weight <= 0 or len(order) <= 1:
        return order[:k]
    pool = order[: max(4 * k, 50)]
    s = scores[pool]
    low = s.min()
    span = s.max() - low
    relevance = (s - low) / span if span > 0 else np.ones_like(s)
    pool_vectors = vectors[pool if rows is None else rows[pool]]
    # Two copies, so numpy multiplies them (gemm) rather than taking A·Aᵀ as one (syrk), whose
    # sums can differ in the last bit: lists stay as they were.
    similarity = pool_vectors @ pool_vectors.copy().T
    # value = (1 − weight)·relevance − weight·(highest similarity to the chosen), with both
    # terms kept up to date instead of recomputed: weight·max(a, b) = max(weight·a, weight·b),
    # rounding included, so every value is the one the plain formula gives. A chosen item's
    # gain is −inf, so it is never chosen again.
    gain = (1 - weight) * relevance
    penalties = weight * similarity
    penalty = penalties[0].copy()
    gain[0] = -np.inf
    chosen = [0]
    value = np.empty_like(gain)
    for _ in range(min(k, len(pool)) - 1):
        np.subtract(gain, penalty, out=value)
        best = int(value.argmax())
        chosen.append(best)
        gain[best] = -np.inf
        np.maximum(penalty, penalties[best], out=penalty)
    return pool[chosen]
