"""A session's persistent state: ancestor, conflicts, problems, settings, progress.

Invariant owned here: the ancestor only ever records what both sides verifiably
agreed on, with the update rule of ``yeet.core.reconcile.apply_ancestor_update``
(tested to be equivalent), and every batch of updates is one transaction.

What a run is about to change on a side is recorded first (``intend``), and
forgotten in the same transaction as the ancestor update that follows it
(``record(..., settled=...)``): after a crash, an intent whose side holds exactly
its new entry was yeet's own work, not an edit of that side
(``yeet.session.sync`` turns it into an agreement).

A database that was set aside as damaged (``yeet.state.db``) is replaced by one
that starts from the session's identity file (``yeet.state.identity``), with a
``set_aside`` record that every command meeting the session reports until a
sync has completed on the new state.

Paths are stored as bytes (``os.fsencode``) so names that are not UTF-8 survive;
the ``parent`` column uses the engine's sort key (``/`` -> NUL) so that a
subtree is one contiguous key range.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from yeet.core.decisions import Conflict
from yeet.model.entries import Entry, Problem, listing_digest
from yeet.model.errors import StateError
from yeet.model.paths import join, name_of, parent_of
from yeet.state import identity, replica_tables
from yeet.state.db import open_database, transaction

_enc = msgspec.msgpack.Encoder()
_dec = msgspec.msgpack.Decoder(Entry)


def encode_entry(entry: Entry | None) -> bytes | None:
    return None if entry is None else _enc.encode(entry)


def decode_entry(blob: bytes | None) -> Entry | None:
    return None if blob is None else _dec.decode(blob)


def path_key(path: str) -> bytes:
    return os.fsencode(path).replace(b"/", b"\x00")


def key_path(key: bytes) -> str:
    return os.fsdecode(key.replace(b"\x00", b"/"))


def _subtree_range(path: str) -> tuple[bytes, bytes] | None:
    """Key range of the ``parent`` column for every descendant of ``path``."""
    if path == "":
        return None  # everything
    k = path_key(path)
    return k, k + b"\x01"


def _no_path_twice(updates: list[Update]) -> bool:
    """True when deleting all descendants first and inserting after is equivalent
    to applying the updates in order: no path twice, and no update below a path
    that a *later* update replaces."""
    later: set[str] = set()
    for u in reversed(updates):
        if u.path in later:
            return False
        p = parent_of(u.path)
        while p:
            if p in later:
                return False
            p = parent_of(p)
        later.add(u.path)
    return True


SCHEMA = (
    """
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
CREATE TABLE IF NOT EXISTS progress (id INTEGER PRIMARY KEY CHECK (id = 1), value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS intents (
    side TEXT NOT NULL, path BLOB NOT NULL, old BLOB, new BLOB, PRIMARY KEY (side, path)
) WITHOUT ROWID;
"""
    + replica_tables.SCHEMA
)
"""The session's own tables, whose every statement is in this module, and its replicas'
(``yeet.state.replica_tables``: a local session keeps both sides' in its database)."""


@dataclass(frozen=True, slots=True)
class Update:
    """One ancestor update; ``applied`` tells a change just applied from an agreement."""

    path: str
    entry: Entry | None
    applied: bool


class SessionStore:
    """The SQLite state of one session. Thread-safe (one connection, one lock)."""

    def __init__(self, path: Path, *, repair: bool = True, read_only: bool = False) -> None:
        self.path = path
        self.read_only = read_only
        lost = not read_only and not path.exists()
        known = identity.read(path.parent) if lost else None  # a session whose db is gone
        self.conn, note = open_database(path, SCHEMA, repair=repair, read_only=read_only)
        self.lock = threading.RLock()
        self._touched: set[str] = set()  # directories whose ancestor digest must be redone
        self.rebuilt_note: str | None = None
        if note is not None:
            self._restart(note.reason, str(note.moved_to))
        elif known is not None and self.get_meta("alpha") is None:
            self._restart("missing", "")

    @property
    def name(self) -> str:
        return self.path.parent.name

    def _restart(self, reason: str, moved_to: str) -> None:
        """The database was set aside (or lost): start the new one from the identity file."""
        doc = identity.read(self.path.parent)
        if doc is not None:
            self.set_meta(**doc)
        self.set_meta(set_aside={"reason": reason, "moved_to": moved_to, "time": time.time()})
        self.rebuilt_note = self.set_aside_notice()

    def set_aside_notice(self) -> str | None:
        """What to tell about a damaged database set aside since the last completed sync."""
        info = self.get_meta("set_aside")
        if not isinstance(info, dict):
            return None
        return damage_notice(
            self.name,
            str(self.path),
            str(info.get("reason", "")),
            str(info.get("moved_to", "")),
            self.get_meta("alpha") is not None,
        )

    def close(self) -> None:
        with self.lock:
            self.conn.close()

    # -- meta -------------------------------------------------------------------------

    def get_meta(self, key: str, default: Any = None) -> Any:
        with self.lock:
            row = self.conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    def set_meta(self, **values: Any) -> None:
        with self.lock, transaction(self.conn):
            self.conn.executemany(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                [(k, json.dumps(v)) for k, v in values.items()],
            )
        if any(k in identity.KEYS for k in values):
            self._write_identity()

    def identity(self) -> dict[str, Any]:
        """The session's identity as the database holds it (``yeet.state.identity``)."""
        keys = identity.KEYS
        with self.lock:
            rows = self.conn.execute(
                f"SELECT key, value FROM meta WHERE key IN ({','.join('?' * len(keys))})", keys
            ).fetchall()
        return {k: json.loads(v) for k, v in rows}

    def _write_identity(self) -> None:
        doc = self.identity()
        if "alpha" not in doc:
            return  # not a session yet
        try:
            identity.write(self.path.parent, doc)
        except OSError as err:
            raise StateError(
                f"cannot write {self.path.parent / identity.FILE}: {err.strerror or err}",
                hint="check the state directory (its permissions and free space)",
            ) from None

    def next_pass(self) -> int:
        """A new pass number (1, 2, ...): what a pass trashes is marked with it."""
        with self.lock, transaction(self.conn):
            row = self.conn.execute("SELECT value FROM meta WHERE key='passes'").fetchone()
            number = (json.loads(row[0]) if row else 0) + 1
            self.conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('passes', ?)",
                (json.dumps(number),),
            )
        return int(number)

    # -- ancestor ---------------------------------------------------------------------

    def ancestor_children(self, path: str) -> dict[str, Entry]:
        with self.lock:
            rows = self.conn.execute(
                "SELECT name, entry FROM ancestor WHERE parent=?", (path_key(path),)
            ).fetchall()
        return {os.fsdecode(n): _dec.decode(e) for n, e in rows}

    def ancestor_subtree(self, path: str) -> dict[str, Entry]:
        rng = _subtree_range(path)
        with self.lock:
            if rng is None:
                rows = self.conn.execute("SELECT parent, name, entry FROM ancestor").fetchall()
            else:
                rows = self.conn.execute(
                    "SELECT parent, name, entry FROM ancestor WHERE parent >= ? AND parent < ?",
                    rng,
                ).fetchall()
        return {join(key_path(p), os.fsdecode(n)): _dec.decode(e) for p, n, e in rows}

    def ancestor_get(self, path: str) -> Entry | None:
        if path == "":
            return None
        with self.lock:
            row = self.conn.execute(
                "SELECT entry FROM ancestor WHERE parent=? AND name=?",
                (path_key(parent_of(path)), os.fsencode(name_of(path))),
            ).fetchone()
        return None if row is None else _dec.decode(row[0])

    def ancestor_digests(self) -> dict[str, bytes]:
        """Directory -> ``listing_digest`` of its ancestor children, where known."""
        with self.lock:
            rows = self.conn.execute("SELECT path, digest FROM ancestor_dirs").fetchall()
        return {key_path(p): d for p, d in rows}

    def refresh_digests(self) -> None:
        """Compute the digests of directories whose children changed since last time."""
        touched, self._touched = self._touched, set()
        rows = []
        for d in sorted(touched):
            if d != "":
                entry = self.ancestor_get(d)
                if entry is None or not entry.is_dir:
                    continue
            rows.append((path_key(d), listing_digest(self.ancestor_children(d))))
        if rows:
            with self.lock, transaction(self.conn):
                self.conn.executemany("INSERT OR REPLACE INTO ancestor_dirs VALUES (?, ?)", rows)

    def ancestor_files(self) -> int:
        """Entries of the ancestor that are not directories (what the deletion guard
        compares with). An entry is a msgpack array (at most 15 fields: a one-byte
        header) whose first item is its ``Kind``: byte 2 is ``1`` for a directory."""
        with self.lock:
            row = self.conn.execute(
                "SELECT count(*) FROM ancestor WHERE substr(entry, 2, 1) <> x'01'"
            ).fetchone()
        return int(row[0])

    def ancestor_count(self) -> int:
        with self.lock:
            return int(self.conn.execute("SELECT count(*) FROM ancestor").fetchone()[0])

    def record(
        self, updates: Iterable[Update], settled: tuple[str, Iterable[str]] | None = None
    ) -> None:
        """Apply ancestor updates in order, in one transaction.

        The digests of the directories whose children change are dropped in the
        same transaction (``refresh_digests`` computes them again), so a stored
        digest always matches the stored children. ``settled``: (side, paths) whose
        intents are over (applied and recorded here, or failed), forgotten with it.
        """
        updates = list(updates)
        if settled is not None:
            done = [(settled[0], os.fsencode(p)) for p in settled[1]]
            if done and not updates:
                with self.lock, transaction(self.conn):
                    self.conn.executemany("DELETE FROM intents WHERE side=? AND path=?", done)
                return
        else:
            done = []
        if not updates:
            return
        with self.lock, transaction(self.conn):
            if done:
                self.conn.executemany("DELETE FROM intents WHERE side=? AND path=?", done)
            parents = {path_key(parent_of(u.path)) for u in updates}
            self.conn.executemany("DELETE FROM ancestor_dirs WHERE path=?", [(p,) for p in parents])
            if all(u.applied for u in updates) and _no_path_twice(updates):
                self._record_applied(updates)
                return
            for u in updates:
                self._record_one(u)

    def _record_applied(self, updates: list[Update]) -> None:
        """Fast path: applied changes always forget descendants, so the deletions
        can all go first (no path appears twice, parents precede children)."""
        ranges = []
        removals = []
        inserts = []
        for u in updates:
            k = path_key(u.path)
            ranges.append((k, k + b"\x01"))
            self._touched.add(parent_of(u.path))
            if u.entry is not None and u.entry.is_dir:
                self._touched.add(u.path)
            parent, name = path_key(parent_of(u.path)), os.fsencode(name_of(u.path))
            if u.entry is None:
                removals.append((parent, name))
            else:
                inserts.append((parent, name, _enc.encode(u.entry)))
        self.conn.executemany("DELETE FROM ancestor WHERE parent >= ? AND parent < ?", ranges)
        self.conn.executemany("DELETE FROM ancestor_dirs WHERE path >= ? AND path < ?", ranges)
        self.conn.executemany("DELETE FROM ancestor WHERE parent=? AND name=?", removals)
        self.conn.executemany(
            "INSERT OR REPLACE INTO ancestor (parent, name, entry) VALUES (?, ?, ?)", inserts
        )

    def _record_one(self, u: Update) -> None:
        self._touched.add(parent_of(u.path))
        if u.entry is not None and u.entry.is_dir:
            self._touched.add(u.path)
        parent, name = path_key(parent_of(u.path)), os.fsencode(name_of(u.path))
        drop_descendants = u.applied or u.entry is None or not u.entry.is_dir
        if not drop_descendants:
            row = self.conn.execute(
                "SELECT entry FROM ancestor WHERE parent=? AND name=?", (parent, name)
            ).fetchone()
            old = None if row is None else _dec.decode(row[0])
            drop_descendants = old is None or not old.is_dir
        if drop_descendants:
            rng = _subtree_range(u.path)
            assert rng is not None
            self.conn.execute("DELETE FROM ancestor WHERE parent >= ? AND parent < ?", rng)
            self.conn.execute("DELETE FROM ancestor_dirs WHERE path >= ? AND path < ?", rng)
        if u.entry is None:
            self.conn.execute("DELETE FROM ancestor WHERE parent=? AND name=?", (parent, name))
        else:
            self.conn.execute(
                "INSERT OR REPLACE INTO ancestor (parent, name, entry) VALUES (?, ?, ?)",
                (parent, name, _enc.encode(u.entry)),
            )

    # -- intents ------------------------------------------------------------------------

    def intend(self, side: str, changes: Iterable[tuple[str, Entry | None, Entry | None]]) -> None:
        """Record durably what is about to be written on ``side`` (path, old, new)."""
        rows = [
            (side, os.fsencode(path), encode_entry(old), encode_entry(new))
            for path, old, new in changes
        ]
        if rows:
            with self.lock, transaction(self.conn):
                self.conn.executemany("INSERT OR REPLACE INTO intents VALUES (?, ?, ?, ?)", rows)

    def intents(self) -> list[tuple[str, str, Entry | None, Entry | None]]:
        """What an interrupted run was about to write: (side, path, old, new)."""
        with self.lock:
            rows = self.conn.execute("SELECT side, path, old, new FROM intents").fetchall()
        return [(s, os.fsdecode(p), decode_entry(o), decode_entry(n)) for s, p, o, n in rows]

    def forget_intents(self) -> None:
        with self.lock, transaction(self.conn):
            self.conn.execute("DELETE FROM intents")

    # -- conflicts and problems -------------------------------------------------------

    def replace_conflicts(self, conflicts: Iterable[Conflict], under: str = "") -> None:
        """Replace the recorded conflicts at and below ``under`` by ``conflicts``."""
        now = time.time()
        with self.lock, transaction(self.conn):
            if under == "":
                self.conn.execute("DELETE FROM conflicts")
            else:
                self.conn.execute(
                    "DELETE FROM conflicts WHERE path = ? OR (path >= ? AND path < ?)",
                    (path_key(under), path_key(under) + b"\x00", path_key(under) + b"\x01"),
                )
            self.conn.executemany(
                "INSERT OR REPLACE INTO conflicts VALUES (?, ?, ?, ?, ?)",
                [
                    (
                        path_key(c.path),
                        encode_entry(c.ancestor),
                        encode_entry(c.alpha),
                        encode_entry(c.beta),
                        now,
                    )
                    for c in conflicts
                ],
            )

    def conflicts(self) -> list[Conflict]:
        with self.lock:
            rows = self.conn.execute(
                "SELECT path, ancestor, alpha, beta FROM conflicts ORDER BY path"
            ).fetchall()
        return [
            Conflict(key_path(p), decode_entry(a), decode_entry(x), decode_entry(y))
            for p, a, x, y in rows
        ]

    def replace_problems(self, problems: Iterable[Problem]) -> None:
        now = time.time()
        with self.lock, transaction(self.conn):
            self.conn.execute("DELETE FROM problems")
            self.conn.executemany(
                "INSERT INTO problems VALUES (?, ?, ?, ?)",
                [(p.side, os.fsencode(p.path), p.reason, now) for p in problems],
            )

    def add_problems(self, problems: Iterable[Problem]) -> None:
        now = time.time()
        with self.lock, transaction(self.conn):
            self.conn.executemany(
                "INSERT INTO problems VALUES (?, ?, ?, ?)",
                [(p.side, os.fsencode(p.path), p.reason, now) for p in problems],
            )

    def problems(self) -> list[Problem]:
        with self.lock:
            rows = self.conn.execute(
                "SELECT side, path, reason FROM problems ORDER BY side, path"
            ).fetchall()
        return [Problem(os.fsdecode(p), r, s) for s, p, r in rows]

    # -- progress (read by `yeet status` while a sync runs) ----------------------------

    def set_progress(self, value: dict[str, Any]) -> None:
        """The live state of the running sync (``{}``: none runs). It carries the
        writer's pid, so a reader can tell it from what a killed sync left behind
        (``yeet status`` trusts it only while that process holds the lock)."""
        if value:
            value = {**value, "pid": os.getpid()}
        with self.lock, transaction(self.conn):
            self.conn.execute(
                "INSERT OR REPLACE INTO progress (id, value) VALUES (1, ?)", (json.dumps(value),)
            )

    def progress(self) -> dict[str, Any]:
        with self.lock:
            row = self.conn.execute("SELECT value FROM progress WHERE id=1").fetchone()
        return {} if row is None else dict(json.loads(row[0]))


def damage_notice(name: str, db: str, reason: str, aside: str, endpoints_known: bool) -> str:
    """Tells that a session's database was damaged and set aside, and how to go on."""
    text = f"session {name!r}: its state database {db} "
    text += f"was damaged ({reason}) and was moved to {aside}. " if aside else f"was {reason}. "
    if endpoints_known:
        return text + (
            "The session starts again from an empty ancestor (a full rescan: nothing is "
            "deleted, what one side deleted since the last sync comes back, and what both "
            f"sides changed becomes a conflict): `yeet sync --name {name}` continues it"
        )
    return text + (
        "Its endpoints were lost with it (the session predates the identity file): "
        f"`yeet sync ALPHA BETA --name {name}` starts it again"
    )


def iter_rows(conn: sqlite3.Connection, sql: str, args: tuple[Any, ...] = ()) -> Iterator[Any]:
    cur = conn.execute(sql, args)
    while rows := cur.fetchmany(1000):
        yield from rows
