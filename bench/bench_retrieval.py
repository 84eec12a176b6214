"""The index the build chooses for a catalogue size against exact search, one query per call.

    .venv/bin/python bench/bench_retrieval.py --items 1000000 --json bench/results/retrieval_1m.json
    .venv/bin/python bench/bench_retrieval.py --items 50000                 # well under a minute
    .venv/bin/python bench/bench_retrieval.py --calibrate                   # generator vs real MiniLM titles

What it does, in one process and one run:

1. Generates `--items` catalogue vectors plus `--queries` (default 1,000) held-out query vectors from
   the same seeded stream (below): a query is a further item of the same shop, often a variant of
   an indexed product family, never a copy of an indexed vector.
2. Ground truth: the exact top 100 of every query, from `IndexFlatIP` (batched; a batched exact
   search returns what one query at a time would).
3. Builds the index `build_index` chooses for that size with the default `IndexConfig` (`build_s`).
4. One query per `VectorIndex.search` call, as Retrieve serves them: the chosen index answers every
   query (`recall_at_100`: the share of the exact top 100 it returns, averaged over queries; its
   queries/s), and exact search (`IndexFlatIP` in a `VectorIndex`) answers the first
   `--timed-queries` (default 200; at 1M items exact takes ~0.15 s a query) for its queries/s.
   The two alternate in ten rounds so that load from other processes falls on both alike.
   `speedup` = the index's queries/s ÷ exact's. Both run with `--threads` FAISS threads (default 1,
   printed): a single query runs on one thread in both anyway, and on a shared machine a second
   OpenMP thread mostly waits for a core (measured here with other jobs running: exact search over
   50k items took 30 ms a query on two threads against 7.5 ms on one). Building and the ground
   truth use `--build-threads` (default: all CPUs), as `tailor build` does.
5. The same for a filter that keeps a random 30% of the items (`filtered`: recall against exact
   search over the allowed items, queries/s, and whether every answer has k allowed items).
6. `peak_gib`: the process's peak resident memory (`getrusage` maxrss), i.e. the exact baseline's
   copy of the vectors, the chosen index and the queries together; `index_gib` is the index's own.

The generator ("shop titles"). Real item texts embedded by all-MiniLM-L6-v2 are far from uniform
noise. Over the 3,674 UCI Online Retail items the median item has a nearest neighbour at cosine
0.80 (a colour or size variant of the same product), its 10th at 0.57, its 100th at 0.40, while two
random items sit at 0.19: the vectors share a common direction and are grouped by kind of product
and by product family. The generator is a three-level Gaussian model in 384 dimensions:

    x = normalise(mean_weight · m + s_topic · (√family_weight · f[family] + s_family · √item_weight · e)
                  + √topic_weight · t[topic])

m is a fixed unit vector (the shared direction); t, f and e are Gaussian draws whose covariance has
the eigenvalue spectrum of the real embeddings (λ_i ∝ (i + 40)^-2.2, fitted to the UCI covariance:
real 4/26/65/83% of the variance in the top 1/10/50/100 directions, generator 3/25/66/82%), under a
seeded random rotation; s_topic and s_family are log-normal tightness factors per topic and per
family (some families are near-duplicates, some loose). Families have geometric sizes (mean
`family_size`) and belong to topics of `items_per_topic` items on average. The seven weights were
fitted (Nelder-Mead, 166 evaluations) to the 10/25/50/75/90th percentiles of the real items'
top-1, top-10 and top-100 neighbour cosines and of random pairs at the same size (RMS error 0.03
over the 20 percentiles; medians real/generator: top-1 0.80/0.85, top-10 0.57/0.56, top-100
0.40/0.40, random 0.19/0.21); the 1000th neighbour, not fitted, agrees too (median 0.25/0.27).
`--calibrate` embeds the real titles again (UCI, and the Amazon 2018 sample, a different shop full
of near-identical gift cards, for comparison) and prints both profiles side by side.

Scaling up is an assumption the real data cannot check: a catalogue of n items has more families
(n / family_size) and more topics, topics × (n / 3,674) ** `topic_growth`. The default 0.5 (Heaps'
law: kinds of product grow like √n) makes both the number of topics and their size grow like √n;
`--topic-growth 1` keeps topics as small as in the real shop (the hardest case for an index:
beyond the first few topics a query's 100 neighbours sit at nearly the same similarity as
thousands of others), 0 keeps their number.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.config import IndexConfig  # noqa: E402
from services.recommend.vector_index import VectorIndex, build_index, ivf_lists, ivf_nprobe  # noqa: E402

DIMENSION = 384
K = 100
CHUNK = 65_536
FILTER_SHARE = 0.3


@dataclass(frozen=True)
class ShopTitleGenerator:
    """Unit vectors whose neighbour similarities resemble MiniLM embeddings of shop item titles."""

    # Fitted to the UCI Online Retail titles (see the module docstring and --calibrate).
    mean_weight: float = 0.516
    topic_weight: float = 0.347
    family_weight: float = 0.419
    items_per_topic: float = 46.2
    family_size: float = 3.05
    topic_spread: float = 0.307
    family_spread: float = 0.512
    # A larger catalogue has topics × (items / calibration_items) ** topic_growth: 1 keeps topics as small as
    # in the real shop, 0 keeps their number; 0.5 (Heaps' law) lets both grow like √items.
    calibration_items: int = 3_674
    topic_growth: float = 0.5
    spectrum_offset: float = 40.0
    spectrum_power: float = 2.2
    dimension: int = DIMENSION
    seed: int = 0

    def _shape(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(mixing matrix A: a standard normal row times A has the fitted covariance, shared direction m)."""
        eigen = (np.arange(1, self.dimension + 1) + self.spectrum_offset) ** -self.spectrum_power
        eigen /= eigen.sum()
        rotation, _ = np.linalg.qr(rng.standard_normal((self.dimension, self.dimension)))
        mean = rng.standard_normal(self.dimension)
        return (np.sqrt(eigen)[:, None] * rotation.T).astype(np.float32), (mean / np.linalg.norm(mean)).astype(np.float32)

    def chunks(self, n: int):
        """Yields float32 blocks of unit rows, n rows in all, in family order; deterministic for (seed, n).

        Uniform draws are turned into family sizes and topics by inverse CDFs, so nearby parameters
        give nearby catalogues (the calibration's objective is then smooth enough to fit)."""
        rng = np.random.default_rng(self.seed)
        mixing, mean = self._shape(rng)
        p = 1.0 / max(self.family_size, 1.0 + 1e-6)
        sizes = 1 + np.floor(np.log(rng.random(n)) / math.log1p(-p)).astype(np.int64) if p < 1 else np.ones(n, np.int64)
        n_families = int(np.searchsorted(np.cumsum(sizes), n)) + 1
        sizes = sizes[:n_families]
        sizes[-1] -= int(sizes.sum()) - n
        n_topics = max(1, round(self.calibration_items / self.items_per_topic * (n / self.calibration_items) ** self.topic_growth))
        topic_of_family = np.minimum((rng.random(n)[:n_families] * n_topics).astype(np.int64), n_topics - 1)
        topics = rng.standard_normal((n_topics, self.dimension), dtype=np.float32) @ mixing
        topic_scale = np.exp(self.topic_spread * rng.standard_normal(n_topics) - self.topic_spread**2 / 2).astype(np.float32)
        family_scale = np.exp(self.family_spread * rng.standard_normal(n) - self.family_spread**2 / 2)[:n_families].astype(np.float32)
        item_weight = max(1.0 - self.topic_weight - self.family_weight, 0.0)
        ends = np.cumsum(sizes)
        first = 0  # first family of the next block
        while first < n_families:
            last = max(first + 1, int(np.searchsorted(ends, ends[first] - sizes[first] + CHUNK, side="right")))
            block_sizes = sizes[first:last]
            family = np.repeat(np.arange(last - first), block_sizes)
            topic = topic_of_family[first:last]
            # Item offset within its family (families differ in tightness), plus the family's offset
            # within its topic, both scaled by the topic's tightness; plus the topic and the shared direction.
            x = rng.standard_normal((int(block_sizes.sum()), self.dimension), dtype=np.float32) @ mixing
            x *= (math.sqrt(item_weight) * family_scale[first:last])[family, None]
            x += math.sqrt(self.family_weight) * (rng.standard_normal((last - first, self.dimension), dtype=np.float32) @ mixing)[family]
            x *= topic_scale[topic][family, None]
            x += math.sqrt(self.topic_weight) * topics[topic][family]
            x += self.mean_weight * mean
            x /= np.linalg.norm(x, axis=1, keepdims=True)
            yield x
            first = last

    def sample(self, n: int) -> np.ndarray:
        return np.concatenate(list(self.chunks(n)))


