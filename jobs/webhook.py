"""Deliver a campaign's outbox to a webhook, at least once, resumably.

The outbox's message rows (`messages.jsonl/part-*.jsonl`, see services/campaigns/outbox.py) go
out in batches that are the same on every run: by part file in sorted order, then fixed-size
slices, each named `<campaign_id>:<part>:<index>`. Each batch is one POST of

    {"campaign_id": ..., "batch_id": ..., "messages": [...]}

with the header `Idempotency-Key: <batch_id>`; every message also carries its own
`idempotency_key`. A 2xx acknowledges the batch and its id is appended to
`delivered/batches.jsonl` (flushed and fsynced) before the next one counts as done, so a
re-run skips what was acknowledged. A batch the receiver applied but whose answer was lost
(a 500 after applying, a dropped connection, a timeout) is posted again: the receiver drops
the repeat by either key. That is the whole contract: at least once, never silently lost.

Retries (tenacity): 5xx, 408, 429 (its Retry-After honoured, capped), connection errors,
timeouts and dropped connections back off exponentially with full jitter. Any other answer
stops delivery at once: retrying a 400 only repeats it.
"""

from __future__ import annotations

import json
import os
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Callable

import httpx
from tenacity import (RetryCallState, RetryError, Retrying, retry_if_exception_type, stop_after_attempt,
                      stop_when_event_set, wait_random_exponential)

MESSAGES_DIR = "messages.jsonl"
DONE_DIR = "done"
CHECKPOINT = Path("delivered") / "batches.jsonl"
# Statuses worth another try: the receiver or something in front of it is busy or broken for now.
RETRY_STATUSES = frozenset({408, 429}) | frozenset(range(500, 600))
# Failures of the wire, not of the request: the same POST may well go through next time.
# (LocalProtocolError / UnsupportedProtocol are our own mistakes and are not retried.)
TRANSIENT_ERRORS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


class DeliveryError(RuntimeError):
    """Delivery stopped; batches acknowledged before it stay checkpointed, so a re-run resumes."""

    def __init__(self, message: str, *, batch_id: str, delivered_batches: int, total_batches: int):
        super().__init__(message)
        self.batch_id = batch_id
        self.delivered_batches = delivered_batches
        self.total_batches = total_batches


class DeliveryRejected(DeliveryError):
    """The receiver refused a batch for good (a 4xx other than 408/429)."""


@dataclass(frozen=True)
class DeliveryReport:
    """What one `deliver` run did. Every message row read is delivered, skipped, or was delivered
    by an earlier run (`balanced()`); parts the campaign has not finished are left for later."""

    batches: int                       # batches acknowledged by this run
    messages: int                      # messages in them
    already_delivered_batches: int     # acknowledged by an earlier run, not posted again
    retries: int                       # extra attempts over all batches
    seconds: float
    total_batches: int = 0
    rows: int = 0                      # message rows in the finished parts
    already_delivered_messages: int = 0   # rows of batches acked earlier (skipped ones included)
    skipped_messages: int = 0          # left out by the caller's `skip`
    empty_batches: int = 0             # every row skipped: checkpointed without a POST
    pending_parts: int = 0             # parts without their done/ marker yet: not delivered

    def balanced(self) -> bool:
        return self.rows == self.messages + self.already_delivered_messages + self.skipped_messages


@dataclass(frozen=True)
class _Batch:
    batch_id: str
    part: Path
    start: int
    stop: int


class _Transient(Exception):
    """An answer worth retrying; carries the wait the receiver asked for, if any."""

    def __init__(self, what: str, retry_after: float | None = None):
        super().__init__(what)
        self.retry_after = retry_after


