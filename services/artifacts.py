"""A published build: the files one `tailor build` writes, and how serving reads them back.

Layout under the artifacts folder:

    builds/<build_id>/      one complete build (never changed after it is published); its
                            files are the FILES table below, written and read by that name
    current -> builds/<build_id>   switched atomically (rename of a new link over the old)
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from services.config import IndexConfig, TailorConfig
from services.insights.basket_rules import BasketRules
from services.insights.co_purchase import CoPurchase
from services.insights.history import ShopHistory
from services.insights.signals import ShopSignals
from services.errors import NotFound, Unavailable, excerpt
from services.recommend.vector_index import VectorIndex

# Changes when a build's files change: an older build of the same data is not reused, and
# serving refuses one it cannot read instead of failing halfway.
BUILD_FORMAT = 2
CURRENT = "current"
BUILDS = "builds"
MANIFEST = "manifest.json"
# One line per publish (build id, time), for `tailor rollback`.
PUBLISHED = "published.jsonl"
# Every file of a build. Item row i ↔ item vector i ↔ index id i; user row i ↔ user vector i.
FILES = {
    "manifest": MANIFEST,                       # versions, row and drop counts, index, ranker
    "items": "items.parquet",                   # the catalog + popularity
    "item_vectors": "item_vectors.npy",         # float32, L2-normalised
    "index": "items.faiss",                     # FAISS index over item_vectors
    "users": "users.parquet",                   # profiles: one row per shopper
    "user_vectors": "user_vectors.npy",
    "purchases": "purchases.parquet",           # (user_id, item_id, times, last_at): what each owns
    "history_pairs": "history_pairs.parquet",   # shopper × item purchase history (insights.history)
    "history_items": "history_items.parquet",   # per item demand and re-order behaviour
    "history_users": "history_users.parquet",   # per shopper frequency, recency, spend
    "co_purchase": "co_purchase.parquet",       # item → neighbours in baskets (insights.co_purchase)
    "co_purchase_items": "co_purchase_items.parquet",
    "user_factors": "user_factors.npy",         # ALS factors, user row i ↔ history user i
    "item_factors": "item_factors.npy",
    "ranker": "ranker.lgb.txt",                 # LightGBM LambdaRank model (absent with the blend)
    "categories": "categories.parquet",         # the shop's or derived categories (insights.categories)
    "segments": "segments.parquet",             # named segments with centroids (insights.segments)
    "propensity_reasons": "propensity_reasons.parquet",  # each shopper's top propensity features
    "trend_items": "trend_items.parquet",       # per item: trending score, forecast, model (insights.trends)
    "trend_series": "trend_series.parquet",     # weekly history and forecast of every series
    "trend_backtest": "trend_backtest.parquet", # per eligible series: model and baselines' errors
    "rules": "rules.parquet",                   # association rules over baskets (insights.basket_rules)
}


def publish(artifacts_dir: Path, build_dir: Path) -> None:
    """Point `current` at build_dir in one atomic rename; readers see the old build or the new one.
    Serving replicas follow the link (services.live_build) without a restart."""
    artifacts_dir = Path(artifacts_dir)
    link = artifacts_dir / CURRENT
    staging = artifacts_dir / f".{CURRENT}.{os.getpid()}"
    if staging.is_symlink() or staging.exists():
        staging.unlink()
    staging.symlink_to(Path(build_dir).relative_to(artifacts_dir))
    os.replace(staging, link)
    # What `tailor rollback` goes back along; appending one short line is atomic enough.
    with open(artifacts_dir / PUBLISHED, "a") as history:
        history.write(json.dumps({"build_id": Path(build_dir).name, "at": datetime.now(timezone.utc).isoformat()}) + "\n")


def publish_build(artifacts_dir: Path, build_id: str, index_config: IndexConfig) -> Artifacts:
    """Publish a build already under builds/ (made with `tailor build --no-publish`, or kept
    from before), after checking it is one this Tailor can read."""
    artifacts_dir = Path(artifacts_dir)
    path = kept_build_path(artifacts_dir, build_id)
    if path is None:
        kept = ", ".join(b["build_id"] for b in kept_builds(artifacts_dir)) or "none"
        raise NotFound("build_id", f"no build {excerpt(build_id, 40)} under {artifacts_dir / BUILDS}; kept: {kept}")
    build = Artifacts(path, index_config)  # refuses a format it cannot read
    publish(artifacts_dir, path)
    return build


def kept_build_path(artifacts_dir: Path, build_id: str) -> Path | None:
    """builds/<build_id> if it holds a build; None for anything else (an id is a plain name)."""
    if not build_id or len(build_id) > 100 or os.sep in build_id or build_id.startswith("."):
        return None
    path = Path(artifacts_dir) / BUILDS / build_id
    return path if (path / MANIFEST).is_file() else None


def rollback(artifacts_dir: Path, index_config: IndexConfig) -> Artifacts:
    """Publish again the build that was published before the current one (and is still kept)."""
    artifacts_dir = Path(artifacts_dir)
    current = current_build_dir(artifacts_dir).name
    history = publish_history(artifacts_dir)
    for build_id in reversed(history[: max(len(history) - 1, 0)] if history and history[-1] == current else history):
        if build_id != current and kept_build_path(artifacts_dir, build_id) is not None:
            return publish_build(artifacts_dir, build_id, index_config)
    raise NotFound("build_id", f"no earlier build to go back to under {artifacts_dir} (the current one is {current})")


def publish_history(artifacts_dir: Path) -> list[str]:
    """Build ids in the order they were published, oldest first."""
    path = Path(artifacts_dir) / PUBLISHED
    if not path.is_file():
        return []
    ids = []
    for line in path.read_text().splitlines():
        try:
            ids.append(json.loads(line)["build_id"])
        except (ValueError, KeyError, TypeError):
            continue  # a torn line from a crash mid-write: skip it, the rest still counts
    return ids


def kept_builds(artifacts_dir: Path) -> list[dict]:
    """The builds on disk, oldest first: id, when built, counts, and whether it is current."""
    builds = Path(artifacts_dir) / BUILDS
    try:
        current = current_build_dir(artifacts_dir).name
    except Unavailable:
        current = ""
    out = []
    for path in sorted(builds.iterdir()) if builds.is_dir() else []:
        if path.name.startswith(".") or not (path / MANIFEST).is_file():
            continue
        manifest = json.loads((path / MANIFEST).read_text())
        out.append(
            {
                "build_id": path.name,
                "built_at": manifest.get("built_at", ""),
                "users": manifest.get("counts", {}).get("users", 0),
                "items": manifest.get("counts", {}).get("items", 0),
                "current": path.name == current,
            }
        )
    return out


def current_build_dir(artifacts_dir: Path) -> Path:
    link = Path(artifacts_dir) / CURRENT
    if not (link / MANIFEST).is_file():
        raise Unavailable(
            f"no published build under {artifacts_dir}: run `tailor build --data PATH --out {artifacts_dir}`"
        )
    return link.resolve()


@dataclass
class Artifacts:
    """One published build, loaded in memory. Parts load on first use, so a replica that
    needs only the user table does not read the index."""

    path: Path
    index_config: IndexConfig

    @classmethod
    def open(cls, artifacts_dir: Path, index_config: IndexConfig) -> "Artifacts":
        return cls(current_build_dir(artifacts_dir), index_config)

    def __post_init__(self) -> None:
        made = self.manifest.get("format", 1)
        if made != BUILD_FORMAT:
            raise Unavailable(
                f"build {self.path.name} has format {made}; this Tailor reads format {BUILD_FORMAT}: "
                f"rebuild it with `tailor build --force`"
            )

    @cached_property
    def manifest(self) -> dict:
        return json.loads((self.path / MANIFEST).read_text())

    @property
    def build_id(self) -> str:
        return self.manifest["build_id"]

    def file(self, name: str) -> Path:
        return self.path / FILES[name]

    @cached_property
    def items(self) -> pd.DataFrame:
        return pd.read_parquet(self.file("items"))

    @cached_property
    def item_row(self) -> pd.Series:
        return pd.Series(np.arange(len(self.items)), index=self.items["item_id"].to_numpy())

    @cached_property
    def item_vectors(self) -> np.ndarray:
        return np.load(self.file("item_vectors"), mmap_mode="r")

    @cached_property
    def index(self) -> VectorIndex:
        return VectorIndex.load(self.file("index"), self.index_config)

    @cached_property
    def users(self) -> pd.DataFrame:
        return pd.read_parquet(self.file("users"))

    @cached_property
    def user_row(self) -> pd.Series:
        return pd.Series(np.arange(len(self.users)), index=self.users["user_id"].to_numpy())

    @cached_property
    def user_vectors(self) -> np.ndarray:
        return np.load(self.file("user_vectors"), mmap_mode="r")

    @cached_property
    def owned_recent_first(self) -> Mapping[str, tuple[str, ...]]:
        purchases = pd.read_parquet(self.file("purchases"), columns=["user_id", "item_id", "last_at"])
        purchases = purchases.sort_values(["user_id", "last_at", "item_id"], ascending=[True, False, True])
        items = purchases["item_id"]
        return ShopperRows(purchases["user_id"], lambda rows: tuple(items.iloc[rows]))

    @cached_property
    def owned(self) -> Mapping[str, frozenset[str]]:
        recent_first = self.owned_recent_first
        return ShopperRows(recent_first.users, lambda rows: frozenset(recent_first.make(rows)), like=recent_first)

    @cached_property
    def history(self) -> ShopHistory:
        return ShopHistory.from_tables(
            pd.read_parquet(self.file("history_pairs")),
            pd.read_parquet(self.file("history_items")),
            pd.read_parquet(self.file("history_users")),
        )

    @cached_property
    def co_purchase(self) -> CoPurchase:
        item_baskets = pd.read_parquet(self.file("co_purchase_items"))["baskets"].to_numpy()
        return CoPurchase.from_table(
            pd.read_parquet(self.file("co_purchase")), len(self.items), self.manifest["co_purchase"]["baskets"], item_baskets
        )

    @cached_property
    def ranker(self):
        from services.recommend.ranking import load_ranker

        return load_ranker(self.file("ranker"), self.manifest)

    def snapshot(self, config: TailorConfig):
        """Everything the recommendation flow reads, as of the end of the build's log."""
        from services.recommend.snapshot import Snapshot

        # Same user order as the profiles: the history and the user vectors share user rows.
        if not np.array_equal(self.history.user_ids, self.users["user_id"].to_numpy()):
            raise Unavailable(f"build {self.build_id} is inconsistent: its history and profiles list different shoppers; rebuild it")
        from services.recommend.factors import Factors

        factors = Factors(np.load(self.file("user_factors")), np.load(self.file("item_factors")))
        vectors = np.asarray(self.item_vectors)
        return Snapshot(
            self.items, vectors, self.index, self.history, self.co_purchase, np.asarray(self.user_vectors), factors, self.signals, config
        )

    @cached_property
    def signals(self) -> ShopSignals:
        """What the insights tell the ranker, from the tables the build stored."""
        users = self.users
        # The signals' user rows are the history's: the same sorted shoppers, checked, so that no
        # shopper is ever given another's segment or propensity.
        if not np.array_equal(users["user_id"].to_numpy(), self.history.user_ids):
            raise Unavailable(f"build {self.build_id} is inconsistent: its profiles and history list different shoppers; rebuild it")
        return ShopSignals.of(
            self.items["category_id"].to_numpy(),
            pd.read_parquet(self.file("trend_items"), columns=["trending", "selling_fast"]),
            users["segment_id"].to_numpy(),
            self.segments,
            users["propensity"].to_numpy(),
            self.rules,
            self.manifest["propensity"]["method"],
        )

    @cached_property
    def categories(self) -> pd.DataFrame:
        return pd.read_parquet(self.file("categories"))

    @cached_property
    def segments(self) -> pd.DataFrame:
        return pd.read_parquet(self.file("segments"))

    @cached_property
    def rules(self) -> BasketRules:
        return BasketRules.from_table(pd.read_parquet(self.file("rules")), len(self.items), self.manifest["config"]["insights"]["rules_per_item"])

    @cached_property
    def propensity_reasons(self) -> Mapping[str, pd.DataFrame]:
        reasons = pd.read_parquet(self.file("propensity_reasons"))
        reasons = reasons.sort_values(["user_id", "rank"], kind="stable")
        return ShopperRows(reasons["user_id"], lambda rows: reasons.iloc[rows])

    def user_index(self, user_id: str, field: str = "user_id") -> int:
        if not user_id:
            raise NotFound(field, "is empty; give the id of a user in the published build")
        row = self.user_row.get(user_id)
        if row is None:
            raise NotFound(field, f"no user {excerpt(user_id)} in build {self.build_id}")
        return int(row)

    def item_indices(self, item_ids: list[str], field: str = "item_ids") -> np.ndarray:
        rows = self.item_row.reindex(item_ids)
        missing = rows.isna().to_numpy().nonzero()[0]
        if len(missing):
            first = int(missing[0])
            raise NotFound(f"{field}[{first}]", f"no item {excerpt(item_ids[first])} in build {self.build_id}")
        return rows.to_numpy(dtype=np.int64)

    def owned_by(self, user_id: str) -> frozenset[str]:
        return self.owned.get(user_id, frozenset())


class ShopperRows(Mapping):
    """shopper id -> what `make` builds from that shopper's rows of a table sorted by shopper.

    Built on lookup, not up front: a million shoppers' dict of small tuples or data frames
    took minutes and gigabytes to make, for the few shoppers a replica is asked about."""

    def __init__(self, users: pd.Series, make: Callable[[slice], Any], like: "ShopperRows | None" = None):
        self.users, self.make = users, make
        if like is not None:  # the same table: share its boundaries
            self.first, self.starts, self.stops = like.first, like.starts, like.stops
            return
        values = users.to_numpy()
        starts = np.flatnonzero(np.r_[True, values[1:] != values[:-1]]) if len(values) else np.empty(0, np.int64)
        self.first = pd.Index(values[starts])
        self.starts, self.stops = starts, np.r_[starts[1:], len(values)].astype(np.int64)

    def __getitem__(self, user: str) -> Any:
        at = self.first.get_indexer([user])[0]
        if at < 0:
            raise KeyError(user)
        return self.make(slice(int(self.starts[at]), int(self.stops[at])))

    def __iter__(self):
        return iter(self.first)

    def __len__(self) -> int:
        return len(self.first)
