"""Time and memory of `tailor build` on a large shop (data/make_synthetic_shop.py's), stage by stage.

    .venv/bin/python bench/bench_scale_build.py --data /tmp/scale/shop --out /tmp/scale/artifacts \
        [--results bench/results/scale_build.json]

Runs the build in this process (as `tailor build --force` does) while a thread samples the
resident memory of this process and its children every 0.5 s; prints each stage as it starts
and ends with the memory at that moment, so a run that is killed still says where it was.
The results file gets the manifest's stage seconds, the total, shoppers and events per second,
the peak resident memory overall and per stage, and what the build sampled.
"""

from __future__ import annotations

import argparse
import json
import platform
import threading
import time
from pathlib import Path

import psutil

GIB = 1024**3


class MemorySampler(threading.Thread):
    """Peak resident memory of this process and its children, overall and per named stage."""

    def __init__(self, every_s: float = 0.5):
        super().__init__(daemon=True)
        self.every_s = every_s
        self.process = psutil.Process()
        self.peak = 0
        self.stage = "start"
        self.stage_peak: dict[str, int] = {}
        self.stopped = threading.Event()

    def rss(self) -> int:
        total = self.process.memory_info().rss
        for child in self.process.children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.NoSuchProcess:
                pass
        return total

    def run(self) -> None:
        while not self.stopped.wait(self.every_s):
            self.record()

    def record(self) -> int:
        now = self.rss()
        self.peak = max(self.peak, now)
        self.stage_peak[self.stage] = max(self.stage_peak.get(self.stage, 0), now)
        return now


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--results", type=Path)
    args = parser.parse_args()

    from services.build import build_artifacts
    from services.config import load_config

    config = load_config(data=args.data, artifacts_dir=args.out)
    sampler = MemorySampler()
    sampler.start()
    started = time.perf_counter()

    def progress(step: str, done: int, total: int) -> None:
        if done == 0 and sampler.stage != step:
            sampler.stage = step
            rss = sampler.record()
            print(f"[{time.perf_counter() - started:7.1f} s] {step} … (rss {rss / GIB:.2f} GiB)", flush=True)
        elif done == total:
            rss = sampler.record()
            print(f"[{time.perf_counter() - started:7.1f} s] {step} done (rss {rss / GIB:.2f} GiB)", flush=True)

    result = build_artifacts(args.data, args.out, config, progress, force=True)
    seconds = time.perf_counter() - started
    sampler.stopped.set()
    sampler.record()
    manifest = result.manifest
    users = manifest["counts"]["users"]
    synthetic = args.data / "synthetic.json"
    report = {
        "data": str(args.data),
        "build": str(result.path),
        "generator": json.loads(synthetic.read_text()) if synthetic.is_file() else None,
        "machine": {"cpus": psutil.cpu_count(), "memory_gib": round(psutil.virtual_memory().total / GIB, 1), "python": platform.python_version()},
        "counts": manifest["counts"],
        "stage_seconds": manifest["stages"],
        "build_seconds": round(seconds, 1),
        "shoppers_per_second": round(users / seconds, 1),
        "events_per_second": round(manifest["counts"]["events"] / seconds, 1),
        "peak_rss_gib": round(sampler.peak / GIB, 2),
        "stage_peak_rss_gib": {name: round(peak / GIB, 2) for name, peak in sampler.stage_peak.items()},
        "sampling": manifest.get("sampling", {}),
        "build_bytes": sum(p.stat().st_size for p in result.path.iterdir() if p.is_file()),
    }
    print(json.dumps(report, indent=2))
    if args.results:
        args.results.parent.mkdir(parents=True, exist_ok=True)
        args.results.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
