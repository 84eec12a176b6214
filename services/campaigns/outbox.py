"""The outbox a campaign writes, and its delivery log.

Layout of an outbox folder (`tailor campaign --out OUTBOX`):

    campaign.json                     the campaign's settings, build id, started/finished times
    messages/channel=<c>/date=<d>/part-<chunk>.parquet   one channel-ready message a row
    messages.jsonl/part-<chunk>.jsonl                     the same rows as JSON lines
    log/part-<chunk>.jsonl            every shopper asked for, exactly once, with its outcome
    done/part-<chunk>                 checkpoint: that chunk's files are complete
    summary.json                      outcome counts (they add up to the shoppers asked for)
    delivered/                        webhook delivery checkpoints (jobs/webhook.py)
    audit.json                        `tailor audit` findings

A message row (MESSAGE_COLUMNS) is written only for the outcomes "sent" and "scheduled"; the
log row (LOG_COLUMNS) for every shopper.
"""

from __future__ import annotations

import fcntl
import json
import os
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

# Every shopper asked for ends in exactly one of these.
OUTCOMES = ("sent", "scheduled", "capped", "opted_out", "no_recommendation", "failed")
MESSAGE_OUTCOMES = ("sent", "scheduled")

MESSAGE_COLUMNS = {
    # sha256 of (campaign_id, user_id, channel), 32 hex: the receiver drops repeats by it.
    "idempotency_key": "string",
    "campaign_id": "string",
    # "" once the shopper was forgotten (ForgetUser) after the message was sent.
    "user_id": "string",
    "channel": "string",              # push | sms | email | banner
    "language": "string",             # en | zh
    "outcome": "string",              # sent | scheduled
    "send_after": "string",           # ISO 8601 UTC; when the message may go out
    "date": "string",                 # YYYY-MM-DD of send_after (UTC): the partition
    "timezone": "string",             # the shopper's IANA zone, or the shop's default
    "segment": "string",              # the shopper's segment name in the build
    "loyalty_tier": "string",         # "" when the shop has none for the shopper
    "build_id": "string",
    "item_ids": "list<string>",       # the ranked list, best first
    "item_id": "string",              # the headline item the copy and the price are about
    "item_title": "string",
    "currency": "string",
    "price": "double",                # the catalog price
    "offered_price": "double",        # what this shopper is offered (after the promotion)
    # The promotion rule applied, as JSON: {"rule_id", "percent_off", "amount_off", "code",
    # "ends", "threshold_amount", "threshold_reduction", "conditions": {kind: value}};
    # conditions' kinds are basket | time | tier | code (never segment/propensity/profile). "" = none.
    "promotion": "string",
    "title": "string",                # the copy ("" when the campaign ran without copy)
    "body": "string",
    "call_to_action": "string",
    "copy_source": "string",          # model | repaired | template | ""
    "personalized": "bool",           # False for a shopper who turned personalization off
}

LOG_COLUMNS = {
    "campaign_id": "string",
    "user_id": "string",
    "outcome": "string",              # one of OUTCOMES
    "reason": "string",               # why (capped: the cap; failed: the error), short
    "channel": "string",
    "send_after": "string",
    "idempotency_key": "string",      # "" when no message was written
}


# --- forgetting a shopper in outboxes already written ----------------------------------------

def register_outbox(registry: Path, outbox: Path) -> None:
    """Remember an outbox, so that ForgetUser can reach its rows later."""
    registry = Path(registry)
    registry.parent.mkdir(parents=True, exist_ok=True)
    outbox = str(Path(outbox).resolve())
    with registry.open("a+", encoding="utf-8") as out:
        fcntl.flock(out, fcntl.LOCK_EX)
        out.seek(0)
        if outbox not in out.read().splitlines():
            out.write(outbox + "\n")


def registered_outboxes(registry: Path) -> list[Path]:
    try:
        lines = Path(registry).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    return [Path(line) for line in lines if line.strip() and Path(line).is_dir()]


