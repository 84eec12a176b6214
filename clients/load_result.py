"""What one open-loop load run measured (clients/loadtest.py): counts, status codes, latency
percentiles from each request's scheduled start, and a per-second timeline; as JSON or a summary."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    import numpy as np


@dataclass
class Percentiles:
    """Milliseconds; None when there was nothing to measure."""

    count: int
    mean: Optional[float] = None
    p50: Optional[float] = None
    p90: Optional[float] = None
    p99: Optional[float] = None
    p999: Optional[float] = None
    max: Optional[float] = None

    @classmethod
    def of(cls, seconds: "np.ndarray") -> "Percentiles":
        import numpy as np

        if not len(seconds):
            return cls(0)
        ms = seconds * 1000.0
        # "higher": every percentile is a latency some request really had.
        p50, p90, p99, p999 = np.percentile(ms, [50, 90, 99, 99.9], method="higher")
        return cls(len(ms), *(round(float(value), 3) for value in (ms.mean(), p50, p90, p99, p999, ms.max())))

    def line(self) -> str:
        if not self.count:
            return "none"
        return f"p50 {self.p50:.1f}  p90 {self.p90:.1f}  p99 {self.p99:.1f}  p99.9 {self.p999:.1f}  max {self.max:.1f}"


@dataclass
class Second:
    """One second of the run: starts by when they were sent, answers by when they came back."""

    t: int  # seconds after t0
    sent: int
    ok: int
    errors: int
    errors_by_code: dict[str, int]
    p99_ms: Optional[float]  # of the OK answers that came back in this second


@dataclass
class LoadResult:
    target: str
    rpc: str
    application: str
    timeout_s: float
    schedule: list[tuple[float, float]]
    distinct_requests: int
    channels: int
    started_at: str  # ISO-8601 UTC
    duration_s: float  # the schedule's length (or until stopped)
    elapsed_s: float  # t0 to the last answer
    stopped_early: bool
    scheduled: int
    sent: int
    answered: int
    ok: int
    offered_rps: float  # sent / duration_s
    achieved_rps: float  # OK answers / (t0 to the last OK answer, at least duration_s)
    codes: dict[str, int]  # every status code seen, OK included
    error_details: dict[str, str]  # the first details each error code came with
    latency_ms: Percentiles  # OK answers, from the scheduled start
    latency_all_ms: Percentiles  # every answer, errors too (a deadline one ≈ timeout)
    first_chunk_ms: Optional[Percentiles]  # server-streaming RPCs: scheduled start to the first chunk
    late: int  # starts more than late_threshold_ms behind their slot
    late_threshold_ms: float
    max_start_lag_ms: float
    max_in_flight: int
    generator_cpu_s: float  # this process's CPU time over the run (grpc's threads included)
    generator_cpu_us_per_request: float
    timeline: list[Second] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self, path: Optional[Path] = None) -> str:
        text = json.dumps(self.to_dict(), indent=2, ensure_ascii=False)
        if path is not None:
            Path(path).write_text(text + "\n", encoding="utf-8")
        return text

    def summary(self) -> str:
        segments = ", ".join(f"{rate:g}/s for {seconds:g} s" for rate, seconds in self.schedule)
        codes = ", ".join(f"{code} {count}" for code, count in sorted(self.codes.items(), key=lambda item: -item[1])) or "none"
        lines = [
            f"{self.rpc} at {self.target} (application {self.application}): {segments}, deadline {self.timeout_s:g} s"
            + (" (stopped early)" if self.stopped_early else ""),
            f"sent {self.sent} of {self.scheduled} (offered {self.offered_rps:.1f}/s), "
            f"OK {self.ok} (achieved {self.achieved_rps:.1f}/s), most in flight {self.max_in_flight}",
            f"latency of OK answers, ms: {self.latency_ms.line()}",
            f"latency of all answers, ms: {self.latency_all_ms.line()}",
        ]
        if self.first_chunk_ms is not None:
            lines.append(f"first chunk, ms: {self.first_chunk_ms.line()}")
        lines.append(f"codes: {codes}")
        lines += [f"  {code}: {detail}" for code, detail in self.error_details.items()]
        lines.append(
            f"late starts (> {self.late_threshold_ms:g} ms behind schedule): {self.late}, max start lag {self.max_start_lag_ms:.1f} ms; "
            f"generator CPU {self.generator_cpu_s:.2f} s ({self.generator_cpu_us_per_request:.0f} µs/request)"
        )
        return "\n".join(lines)
