"""A large build as serving and a campaign hold it: load time, resident memory of one loaded
RecommendationFlow, and the time of one recommend(k=10) per shopper.

    .venv/bin/python bench/bench_scale_flow.py --artifacts /tmp/scale/artifacts [--shoppers 2000]
        [--results bench/results/scale_flow.json] [--tables]

Loads the published build the way serving's RecommendBuild does (Artifacts, then
RecommendationFlow(artifacts, config), one BLAS thread), then asks for ten items for shoppers
drawn at random (seed 0) one after another. --tables also loads the per-shopper tables copy
writing reads (owned items, propensity reasons) and says what they cost on top.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import psutil
from threadpoolctl import threadpool_limits

GIB = 1024**3


def rss_gib() -> float:
    return round(psutil.Process().memory_info().rss / GIB, 2)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--artifacts", type=Path, required=True)
    parser.add_argument("--shoppers", type=int, default=2000)
    parser.add_argument("--results", type=Path)
    parser.add_argument("--tables", action="store_true")
    args = parser.parse_args()

    from services.artifacts import Artifacts
    from services.config import load_config
    from services.recommend.flow import RecommendationFlow, ShopperQuery

    threadpool_limits(1)
    config = load_config(artifacts_dir=args.artifacts)
    before = rss_gib()
    started = time.perf_counter()
    artifacts = Artifacts.open(args.artifacts, config.index)
    flow = RecommendationFlow(artifacts, config)
    load_s = time.perf_counter() - started
    loaded = rss_gib()

    users = artifacts.users["user_id"].to_numpy()
    picked = users[np.random.default_rng(0).choice(len(users), size=min(args.shoppers, len(users)), replace=False)]
    for user in picked[:20]:  # first calls fill lazy tables and caches
        flow.recommend(ShopperQuery(user_id=str(user), k=10))
    seconds, empty = [], 0
    for user in picked:
        t = time.perf_counter()
        ranked = flow.recommend(ShopperQuery(user_id=str(user), k=10))
        seconds.append(time.perf_counter() - t)
        empty += not ranked
    ms = np.array(seconds) * 1000
    report = {
        "build": str(artifacts.path),
        "shoppers_in_build": int(len(users)),
        "load_seconds": round(load_s, 1),
        "rss_before_load_gib": before,
        "rss_after_load_gib": loaded,
        "rss_after_requests_gib": rss_gib(),
        "requests": len(ms),
        "empty_lists": empty,
        "mean_ms": round(float(ms.mean()), 2),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "shoppers_per_second_one_process": round(1000 / float(ms.mean()), 1),
    }
    if args.tables:
        for name in ("owned_recent_first", "propensity_reasons"):
            t = time.perf_counter()
            getattr(artifacts, name)
            report[f"{name}_load_seconds"] = round(time.perf_counter() - t, 1)
            report[f"rss_after_{name}_gib"] = rss_gib()
    print(json.dumps(report, indent=2))
    if args.results:
        args.results.parent.mkdir(parents=True, exist_ok=True)
        args.results.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
