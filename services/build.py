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
from typing import Callable

import numpy as np
import pandas as pd

from services.artifacts import BUILDS, FILES, MANIFEST, current_build_dir, publish
from services.config import TailorConfig
from services.recommend.embedding import TextEmbedder, item_texts
from services.errors import DataFileError, Unavailable
from services.insights.co_purchase import co_purchase
from services.insights.history import shop_history
from services.insights.profiles import build_profiles
from services.recommend.factors import fit_factors
from services.recommend.ranking import train_ranker
from services.shop_data import ShopData, load_shop_data
from services.recommend.vector_index import build_index

# (step, done, total): lets the command line draw progress bars without the domain knowing how.
Progress = Callable[[str, int, int], None]
EMBED_CHUNK = 512
PACKAGES = ("faiss-cpu", "sentence-transformers", "torch", "pandas", "numpy", "scikit-learn", "lightgbm")


@dataclass
class BuildResult:
    path: Path
    manifest: dict
    # True when the published build already came from the same data and settings.
    reused: bool = False


def no_progress(step: str, done: int, total: int) -> None:
    pass


def build_artifacts(
    data: Path, artifacts_dir: Path, config: TailorConfig, progress: Progress = no_progress, force: bool = False
) -> BuildResult:
    """Build and publish; with force=False an identical published build (same cleaned data,
    same settings) is kept instead of rebuilt."""
    started = time.perf_counter()
    progress("load data", 0, 1)
    shop = load_shop_data(data)
    progress("load data", 1, 1)
    return build_from_shop_data(shop, data, artifacts_dir, config, progress, force, started)


def build_from_shop_data(
    shop: ShopData,
    data: Path,
    artifacts_dir: Path,
    config: TailorConfig,
    progress: Progress = no_progress,
    force: bool = False,
    started: float | None = None,
) -> BuildResult:
    """Build and publish from data already loaded (the evaluation builds on a time split this way)."""
    started = time.perf_counter() if started is None else started
    artifacts_dir = Path(artifacts_dir)
    if shop.events.empty:
        raise DataFileError(str(data), f"no usable events after cleaning; dropped: {shop.report.dropped}")
    settings = json.loads(config.model_dump_json(include={"index", "profile", "embedding", "ranking"}))
    fingerprint = content_hash(shop.items, shop.events, settings)
    if not force and (published := published_manifest(artifacts_dir)) and published.get("fingerprint") == fingerprint:
        return BuildResult(current_build_dir(artifacts_dir), published, reused=True)

    items = shop.items.reset_index(drop=True)
    embedder = TextEmbedder(config)
    texts = item_texts(items)
    vectors = np.empty((len(texts), embedder.dimension), dtype=np.float32)
    for start in range(0, len(texts), EMBED_CHUNK):
        vectors[start : start + EMBED_CHUNK] = embedder.embed(texts[start : start + EMBED_CHUNK])
        progress("embed items", min(start + EMBED_CHUNK, len(texts)), len(texts))

    progress("index items", 0, 1)
    index = build_index(vectors, config.index)
    progress("index items", 1, 1)

    progress("profile users", 0, 1)
    profiles = build_profiles(items, vectors, shop.events, config.profile)
    items = items.merge(profiles.popularity, on="item_id", how="left", validate="one_to_one")
    progress("profile users", 1, 1)

    # What serving reads as of the end of the log; the ranker learns the same at an earlier cut.
    progress("shop history", 0, 1)
    as_of = shop.events["timestamp"].max() + pd.Timedelta(seconds=1)
    history = shop_history(shop.events, items, as_of, config.ranking.recent_days)
    baskets = co_purchase(shop.events, items)
    factors = fit_factors(shop.events, items, history.user_ids, config.ranking)
    progress("shop history", 1, 1)
    trained = train_ranker(shop.events, items, vectors, index, config, progress)

    built_at = datetime.now(timezone.utc)
    # Time first so builds sort by age; the suffix keeps two builds in one second apart.
    build_id = f"{built_at:%Y%m%dT%H%M%SZ}-{fingerprint[:8]}-{uuid.uuid4().hex[:4]}"
    builds = artifacts_dir / BUILDS
    builds.mkdir(parents=True, exist_ok=True)
    staging = builds / f".{build_id}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()

    progress("write build", 0, 1)
    items.to_parquet(staging / FILES["items"], index=False)
    np.save(staging / FILES["item_vectors"], vectors)
    index.save(staging / FILES["index"])
    profiles.users.to_parquet(staging / FILES["users"], index=False)
    np.save(staging / FILES["user_vectors"], profiles.vectors)
    profiles.purchases.to_parquet(staging / FILES["purchases"], index=False)
    for name, table in history.tables().items():
        table.to_parquet(staging / FILES[f"history_{name}"], index=False)
    baskets.table().to_parquet(staging / FILES["co_purchase"], index=False)
    pd.DataFrame({"baskets": baskets.item_baskets}).to_parquet(staging / FILES["co_purchase_items"], index=False)
    np.save(staging / FILES["user_factors"], factors.users)
    np.save(staging / FILES["item_factors"], factors.items)
    trained.save(staging / FILES["ranker"])
    manifest = {
        "build_id": build_id,
        "fingerprint": fingerprint,
        "built_at": built_at.isoformat(timespec="seconds"),
        "data": {"path": str(Path(data).resolve()), **shop.report.to_dict()},
        "counts": {
            "items": len(items),
            "events": len(shop.events),
            "users": len(profiles.users),
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
        "config": settings,
        "versions": versions(),
        "seconds": round(time.perf_counter() - started, 1),
    }
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str))
    final = builds / build_id
    staging.rename(final)
    publish(artifacts_dir, final)
    remove_old_builds(artifacts_dir, config.keep_builds)
    progress("write build", 1, 1)
    return BuildResult(final, manifest)


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
