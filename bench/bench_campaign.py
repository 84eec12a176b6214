"""A campaign over every shopper of a build, killed half-way and started again, delivered to a
webhook that fails some requests (some after applying them); then the checks the issue asks
for, and the figures.

    python bench/bench_campaign.py --artifacts /path/to/artifacts --out /tmp/campaign \
        [--channel sms --language zh --promo code=XMAS10,percent_off=10] [--no-copy] [--dry-run]

Prints (and with --json writes): shoppers, chunks, when it was killed, seconds of each run,
shoppers/s, outcome counts, exactly-once checks, webhook posts / retries / repeats dropped, and
`tailor audit`'s exit code. Runs `tailor` as a user does, in subprocesses.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd

TAILOR = str(Path(sys.executable).parent / "tailor")


class FlakyReceiver(BaseHTTPRequestHandler):
    """Keeps messages by idempotency key; every 4th POST fails before applying (503), every
    5th applies and then fails (500)."""

    posts = raw = 0
    kept: dict[str, dict] = {}

    def do_POST(self):  # noqa: N802 - http.server's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        cls = type(self)
        cls.posts += 1
        if cls.posts % 4 == 0:
            self.send_response(503)
            self.end_headers()
            return
        for message in body["messages"]:
            cls.raw += 1
            cls.kept[message["idempotency_key"]] = message
        self.send_response(500 if cls.posts % 5 == 0 else 200)
        self.end_headers()

    def log_message(self, *args):
        pass


def peak_rss_mib(pid: int) -> float:
    """Resident memory of a process and its descendants (the driver, Ray, the actors)."""
    try:
        import psutil
    except ImportError:
        return float("nan")
    try:
        root = psutil.Process(pid)
        return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)]) / 2**20
    except psutil.Error:
        return float("nan")


def run(args: list[str], env: dict, kill_at_chunks: int | None, outbox: Path) -> tuple[float, bool, float]:
    """(seconds, killed, peak MiB of the process tree sampled every 0.5 s)."""
    started = time.perf_counter()
    child = subprocess.Popen([TAILOR, *args], env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output: list[str] = []
    threading.Thread(target=lambda: output.extend(child.stdout), daemon=True).start()
    peak, killed = 0.0, False
    while child.poll() is None:
        peak = max(peak, peak_rss_mib(child.pid))
        done = len(list((outbox / "done").glob("part-*"))) if (outbox / "done").exists() else 0
        if kill_at_chunks is not None and done >= kill_at_chunks:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
            killed = True
            break
        time.sleep(0.5)
    if not killed and child.returncode != 0:
        sys.exit(f"tailor {' '.join(args)} exited {child.returncode}:\n{''.join(output)[-3000:]}")
    return time.perf_counter() - started, killed, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--artifacts", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--channel", default="sms")
    parser.add_argument("--language", default="zh")
    parser.add_argument("--promo", default="code=XMAS10,percent_off=10")
    parser.add_argument("--no-copy", action="store_true")
    parser.add_argument("--dry-run", action="store_true")
    parser.add_argument("--chunk", type=int, default=250, help="shoppers per chunk (more chunks: a finer kill point)")
    parser.add_argument("--kill-at", type=float, default=0.5, help="share of chunks done when the first run is killed; 0 = no kill")
    parser.add_argument("--state", type=Path, help="state folder (rights, contact log) of this run; default OUT/../state-bench")
    parser.add_argument("--json", type=Path)
    options = parser.parse_args()

    outbox, state = options.out, options.state or options.out.parent / f"{options.out.name}-state"
    shutil.rmtree(outbox, ignore_errors=True)
    shutil.rmtree(state, ignore_errors=True)
    state.mkdir(parents=True)
    env = dict(os.environ)
    env.update(
        TAILOR_CAMPAIGN__CHUNK_SHOPPERS=str(options.chunk),
        TAILOR_RIGHTS__PATH=str(state / "rights.sqlite"),
        TAILOR_RIGHTS__SALT_PATH=str(state / "salt"),
        TAILOR_CAMPAIGN__CONTACT_LOG_PATH=str(state / "contacts.sqlite"),
        TAILOR_CAMPAIGN__OUTBOXES_PATH=str(state / "outboxes.txt"),
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), FlakyReceiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    args = ["campaign", "--artifacts", str(options.artifacts), "--all", "--channel", options.channel, "--language", options.language,
            "--promo", options.promo, "--out", str(outbox)]
    args += ["--no-copy"] if options.no_copy else []
    args += ["--dry-run"] if options.dry_run else ["--webhook", f"http://127.0.0.1:{server.server_port}/messages"]

    users = pd.read_parquet(options.artifacts / "current" / "users.parquet", columns=["user_id"])["user_id"].astype(str)
    chunks = -(-len(users) // options.chunk)
    kill_at = max(1, int(chunks * options.kill_at)) if options.kill_at > 0 else None
    first_s, killed, first_peak = run(args, env, kill_at, outbox)
    done_at_kill = len(list((outbox / "done").glob("part-*")))
    second_s, _, second_peak = run(args, env, None, outbox)
    server.shutdown()

    log = pd.DataFrame([json.loads(line) for p in sorted((outbox / "log").glob("*.jsonl")) for line in p.read_text().splitlines()])
    summary = json.loads((outbox / "summary.json").read_text())
    checks = {
        "every shopper exactly once in the log": sorted(log["user_id"]) == sorted(users),
        "outcome counts add up": sum(summary["outcomes"].values()) == summary["shoppers"] == len(users),
    }
    result = {
        "shoppers": len(users),
        "chunks": chunks,
        "killed_after_chunks": done_at_kill if killed else None,
        "first_run_s": round(first_s, 1),
        "second_run_s": round(second_s, 1),
        "shoppers_per_s_overall": round(len(users) / (first_s + second_s), 1),
        "peak_rss_mib": round(max(first_peak, second_peak)),
        "outcomes": summary["outcomes"],
    }
    if not options.dry_run:
        messages = pd.concat([pd.read_parquet(p) for p in sorted(outbox.glob("messages/*/*/*.parquet"))], ignore_index=True)
        wanted = set(log.loc[log["outcome"].isin(["sent", "scheduled"]), "user_id"])
        checks["each message once in the outbox (Parquet)"] = messages["idempotency_key"].is_unique and set(messages["user_id"]) == wanted
        jsonl = [json.loads(line) for p in sorted((outbox / "messages.jsonl").glob("*.jsonl")) for line in p.read_text().splitlines()]
        checks["JSONL holds the same messages"] = sorted(r["idempotency_key"] for r in jsonl) == sorted(messages["idempotency_key"])
        checks["webhook receiver holds each message once"] = set(FlakyReceiver.kept) == set(messages["idempotency_key"])
        result["webhook"] = {"posts": FlakyReceiver.posts, "messages_received": FlakyReceiver.raw, "distinct_kept": len(FlakyReceiver.kept)}
        result["copy_sources"] = messages["copy_source"].value_counts().to_dict()
        audit = subprocess.run([TAILOR, "audit", "--outbox", str(outbox), "--artifacts", str(options.artifacts)], env=env, capture_output=True, text=True)
        result["audit_exit_code"] = audit.returncode
    result["checks"] = checks
    print(json.dumps(result, indent=2))
    if options.json:
        options.json.parent.mkdir(parents=True, exist_ok=True)
        options.json.write_text(json.dumps(result, indent=2) + "\n")
    if not all(checks.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