def deliver(
    outbox: Path,
    url: str,
    *,
    batch_size: int = 500,
    attempts: int = 8,
    timeout_s: float = 10.0,
    headers: dict | None = None,
    progress: Callable[[int, int], None] | None = None,
    skip: Callable[[dict], bool] | None = None,
    concurrency: int = 1,
    backoff_s: float = 0.5,
    backoff_max_s: float = 30.0,
    retry_after_max_s: float = 60.0,
) -> DeliveryReport:
    """Post every not-yet-acknowledged batch of `outbox` to `url`.

    `attempts` counts tries per batch (1 = no retry). The wait before retry n is uniform in
    [0, min(backoff_max_s, backoff_s * 2**n)] ("full jitter", so many senders recovering at
    once do not hammer the receiver in step), or the 429's Retry-After capped at
    `retry_after_max_s`. `progress(done, total)` is called with the batches acknowledged so far
    (earlier runs included), once at the start and after each ack; it runs on the calling
    thread, so raising from it (Ctrl-C) stops delivery cleanly. `skip(row) -> True` leaves a
    row out (e.g. a shopper forgotten since); batches are cut before skipping, so batch ids do
    not move when the set of skipped shoppers changes between runs.
    """
    if batch_size < 1 or attempts < 1 or concurrency < 1:
        raise ValueError("batch_size, attempts and concurrency must be at least 1")
    started = time.monotonic()
    outbox = Path(outbox)
    parts, pending_parts = _finished_parts(outbox)
    campaign_id = _campaign_id(outbox, parts)
    plan = [batch for part in parts for batch in _batches(campaign_id, part, batch_size)]
    checkpoint = _Checkpoint(outbox / CHECKPOINT)
    acked = checkpoint.read()
    todo = [batch for batch in plan if batch.batch_id not in acked]
    already = len(plan) - len(todo)
    counts = {"rows": sum(b.stop - b.start for b in plan),
              "already": sum(b.stop - b.start for b in plan if b.batch_id in acked),
              "batches": 0, "messages": 0, "skipped": 0, "empty": 0}
    retries = _Counter()
    stopping = threading.Event()
    if progress:
        progress(already, len(plan))

    def failure(batch: _Batch, error: Exception) -> DeliveryError:
        done = already + counts["batches"] + counts["empty"]
        where = (f"{done} of {len(plan)} batches are delivered and checkpointed in "
                 f"{outbox / CHECKPOINT}; re-running deliver resumes from there")
        if isinstance(error, DeliveryRejected):
            return DeliveryRejected(f"{error}; {where}", batch_id=batch.batch_id,
                                    delivered_batches=done, total_batches=len(plan))
        last = error if isinstance(error, _Transient) else f"{type(error).__name__}: {error}"
        return DeliveryError(f"webhook delivery stopped: batch {batch.batch_id} failed after {attempts} "
                             f"attempts (last: {last}); {where}", batch_id=batch.batch_id,
                             delivered_batches=done, total_batches=len(plan))

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    send_headers = {"Content-Type": "application/json", **(headers or {})}
    rows_of = _PartReader()
    with httpx.Client(timeout=httpx.Timeout(timeout_s), limits=limits, headers=send_headers) as client, \
            ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="webhook") as pool:
        post = _Poster(client, url, attempts=attempts, backoff_s=backoff_s, backoff_max_s=backoff_max_s,
                       retry_after_max_s=retry_after_max_s, retries=retries, stopping=stopping)
        in_flight: dict[Future, tuple[_Batch, int]] = {}
        queue = iter(todo)
        try:
            while True:
                # Keep `concurrency` POSTs in flight; batches emptied by `skip` need no POST.
                while len(in_flight) < concurrency and (batch := next(queue, None)) is not None:
                    rows = rows_of(batch.part)[batch.start:batch.stop]
                    kept = [row for row in rows if not (skip and skip(row))]
                    counts["skipped"] += len(rows) - len(kept)
                    if not kept:
                        checkpoint.append(batch.batch_id, 0)
                        counts["empty"] += 1
                        if progress:
                            progress(already + counts["batches"] + counts["empty"], len(plan))
                        continue
                    body = {"campaign_id": campaign_id, "batch_id": batch.batch_id, "messages": kept}
                    in_flight[pool.submit(post, batch.batch_id, body)] = (batch, len(kept))
                if not in_flight:
                    break
                finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in finished:
                    batch, n = in_flight.pop(future)
                    error = future.exception()
                    if error is not None:
                        raise failure(batch, error) from error
                    checkpoint.append(batch.batch_id, n)
                    counts["batches"] += 1
                    counts["messages"] += n
                    if progress:
                        progress(already + counts["batches"] + counts["empty"], len(plan))
        except BaseException:
            # Stop retry waits at once; POSTs already on the wire finish (bounded by timeout_s)
            # and the ones acknowledged are still checkpointed, so a resume re-posts less.
            stopping.set()
            for future, (batch, n) in in_flight.items():
                if not future.cancel() and future.exception() is None:
                    checkpoint.append(batch.batch_id, n)
            raise
    return DeliveryReport(
        batches=counts["batches"], messages=counts["messages"], already_delivered_batches=already,
        retries=retries.value, seconds=time.monotonic() - started, total_batches=len(plan),
        rows=counts["rows"], already_delivered_messages=counts["already"],
        skipped_messages=counts["skipped"], empty_batches=counts["empty"], pending_parts=pending_parts,
    )


def _finished_parts(outbox: Path) -> tuple[list[Path], int]:
    """Part files whose chunk the campaign marked done, sorted; and how many are not done yet.
    A part still being written (or rewritten by a restarted campaign) must not be cut into
    batches: its batch ids would later name different rows, and the receiver would drop them
    as repeats."""
    parts = sorted((outbox / MESSAGES_DIR).glob("part-*.jsonl"))
    finished = [part for part in parts if (outbox / DONE_DIR / part.stem).exists()]
    return finished, len(parts) - len(finished)


