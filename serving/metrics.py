"""Tailor's Prometheus metrics, through Ray's metrics API: Ray exports them beside its own and
Serve's on every node's metrics port (serving.metrics_port), with the `ray_` prefix Ray puts
on application metrics, e.g. `ray_tailor_requests_total{rpc="Recommend",code="OK"}`.
README "Metrics" lists them."""

from __future__ import annotations

import threading
import time
from typing import Callable

import numpy as np
from ray.util import metrics

from services.recommend.candidates import SOURCE_NAMES

# Seconds; Recommend lives in the first few buckets, Generate with the model's words in the last.
LATENCY_BOUNDARIES = [0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]


class RequestMetrics:
    """Requests and errors by RPC and status code, and their latency, in the ingress (every RPC
    passes through it); the build each replica serves."""

    def __init__(self):
        self.requests = metrics.Counter(
            "tailor_requests_total", "Requests answered, by RPC and gRPC status code.", tag_keys=("rpc", "code")
        )
        self.latency = metrics.Histogram(
            "tailor_request_seconds", "Time from the ingress taking a request to its answer.", LATENCY_BOUNDARIES, tag_keys=("rpc",)
        )
        self.candidates = metrics.Counter(
            "tailor_candidates_total", "Candidates Recommend gathered, by the source that found them.", tag_keys=("source",)
        )
        self.build = metrics.Gauge(
            "tailor_serving_build", "1 for the build this replica serves new requests from, 0 for one it left.", tag_keys=("build_id",)
        )
        self._build_id = ""
        # Candidate counts are summed here and handed to Ray once a second: seven labelled
        # increments per request cost more than the candidate sources they count.
        self._pending = np.zeros(len(SOURCE_NAMES), dtype=np.int64)
        self._flushed_at = time.monotonic()

    def answered(self, rpc: str, code: str, seconds: float) -> None:
        self.requests.inc(1, {"rpc": rpc, "code": code})
        self.latency.observe(seconds, {"rpc": rpc})

    def gathered(self, ranks: np.ndarray) -> None:
        """`ranks`: a CandidateSet's [candidates, sources] ranks (NaN where a source did not find it)."""
        self._pending += (~np.isnan(ranks)).sum(axis=0)
        now = time.monotonic()
        if now - self._flushed_at >= 1.0:
            for source, count in zip(SOURCE_NAMES, self._pending):
                if count:
                    self.candidates.inc(int(count), {"source": source})
            self._pending[:] = 0
            self._flushed_at = now

    def serving(self, build_id: str, again: bool = False) -> None:
        """Say which build this replica serves; `again` repeats it (Ray exports a gauge's value
        once it is set, not forever, so the replica says it every few seconds)."""
        if build_id != self._build_id or again:
            if self._build_id and build_id != self._build_id:
                self.build.set(0, {"build_id": self._build_id})
            self.build.set(1, {"build_id": build_id})
            self._build_id = build_id

    def keep_reporting_build(self, current: Callable[[], str], every_s: float = 5.0) -> None:
        """Repeat `serving` from a daemon thread for as long as the replica lives."""

        def report() -> None:
            while True:
                self.serving(current(), again=True)
                time.sleep(every_s)

        threading.Thread(target=report, name="build-metric", daemon=True).start()


class CopyMetrics:
    """Where copy came from (the model's words, or the template alone) and why it fell back."""

    def __init__(self):
        self.variants = metrics.Counter(
            "tailor_copy_variants_total", "Copy variants written, by source and channel.", tag_keys=("source", "channel")
        )
        self.fallbacks = metrics.Counter(
            "tailor_copy_fallbacks_total", "Variants sent as the template alone though the model's words were asked for.", tag_keys=("channel",)
        )

    def written(self, source: str, channel: str, fell_back: bool) -> None:
        self.variants.inc(1, {"source": source, "channel": channel})
        if fell_back:
            self.fallbacks.inc(1, {"channel": channel})
