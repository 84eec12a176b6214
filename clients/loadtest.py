"""Open-loop gRPC load for Tailor: request i starts at t0 + its slot in the schedule whether or
not earlier ones have answered, so a slow server shows up as latency and errors, never as a
lower offered rate (a closed loop that waits for answers hides exactly the overload it should
measure).

Library:
    result = load("127.0.0.1:9000", "Recommend", requests, [(100, 60)])      # or await run_load(...)
    print(result.summary()); result.to_json()

Commands (clients/loadtest_command.py, registered in clients/cli.py):
    tailor loadtest --rpc Recommend --rate 100 --duration 60 --requests FILE --json OUT
    tailor loadtest --rpc Recommend --ramp "20:30,100:30,20:30" --requests FILE
    tailor loadtest-requests --rpc Recommend --n 5000 --out FILE

Latency counts from each request's scheduled start, so time a request waits inside the
generator (a busy event loop, a burst after a stall) is latency too; a start more than LATE_S
behind its slot is counted as late, so a generator that cannot keep up says so.

grpc, numpy and protobuf are imported inside the functions that use them: `tailor` imports this
module for its command list, and every other command should not pay for them.
"""

from __future__ import annotations

import asyncio
import gc
import json
import math
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence, Union

from rich.console import Console
from rich.text import Text

from clients.load_requests import LoadTestError
from clients.load_result import LoadResult, Percentiles, Second

if TYPE_CHECKING:
    import numpy as np
    from google.protobuf.message import Message

# A start this far behind its slot is late: well above the event loop's timer jitter (~1 ms),
# well below any latency worth measuring.
LATE_S = 0.010
PROGRESS_EVERY_S = 0.5
EXCERPT_CHARS = 60
DETAIL_CHARS = 160
TARGET = "127.0.0.1:9000"
APPLICATION = "tailor"

Schedule = Sequence[tuple[float, float]]  # (requests per second, seconds) segments, in order


# ---------------------------------------------------------------------------------------------
# The contract's RPCs, read off the generated descriptors


@dataclass(frozen=True)
class Rpc:
    service: str  # full name, e.g. tailor.v1.MarketingService
    method: str  # e.g. Recommend
    request_type: type
    response_type: type
    server_streaming: bool
    client_streaming: bool

    @property
    def name(self) -> str:
        return f"{self.service}/{self.method}"

    @property
    def path(self) -> str:
        return f"/{self.service}/{self.method}"


def contract_rpcs() -> list[Rpc]:
    """Every RPC of every service in tailor.v1 (each *_pb2 module there, so a new proto file or
    RPC needs no code here) and the standard grpc.health.v1 Health service."""
    import importlib
    import pkgutil

    from google.protobuf.message_factory import GetMessageClass
    from grpc_health.v1 import health_pb2

    import tailor.v1

    modules = [
        importlib.import_module(f"tailor.v1.{module.name}")
        for module in pkgutil.iter_modules(tailor.v1.__path__)
        if module.name.endswith("_pb2")
    ]
    rpcs = []
    for module in [*modules, health_pb2]:
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                rpcs.append(
                    Rpc(
                        service.full_name,
                        method.name,
                        GetMessageClass(method.input_type),
                        GetMessageClass(method.output_type),
                        method.server_streaming,
                        method.client_streaming,
                    )
                )
    return rpcs


def find_rpc(name: str) -> Rpc:
    """The RPC called `name`: "Recommend", "MarketingService/Recommend", "Health.Check" or the full
    "tailor.v1.MarketingService/Recommend" (any case); a method name two services share must be
    qualified."""
    wanted = name.strip().lstrip("/").replace(".", "/").lower()
    rpcs = contract_rpcs()
    matches = []
    for rpc in rpcs:
        short_service = rpc.service.rsplit(".", 1)[-1]
        spellings = {rpc.method, f"{short_service}/{rpc.method}", f"{rpc.service.replace('.', '/')}/{rpc.method}"}
        if wanted in {spelling.lower() for spelling in spellings}:
            matches.append(rpc)
    if not matches:
        known = ", ".join(sorted({rpc.method for rpc in rpcs}))
        raise LoadTestError(f"no RPC {name!r} in the contract; known: {known}")
    if len(matches) > 1:
        raise LoadTestError(f"{name!r} is ambiguous: say one of {', '.join(rpc.name for rpc in matches)}")
    if matches[0].client_streaming:
        raise LoadTestError(f"{matches[0].name} streams requests from the client; only unary and server-streaming RPCs are supported")
    return matches[0]