def neighbour_profile(vectors: np.ndarray, seed: int = 0) -> dict[str, list[float]]:
    """Percentiles (10/25/50/75/90) of each item's top-1, top-10 and top-100 neighbour cosine and of random
    pairs (the calibration targets), and of the 1000th neighbour (a check of the tail, not fitted)."""
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    sims, _ = index.search(vectors, min(1001, len(vectors)))
    sims = sims[:, 1:]  # drop the item itself
    pairs = np.random.default_rng(seed).integers(0, len(vectors), (20_000, 2))
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    random_pairs = np.einsum("ij,ij->i", vectors[pairs[:, 0]], vectors[pairs[:, 1]])
    pct = [10, 25, 50, 75, 90]
    return {
        "top1": np.percentile(sims[:, 0], pct).round(3).tolist(),
        "top10": np.percentile(sims[:, 9], pct).round(3).tolist(),
        "top100": np.percentile(sims[:, 99], pct).round(3).tolist(),
        "random": np.percentile(random_pairs, pct).round(3).tolist(),
        **({"top1000": np.percentile(sims[:, 999], pct).round(3).tolist()} if sims.shape[1] >= 1000 else {}),
    }


def print_profiles(profiles: dict[str, dict[str, list[float]]]) -> None:
    print(f"{'':24s} {'':7s}  p10    p25    p50    p75    p90")
    for name, profile in profiles.items():
        for key, values in profile.items():
            print(f"{name:24s} {key:7s} " + " ".join(f"{v:6.3f}" for v in values))


