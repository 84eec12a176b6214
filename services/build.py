"""The offline build: shop data → embeddings → FAISS index → profiles → a published folder.

Nothing is half-written: the build goes to builds/.<id>.partial, is renamed to builds/<id>
when complete, and only then does `current` switch to it.
"""

from __future__ import annotations

import hashlib
import json
import platform
import shutil
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Callable, TypeVar

import numpy as np
import pandas as pd

from services.artifacts import BUILD_FORMAT, BUILDS, FILES, MANIFEST, current_build_dir, publish
from services.config import TailorConfig
from services.recommend.embedding import TextEmbedder, item_texts
from services.errors import DataFileError, Unavailable
from services.insights.activity import shopper_activity
from services.insights.categories import ItemCategories, item_categories
from services.insights.co_purchase import co_purchase
from services.insights.history import shop_history
from services.insights.profiles import build_profiles
from services.insights.propensity import Propensity, purchase_propensity
from services.insights.segments import Segments
from services.insights.signals import fit_trends, mine_rules, segment_shoppers
from services.recommend.factors import fit_factors
from services.recommend.ranking import train_ranker
from services.shop_data import ShopData, load_shop_data
from services.shopper_rights import ShopperRights, without_forgotten
from services.recommend.vector_index import build_index

# (step, done, total): lets the command line draw progress bars without the domain knowing how.
Progress = Callable[[str, int, int], None]
T = TypeVar("T")
EMBED_CHUNK = 512
PACKAGES = (
    "faiss-cpu", "sentence-transformers", "torch", "pandas", "numpy", "scikit-learn", "lightgbm", "scipy", "jieba"
)


@dataclass
class BuildResult:
    path: Path
    manifest: dict
    # True when the published build already came from the same data and settings.
    reused: bool = False


def no_progress(step: str, done: int, total: int) -> None:
    pass


def build_artifacts(
    data: Path,
    artifacts_dir: Path,
    config: TailorConfig,
    progress: Progress = no_progress,
    force: bool = False,
    publish_it: bool = True,
) -> BuildResult:
    """Build and publish; with force=False an identical published build (same cleaned data,
    same settings) is kept instead of rebuilt. publish_it=False leaves the build under builds/
    for `tailor publish` (a build prepared ahead, switched to when the operator says)."""
    started = time.perf_counter()
    stages = Stages(progress)
    shop = stages.run("load data", lambda: load_shop_data(data))
    return build_from_shop_data(shop, data, artifacts_dir, config, progress, force, started, stages, publish_it)