# ---------------------------------------------------------------------------------------------
# Requests and schedules


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    text = text.strip()
    return repr(text) if len(text) <= limit else f"{text[:limit]!r}…"


def short_text(text: str) -> str:
    """The first line, cut to DETAIL_CHARS: protobuf's ParseError goes on to list every field of
    the message, and a server's details can be long."""
    lines = text.strip().splitlines()
    first_line = lines[0] if lines else ""
    return first_line if len(first_line) <= DETAIL_CHARS else first_line[:DETAIL_CHARS] + "…"


def read_requests(path: Path, rpc: Rpc) -> list["Message"]:
    """The request messages of a JSON Lines file: one protobuf-JSON object per line (blank lines
    skipped). A bad line raises LoadTestError naming the file, the line and the problem."""
    from google.protobuf.json_format import ParseDict, ParseError

    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise LoadTestError(f"{path}: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise LoadTestError(f"{path}: not UTF-8 text") from None
    requests = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as error:
            raise LoadTestError(f"{path} line {number}: not JSON ({error.msg} at column {error.colno}): {excerpt(line)}") from None
        if not isinstance(value, dict):
            raise LoadTestError(f"{path} line {number}: a JSON object is expected, not {type(value).__name__}: {excerpt(line)}")
        try:
            requests.append(ParseDict(value, rpc.request_type()))
        except (ParseError, ValueError, TypeError) as error:
            raise LoadTestError(
                f"{path} line {number}: not a {rpc.request_type.DESCRIPTOR.name}: {short_text(str(error)) or type(error).__name__}: {excerpt(line)}"
            ) from None
    if not requests:
        raise LoadTestError(f"{path}: no requests (one JSON object per line)")
    return requests


def write_requests(path: Path, requests: Sequence[dict]) -> None:
    Path(path).write_text("".join(json.dumps(request, ensure_ascii=False) + "\n" for request in requests), encoding="utf-8")


def parse_ramp(text: str) -> list[tuple[float, float]]:
    """ "20:30,100:30,20:30" → [(20, 30), (100, 30), (20, 30)]: rate (requests/s) : seconds."""
    schedule = []
    for part in text.split(","):
        rate, sep, seconds = part.strip().partition(":")
        try:
            if not sep:
                raise ValueError
            schedule.append((float(rate), float(seconds)))
        except ValueError:
            raise LoadTestError(f"--ramp segment {part.strip()!r} is not RATE:SECONDS (e.g. \"20:30,100:30,20:30\")") from None
    check_schedule(schedule)
    return schedule


def check_schedule(schedule: Schedule) -> None:
    if not schedule:
        raise LoadTestError("the schedule is empty: give a rate and a duration")
    for rate, seconds in schedule:
        if not (math.isfinite(rate) and rate >= 0):
            raise LoadTestError(f"rate {rate} is not a number of requests per second ≥ 0")
        if not (math.isfinite(seconds) and seconds > 0):
            raise LoadTestError(f"duration {seconds} is not a number of seconds > 0")
    if not start_offsets(schedule):
        raise LoadTestError("the schedule starts no request (rate × seconds < 1)")


def start_offsets(schedule: Schedule) -> list[float]:
    """Each request's start, in seconds after t0: evenly spaced within each segment."""
    offsets: list[float] = []
    segment_start = 0.0
    for rate, seconds in schedule:
        count = round(rate * seconds)
        offsets.extend(segment_start + j / rate for j in range(count))
        segment_start += seconds
    return offsets


# ---------------------------------------------------------------------------------------------
# The run


class OpenLoopRun:
    """One run's state. Per request the hot path stores a few floats and a code in preallocated
    lists; everything else (percentiles, timeline) is computed once at the end."""

    def __init__(self, calls: list, payloads: list[bytes], offsets: list[float], timeout_s: float, metadata, streaming: bool):
        import grpc

        self.rpc_error = grpc.aio.AioRpcError
        self.calls = calls
        self.payloads = payloads
        self.offsets = offsets
        self.timeout_s = timeout_s
        self.metadata = metadata
        self.streaming = streaming
        n = len(offsets)
        self.starts: list[float] = []
        self.sent_at = [math.nan] * n
        self.done_at = [math.nan] * n
        self.first_chunk_at = [math.nan] * n
        self.codes: list[Optional[str]] = [None] * n
        self.tasks: list[Optional[asyncio.Task]] = [None] * n
        self.finished: list[int] = []  # request numbers in the order they finished
        self.counts: Counter[str] = Counter()
        self.details: dict[str, str] = {}
        self.sent = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.late = 0
        self.t0 = 0.0

    async def send_all(self, stop: Optional[asyncio.Event]) -> None:
        """Start request i at starts[i]: sleep to the next slot, then start every request that is
        due (a burst when behind), never waiting for an answer."""
        loop = asyncio.get_running_loop()
        self.t0 = time.monotonic() + 0.05  # a little lead, so the first slots are not already late
        self.starts = starts = [self.t0 + offset for offset in self.offsets]
        call_one = self.stream_one if self.streaming else self.unary_one
        n = len(starts)
        i = 0
        while i < n:
            if stop is not None and stop.is_set():
                break
            now = time.monotonic()
            if starts[i] > now:
                await asyncio.sleep(starts[i] - now)
                now = time.monotonic()
            while i < n and starts[i] <= now:
                if now - starts[i] > LATE_S:
                    self.late += 1
                self.sent_at[i] = now
                self.tasks[i] = loop.create_task(call_one(i))
                i += 1
                self.in_flight += 1
            self.sent = i
            if self.in_flight > self.max_in_flight:
                self.max_in_flight = self.in_flight

    async def unary_one(self, i: int) -> None:
        try:
            await self.calls[i % len(self.calls)](self.payloads[i % len(self.payloads)], timeout=self.timeout_s, metadata=self.metadata)
            code = "OK"
        except Exception as error:
            code = self.failure_code(error)
        self.finish(i, code)

    async def stream_one(self, i: int) -> None:
        first = True
        try:
            async for _ in self.calls[i % len(self.calls)](self.payloads[i % len(self.payloads)], timeout=self.timeout_s, metadata=self.metadata):
                if first:
                    self.first_chunk_at[i] = time.monotonic()
                    first = False
            code = "OK"
        except Exception as error:
            code = self.failure_code(error)
        self.finish(i, code)

    def failure_code(self, error: Exception) -> str:
        """The status code's name, keeping the first details each code came with. A client-side
        failure is counted as CLIENT_<exception>, so the run still reports."""
        if isinstance(error, self.rpc_error):
            code, details = error.code().name, error.details() or ""
        else:
            code, details = f"CLIENT_{type(error).__name__}", str(error)
        if code not in self.details:
            self.details[code] = short_text(details)
        return code

    def finish(self, i: int, code: str) -> None:
        self.done_at[i] = time.monotonic()
        self.codes[i] = code
        self.counts[code] += 1
        self.finished.append(i)
        self.tasks[i] = None
        self.in_flight -= 1

    async def drain(self) -> None:
        """Wait for the calls still in flight (each ends by its deadline)."""
        pending = [task for task in self.tasks if task is not None]
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)

    def progress_line(self, window_start: int, duration_s: float) -> Text:
        import numpy as np

        elapsed = max(0.0, time.monotonic() - self.t0)
        recent = [i for i in self.finished[window_start:] if self.codes[i] == "OK"]
        p99 = "—"
        if recent:
            latency = np.array([self.done_at[i] for i in recent]) - np.array([self.starts[i] for i in recent])
            p99 = f"{np.percentile(latency, 99) * 1000:.0f} ms"
        text = Text(f"{elapsed:5.1f}/{duration_s:g} s  sent {self.sent}  ok {self.counts['OK']}  ")
        for code, count in sorted(self.counts.items()):
            if code != "OK":
                text.append(f"{code} {count}  ", style="red")
        text.append(f"in flight {self.in_flight}  p99 {p99}")
        if self.late:
            text.append(f"  late {self.late}", style="yellow")
        return text

    async def show_progress(self, console: Console, duration_s: float) -> None:
        from rich.live import Live

        # p99 over the answers of about the last second (two ticks).
        marks = [0, 0]
        with Live(Text(""), console=console, auto_refresh=False, transient=False) as live:
            try:
                while True:
                    await asyncio.sleep(PROGRESS_EVERY_S)
                    marks = [marks[1], len(self.finished)]
                    live.update(self.progress_line(marks[0], duration_s), refresh=True)
            except asyncio.CancelledError:
                live.update(self.progress_line(marks[0], duration_s), refresh=True)
                raise

    def result(self, settings: dict, schedule: Schedule, duration_s: float, cpu_s: float, stopped_early: bool) -> LoadResult:
        import numpy as np

        n = self.sent
        starts = np.array(self.starts[:n])
        sent_at = np.array(self.sent_at[:n])
        done_at = np.array(self.done_at[:n])
        codes = np.array([code or "" for code in self.codes[:n]], dtype=object)
        answered = ~np.isnan(done_at)
        ok = codes == "OK"
        latency = done_at - starts
        lag = sent_at - starts
        last_answer = float(np.nanmax(done_at)) if answered.any() else self.t0
        last_ok = float(done_at[ok].max()) if ok.any() else self.t0
        first_chunk = None
        if self.streaming:
            chunk_latency = np.array(self.first_chunk_at[:n]) - starts
            first_chunk = Percentiles.of(chunk_latency[ok & ~np.isnan(chunk_latency)])
        ok_count = int(ok.sum())
        return LoadResult(
            **settings,
            schedule=[(float(rate), float(seconds)) for rate, seconds in schedule],
            duration_s=round(duration_s, 3),
            elapsed_s=round(last_answer - self.t0, 3),
            stopped_early=stopped_early,
            scheduled=len(self.offsets),
            sent=n,
            answered=int(answered.sum()),
            ok=ok_count,
            offered_rps=round(n / duration_s, 3),
            achieved_rps=round(ok_count / max(duration_s, last_ok - self.t0), 3),
            codes=dict(sorted(self.counts.items())),
            error_details=dict(sorted(self.details.items())),
            latency_ms=Percentiles.of(latency[ok]),
            latency_all_ms=Percentiles.of(latency[answered]),
            first_chunk_ms=first_chunk,
            late=self.late,
            late_threshold_ms=LATE_S * 1000,
            max_start_lag_ms=round(float(lag.max()) * 1000, 3) if n else 0.0,
            max_in_flight=self.max_in_flight,
            generator_cpu_s=round(cpu_s, 3),
            generator_cpu_us_per_request=round(cpu_s / n * 1e6, 1) if n else 0.0,
            timeline=self.timeline(sent_at - self.t0, done_at - self.t0, codes, latency, ok),
        )

    @staticmethod
    def timeline(sent: "np.ndarray", done: "np.ndarray", codes: "np.ndarray", latency: "np.ndarray", ok: "np.ndarray") -> list[Second]:
        import numpy as np

        answered = ~np.isnan(done)
        seconds = int(max(np.nanmax(sent, initial=0.0), np.nanmax(done, initial=0.0))) + 1
        sent_per_second = np.bincount(np.floor(sent).astype(int).clip(0), minlength=seconds)
        done_second = np.where(answered, np.floor(np.nan_to_num(done)), -1).astype(int)
        rows = []
        for t in range(seconds):
            in_second = done_second == t
            ok_here = in_second & ok
            errors = Counter(codes[in_second & ~ok])
            rows.append(
                Second(
                    t=t,
                    sent=int(sent_per_second[t]),
                    ok=int(ok_here.sum()),
                    errors=sum(errors.values()),
                    errors_by_code=dict(sorted(errors.items())),
                    p99_ms=round(float(np.percentile(latency[ok_here], 99, method="higher")) * 1000, 3) if ok_here.any() else None,
                )
            )
        return rows


