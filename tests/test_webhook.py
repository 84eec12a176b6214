"""Webhook delivery against a real local HTTP receiver that fails on a fixed schedule.

The receiver keeps every message it applied, deduplicated by `idempotency_key` as a real one
would, and counts raw arrivals too, so a test can tell "exactly once after dedupe" from "never
repeated". Failures come by request number (or by batch id, for permanent ones): some before
applying, some after applying, so the sender must repeat batches the receiver already holds.
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from jobs.webhook import CHECKPOINT, DeliveryError, DeliveryRejected, _retry_after, deliver
from services.campaigns.outbox import MESSAGE_COLUMNS

CAMPAIGN = "spring-sale"
PARTS, ROWS, BATCH = 3, 250, 100           # 3 batches a part (100, 100, 50): 9 in all
FAST = {"backoff_s": 0.001, "backoff_max_s": 0.01, "timeout_s": 2.0}


# --- the outbox -------------------------------------------------------------------------------

def key(user_id: str) -> str:
    return hashlib.sha256(f"{CAMPAIGN}|{user_id}|email".encode()).hexdigest()[:32]


def message(shopper: str, **changes) -> dict:
    """One message row with every MESSAGE_COLUMNS field; the key is fixed before any redaction."""
    row = {
        "idempotency_key": key(shopper),
        "campaign_id": CAMPAIGN, "user_id": shopper, "channel": "email", "language": "en",
        "outcome": "sent", "send_after": "2024-03-01T09:00:00+00:00", "date": "2024-03-01",
        "timezone": "Europe/London", "segment": "regulars", "loyalty_tier": "", "build_id": "b1",
        "item_ids": ["85123A", "22423"], "item_id": "85123A", "item_title": "Heart T-light holder",
        "currency": "GBP", "price": 2.55, "offered_price": 2.3, "promotion": "", "title": "Hi",
        "body": "Light it up", "call_to_action": "Shop now", "copy_source": "template", "personalized": True,
    }
    assert set(row) == set(MESSAGE_COLUMNS)
    return {**row, **changes}


def make_outbox(root: Path, *, done_parts: int = PARTS) -> dict[str, dict]:
    """PARTS parts of ROWS messages; every 50th shopper was forgotten since (user_id "")."""
    (root / "messages.jsonl").mkdir(parents=True)
    (root / "done").mkdir()
    (root / "campaign.json").write_text(json.dumps({"campaign_id": CAMPAIGN}))
    rows = {}
    for part in range(PARTS):
        name = f"part-{part:05d}"
        lines = []
        for n in range(ROWS):
            user = f"u{part}-{n}"
            row = message(user, user_id="" if n % 50 == 7 else user)
            rows[row["idempotency_key"]] = row
            lines.append(json.dumps(row))
        (root / "messages.jsonl" / f"{name}.jsonl").write_text("\n".join(lines) + "\n")
        if part < done_parts:
            (root / "done" / name).touch()
    return rows


def acked(outbox: Path) -> list[str]:
    path = outbox / CHECKPOINT
    return [json.loads(line)["batch_id"] for line in path.read_text().splitlines()] if path.exists() else []


# --- the receiver -----------------------------------------------------------------------------

class Receiver:
    """What a webhook endpoint holds, and the failures it is told to fake."""

    def __init__(self, schedule: dict[int, str] | None = None, by_batch: dict[str, str] | None = None):
        self.schedule = schedule or {}        # request number (1-based) -> action
        self.by_batch = by_batch or {}        # batch id -> action, on every request for it
        self.lock = threading.Lock()
        self.requests = 0
        self.applied: dict[str, dict] = {}    # idempotency_key -> message, repeats dropped
        self.raw = 0                          # messages applied, repeats included
        self.posts: Counter[str] = Counter()  # batch id -> requests for it
        self.actions: list[str] = []

    def handle(self, batch_id: str, body: dict) -> str:
        with self.lock:
            self.requests += 1
            self.posts[batch_id] += 1
            action = self.by_batch.get(batch_id) or self.schedule.get(self.requests, "ok")
            self.actions.append(action)
            if action.startswith("apply") or action == "ok":
                for row in body["messages"]:
                    self.raw += 1
                    self.applied.setdefault(row["idempotency_key"], row)
        return action


def handler_for(receiver: Receiver):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"          # keep-alive, so the client's pool is exercised

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            assert self.headers["Idempotency-Key"] == body["batch_id"]
            action = receiver.handle(body["batch_id"], body)
            if action == "apply_drop":         # applied, then the connection dies unanswered
                self.close_connection = True
                return
            if action == "apply_slow":         # applied, answered after the client gave up
                time.sleep(0.6)
            status, headers = {
                "ok": (200, {}), "apply_slow": (200, {}), "500": (500, {}), "503": (503, {}),
                "apply_500": (500, {}), "400": (400, {}), "429": (429, {"Retry-After": "0"}),
                "429_long": (429, {"Retry-After": "3600"}),
            }[action]
            self.answer(status, headers)

        def answer(self, status: int, headers: dict):
            payload = json.dumps({"status": status}).encode()
            try:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except OSError:
                self.close_connection = True  # the client timed out and hung up

        def log_message(self, *args):
            pass

    return Handler


@pytest.fixture
def serve():
    """serve(receiver) -> url of a live receiver on 127.0.0.1; all stopped after the test."""
    servers = []

    def start(receiver: Receiver) -> str:
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(receiver))
        server.daemon_threads = True
        server.handle_error = lambda *args: None  # a hung-up client is part of the test
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/hook"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


# A failure of every kind, each once: before applying, after applying, unanswered, too slow.
FLAKY = {2: "503", 3: "apply_500", 5: "429", 6: "apply_drop", 8: "500", 9: "apply_slow", 11: "429_long"}


# --- tests ------------------------------------------------------------------------------------

def test_every_message_arrives_exactly_once_through_every_kind_of_failure(tmp_path, serve):
    rows = make_outbox(tmp_path)
    receiver = Receiver(FLAKY)
    seen = []
    report = deliver(tmp_path, serve(receiver), batch_size=BATCH, progress=lambda d, t: seen.append((d, t)),
                     retry_after_max_s=0.01, **{**FAST, "timeout_s": 0.3})

    assert receiver.applied == rows
    assert receiver.raw > len(rows)              # applied-then-failed batches did come again
    assert report.batches == 9 and report.messages == len(rows) and report.already_delivered_batches == 0
    assert report.retries >= len(FLAKY)
    assert report.balanced() and report.rows == len(rows)
    assert sorted(acked(tmp_path)) == sorted(receiver.posts)
    assert seen[0] == (0, 9) and seen[-1] == (9, 9)
    assert sum(1 for row in receiver.applied.values() if row["user_id"] == "") == PARTS * ROWS // 50


def test_batches_are_named_by_campaign_part_and_slice(tmp_path, serve):
    make_outbox(tmp_path)
    receiver = Receiver()
    deliver(tmp_path, serve(receiver), batch_size=BATCH, **FAST)
    assert list(receiver.posts) == [f"{CAMPAIGN}:part-{p:05d}:{i}" for p in range(PARTS) for i in range(3)]


def test_a_second_run_posts_nothing(tmp_path, serve):
    make_outbox(tmp_path)
    receiver = Receiver()
    url = serve(receiver)
    deliver(tmp_path, url, batch_size=BATCH, **FAST)
    requests = receiver.requests

    again = deliver(tmp_path, url, batch_size=BATCH, **FAST)

    assert receiver.requests == requests
    assert (again.batches, again.messages, again.already_delivered_batches) == (0, 0, 9)
    assert again.balanced()


def test_an_interrupted_run_resumes_where_it_stopped(tmp_path, serve):
    rows = make_outbox(tmp_path)
    receiver = Receiver(FLAKY)
    url = serve(receiver)

    def ctrl_c_after_three(done, total):
        if done >= 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        deliver(tmp_path, url, batch_size=BATCH, progress=ctrl_c_after_three, retry_after_max_s=0.01, **FAST)
    assert len(acked(tmp_path)) == 3
    assert len(receiver.posts) == 3 and len(receiver.applied) == ROWS   # part 0: 100 + 100 + 50

    report = deliver(tmp_path, url, batch_size=BATCH, retry_after_max_s=0.01, **FAST)

    assert receiver.applied == rows
    assert (report.already_delivered_batches, report.batches) == (3, 6)
    assert report.balanced()
    assert len(set(acked(tmp_path))) == len(acked(tmp_path)) == 9


def test_a_permanent_4xx_stops_at_once_naming_the_batch(tmp_path, serve):
    make_outbox(tmp_path)
    refused = f"{CAMPAIGN}:part-00001:1"
    receiver = Receiver(by_batch={refused: "400"})

    with pytest.raises(DeliveryRejected) as stopped:
        deliver(tmp_path, serve(receiver), batch_size=BATCH, **FAST)

    assert "HTTP 400" in str(stopped.value) and refused in str(stopped.value)
    assert "4 of 9 batches" in str(stopped.value) and "resumes" in str(stopped.value)
    assert stopped.value.batch_id == refused
    assert receiver.posts[refused] == 1          # never retried
    assert acked(tmp_path) == [f"{CAMPAIGN}:part-00000:{i}" for i in range(3)] + [f"{CAMPAIGN}:part-00001:0"]


def test_a_receiver_that_is_down_fails_clearly_with_nothing_marked_delivered(tmp_path):
    make_outbox(tmp_path)
    with socket.socket() as probe:                # a port nothing listens on once it is closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    started = time.monotonic()
    with pytest.raises(DeliveryError) as stopped:
        deliver(tmp_path, f"http://127.0.0.1:{port}/hook", batch_size=BATCH, attempts=3, **FAST)

    assert time.monotonic() - started < 5
    assert "failed after 3 attempts" in str(stopped.value) and "ConnectError" in str(stopped.value)
    assert "0 of 9 batches" in str(stopped.value) and "re-running deliver resumes" in str(stopped.value)
    assert acked(tmp_path) == []


def test_skipped_rows_and_unfinished_parts_are_left_out_and_accounted_for(tmp_path, serve):
    rows = make_outbox(tmp_path, done_parts=2)
    # Forgotten since: every shopper of part 0's last slice (an empty batch), and two more.
    forgotten = {key(f"u0-{n}") for n in range(200, 250)} | {key("u1-3"), key("u1-120")}
    receiver = Receiver()

    report = deliver(tmp_path, serve(receiver), batch_size=BATCH,
                     skip=lambda row: row["idempotency_key"] in forgotten, **FAST)

    unfinished = {key(f"u2-{n}") for n in range(ROWS)}
    assert set(receiver.applied) == set(rows) - unfinished - forgotten
    assert report.pending_parts == 1 and report.total_batches == 6
    assert report.skipped_messages == 52 and report.empty_batches == 1 and report.batches == 5
    assert report.balanced()
    assert f"{CAMPAIGN}:part-00000:2" not in receiver.posts and f"{CAMPAIGN}:part-00000:2" in acked(tmp_path)


def test_concurrent_delivery_still_delivers_everything_once(tmp_path, serve):
    rows = make_outbox(tmp_path)
    receiver = Receiver(FLAKY)

    report = deliver(tmp_path, serve(receiver), batch_size=BATCH, concurrency=4, retry_after_max_s=0.01,
                     **{**FAST, "timeout_s": 0.3})

    assert receiver.applied == rows and receiver.raw > len(rows)
    assert report.batches == 9 and report.balanced()
    assert sorted(acked(tmp_path)) == sorted(receiver.posts)


def test_retry_after_reads_seconds_and_dates():
    assert _retry_after("7") == 7.0
    assert _retry_after(None) is None and _retry_after("soon") is None
    later = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=30), usegmt=True)
    assert 25 < _retry_after(later) <= 30
    assert _retry_after(format_datetime(datetime(2000, 1, 1, tzinfo=timezone.utc), usegmt=True)) == 0.0


def test_a_checkpoint_line_torn_by_a_crash_only_costs_a_repeat(tmp_path, serve):
    rows = make_outbox(tmp_path)
    checkpoint = tmp_path / CHECKPOINT
    checkpoint.parent.mkdir()
    checkpoint.write_text(json.dumps({"batch_id": f"{CAMPAIGN}:part-00000:0"}) + '\n{"batch_id": "spri')
    receiver = Receiver()

    report = deliver(tmp_path, serve(receiver), batch_size=BATCH, **FAST)

    assert (report.already_delivered_batches, report.batches) == (1, 8)
    assert len(receiver.applied) == len(rows) - BATCH
    assert len(acked_lines := [line for line in checkpoint.read_text().splitlines() if line.endswith("}")]) == 9
    assert acked_lines[1].startswith('{"batch_id": "spring-sale:part-00000:1"')
