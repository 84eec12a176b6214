"""`tailor campaign` on the sample build, as a user runs it: a real Ray Data job in a
subprocess (killed half-way and started again), contact rules, opt-outs, shoppers' rights,
webhook delivery to a real local HTTP server, and clear errors on bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest

from services.campaigns.outbox import OUTCOMES
from services.shopper_rights import ShopperRights

ROOT = Path(__file__).resolve().parents[1]


def environment(config, **extra) -> dict:
    """The session's state paths for a `tailor` subprocess (it reads TAILOR_ variables)."""
    env = dict(os.environ)
    env.update(
        {
            "TAILOR_RIGHTS__PATH": str(config.rights.path),
            "TAILOR_RIGHTS__SALT_PATH": str(config.rights.salt_path),
            "TAILOR_CAMPAIGN__CONTACT_LOG_PATH": str(config.campaign.contact_log_path),
            "TAILOR_CAMPAIGN__OUTBOXES_PATH": str(config.campaign.outboxes_path),
            "TAILOR_CAMPAIGN__ACTORS": "1",
            "TAILOR_CAMPAIGN__ACTOR_CPUS": "0.5",
        }
    )
    env.update(extra)
    return env


def tailor(config, *args, env=None, check=True) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [str(Path(sys.executable).parent / "tailor"), *map(str, args)],
        env=env or environment(config),
        capture_output=True,
        text=True,
        timeout=600,
    )
    if check and done.returncode != 0:
        raise AssertionError(f"tailor {' '.join(map(str, args))} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done


def log_rows(outbox: Path) -> pd.DataFrame:
    rows = [json.loads(line) for p in sorted((outbox / "log").glob("part-*.jsonl")) for line in p.read_text().splitlines()]
    return pd.DataFrame(rows)


def message_rows(outbox: Path) -> pd.DataFrame:
    return pd.concat([pd.read_parquet(p) for p in sorted(outbox.glob("messages/*/*/part-*.parquet"))], ignore_index=True)


@pytest.fixture(scope="module")
def shoppers(sample_artifacts) -> list[str]:
    return sample_artifacts.users["user_id"].astype(str).tolist()


def test_campaign_killed_half_way_and_started_again_has_every_shopper_once(sample_build, sample_config, shoppers, tmp_path):
    outbox = tmp_path / "outbox"
    args = ["campaign", "--artifacts", sample_config.artifacts_dir, "--all", "--channel", "sms", "--language", "zh",
            "--promo", "code=XMAS10,percent_off=10", "--now", "2026-11-27T12:00:00", "--out", outbox]
    env = environment(sample_config, TAILOR_CAMPAIGN__CHUNK_SHOPPERS="4")
    first = subprocess.Popen([str(Path(sys.executable).parent / "tailor"), *map(str, args)], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    chunks = -(-len(shoppers) // 4)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and first.poll() is None:
        done = len(list((outbox / "done").glob("part-*"))) if (outbox / "done").exists() else 0
        if done >= 2:
            break
        time.sleep(0.05)
    os.killpg(first.pid, signal.SIGKILL)  # the job and its Ray, as a crash would
    first.wait()
    done_at_kill = len(list((outbox / "done").glob("part-*")))
    assert 2 <= done_at_kill < chunks, f"the kill came at {done_at_kill} of {chunks} chunks"

    second = tailor(sample_config, *args, env=env)
    assert "resuming" in second.stdout or "asked for" in second.stdout
    log = log_rows(outbox)
    assert sorted(log["user_id"]) == sorted(shoppers)  # every shopper exactly once in the log
    messages = message_rows(outbox)
    assert messages["user_id"].is_unique and messages["idempotency_key"].is_unique
    jsonl = [json.loads(line) for p in sorted((outbox / "messages.jsonl").glob("*.jsonl")) for line in p.read_text().splitlines()]
    assert sorted(r["idempotency_key"] for r in jsonl) == sorted(messages["idempotency_key"])
    sent = log[log["outcome"].isin(["sent", "scheduled"])]
    assert sorted(sent["user_id"]) == sorted(messages["user_id"])
    summary = json.loads((outbox / "summary.json").read_text())
    assert sum(summary["outcomes"].values()) == summary["shoppers"] == len(shoppers)
    # The resumed run's own earlier sends did not count against its caps.
    assert summary["outcomes"]["capped"] == 0
    # A 10 % code for everyone: one price per item, the code in the SMS.
    assert (messages["offered_price"] <= messages["price"]).all()
    assert messages["body"].str.contains("XMAS10").all() and messages["body"].str.contains("回T退订").all()
    assert set(messages["copy_source"]) <= {"model", "repaired", "template"}

    # Started once more, it has nothing left to do and changes nothing.
    again = tailor(sample_config, *args, env=env)
    assert "asked for" in again.stdout
    assert sorted(log_rows(outbox)["user_id"]) == sorted(shoppers)

    # A run with other settings into the same outbox is refused.
    other = tailor(sample_config, *[a if a != "sms" else "push" for a in args], env=env, check=False)
    assert other.returncode == 2 and "another campaign" in other.stderr


def test_contact_rules_quiet_hours_caps_and_opt_outs(sample_build, sample_config, shoppers, tmp_path):
    opted = shoppers[:5]
    (tmp_path / "opted.txt").write_text("\n".join(opted))
    tailor(sample_config, "opt-out", "--channel", "push", "--users", tmp_path / "opted.txt")
    common = ["campaign", "--artifacts", sample_config.artifacts_dir, "--all", "--channel", "push", "--no-copy"]
    # 23:30 in London is inside quiet hours (21:00-09:00): every message is scheduled for 09:00.
    night = tmp_path / "night"
    tailor(sample_config, *common, "--now", "2026-11-27T23:30:00Z", "--out", night)
    log = log_rows(night).set_index("user_id")
    assert set(log.loc[opted, "outcome"]) == {"opted_out"}
    others = log.drop(index=opted)
    assert set(others["outcome"]) <= {"scheduled", "no_recommendation"} and (others["outcome"] == "scheduled").sum() > 0
    assert set(others.loc[others["outcome"] == "scheduled", "send_after"]) == {"2026-11-28T09:00:00Z"}
    messages = message_rows(night)
    assert set(messages["date"]) == {"2026-11-28"} and not set(messages["user_id"]) & set(opted)

    # Push allows one send a day: another push campaign an hour later is capped for them.
    later = tmp_path / "later"
    tailor(sample_config, *common, "--promo", "code=LATER", "--now", "2026-11-28T10:30:00Z", "--out", later)
    log2 = log_rows(later).set_index("user_id")
    scheduled_before = others.index[others["outcome"] == "scheduled"]
    assert set(log2.loc[scheduled_before, "outcome"]) == {"capped"}
    assert log2.loc[scheduled_before[0], "reason"].startswith("push: 1 send")
    counts = json.loads((later / "summary.json").read_text())["outcomes"]
    assert sum(counts.values()) == len(shoppers) and set(counts) == set(OUTCOMES)
    tailor(sample_config, "opt-out", "--channel", "push", "--users", tmp_path / "opted.txt", "--undo")


def test_rights_in_campaigns_forgotten_left_out_unpersonalized_get_popular_lists(sample_build, sample_config, shoppers, tmp_path):
    # Rights of this test only: the session's live Tailor must keep every shopper.
    private = sample_config.model_copy(update={"rights": sample_config.rights.model_copy(update={"path": tmp_path / "r.sqlite", "salt_path": tmp_path / "salt"})})
    rights = ShopperRights.from_config(private)
    env = environment(sample_config, TAILOR_RIGHTS__PATH=str(tmp_path / "r.sqlite"), TAILOR_RIGHTS__SALT_PATH=str(tmp_path / "salt"))
    forgotten, plain, chosen = shoppers[-1], shoppers[-2], shoppers[-6:]
    (tmp_path / "users.csv").write_text("user_id,timezone,loyalty_tier\n" + "\n".join(f"{u},Asia/Shanghai,gold" for u in chosen))
    rights.forget(forgotten)
    rights.set_personalized(plain, False)
    try:
        outbox = tmp_path / "rights"
        tailor(sample_config, "campaign", "--artifacts", sample_config.artifacts_dir, "--users", tmp_path / "users.csv",
               "--channel", "email", "--now", "2026-11-27T03:00:00Z", "--promo", "percent_off=5,tier=gold", "--dry-run", "--out", outbox, env=env)
        log = log_rows(outbox)
        assert forgotten not in set(log["user_id"]) and len(log) == len(chosen) - 1
        assert not list(outbox.glob("messages/*/*/*.parquet"))  # a dry run writes no message
        # 03:00 UTC is 11:00 in Shanghai: outside its quiet hours.
        assert set(log["outcome"]) <= {"sent", "no_recommendation"}

        wet = tmp_path / "rights-wet"
        tailor(sample_config, "campaign", "--artifacts", sample_config.artifacts_dir, "--users", tmp_path / "users.csv",
               "--channel", "email", "--now", "2026-11-27T03:00:00Z", "--promo", "percent_off=5,tier=gold", "--out", wet, env=env)
        messages = message_rows(wet).set_index("user_id")
        assert not messages.loc[plain, "personalized"] and messages.drop(index=plain)["personalized"].all()
        assert set(messages["loyalty_tier"]) == {"gold"} and (messages["promotion"] != "").all()
    finally:
        rights.set_personalized(plain, True)


def test_bad_campaign_input_is_a_clear_error(sample_build, sample_config, tmp_path):
    base = ["campaign", "--artifacts", sample_config.artifacts_dir, "--out", tmp_path / "x"]
    assert "exactly one of" in tailor(sample_config, *base, check=False).stderr
    unknown = tailor(sample_config, *base, "--segment", "no-such-segment", check=False)
    assert unknown.returncode == 2 and "no segment 'no-such-segment'" in unknown.stderr
    (tmp_path / "bad.txt").write_text("12345\n\n12346\n")
    blank = tailor(sample_config, *base, "--users", tmp_path / "bad.txt", check=False)
    assert blank.returncode == 2 and "row 2" in blank.stderr
    promo = tailor(sample_config, *base, "--all", "--promo", "percent_off=10,segment=vip", check=False)
    assert promo.returncode == 2 and "PIPL" in promo.stderr
    channel = tailor(sample_config, *base, "--all", "--channel", "fax", check=False)
    assert channel.returncode == 2 and "--channel" in channel.stderr


class Receiver(BaseHTTPRequestHandler):
    """A webhook receiver that keeps messages by idempotency key and fails every third POST,
    half of those after keeping what it got."""

    posts = 0
    kept: dict[str, dict] = {}
    raw = 0

    def do_POST(self):  # noqa: N802 - http.server's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        cls = type(self)
        cls.posts += 1
        if cls.posts % 3 == 0 and cls.posts % 2 == 0:
            self.send_response(503)
            self.end_headers()
            return
        for message in body["messages"]:
            cls.raw += 1
            cls.kept[message["idempotency_key"]] = message
        self.send_response(500 if cls.posts % 3 == 0 else 200)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_campaign_delivers_to_a_webhook_at_least_once(sample_build, sample_config, shoppers, tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        outbox = tmp_path / "hooked"
        env = environment(sample_config, TAILOR_CAMPAIGN__WEBHOOK_BATCH="7")
        done = tailor(sample_config, "campaign", "--artifacts", sample_config.artifacts_dir, "--all", "--channel", "banner",
                      "--no-copy", "--now", "2026-11-27T12:00:00Z", "--webhook", f"http://127.0.0.1:{server.server_port}/hook",
                      "--out", outbox, env=env)
        assert "delivered" in done.stdout
        messages = message_rows(outbox)
        assert set(Receiver.kept) == set(messages["idempotency_key"])
        assert Receiver.raw > len(messages)  # some batches were applied, failed, and sent again
    finally:
        server.shutdown()