async def run_load(
    target: str,
    rpc: Union[str, Rpc],
    requests: Sequence[Union["Message", dict]],
    schedule: Schedule,
    application: str = APPLICATION,
    timeout_s: float = 5.0,
    progress: Union[bool, Console] = False,
    channels: int = 1,
    stop: Optional[asyncio.Event] = None,
    connect_timeout_s: float = 10.0,
) -> LoadResult:
    """Offer `rpc` at `target` open-loop on `schedule` ([(rate, seconds), ...]), requests used
    round-robin (messages of the RPC's request type, or their protobuf-JSON dicts; none: one
    default request). Every call carries the `application` metadata (the Ray proxy routes on
    it) and a deadline of timeout_s. progress: a live line on stderr (or on the Console given).
    Setting `stop` ends the schedule early; calls in flight still finish and are counted."""
    import grpc
    import numpy  # noqa: F401  imported now: a first import mid-run (progress line) stalls the schedule
    import rich.live  # noqa: F401
    from google.protobuf.json_format import ParseDict

    rpc = rpc if isinstance(rpc, Rpc) else find_rpc(rpc)
    check_schedule(schedule)
    if timeout_s <= 0:
        raise LoadTestError(f"timeout {timeout_s} is not a number of seconds > 0")
    messages = [ParseDict(request, rpc.request_type()) if isinstance(request, dict) else request for request in requests]
    for message in messages:
        if not isinstance(message, rpc.request_type):
            raise LoadTestError(f"{rpc.name} takes {rpc.request_type.DESCRIPTOR.full_name}, not {type(message).__name__}")
    # Serialised once: the calls below send bytes as they are, and hand back the answers'
    # bytes undecoded, so neither costs Python time per request.
    payloads = [message.SerializeToString() for message in messages] or [rpc.request_type().SerializeToString()]
    metadata = grpc.aio.Metadata(("application", application))
    # Channels to one target share one connection unless each has its own subchannel pool.
    options = [("grpc.use_local_subchannel_pool", 1)] if channels > 1 else []
    opened = [grpc.aio.insecure_channel(target, options=options) for _ in range(max(1, channels))]
    try:
        try:
            await asyncio.wait_for(asyncio.gather(*(channel.channel_ready() for channel in opened)), connect_timeout_s)
        except asyncio.TimeoutError:
            raise LoadTestError(f"nothing answers at {target} (waited {connect_timeout_s:g} s)") from None
        if rpc.server_streaming:
            calls = [channel.unary_stream(rpc.path, _registered_method=True) for channel in opened]
        else:
            calls = [channel.unary_unary(rpc.path, _registered_method=True) for channel in opened]
        run = OpenLoopRun(calls, payloads, start_offsets(schedule), timeout_s, metadata, rpc.server_streaming)
        schedule_s = sum(seconds for _, seconds in schedule)
        started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        console = progress if isinstance(progress, Console) else Console(stderr=True) if progress else None
        progress_task = asyncio.get_running_loop().create_task(run.show_progress(console, schedule_s)) if console else None
        cpu_before = time.process_time()
        # What is alive now (modules, the caller's data: ~40k objects after the imports) is kept
        # out of the cycle collector's full passes, which would otherwise stall the schedule for
        # tens of ms every few thousand requests.
        gc.freeze()
        try:
            await run.send_all(stop)
            stopped_early = run.sent < len(run.offsets)
            duration_s = time.monotonic() - run.t0 if stopped_early else schedule_s
            await run.drain()
        finally:
            gc.unfreeze()
            if progress_task is not None:
                progress_task.cancel()
                await asyncio.gather(progress_task, return_exceptions=True)
        cpu_s = time.process_time() - cpu_before
    finally:
        await asyncio.gather(*(channel.close() for channel in opened))
    settings = dict(
        target=target,
        rpc=rpc.name,
        application=application,
        timeout_s=timeout_s,
        distinct_requests=len(payloads),
        channels=len(opened),
        started_at=started_at,
    )
    return run.result(settings, schedule, max(duration_s, 1e-9), cpu_s, stopped_early)


def load(
    target: str,
    rpc: Union[str, Rpc],
    requests: Sequence[Union["Message", dict]],
    schedule: Schedule,
    application: str = APPLICATION,
    timeout_s: float = 5.0,
    progress: Union[bool, Console] = False,
    channels: int = 1,
) -> LoadResult:
    """run_load on a fresh event loop (not from inside a running one)."""
    return asyncio.run(run_load(target, rpc, requests, schedule, application, timeout_s, progress, channels))
