"""What shoppers asked of us, kept outside builds and honoured by every build and replica:

- forgotten (ForgetUser): a tombstone, so no later build learns them again from an event log
  that still holds them, and every RPC answers NOT_FOUND for them;
- not personalized (E-commerce Law Art. 18, PIPL Art. 24 ¶2): lists from popularity and trends,
  copy without profile tags;
- opted out of a channel: campaigns send them nothing there.

One SQLite file, every row keyed by a salted hash of the shopper id (never the id itself), so
the file that remembers a forgotten shopper cannot name them. The salt lives beside it and is
made on first use. Several processes read and write it (ingress replicas, campaign actors, the
command line): WAL, and a `changes` counter every write bumps, so a replica's view re-reads only
when something changed.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from services.sqlite_writes import write_transaction
from services.errors import DataFileError, InvalidArgument, NotFound, excerpt

SALT_BYTES = 32
KEY_HEX = 32
CHANNELS = ("push", "sms", "email", "banner")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS forgotten (user_key TEXT PRIMARY KEY, at REAL NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS unpersonalized (user_key TEXT PRIMARY KEY, at REAL NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS opted_out (
    user_key TEXT NOT NULL, channel TEXT NOT NULL, at REAL NOT NULL, PRIMARY KEY (user_key, channel)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS changes (id INTEGER PRIMARY KEY CHECK (id = 1), n INTEGER NOT NULL);
INSERT OR IGNORE INTO changes VALUES (1, 0);
"""


def salt_from(path: Path) -> bytes:
    """The salt at `path`, made on first use. Created exclusively, so two processes starting
    at once agree on one salt."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _ in range(50):  # the creator may not have written it yet
            raw = path.read_bytes()
            if len(raw) >= SALT_BYTES:
                return raw
            time.sleep(0.01)
        raise DataFileError(str(path), f"holds {len(raw)} bytes, a shopper salt needs {SALT_BYTES}") from None
    with os.fdopen(fd, "wb") as out:
        out.write(secrets.token_bytes(SALT_BYTES))
        out.flush()
        os.fsync(out.fileno())
    return path.read_bytes()


@dataclass(frozen=True)
class RightsSnapshot:
    """Every shopper's rights at one moment, as sets of keys."""

    version: int = -1
    forgotten: frozenset[str] = frozenset()
    unpersonalized: frozenset[str] = frozenset()
    opted_out: dict[str, frozenset[str]] = field(default_factory=dict)


