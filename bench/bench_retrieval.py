"""Exact (flat) vs HNSW retrieval: queries per second and recall@10, on one machine, one run.

    .venv/bin/python bench/bench_retrieval.py [--items 100000] [--queries 2000]

The baseline is the exact index measured in the same run; the figures that matter are the
HNSW/flat speed ratio and HNSW's recall against exact.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from services.config import IndexConfig
from services.recommend.vector_index import build_index


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=2_000)
    parser.add_argument("--dimension", type=int, default=384)
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    # Clustered vectors, closer to real embeddings than uniform noise.
    centres = rng.standard_normal((256, args.dimension)).astype(np.float32)
    vectors = centres[rng.integers(0, 256, args.items)] + 0.5 * rng.standard_normal((args.items, args.dimension)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    queries = vectors[rng.integers(0, args.items, args.queries)] + 0.1 * rng.standard_normal((args.queries, args.dimension)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)

    results = {}
    for name, config in (("flat", IndexConfig(exact_max_items=args.items)), ("hnsw", IndexConfig(exact_max_items=1))):
        started = time.perf_counter()
        index = build_index(vectors, config)
        built = time.perf_counter() - started
        started = time.perf_counter()
        _, ids = index.search(queries, args.k)
        searched = time.perf_counter() - started
        results[name] = (ids, built, args.queries / searched)
        print(f"{name:5s} build {built:6.1f} s   {args.queries / searched:10,.0f} queries/s (batch of {args.queries})")
    truth, found = results["flat"][0], results["hnsw"][0]
    recall = np.mean([len(set(t) & set(f)) / args.k for t, f in zip(truth, found)])
    print(f"HNSW vs exact on {args.items:,} × {args.dimension}: {results['hnsw'][2] / results['flat'][2]:.1f}× the queries/s, recall@{args.k} {recall:.3f}")


if __name__ == "__main__":
    main()