def build_from_shop_data(
    shop: ShopData,
    data: Path,
    artifacts_dir: Path,
    config: TailorConfig,
    progress: Progress = no_progress,
    force: bool = False,
    started: float | None = None,
    stages: "Stages | None" = None,
    publish_it: bool = True,
) -> BuildResult:
    """Build and publish from data already loaded (the evaluation builds on a time split this way)."""
    started = time.perf_counter() if started is None else started
    artifacts_dir = Path(artifacts_dir)
    # Forgotten shoppers stay forgotten, though the event log may still hold them.
    events, forgotten = without_forgotten(shop.events, ShopperRights.from_config(config))
    if forgotten:
        shop.report.drop("events", "shopper forgotten (ForgetUser)", len(shop.events) - len(events))
        shop = ShopData(shop.items, events, shop.report)
    if shop.events.empty:
        raise DataFileError(str(data), f"no usable events after cleaning; dropped: {shop.report.dropped}")
    settings = json.loads(config.model_dump_json(include={"index", "profile", "embedding", "ranking", "insights"}))
    fingerprint = content_hash(shop.items, shop.events, {**settings, "format": BUILD_FORMAT})
    if not force and publish_it and (published := published_manifest(artifacts_dir)) and published.get("fingerprint") == fingerprint:
        return BuildResult(current_build_dir(artifacts_dir), published, reused=True)

    stages = stages or Stages(progress)
    events = shop.events
    # Everything describes the shop as of just after its last event.
    as_of = events["timestamp"].max() + pd.Timedelta(seconds=1)
    insights = config.insights
    items = shop.items.reset_index(drop=True)
    embedder = TextEmbedder(config)
    vectors = stages.run("embed items", lambda: embed_items(embedder, items, progress))
    index = stages.run("index items", lambda: build_index(vectors, config.index))

    categories = stages.run(
        "categories",
        lambda: item_categories(
            items, vectors, insights.derived_categories, previous_categories(artifacts_dir), seed=insights.seed
        ),
    )
    items = with_categories(items, categories)
    profiles = stages.run(
        "profile shoppers",
        lambda: build_profiles(
            items, vectors, events, config.profile, categories, as_of, insights.tag_min_shoppers, insights.interest_tags
        ),
    )
    items = items.merge(profiles.popularity, on="item_id", how="left", validate="one_to_one")
    user_ids = profiles.users["user_id"].to_numpy()
    currency = shop_currency(items)
    activity = shopper_activity(events, as_of, user_ids)
    segments = stages.run("segment shoppers", lambda: segment_shoppers(activity, config, currency))
    propensity = stages.run(
        "purchase propensity",
        lambda: purchase_propensity(
            events,
            as_of,
            insights.propensity_horizon_days,
            seed=insights.seed,
            currency=currency,
            fit_max_shoppers=insights.fit_max_shoppers,
        ),
    )
    trends = stages.run("market trends", lambda: fit_trends(events, items, categories.item_category, as_of, config))
    rules = stages.run("basket rules", lambda: mine_rules(events, items, config))
    users = with_insights(profiles.users, segments, propensity)

    # What serving reads as of the end of the log; the ranker learns the same at an earlier cut.
    history = stages.run("shop history", lambda: shop_history(events, items, as_of, config.ranking.recent_days))
    baskets = stages.run("co-purchase", lambda: co_purchase(events, items))
    factors = stages.run("ALS factors", lambda: fit_factors(events, items, history.user_ids, config.ranking))
    trained = stages.run(
        "train ranker",
        lambda: train_ranker(events, items, vectors, index, config, progress, categories.item_category),
    )

    built_at = datetime.now(timezone.utc)
    # Time first so builds sort by age; the suffix keeps two builds in one second apart.
    build_id = f"{built_at:%Y%m%dT%H%M%SZ}-{fingerprint[:8]}-{uuid.uuid4().hex[:4]}"
    builds = artifacts_dir / BUILDS
    builds.mkdir(parents=True, exist_ok=True)
    staging = builds / f".{build_id}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()

    progress("write build", 0, 1)
    write_started = time.perf_counter()
    items.to_parquet(staging / FILES["items"], index=False)
    np.save(staging / FILES["item_vectors"], vectors)
    index.save(staging / FILES["index"])
    users.to_parquet(staging / FILES["users"], index=False)
    np.save(staging / FILES["user_vectors"], profiles.vectors)
    profiles.purchases.to_parquet(staging / FILES["purchases"], index=False)
    for name, table in history.tables().items():
        table.to_parquet(staging / FILES[f"history_{name}"], index=False)
    baskets.table().to_parquet(staging / FILES["co_purchase"], index=False)
    pd.DataFrame({"baskets": baskets.item_baskets}).to_parquet(staging / FILES["co_purchase_items"], index=False)
    np.save(staging / FILES["user_factors"], factors.users)
    np.save(staging / FILES["item_factors"], factors.items)
    trained.save(staging / FILES["ranker"])
    categories.table.to_parquet(staging / FILES["categories"], index=False)
    segments.table.to_parquet(staging / FILES["segments"], index=False)
    propensity.contributions.to_parquet(staging / FILES["propensity_reasons"], index=False)
    for name, table in trends.tables().items():
        table.to_parquet(staging / FILES[f"trend_{name}"], index=False)
    rules.tables().to_parquet(staging / FILES["rules"], index=False)
    stages.seconds["write build"] = round(time.perf_counter() - write_started, 1)
    manifest = {
        "build_id": build_id,
        "format": BUILD_FORMAT,
        "fingerprint": fingerprint,
        "built_at": built_at.isoformat(timespec="seconds"),
        "data": {"path": str(Path(data).resolve()), **shop.report.to_dict()},
        "counts": {
            "items": len(items),
            "events": len(shop.events),
            "users": len(users),
            "owned_pairs": len(profiles.purchases),
            "events_by_type": shop.events["event_type"].value_counts().to_dict(),
        },
        "time_span": {
            "first_event": shop.events["timestamp"].min().isoformat(),
            "last_event": shop.events["timestamp"].max().isoformat(),
        },
        "embedding": {"model": embedder.model_name, "path": embedder.model_path, "dimension": embedder.dimension},
        "index": {"type": index.kind, "size": index.size, "dimension": index.dimension, "metric": "inner_product"},
        "co_purchase": {"baskets": baskets.baskets, "pairs": int(baskets.scores.nnz)},
        "repurchase": {
            "policy": config.ranking.repurchase_policy,
            "reorderable_items": int(
                history.reorderable(config.ranking.reorder_min_share, config.ranking.reorder_min_buyers).sum()
            ),
        },
        "ranker": trained.report,
        "categories": categories.report(),
        "segments": segments.report(),
        "propensity": propensity.report(),
        "trends": trends.report(),
        "rules": rules.report(),
        # Stages that learned from a seeded sample of the shoppers (above *.fit_max_shoppers).
        "sampling": {
            name: sampled
            for name, sampled in (
                ("segment shoppers", segments.sampling),
                ("purchase propensity", propensity.sampling),
                ("train ranker", trained.sampling),
            )
            if sampled
        },
        "stages": stages.seconds,
        "config": settings,
        "versions": versions(),
        "seconds": round(time.perf_counter() - started, 1),
    }
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str))
    final = builds / build_id
    staging.rename(final)
    if publish_it or published_manifest(artifacts_dir) is None:
        publish(artifacts_dir, final)
    remove_old_builds(artifacts_dir, config.keep_builds)
    progress("write build", 1, 1)
    return BuildResult(final, manifest)