def forget_in_outboxes(registry: Path, user_id: str, now: datetime | None = None) -> int:
    """Take a forgotten shopper out of every registered outbox: messages not yet due (scheduled
    for later) are removed, messages already sent keep their row with the id blanked, and the
    delivery log's rows are blanked. Returns the rows changed. Each file is rewritten whole and
    swapped in by rename, so a reader sees the old file or the new one."""
    now = now or datetime.now(timezone.utc)
    changed = 0
    for outbox in registered_outboxes(registry):
        with (outbox / ".lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # not while the campaign writes the same part
            for path in sorted(outbox.glob("messages/*/*/part-*.parquet")):
                changed += _forget_in_parquet(path, user_id, now)
            for path in sorted(outbox.glob("messages.jsonl/part-*.jsonl")):
                changed += _forget_in_jsonl(path, user_id, now, messages=True)
            for path in sorted(outbox.glob("log/part-*.jsonl")):
                changed += _forget_in_jsonl(path, user_id, now, messages=False)
            # The campaign's shopper list: blanked in place, so a resumed run keeps its chunks.
            shoppers = outbox / "shoppers.parquet"
            if shoppers.exists():
                table = pd.read_parquet(shoppers)
                if (table["user_id"] == user_id).any():
                    table.loc[table["user_id"] == user_id, "user_id"] = ""
                    _replace(shoppers, lambda tmp: table.to_parquet(tmp, index=False))
    return changed


def _unsent(rows: pd.DataFrame, now: datetime) -> pd.Series:
    due = pd.to_datetime(rows["send_after"], utc=True, errors="coerce")
    return (rows["outcome"] == "scheduled") & (due > pd.Timestamp(now))


def _forget_in_parquet(path: Path, user_id: str, now: datetime) -> int:
    rows = pd.read_parquet(path)
    mine = rows["user_id"] == user_id
    if not mine.any():
        return 0
    drop = mine & _unsent(rows, now)
    rows = rows[~drop].copy()
    rows.loc[rows["user_id"] == user_id, "user_id"] = ""
    _replace(path, lambda tmp: rows.to_parquet(tmp, index=False))
    return int(mine.sum())


def _forget_in_jsonl(path: Path, user_id: str, now: datetime, messages: bool) -> int:
    kept, changed = [], 0
    for line in path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if row.get("user_id") == user_id:
            changed += 1
            due = pd.to_datetime(row.get("send_after") or None, utc=True)
            if messages and row.get("outcome") == "scheduled" and due is not None and due > pd.Timestamp(now):
                continue
            row["user_id"] = ""
            line = json.dumps(row, ensure_ascii=False)
        kept.append(line)
    if changed:
        _replace(path, lambda tmp: tmp.write_text("".join(f"{line}\n" for line in kept), encoding="utf-8"))
    return changed


def _replace(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)


# --- writing a chunk ---------------------------------------------------------------------------


def part_name(chunk: int) -> str:
    return f"part-{chunk:05d}"


def write_chunk(outbox: Path, chunk: int, messages: list[dict], log: list[dict], dry_run: bool = False) -> None:
    """A chunk's message files (Parquet by channel and date, and JSON lines) and its log rows.
    Files an earlier, interrupted try of the same chunk left are removed first, and every file
    is written aside and renamed into place: a chunk is there once, whole, or not yet."""
    outbox = Path(outbox)
    name = part_name(chunk)
    with (outbox / ".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for stale in outbox.glob(f"messages/*/*/{name}.parquet"):
            stale.unlink()
        rows = [{k: v for k, v in m.items() if not k.startswith("_")} for m in messages]
        if rows and not dry_run:
            table = pd.DataFrame(rows, columns=list(MESSAGE_COLUMNS))
            for (channel, day), part in table.groupby(["channel", "date"], sort=True):
                folder = outbox / "messages" / f"channel={channel}" / f"date={day}"
                folder.mkdir(parents=True, exist_ok=True)
                _replace(folder / f"{name}.parquet", lambda tmp, part=part: part.to_parquet(tmp, index=False))
        if not dry_run:
            (outbox / "messages.jsonl").mkdir(exist_ok=True)
            _replace(outbox / "messages.jsonl" / f"{name}.jsonl", lambda tmp: _write_lines(tmp, rows))
        (outbox / "log").mkdir(exist_ok=True)
        _replace(outbox / "log" / f"{name}.jsonl", lambda tmp: _write_lines(tmp, log))


def _write_lines(path: Path, rows: list[dict]) -> None:
    with path.open("w", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
        out.flush()
        os.fsync(out.fileno())
