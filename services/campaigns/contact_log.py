"""Who was sent what, when: the campaigns' sends in one SQLite file, for frequency caps.

One row a (campaign_id, channel, user_key), with sent_at. `user_key` is opaque here (the
caller's salted hash of the shopper id), so the file never holds a shopper id.

What counts as a send: a message the campaign wrote to its outbox, "sent" at `now` or
"scheduled" at its send_after. The caller records a scheduled message with its send_after,
so it counts against the cap from when it goes out (a window counts every send at or after
its start, future ones included, so it also counts for a campaign run before then).

Idempotent: a row is keyed by (campaign_id, channel, user_key) and recorded with INSERT OR
IGNORE, so a resumed run re-recording a chunk changes nothing and keeps the first sent_at;
and `earlier_sends` leaves out the asking campaign's own rows, so a resumed run is not capped
by the sends it made before it was killed.

Several writers: every campaign actor opens its own ContactLog on the same path. WAL lets
readers go on while one writes; writes take the lock up front (BEGIN IMMEDIATE) and wait
for it up to `busy_timeout_s`. SQLite's locking needs all writers on one host and the file
on a local disk (not NFS): a campaign spread over several nodes needs another store.

sent_at is stored as integer microseconds since the Unix epoch (UTC), exact for datetimes.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

from services.sqlite_writes import write_transaction
from services.errors import DataFileError, InvalidArgument

SCHEMA_VERSION = 1
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)
_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS sends (
        campaign_id TEXT NOT NULL, channel TEXT NOT NULL, user_key TEXT NOT NULL,
        sent_at INTEGER NOT NULL,
        PRIMARY KEY (campaign_id, channel, user_key)
    ) WITHOUT ROWID""",
    # earlier_sends looks a chunk of shoppers up by key, channel and time: this serves it.
    "CREATE INDEX IF NOT EXISTS sends_by_user ON sends (user_key, channel, sent_at)",
)


def _micros(moment: datetime, field: str) -> int:
    if not isinstance(moment, datetime) or moment.tzinfo is None or moment.utcoffset() is None:
        raise InvalidArgument(field, "must be a timezone-aware datetime")
    return (moment - _EPOCH) // _MICROSECOND


class ContactLog:
    """The sends in `path`; open one per process (or actor). Methods are thread-safe."""

    def __init__(self, path: Path, busy_timeout_s: float = 60.0):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: transactions are ours (BEGIN IMMEDIATE), not the module's.
        self._db = sqlite3.connect(self.path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False)
        try:
            self._db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
            self._db.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL: a crash never corrupts; a power cut may lose the last sends,
            # which only lets a cap be exceeded once.
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._migrate()
            self._db.execute("CREATE TEMP TABLE IF NOT EXISTS asked (user_key TEXT PRIMARY KEY) WITHOUT ROWID")
        except BaseException:
            self._db.close()
            raise
        self._lock = threading.Lock()
        self._closed = False

    def _migrate(self) -> None:
        # Under the write lock: two actors opening a new file at once create it once.
        with self._transaction():
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version == SCHEMA_VERSION:
                return
            if version != 0:
                raise DataFileError(str(self.path), f"contact log schema version {version}; this code reads {SCHEMA_VERSION}")
            for statement in _SCHEMA:
                self._db.execute(statement)
            self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _transaction(self):
        return write_transaction(self._db)

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._db.close()

    def __enter__(self) -> ContactLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def record(self, campaign_id: str, channel: str, rows: Iterable[tuple[str, datetime]]) -> int:
        """Record sends (user_key, sent_at) in one transaction; returns how many were new.

        Again for a (campaign_id, channel, user_key) already recorded is a no-op.
        """
        values = [(campaign_id, channel, _key(key), _micros(sent_at, "sent_at")) for key, sent_at in rows]
        with self._lock, self._transaction():
            before = self._db.total_changes
            self._db.executemany(
                "INSERT OR IGNORE INTO sends (campaign_id, channel, user_key, sent_at) VALUES (?, ?, ?, ?)", values
            )
            return self._db.total_changes - before

    def earlier_sends(self, user_keys: list[str], channel: str, since: datetime, exclude_campaign: str) -> np.ndarray:
        """Sends on `channel` at or after `since` from campaigns other than `exclude_campaign`,
        one count a key, aligned with `user_keys` (int64)."""
        keys = [_key(key) for key in user_keys]
        start = _micros(since, "since")
        with self._lock:
            # The chunk's keys in a temp table (this connection's own, so no lock on the
            # shared file) joined through sends_by_user: one indexed probe a key.
            self._db.execute("BEGIN")
            try:
                self._db.execute("DELETE FROM temp.asked")
                self._db.executemany("INSERT OR IGNORE INTO temp.asked (user_key) VALUES (?)", ((k,) for k in keys))
                counts = dict(
                    self._db.execute(
                        "SELECT a.user_key, COUNT(*) FROM temp.asked AS a JOIN sends AS s"
                        " ON s.user_key = a.user_key AND s.channel = ? AND s.sent_at >= ?"
                        " WHERE s.campaign_id != ? GROUP BY a.user_key",
                        (channel, start, exclude_campaign),
                    )
                )
                self._db.execute("DELETE FROM temp.asked")
            finally:
                self._db.execute("COMMIT")
        return np.fromiter((counts.get(k, 0) for k in keys), dtype=np.int64, count=len(keys))

    def forget(self, user_key: str) -> int:
        """Delete every send of this shopper (ForgetUser); returns how many rows went."""
        with self._lock, self._transaction():
            return self._db.execute("DELETE FROM sends WHERE user_key = ?", (_key(user_key),)).rowcount


def _key(user_key: str) -> str:
    if not isinstance(user_key, str) or not user_key:
        raise InvalidArgument("user_key", "must be a non-empty string")
    return user_key