def _campaign_id(outbox: Path, parts: list[Path]) -> str:
    settings = outbox / "campaign.json"
    if settings.exists():
        campaign_id = json.loads(settings.read_text(encoding="utf-8")).get("campaign_id")
        if campaign_id:
            return str(campaign_id)
    # An outbox holds one campaign, so any message row names it.
    for part in parts:
        with part.open(encoding="utf-8") as lines:
            for line in lines:
                if line.strip():
                    return str(json.loads(line)["campaign_id"])
    return ""


def _batches(campaign_id: str, part: Path, batch_size: int) -> list[_Batch]:
    with part.open(encoding="utf-8") as lines:
        n = sum(1 for line in lines if line.strip())
    return [_Batch(f"{campaign_id}:{part.stem}:{index}", part, start, min(start + batch_size, n))
            for index, start in enumerate(range(0, n, batch_size))]


class _PartReader:
    """The rows of one part at a time: batches come in part order, so one part is in memory."""

    def __init__(self):
        self._path: Path | None = None
        self._rows: list[dict] = []

    def __call__(self, part: Path) -> list[dict]:
        if part != self._path:
            with part.open(encoding="utf-8") as lines:
                self._rows = [json.loads(line) for line in lines if line.strip()]
            self._path = part
        return self._rows


class _Checkpoint:
    """`delivered/batches.jsonl`: one acknowledged batch a line, on disk before it counts."""

    def __init__(self, path: Path):
        self.path = path

    def read(self) -> set[str]:
        if not self.path.exists():
            return set()
        acked = set()
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                acked.add(json.loads(line)["batch_id"])
            except (ValueError, KeyError, TypeError):
                # A line cut short by a crash mid-write: that batch is simply posted again.
                continue
        return acked

    def append(self, batch_id: str, messages: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"batch_id": batch_id, "messages": messages,
                           "acked_at": datetime.now(timezone.utc).isoformat(timespec="seconds")})
        with self.path.open("a+b") as out:
            # After a torn last line, start on a fresh one so this ack is readable.
            out.seek(0, os.SEEK_END)
            if out.tell():
                out.seek(-1, os.SEEK_END)
                if out.read(1) != b"\n":
                    line = "\n" + line
            out.write((line + "\n").encode("utf-8"))
            out.flush()
            os.fsync(out.fileno())


class _Counter:
    def __init__(self):
        self._lock = threading.Lock()
        self.value = 0

    def add(self, _state: RetryCallState | None = None) -> None:
        with self._lock:
            self.value += 1


class _Poster:
    """POST one batch until it is acknowledged, rejected, or out of attempts (runs on a worker)."""

    def __init__(self, client: httpx.Client, url: str, *, attempts: int, backoff_s: float,
                 backoff_max_s: float, retry_after_max_s: float, retries: _Counter,
                 stopping: threading.Event):
        self.client = client
        self.url = url
        self.attempts = attempts
        self.jitter = wait_random_exponential(multiplier=backoff_s, max=backoff_max_s)
        self.retry_after_max_s = retry_after_max_s
        self.retries = retries
        self.stopping = stopping

    def __call__(self, batch_id: str, body: dict) -> None:
        content = json.dumps(body, ensure_ascii=False).encode("utf-8")
        retrying = Retrying(
            stop=stop_after_attempt(self.attempts) | stop_when_event_set(self.stopping),
            wait=self._wait,
            retry=retry_if_exception_type((_Transient, *TRANSIENT_ERRORS)),
            before_sleep=self.retries.add,
            # Waits end early when delivery is stopping (Ctrl-C, another batch failed).
            sleep=self.stopping.wait,
        )
        try:
            retrying(self._post_once, batch_id, content)
        except RetryError as exhausted:
            raise exhausted.last_attempt.exception() from None

    def _post_once(self, batch_id: str, content: bytes) -> None:
        answer = self.client.post(self.url, content=content, headers={"Idempotency-Key": batch_id})
        if answer.is_success:
            return
        if answer.status_code in RETRY_STATUSES:
            raise _Transient(f"HTTP {answer.status_code}", _retry_after(answer.headers.get("Retry-After")))
        raise DeliveryRejected(
            f"webhook answered HTTP {answer.status_code} for batch {batch_id}: {answer.text[:200]!r}"
            " (not retried: the receiver refuses this batch)",
            batch_id=batch_id, delivered_batches=0, total_batches=0)

    def _wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, _Transient) and error.retry_after is not None:
            return min(error.retry_after, self.retry_after_max_s)
        return self.jitter(state)


def _retry_after(value: str | None) -> float | None:
    """Retry-After as seconds: either delta-seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())
