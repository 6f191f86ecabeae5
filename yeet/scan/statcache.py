"""Remembering digests so unchanged files are never read again.

Invariant owned here: a cached digest is reused only when the file's inode,
size, mtime, ctime and mode are all unchanged since it was hashed, and a digest
taken while the file's mtime was within the filesystem's timestamp granularity
of "now" is not cached (a write in the same clock tick could otherwise go
unnoticed: git's "racily clean" problem).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from dataclasses import dataclass

from yeet.state.db import transaction

RACY_NS = 2_000_000_000  # timestamps coarser than this are not trusted


@dataclass(frozen=True)
class StatSig:
    __slots__ = ("ctime", "ino", "mode", "mtime", "size")  # not slots=True: agents run on 3.9

    ino: int
    size: int
    mtime: int
    ctime: int
    mode: int

    @classmethod
    def of(cls, st: os.stat_result) -> StatSig:
        return cls(st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_mode)


class StatCache:
    """The stat cache of one side, held in memory during a scan, persisted after."""

    def __init__(self, conn: sqlite3.Connection, lock: threading.RLock, side: str) -> None:
        self.conn = conn
        self.lock = lock
        self.side = side
        self.entries: dict[str, tuple[StatSig, bytes]] = {}
        self._dirty: dict[str, tuple[StatSig, bytes] | None] = {}
        self.load()

    def load(self) -> None:
        with self.lock:
            rows = self.conn.execute(
                "SELECT path, ino, size, mtime, ctime, mode, digest FROM statcache WHERE side=?",
                (self.side,),
            ).fetchall()
        self.entries = {
            os.fsdecode(p): (StatSig(i, s, m, c, md), d) for p, i, s, m, c, md, d in rows
        }

    def lookup(self, path: str, sig: StatSig) -> bytes | None:
        hit = self.entries.get(path)
        if hit is not None and hit[0] == sig:
            return hit[1]
        return None

    def store(self, path: str, sig: StatSig, digest: bytes, now_ns: int | None = None) -> None:
        """Remember ``digest`` for a file with ``sig``.

        With ``now_ns`` (a digest we computed by reading the file at that time) an
        entry whose timestamps are that recent is kept in memory only: it is
        "racily clean" and will be hashed again next time. Without it (content we
        wrote and then ``fstat``ed ourselves) it is trusted.
        """
        value = (sig, digest)
        self.entries[path] = value
        if now_ns is not None and (sig.mtime >= now_ns - RACY_NS or sig.ctime >= now_ns - RACY_NS):
            self._dirty[path] = None
        else:
            self._dirty[path] = value

    def drop(self, path: str) -> None:
        self.entries.pop(path, None)
        self._dirty[path] = None

    def prune(self, seen: set[str], under: str = "") -> None:
        """Forget cached files below ``under`` that a complete scan did not see."""
        prefix = under + "/" if under else ""
        for path in [p for p in self.entries if p.startswith(prefix) or p == under]:
            if path not in seen:
                self.drop(path)

    def flush(self) -> None:
        if not self._dirty:
            return
        dirty, self._dirty = self._dirty, {}
        upserts = [
            (
                self.side,
                os.fsencode(p),
                v[0].ino,
                v[0].size,
                v[0].mtime,
                v[0].ctime,
                v[0].mode,
                v[1],
            )
            for p, v in dirty.items()
            if v is not None
        ]
        deletes = [(self.side, os.fsencode(p)) for p, v in dirty.items() if v is None]
        with self.lock, transaction(self.conn):
            self.conn.executemany(
                "INSERT OR REPLACE INTO statcache VALUES (?, ?, ?, ?, ?, ?, ?, ?)", upserts
            )
            self.conn.executemany("DELETE FROM statcache WHERE side=? AND path=?", deletes)
