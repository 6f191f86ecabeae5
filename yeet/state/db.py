"""Opening a session's SQLite database safely.

Invariant owned here: a database that fails its integrity check (SQLite says it
is corrupt or not a database, ``quick_check`` finds damage, or the file is empty
although it exists) is never used: when the caller may repair it, it is moved
aside and replaced by an empty one, which makes the next sync a fresh reconcile
with an empty ancestor (only copies and conflicts, never deletions, so a lost
state can never delete user files); otherwise ``StateDamaged`` says so and
nothing moves. Any other failure (the disk is full, an I/O error, a lock held too
long, a database written by a newer yeet) is a ``StateError``: the command fails
and the database stays where it is, untouched, to be used again once the cause
is gone.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from yeet.model.errors import StateError

SCHEMA_VERSION = 1


SQLITE_CORRUPT = 11
SQLITE_NOTADB = 26
_DAMAGE_WORDS = ("malformed", "not a database", "corrupt")  # Python 3.9: no error codes


class StateDamaged(StateError):
    """The database failed its integrity check (and the caller may not repair it)."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(
            f"state database {path} is damaged ({reason})",
            hint="`yeet sync` of the session moves it aside and starts again from an empty "
            "ancestor (nothing is deleted)",
        )
        self.path = path
        self.reason = reason


@dataclass(frozen=True)
class SetAside:
    """A damaged database that ``open_database`` moved out of the way."""

    path: Path
    reason: str
    moved_to: Path

    def __str__(self) -> str:
        return (
            f"state database {self.path} was damaged ({self.reason}); moved it to "
            f"{self.moved_to} and started from an empty ancestor (a full rescan; nothing "
            "will be deleted)"
        )


class _Damage(Exception):
    pass


def _is_damage(err: sqlite3.DatabaseError) -> bool:
    code = getattr(err, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (SQLITE_CORRUPT, SQLITE_NOTADB)
    return any(w in str(err).lower() for w in _DAMAGE_WORDS)


def _free_bytes(directory: Path) -> int | None:
    try:
        st = os.statvfs(directory)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def _hint(err: sqlite3.Error) -> str:
    text = str(err).lower()
    if "locked" in text or "busy" in text:
        return "another program holds the database; wait for it, then run the command again"
    if "readonly" in text or "read-only" in text or "permission" in text or "open" in text:
        return "check the permissions of the state directory and that its filesystem is writable"
    return "check the disk and the filesystem that holds it, then run the command again"


def failed(path: Path, err: sqlite3.Error) -> StateError:
    """A failure that is not damage: the command fails, the file stays as it is."""
    free = _free_bytes(path.parent)
    name = getattr(err, "sqlite_errorname", "")
    what = f"{err} ({name})" if name else str(err)
    if "full" in str(err).lower() or (free is not None and free < 1 << 20):
        return StateError(
            f"cannot use state database {path}: {what}; the filesystem that holds it is full "
            f"({free if free is not None else 0} bytes free)",
            hint="free space there, then run the command again (the session's state is kept "
            "as it was)",
        )
    return StateError(f"cannot use state database {path}: {what}", hint=_hint(err))


def _open(path: Path, schema: str, read_only: bool) -> sqlite3.Connection:
    if read_only:
        uri = "file:" + quote(os.fsencode(path)) + "?mode=ro"
        conn = sqlite3.connect(uri, uri=True, timeout=30, check_same_thread=False)
        conn.isolation_level = None
    else:
        conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    try:
        if not read_only:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StateError(
                f"state database {path} was written by a newer yeet (schema {version}, "
                f"this yeet knows {SCHEMA_VERSION})",
                hint="use that yeet version, or `yeet forget` the session to start it afresh",
            )
        check = conn.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise _Damage(f"integrity check failed: {check}")
        if not read_only:
            conn.executescript(schema)
            _add_columns(conn)
            if version != SCHEMA_VERSION:
                conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
    except sqlite3.DatabaseError as err:
        conn.close()
        if _is_damage(err):
            raise _Damage(str(err)) from None
        raise
    except BaseException:
        conn.close()
        raise
    return conn


def set_aside(path: Path) -> Path:
    """Move a damaged database (and its WAL files) out of the way; the new name."""
    aside = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%dT%H%M%S')}")
    n = 1
    while aside.exists():
        n += 1
        aside = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%dT%H%M%S')}-{n}")
    for suffix in ("", "-wal", "-shm"):
        src = Path(str(path) + suffix)
        if src.exists():
            os.replace(src, Path(str(aside) + suffix))
    return aside


ADDED_COLUMNS = (("trash", "pass_id", "INTEGER NOT NULL DEFAULT 0"),)
"""Columns added since a table was first created: added to an older database on
open (older yeets ignore them, so the schema version stays)."""


def _add_columns(conn: sqlite3.Connection) -> None:
    for table, column, decl in ADDED_COLUMNS:
        have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        if column not in have:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")


def open_database(
    path: Path, schema: str, *, repair: bool = True, read_only: bool = False
) -> tuple[sqlite3.Connection, SetAside | None]:
    """Open (creating if needed, unless ``read_only``) the database at ``path``, with
    the tables ``schema`` creates (each written next to its statements: the session's
    in ``yeet.state.store``, a replica's in ``yeet.state.replica_tables``).

    Returns the connection and, when a damaged file had to be set aside
    (``repair``), what was damaged and where it went (the caller reports it; the
    session then rescans from scratch). A damaged database that may not be repaired
    (``read_only`` or not ``repair``) raises ``StateDamaged``; every other failure
    raises ``StateError`` and leaves the file alone.
    """
    repair = repair and not read_only
    try:
        if not read_only:
            path.parent.mkdir(parents=True, exist_ok=True)
        try:
            if path.exists() and path.stat().st_size == 0:
                raise _Damage("the file is empty, 0 bytes: its content was lost")
            return _open(path, schema, read_only), None
        except _Damage as damage:
            if not repair:
                raise StateDamaged(path, str(damage)) from None
            reason = str(damage)
        note = SetAside(path, reason, set_aside(path))
        try:
            return _open(path, schema, read_only), note
        except _Damage as damage:  # a new, empty file: no damage can come from us
            raise StateError(f"cannot create state database {path}: {damage}") from None
    except sqlite3.Error as err:
        raise failed(path, err) from None
    except OSError as err:
        raise StateError(
            f"cannot use state database {path}: {err.strerror or err}",
            hint="check the state directory (its permissions and free space)",
        ) from None


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
