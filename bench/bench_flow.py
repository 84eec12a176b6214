"""Per-request latency of RecommendationFlow.recommend in-process, on one published build, for a
mixed load: every shopper of the build in turn (shuffled, seed 0), k uniform in 5..50, and per
request one of: no filter / one category (ItemFilter.categories) / a price ceiling
(ItemFilter.max_price) / exclude_purchased, as the load generator sends them. Requests run one
after another; the wall time and this thread's CPU time are both printed (on a busy machine the
CPU time is the steadier figure of the two).

    .venv/bin/python bench/bench_flow.py --artifacts /tmp/ins/uci_final [--requests N]
        [--blas-threads 1] [--passes 3] [--stages]

--stages also times the flow's steps one by one (each candidate source's `find` apart), on the
same requests in a second pass, in this thread's CPU time.
"""

from __future__ import annotations

import argparse
import statistics
import time
from contextlib import nullcontext
from pathlib import Path

WARMUP = 50


def mixed_queries(artifacts, n: int | None, seed: int = 0) -> list:
    """The load generator's Recommend requests (clients/load_requests.py, recommend_requests: every
    shopper in turn, k 5..50, filters mixed) as the flow's queries, so this in-process figure is
    for the requests a load test sends. n None: one per shopper."""
    from clients.load_requests import recommend_requests
    from services.recommend.filters import ItemFilter
    from services.recommend.flow import ShopperQuery

    queries = []
    for request in recommend_requests(artifacts, len(artifacts.users) if n is None else n, seed):
        item_filter = request.get("filter", {})
        queries.append(
            ShopperQuery(
                user_id=request["user_id"],
                k=request["k"],
                item_filter=ItemFilter(categories=tuple(item_filter.get("categories", ())), max_price=float(item_filter.get("max_price", 0.0))),
                exclude_purchased=bool(request.get("exclude_purchased", False)),
            )
        )
    return queries


def summary(label: str, seconds: list[float]) -> str:
    ms = sorted(s * 1000 for s in seconds)
    p99 = ms[min(len(ms) - 1, int(0.99 * len(ms)))]
    return f"{label:<22} mean {statistics.fmean(ms):7.3f} ms   p50 {statistics.median(ms):7.3f} ms   p99 {p99:7.3f} ms"


def stage_times(flow, queries) -> dict[str, list[float]]:
    from services.recommend.candidates import SOURCES, CandidateSet
    from services.recommend.features import candidate_features

    ranking = flow.snapshot.config.ranking
    times: dict[str, list[float]] = {}

    def timed(name, fn, *args):
        started = time.thread_time()
        out = fn(*args)
        times.setdefault(name, []).append(time.thread_time() - started)
        return out

    for query in queries:
        started = time.thread_time()
        shopper = flow.shopper(query)
        allowed = flow.allowed(query, shopper)
        times.setdefault("shopper + allowed", []).append(time.thread_time() - started)
        found = {}
        for source in SOURCES:
            n = ranking.history_candidates if source.name == "history" else ranking.candidates_per_source
            found[source.name] = timed(f"  source {source.name}", source.find, flow.snapshot, shopper, n, allowed)
        candidates = timed("  merge", CandidateSet.merge, found)
        if not len(candidates):
            continue
        features = timed("features", candidate_features, flow.snapshot, shopper, candidates)
        scores = timed("ranker", flow.ranker.score, features)
        timed("finish (mmr, reasons)", flow.finish, shopper, candidates, features, scores, query.k)
    return times


def main() -> None:
    from services.artifacts import Artifacts
    from services.config import load_config
    from services.recommend.flow import RecommendationFlow

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--artifacts", type=Path, required=True, help="artifacts folder (its `current` build)")
    parser.add_argument("--requests", type=int, default=0, help="0: every shopper of the build")
    parser.add_argument("--blas-threads", type=int, default=None, help="threadpoolctl limit for BLAS (default: as the process has it)")
    parser.add_argument("--passes", type=int, default=1, help="run the requests this many times; report the least disturbed pass")
    parser.add_argument("--stages", action="store_true", help="also time each step of the flow")
    args = parser.parse_args()

    config = load_config(artifacts_dir=args.artifacts)
    started = time.perf_counter()
    artifacts = Artifacts.open(config.artifacts_dir, config.index)
    flow = RecommendationFlow(artifacts, config)
    queries = mixed_queries(artifacts, args.requests or None)
    print(f"build {flow.build_id}: {len(flow.snapshot.items)} items, {len(queries)} requests; flow ready in {time.perf_counter() - started:.1f} s")

    if args.blas_threads is not None:
        from threadpoolctl import threadpool_limits

        limits = threadpool_limits(args.blas_threads, "blas")
    else:
        limits = nullcontext()
    with limits:
        for query in queries[:WARMUP]:
            flow.recommend(query)
        passes = []
        for _ in range(args.passes):
            seconds, cpu = [], []
            for query in queries:
                t, c = time.perf_counter(), time.thread_time()
                flow.recommend(query)
                seconds.append(time.perf_counter() - t)
                cpu.append(time.thread_time() - c)
            passes.append((statistics.fmean(cpu), seconds, cpu))
            if args.passes > 1:
                print(f"  pass {len(passes)}: mean wall {statistics.fmean(seconds) * 1000:.3f} ms, cpu {passes[-1][0] * 1000:.3f} ms")
        # With several passes, the one least disturbed by other processes (lowest CPU mean).
        _, seconds, cpu = min(passes, key=lambda p: p[0])
        print(summary("recommend (wall)", seconds))
        # This thread's CPU time: the same work, without the waits for a core other processes
        # hold (it leaves out BLAS / OpenMP worker threads, so read it with --blas-threads 1).
        print(summary("recommend (cpu)", cpu))
        if args.stages:
            for name, values in stage_times(flow, queries).items():
                print(summary(name, values))


if __name__ == "__main__":
    main()
