"""The feedback loop's state: one SQLite file, owned by exactly one process.

Tables:
    variants  every issued variant, its tag, and which events it has had (0/1 flags)
    arms      impressions and successes per (segment, channel, family, tone): the bandit's counts
    groups    issued, impressions and successes per lift group (bandit, holdout, anonymous)

The counters are only ever changed in the transaction that flips a variant's flag from 0 to 1,
so they always equal what the variants table implies, and a repeated event changes nothing.

Reward: a variant succeeds when it has a click or a purchase; it counts once however many
follow. A click or purchase implies the impression, recorded or not, so successes <= impressions
for every arm.

Single owner: the serving layer runs the loop as one replica, and that process is the only
writer. An exclusive flock on `<file>.owner`, held while the store is open, makes a second owner
(another process, or a second open in the same one) fail at once rather than race the counters.
WAL with synchronous=NORMAL: a crash never corrupts the file; a power cut may lose the last
few events, which only makes the counts slightly low.
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
import sqlite3
import threading
from pathlib import Path

from services.sqlite_writes import write_transaction
from services.errors import DataFileError, InvalidArgument, NotFound, Unavailable
from services.feedback.variant_ids import VariantTag

EVENTS = ("impression", "click", "purchase")
SUCCESS_EVENTS = ("click", "purchase")
GROUPS = ("bandit", "holdout", "anonymous")
SCHEMA_VERSION = 1

_TAG_COLUMNS = tuple(f.name for f in dataclasses.fields(VariantTag))
_TAG_COLUMN_TYPES = {name: "INTEGER" if name in ("holdout", "issued_at") else "TEXT" for name in _TAG_COLUMNS}
_SCHEMA = f"""
CREATE TABLE variants (
    variant_id TEXT PRIMARY KEY,
    {", ".join(f"{name} {kind} NOT NULL" for name, kind in _TAG_COLUMN_TYPES.items())},
    grp TEXT NOT NULL,
    impression INTEGER NOT NULL DEFAULT 0,
    click INTEGER NOT NULL DEFAULT 0,
    purchase INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE arms (
    segment TEXT NOT NULL, channel TEXT NOT NULL, family TEXT NOT NULL, tone TEXT NOT NULL,
    impressions INTEGER NOT NULL DEFAULT 0, successes INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (segment, channel, family, tone)
) WITHOUT ROWID;
CREATE TABLE groups (
    name TEXT PRIMARY KEY,
    issued INTEGER NOT NULL DEFAULT 0, impressions INTEGER NOT NULL DEFAULT 0, successes INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
"""


class FeedbackStore:
    """Issued variants and their counts in `path`; every method is atomic and thread-safe."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._owner = _take_ownership(self.path)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except BaseException:
            os.close(self._owner)
            raise
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._migrate()
        except BaseException:
            self._db.close()
            os.close(self._owner)
            raise
        self._lock = threading.Lock()
        self._closed = False

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version == SCHEMA_VERSION:
            return
        if version != 0:
            raise DataFileError(str(self.path), f"feedback schema version {version}; this code reads {SCHEMA_VERSION}")
        with self._transaction():
            for statement in filter(str.strip, _SCHEMA.split(";")):  # executescript would commit early
                self._db.execute(statement)
            self._db.executemany("INSERT OR IGNORE INTO groups (name) VALUES (?)", [(g,) for g in GROUPS])
            self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _transaction(self):
        return write_transaction(self._db)

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._db.close()
                os.close(self._owner)  # releases the flock

    def __enter__(self) -> FeedbackStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def add_variant(self, variant_id: str, tag: VariantTag, group: str) -> None:
        """Remember an issued variant; again with the same tag is a no-op, with another an error."""
        row = {name: getattr(tag, name) for name in _TAG_COLUMNS} | {"holdout": int(tag.holdout)}
        with self._lock, self._transaction():
            cursor = self._db.execute(
                f"INSERT OR IGNORE INTO variants (variant_id, {', '.join(_TAG_COLUMNS)}, grp) "
                f"VALUES (?, {', '.join('?' * len(_TAG_COLUMNS))}, ?)",
                (variant_id, *row.values(), group),
            )
            if cursor.rowcount:
                self._db.execute("UPDATE groups SET issued = issued + 1 WHERE name = ?", (group,))
            elif self._tag(variant_id) != tag:
                raise InvalidArgument("variant_id", "was issued before with a different tag")

    def forget_user(self, user_id: str) -> int:
        """Delete a forgotten shopper's variants (their ids encode the shopper). The arms' and
        groups' counts keep what those variants earned: they name no one, and the bandit's
        evidence stays, so from here on the counts may exceed what the variants table holds.
        Deleted pages are zeroed and the write-ahead log emptied, so no file keeps the id."""
        with self._lock:
            self._db.execute("PRAGMA secure_delete = ON")
            with self._transaction():
                removed = self._db.execute("DELETE FROM variants WHERE user_id = ?", (user_id,)).rowcount
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return removed

    def tag(self, variant_id: str) -> VariantTag | None:
        with self._lock:
            return self._tag(variant_id)

    def _tag(self, variant_id: str) -> VariantTag | None:
        row = self._db.execute(
            f"SELECT {', '.join(_TAG_COLUMNS)} FROM variants WHERE variant_id = ?", (variant_id,)
        ).fetchone()
        if row is None:
            return None
        fields = dict(zip(_TAG_COLUMNS, row))
        return VariantTag(**fields | {"holdout": bool(fields["holdout"])})

    def mark(self, variant_id: str, event: str) -> None:
        """Set the event's flag (and the implied impression) and count whatever became true."""
        with self._lock, self._transaction():
            row = self._db.execute(
                "SELECT segment, channel, family, tone, grp, impression, click, purchase "
                "FROM variants WHERE variant_id = ?",
                (variant_id,),
            ).fetchone()
            if row is None:
                raise NotFound("variant_id", "was never issued")
            segment, channel, family, tone, group, seen, clicked, bought = row
            before = {"impression": seen, "click": clicked, "purchase": bought}
            after = before | {event: 1} | ({"impression": 1} if event in SUCCESS_EVENTS else {})
            new_impression = after["impression"] - before["impression"]
            new_success = int(any(after[e] for e in SUCCESS_EVENTS)) - int(any(before[e] for e in SUCCESS_EVENTS))
            if after == before:
                return
            self._db.execute(
                "UPDATE variants SET impression = ?, click = ?, purchase = ? WHERE variant_id = ?",
                (after["impression"], after["click"], after["purchase"], variant_id),
            )
            self._db.execute(
                "INSERT INTO arms (segment, channel, family, tone, impressions, successes) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (segment, channel, family, tone) DO UPDATE SET "
                "impressions = impressions + excluded.impressions, successes = successes + excluded.successes",
                (segment, channel, family, tone, new_impression, new_success),
            )
            self._db.execute(
                "UPDATE groups SET impressions = impressions + ?, successes = successes + ? WHERE name = ?",
                (new_impression, new_success, group),
            )

    def arm_counts(self, segment: str, channel: str) -> dict[tuple[str, str], tuple[int, int]]:
        """(family, tone) -> (impressions, successes) for every arm with feedback in (segment, channel)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT family, tone, impressions, successes FROM arms WHERE segment = ? AND channel = ?",
                (segment, channel),
            ).fetchall()
        return {(family, tone): (n, s) for family, tone, n, s in rows}

    def arms(self, segment: str | None = None, channel: str | None = None) -> list[tuple[str, str, str, str, int, int]]:
        """(segment, channel, family, tone, impressions, successes) rows, sorted, optionally filtered."""
        with self._lock:
            return self._db.execute(
                "SELECT segment, channel, family, tone, impressions, successes FROM arms "
                "WHERE (?1 IS NULL OR segment = ?1) AND (?2 IS NULL OR channel = ?2) "
                "ORDER BY segment, channel, family, tone",
                (segment, channel),
            ).fetchall()

    def groups(self) -> dict[str, tuple[int, int, int]]:
        """Lift group -> (issued, impressions, successes)."""
        with self._lock:
            rows = self._db.execute("SELECT name, issued, impressions, successes FROM groups").fetchall()
        return {name: (issued, n, s) for name, issued, n, s in rows}


def _take_ownership(path: Path) -> int:
    fd = os.open(path.with_name(path.name + ".owner"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise Unavailable(f"feedback state {path} is open in another FeedbackLoop; one process owns it") from None
    return fd