def calibrate(generator: ShopTitleGenerator) -> None:
    """Embed the real shop titles and compare their neighbour profile with the generator's at the same size."""
    from services.config import load_config
    from services.recommend.embedding import TextEmbedder, item_texts
    from services.shop_data import load_shop_data

    datasets = Path(__file__).resolve().parents[2] / "shared" / "datasets"
    embedder = TextEmbedder(load_config())
    for name in ("uci_online_retail", "amazon_reviews_2018_small"):
        items = load_shop_data(datasets / name).items.reset_index(drop=True)
        real = embedder.embed(item_texts(items))
        eigen = np.sort(np.linalg.eigvalsh(np.cov((real - real.mean(0)).T)))[::-1]
        share = np.cumsum(eigen) / eigen.sum()
        fitted = (np.arange(1, DIMENSION + 1) + generator.spectrum_offset) ** -generator.spectrum_power
        fitted = np.cumsum(fitted) / fitted.sum()
        print(f"\n{name}: {len(real):,} items; variance share in the top 1/10/50/100 directions: "
              f"real {share[[0, 9, 49, 99]].round(3).tolist()}, generator {fitted[[0, 9, 49, 99]].round(3).tolist()}")
        print_profiles({f"real ({len(real):,})": neighbour_profile(real), f"generator ({len(real):,})": neighbour_profile(generator.sample(len(real)))})


