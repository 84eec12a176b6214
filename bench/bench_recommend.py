"""Latency of MarketingService.Recommend over the real gRPC proxy, against the same work done
in-process (the baseline, same run): what Serve, the proxy and the handles cost per request,
and what the copy step adds.

    .venv/bin/python bench/bench_recommend.py [--data PATH] [--requests 50]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from serving.local_cluster import free_ports



def percentiles(seconds: list[float]) -> str:
    ms = sorted(s * 1000 for s in seconds)
    p95 = ms[min(len(ms) - 1, int(0.95 * len(ms)))]
    return f"p50 {statistics.median(ms):8.1f} ms   p95 {p95:8.1f} ms"


def main() -> None:
    from clients.client import TailorClient
    from serving import local_cluster
    from services.artifacts import Artifacts
    from services.build import build_artifacts
    from services.config import load_config
    from services.recommend.flow import RecommendationFlow, ShopperQuery

    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--copy-requests", type=int, default=10)
    parser.add_argument("--k", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as artifacts_dir:
        grpc_port, http_port = free_ports(2)
        config = load_config(data=args.data, artifacts_dir=artifacts_dir, serving={"grpc_port": grpc_port, "http_port": http_port})
        build_artifacts(config.data, config.artifacts_dir, config)
        build = Artifacts.open(config.artifacts_dir, config.index)
        users = list(build.users.sort_values("purchase_count", ascending=False)["user_id"])
        users = (users * (args.requests // len(users) + 1))[: args.requests]

        flow = RecommendationFlow(build, config)
        in_process = []
        for user in users:
            started = time.perf_counter()
            flow.recommend(ShopperQuery(user_id=user, k=args.k))
            in_process.append(time.perf_counter() - started)

        local_cluster.start(config, quiet=True)
        try:
            with TailorClient(f"127.0.0.1:{config.serving.grpc_port}") as client:
                client.recommend(users[0], k=args.k, skip_copy=True)  # warm-up
                client.recommend(users[0], k=args.k)
                served = []
                for user in users:
                    started = time.perf_counter()
                    client.recommend(user, k=args.k, skip_copy=True)
                    served.append(time.perf_counter() - started)
                with_copy, sources = [], {}
                for user in users[: args.copy_requests]:
                    started = time.perf_counter()
                    answer = client.recommend(user, k=args.k)
                    with_copy.append(time.perf_counter() - started)
                    sources[answer.copy.source] = sources.get(answer.copy.source, 0) + 1
        finally:
            local_cluster.stop()

    print(f"{len(build.items):,} items, {len(build.users):,} users; k={args.k}, ranker {flow.ranker.name}")
    print(f"in-process candidates+rank (baseline) {percentiles(in_process)}")
    print(f"gRPC Recommend, products only         {percentiles(served)}")
    print(f"gRPC Recommend, products + LLM copy   {percentiles(with_copy)}")
    ratio = statistics.median(served) / statistics.median(in_process)
    print(f"serving overhead: {ratio:.1f}× the in-process median; copy adds {statistics.median(with_copy) - statistics.median(served):.2f} s at the median")
    print(f"copy sources over {len(with_copy)} requests (1=model, 2=repaired, 3=template): {sources}")


if __name__ == "__main__":
    main()
