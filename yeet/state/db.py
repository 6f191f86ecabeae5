"""Opening a session's SQLite database safely.

Invariant owned here: a database that cannot be trusted (corrupt, unreadable,
from a newer yeet) is never used: it is moved aside and replaced by an empty
one, which makes the next sync a fresh reconcile with an empty ancestor. An
empty ancestor can only lead to copies and conflicts, never to deletions, so a
lost state can never delete user files.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS ancestor (
    parent BLOB NOT NULL, name BLOB NOT NULL, entry BLOB NOT NULL,
    PRIMARY KEY (parent, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ancestor_dirs (
    path BLOB PRIMARY KEY, digest BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS conflicts (
    path BLOB PRIMARY KEY, ancestor BLOB, alpha BLOB, beta BLOB, found REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS problems (
    side TEXT NOT NULL, path BLOB NOT NULL, reason TEXT NOT NULL, found REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS dircache (
    side TEXT NOT NULL, path BLOB NOT NULL, entries BLOB NOT NULL,
    PRIMARY KEY (side, path)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS blockcache (
    side TEXT NOT NULL, path BLOB NOT NULL, sig BLOB NOT NULL, leaves BLOB NOT NULL,
    PRIMARY KEY (side, path)
);
CREATE TABLE IF NOT EXISTS trash (
    id INTEGER PRIMARY KEY, side TEXT NOT NULL, path BLOB NOT NULL, stored TEXT NOT NULL,
    kind TEXT NOT NULL, size INTEGER NOT NULL, digest BLOB, trashed REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS trash_path ON trash (side, path);
CREATE TABLE IF NOT EXISTS temp_names (
    side TEXT NOT NULL, token TEXT NOT NULL, made REAL NOT NULL, PRIMARY KEY (side, token)
);
CREATE TABLE IF NOT EXISTS progress (id INTEGER PRIMARY KEY CHECK (id = 1), value TEXT NOT NULL);
"""


class Unusable(Exception):
    pass


def _open(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise Unusable(f"written by a newer yeet (schema {version} > {SCHEMA_VERSION})")
        check = conn.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise Unusable(f"integrity check failed: {check}")
        conn.executescript(SCHEMA)
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
    except (sqlite3.DatabaseError, Unusable):
        conn.close()
        raise
    return conn


def open_database(path: Path) -> tuple[sqlite3.Connection, str | None]:
    """Open (creating if needed) the database at ``path``.

    Returns the connection and, when the old file had to be set aside, a message
    saying so (the caller reports it; the session then rescans from scratch).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return _open(path), None
    except (sqlite3.DatabaseError, Unusable) as err:
        aside = path.with_name(f"{path.name}.unusable-{time.strftime('%Y%m%dT%H%M%S')}")
        for suffix in ("", "-wal", "-shm"):
            src = Path(str(path) + suffix)
            if src.exists():
                os.replace(src, Path(str(aside) + suffix))
        note = (
            f"state database {path} could not be used ({err}); moved it to {aside} "
            "and started from an empty ancestor (a full rescan; nothing will be deleted)"
        )
        return _open(path), note


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One explicit transaction (the connection is in autocommit mode otherwise)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