class ShopperRights:
    def __init__(self, path: Path, salt_path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.salt = salt_from(salt_path)
        self._local = threading.local()
        with self._connection() as db:
            db.executescript(_SCHEMA)

    @classmethod
    def from_config(cls, config) -> "ShopperRights":
        return cls(config.state_path(config.rights.path), config.state_path(config.rights.salt_path))

    def key(self, user_id: str) -> str:
        return hmac.new(self.salt, user_id.encode("utf-8"), hashlib.sha256).hexdigest()[:KEY_HEX]

    def keys(self, user_ids: Iterable[str]) -> list[str]:
        salt = self.salt
        return [hmac.new(salt, u.encode("utf-8"), hashlib.sha256).hexdigest()[:KEY_HEX] for u in user_ids]

    def _connection(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA busy_timeout=30000")
            self._local.db = db
        return db

    def _write(self, statement: str, params: tuple) -> None:
        with write_transaction(self._connection()) as db:
            db.execute(statement, params)
            db.execute("UPDATE changes SET n = n + 1 WHERE id = 1")

    # --- the three rights ----------------------------------------------------------------------

    def forget(self, user_id: str) -> str:
        """Record the tombstone; returns the shopper's key (for the stores that hold it)."""
        key = self.key(user_id)
        self._write("INSERT OR IGNORE INTO forgotten VALUES (?, ?)", (key, time.time()))
        return key

    def set_personalized(self, user_id: str, personalized: bool) -> None:
        if personalized:
            self._write("DELETE FROM unpersonalized WHERE user_key = ?", (self.key(user_id),))
        else:
            self._write("INSERT OR REPLACE INTO unpersonalized VALUES (?, ?)", (self.key(user_id), time.time()))

    def set_opted_out(self, user_ids: Iterable[str], channel: str, opted_out: bool = True) -> int:
        """Opt shoppers out of (or back into) a channel; returns how many rows changed."""
        if channel not in CHANNELS:
            raise InvalidArgument("channel", f"one of {', '.join(CHANNELS)}; got {excerpt(channel)}")
        keys = self.keys(user_ids)
        with write_transaction(self._connection()) as db:
            before = db.total_changes
            if opted_out:
                db.executemany("INSERT OR IGNORE INTO opted_out VALUES (?, ?, ?)", [(k, channel, time.time()) for k in keys])
            else:
                db.executemany("DELETE FROM opted_out WHERE user_key = ? AND channel = ?", [(k, channel) for k in keys])
            changed = db.total_changes - before
            db.execute("UPDATE changes SET n = n + 1 WHERE id = 1")
        return changed

    # --- reading -------------------------------------------------------------------------------

    def version(self) -> int:
        return int(self._connection().execute("SELECT n FROM changes WHERE id = 1").fetchone()[0])

    def snapshot(self) -> RightsSnapshot:
        db = self._connection()
        db.execute("BEGIN")  # one consistent read of all three tables
        try:
            version = int(db.execute("SELECT n FROM changes WHERE id = 1").fetchone()[0])
            forgotten = frozenset(k for (k,) in db.execute("SELECT user_key FROM forgotten"))
            unpersonalized = frozenset(k for (k,) in db.execute("SELECT user_key FROM unpersonalized"))
            opted: dict[str, set[str]] = {c: set() for c in CHANNELS}
            for key, channel in db.execute("SELECT user_key, channel FROM opted_out"):
                opted.setdefault(channel, set()).add(key)
        finally:
            db.execute("COMMIT")
        return RightsSnapshot(version, forgotten, unpersonalized, {c: frozenset(k) for c, k in opted.items()})

    def is_forgotten(self, user_id: str) -> bool:
        row = self._connection().execute("SELECT 1 FROM forgotten WHERE user_key = ?", (self.key(user_id),)).fetchone()
        return row is not None

    def personalized(self, user_id: str) -> bool:
        row = self._connection().execute("SELECT 1 FROM unpersonalized WHERE user_key = ?", (self.key(user_id),)).fetchone()
        return row is None

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None


class RightsView:
    """A replica's copy of the rights, re-read when a request finds the change counter moved
    (check) and within `poll_s` of any change otherwise (a daemon thread watches the counter, so
    caches are dropped even while no request comes); `on_change` runs after each re-read."""

    def __init__(self, rights: ShopperRights, poll_s: float, on_change: Callable[[RightsSnapshot], None] | None = None):
        self.rights = rights
        self.poll_s = poll_s
        self.on_change = on_change
        self.current = rights.snapshot()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="shopper-rights", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                if self.rights.version() != self.current.version:
                    self.refresh()
            except sqlite3.Error:
                continue  # a busy or briefly locked file: the next poll reads it

    def refresh(self) -> RightsSnapshot:
        self.current = self.rights.snapshot()
        if self.on_change is not None:
            self.on_change(self.current)
        return self.current

    def forgotten(self, user_id: str) -> bool:
        return bool(user_id) and self.rights.key(user_id) in self.current.forgotten

    def fresh(self) -> RightsSnapshot:
        """The rights as committed now: one indexed read of the change counter, and a re-read
        when it moved. So the next request to any replica honours a change another replica or
        the command line has just made, not only the next poll."""
        try:
            if self.rights.version() != self.current.version:
                return self.refresh()
        except sqlite3.Error:
            pass  # a busy or briefly locked file: the poll reads it
        return self.current

    def check(self, user_id: str, field_name: str = "user_id") -> None:
        """NOT_FOUND for a forgotten shopper, whatever else the request asks (cold start too).
        Every request about a shopper passes here first, so the rights it reads are fresh."""
        self.fresh()
        if self.forgotten(user_id):
            raise NotFound(field_name, f"no user {excerpt(user_id)}")

    def personalized(self, user_id: str) -> bool:
        return not user_id or self.rights.key(user_id) not in self.current.unpersonalized

    def opted_out(self, user_id: str, channel: str) -> bool:
        return bool(user_id) and self.rights.key(user_id) in self.current.opted_out.get(channel, frozenset())

    def stop(self) -> None:
        self._stop.set()


def without_forgotten(events, rights: ShopperRights):
    """The events of shoppers not forgotten (a build honours every tombstone), and how many
    shoppers were left out."""
    forgotten = rights.snapshot().forgotten
    if not forgotten or events.empty:
        return events, 0
    users = events["user_id"].astype(str).unique()
    gone = [u for u, k in zip(users, rights.keys(users)) if k in forgotten]
    if not gone:
        return events, 0
    return events[~events["user_id"].isin(gone)].reset_index(drop=True), len(gone)