class Stages:
    """Runs the build's stages in order and keeps the seconds each took (printed, and kept in
    the manifest)."""

    def __init__(self, progress: Progress):
        self.progress = progress
        self.seconds: dict[str, float] = {}

    def run(self, name: str, work: Callable[[], T]) -> T:
        self.progress(name, 0, 1)
        started = time.perf_counter()
        result = work()
        self.seconds[name] = round(time.perf_counter() - started, 1)
        self.progress(name, 1, 1)
        return result


def embed_items(embedder: TextEmbedder, items: pd.DataFrame, progress: Progress) -> np.ndarray:
    texts = item_texts(items)
    vectors = np.empty((len(texts), embedder.dimension), dtype=np.float32)
    for start in range(0, len(texts), EMBED_CHUNK):
        vectors[start : start + EMBED_CHUNK] = embedder.embed(texts[start : start + EMBED_CHUNK])
        progress("embed items", min(start + EMBED_CHUNK, len(texts)), len(texts))
    return vectors


def previous_categories(artifacts_dir: Path) -> pd.DataFrame | None:
    """The published build's category table: its derived ids carry over to this build."""
    try:
        return pd.read_parquet(current_build_dir(artifacts_dir) / FILES["categories"])
    except (Unavailable, FileNotFoundError):
        return None


def with_categories(items: pd.DataFrame, categories: ItemCategories) -> pd.DataFrame:
    """category_id on every item; where the shop gave no category, the derived one's name, so
    that category filters, features and copy work the same for every shop."""
    items = items.assign(category_id=categories.item_category)
    given = items["category"].fillna("").astype(str).str.strip()
    blank = given == ""
    # What the shop itself calls the category (its full path) where any item says; else its name.
    shop_name = given[~blank].groupby(items.loc[~blank, "category_id"]).agg(lambda names: names.mode().iloc[0])
    names = shop_name.combine_first(categories.names()).reindex(items["category_id"]).to_numpy()
    items.loc[blank, "category"] = names[blank.to_numpy()]
    return items


def with_insights(users: pd.DataFrame, segments: Segments, propensity: Propensity) -> pd.DataFrame:
    """The profile table with each shopper's segment, propensity and place on the 2-D map."""
    table = segments.table.set_index("segment_id")
    segment_id = segments.segment_id.reindex(users["user_id"]).to_numpy()
    place = segments.map_2d.reindex(users["user_id"])
    return users.assign(
        segment_id=segment_id.astype(np.int64),
        segment=table["name"].reindex(segment_id).to_numpy(),
        segment_tone=table["tone"].reindex(segment_id).to_numpy(),
        propensity=propensity.probability.reindex(users["user_id"]).to_numpy(np.float64),
        map_x=place["x"].to_numpy(np.float64),
        map_y=place["y"].to_numpy(np.float64),
    )


def shop_currency(items: pd.DataFrame) -> str:
    currency = items["currency"].replace("", np.nan).dropna()
    return str(currency.mode().iloc[0]) if len(currency) else ""


def content_hash(items: pd.DataFrame, events: pd.DataFrame, settings: dict) -> str:
    digest = hashlib.sha256()
    digest.update(pd.util.hash_pandas_object(items, index=False).to_numpy().tobytes())
    digest.update(pd.util.hash_pandas_object(events, index=False).to_numpy().tobytes())
    digest.update(json.dumps(settings, sort_keys=True).encode())
    return digest.hexdigest()


def published_manifest(artifacts_dir: Path) -> dict | None:
    try:
        return json.loads((current_build_dir(artifacts_dir) / MANIFEST).read_text())
    except Unavailable:
        return None


def remove_old_builds(artifacts_dir: Path, keep: int) -> None:
    """Keep the newest `keep` builds (the current one always). Replicas hold what they loaded
    in memory, so removing a folder does not disturb one still serving it."""
    current = current_build_dir(artifacts_dir)
    builds = sorted(p for p in (artifacts_dir / BUILDS).iterdir() if p.is_dir() and not p.name.startswith("."))
    for old in builds[:-keep]:
        if old.resolve() != current:
            shutil.rmtree(old, ignore_errors=True)


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    try:
        found["tailor"] = metadata.version("tailor")
    except metadata.PackageNotFoundError:
        pass
    return found
