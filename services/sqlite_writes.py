"""The one way state files outside builds (feedback, contact log, shoppers' rights) write to
SQLite: a transaction that takes the write lock at its start, so two writers queue on the
busy timeout instead of one failing half-way with SQLITE_BUSY on upgrade."""

from __future__ import annotations

import sqlite3
from contextlib import contextmanager


@contextmanager
def write_transaction(db: sqlite3.Connection):
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