def rss_gib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**30


def peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--queries", type=int, default=1_000, help="held-out queries for recall@100 (and the index's throughput)")
    parser.add_argument("--timed-queries", type=int, default=200, help="of those, how many time exact search one by one")
    parser.add_argument("--threads", type=int, default=1, help="FAISS OpenMP threads while timing queries, both indexes")
    parser.add_argument("--build-threads", type=int, default=os.cpu_count(), help="FAISS OpenMP threads for building and ground truth")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--topic-growth", type=float, default=ShopTitleGenerator.topic_growth, help="see the module doc")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--calibrate", action="store_true", help="compare the generator with real MiniLM title embeddings and exit")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="override an IndexConfig field (experiments)")
    args = parser.parse_args()

    generator = ShopTitleGenerator(seed=args.seed, topic_growth=args.topic_growth)
    if args.calibrate:
        calibrate(generator)
        return

    faiss.omp_set_num_threads(args.build_threads)
    load_before = os.getloadavg()
    print(f"{args.items:,} items × {DIMENSION}, {args.queries:,} held-out queries; FAISS threads: {args.threads} for both "
          f"indexes' queries, {args.build_threads} to build; {os.cpu_count()} CPUs, load average {load_before[0]:.1f}")
    config = IndexConfig(**{k: json.loads(v) for k, v in (s.split("=", 1) for s in args.set)})
    started = time.perf_counter()

    # Items straight into the exact index (its storage is the one full copy of the vectors); queries are
    # rows of the same stream held out at random.
    n_total = args.items + args.queries
    is_query = np.zeros(n_total, dtype=bool)
    is_query[np.random.default_rng(args.seed + 1).choice(n_total, args.queries, replace=False)] = True
    exact = faiss.IndexFlatIP(DIMENSION)
    queries = []
    offset = 0
    for block in generator.chunks(n_total):
        held = is_query[offset : offset + len(block)]
        queries.append(block[held])
        exact.add(np.ascontiguousarray(block[~held]))
        offset += len(block)
    queries = np.ascontiguousarray(np.concatenate(queries))
    items = faiss.rev_swig_ptr(exact.get_xb(), exact.ntotal * DIMENSION).reshape(exact.ntotal, DIMENSION)
    print(f"generated in {time.perf_counter() - started:.1f} s; top-1 neighbour of a query: median cosine ", end="", flush=True)

    truth_started = time.perf_counter()
    truth_scores, truth = exact.search(queries, K)
    truth_s = time.perf_counter() - truth_started
    print(f"{np.median(truth_scores[:, 0]):.3f}, 100th {np.median(truth_scores[:, -1]):.3f} (exact top-{K}, batched: {truth_s:.1f} s)")

    rss_before = rss_gib()
    build_started = time.perf_counter()
    index = build_index(items, config)
    build_s = time.perf_counter() - build_started
    index_gib = rss_gib() - rss_before
    params = {"hnsw": {"M": config.hnsw_m, "efConstruction": config.hnsw_ef_construction, "efSearch": config.hnsw_ef_search}}.get(index.kind, {})
    if index.kind.startswith("ivf"):
        nlist = ivf_lists(index.size, config)
        params = {"nlist": nlist, "nprobe": ivf_nprobe(nlist, config), "refine_factor": config.ivf_refine_factor,
                  "train_points": min(index.size, nlist * config.ivf_train_per_list), "train_iterations": config.ivf_train_iterations}
    print(f"built {index.kind} {params} in {build_s:.1f} s (+{index_gib:.2f} GiB)")

    # One query per call, as Retrieve serves them: the chosen index on every query (recall and its
    # throughput), exact search on the first `timed` of them (its throughput). The two alternate in
    # rounds so that load from other processes on the machine falls on both alike.
    faiss.omp_set_num_threads(args.threads)
    exact_index = VectorIndex(exact, "flat", config)
    timed = min(args.timed_queries, len(queries))
    found = np.empty_like(truth)
    index_s = exact_s = 0.0
    rounds = 10
    for r in range(rounds):
        for i in range(r * len(queries) // rounds, (r + 1) * len(queries) // rounds):
            t = time.perf_counter()
            _, ids = index.search(queries[i : i + 1], K)
            index_s += time.perf_counter() - t
            found[i] = ids[0]
        for i in range(r * timed // rounds, (r + 1) * timed // rounds):
            t = time.perf_counter()
            exact_index.search(queries[i : i + 1], K)
            exact_s += time.perf_counter() - t
    recall = float(np.mean([len(np.intersect1d(t, f)) / K for t, f in zip(truth, found)]))
    index_qps, exact_qps = len(queries) / index_s, timed / exact_s
    speedup = index_qps / exact_qps

    # A filter that keeps 30% of the items (say, one department): recall against exact search over the
    # allowed items, and the index's throughput with it.
    allowed = np.random.default_rng(args.seed + 2).random(index.size) < FILTER_SHARE
    filtered_queries = queries[:timed]
    faiss.omp_set_num_threads(args.build_threads)
    bitmap = np.packbits(allowed, bitorder="little")
    selector = faiss.IDSelectorBitmap(index.size, faiss.swig_ptr(bitmap))
    _, filtered_truth = exact.search(filtered_queries, K, params=faiss.SearchParameters(sel=selector))
    faiss.omp_set_num_threads(args.threads)
    filtered_found = np.empty_like(filtered_truth)
    t = time.perf_counter()
    for i in range(timed):
        filtered_found[i] = index.search(filtered_queries[i : i + 1], K, allowed)[1][0]
    filtered_qps = timed / (time.perf_counter() - t)
    filtered_ok = bool(allowed[filtered_found[filtered_found >= 0]].all() and (filtered_found >= 0).all())
    filtered_recall = float(np.mean([len(np.intersect1d(t, f)) / K for t, f in zip(filtered_truth, filtered_found)]))
    print(f"with a filter keeping {FILTER_SHARE:.0%} of the items: recall@{K} {filtered_recall:.4f}, {filtered_qps:,.0f}/s, "
          f"{'k allowed items in every answer' if filtered_ok else 'SOME ANSWERS SHORT OR NOT ALLOWED'}")
    load_after = os.getloadavg()
    result = {
        "items": index.size,
        "dimension": DIMENSION,
        "index": index.kind,
        "recall_at_100": round(recall, 4),
        "speedup": round(speedup, 1),
        "build_s": round(build_s, 1),
        "peak_gib": round(peak_gib(), 2),
        "index_params": params,
        "index_gib": round(index_gib, 2),
        "queries": len(queries),
        "index_qps": round(index_qps, 1),
        "exact_qps": round(exact_qps, 2),
        "exact_timed_queries": timed,
        "filtered": {"allowed_share": FILTER_SHARE, "queries": timed, "recall_at_100": round(filtered_recall, 4),
                     "index_qps": round(filtered_qps, 1), "all_k_allowed": filtered_ok},
        "faiss_threads": args.threads,
        "build_threads": args.build_threads,
        "cpus": os.cpu_count(),
        "load_average_start_end": [round(load_before[0], 2), round(load_after[0], 2)],
        "total_s": round(time.perf_counter() - started, 1),
        "generator": asdict(generator),
    }
    print(f"{index.kind}: recall@{K} {recall:.4f} over {len(queries):,} queries; one query per call {index_qps:,.0f}/s "
          f"vs exact {exact_qps:,.1f}/s ({timed} queries) = {speedup:.1f}×; build {build_s:.1f} s; "
          f"peak {peak_gib():.2f} GiB; load average {load_before[0]:.1f} → {load_after[0]:.1f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
