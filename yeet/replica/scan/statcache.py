"""Remembering digests so unchanged files are never read again.

Invariant owned here: a cached digest is reused only when the file's inode,
size, mtime, ctime and mode are all unchanged since it was hashed, and a digest
taken while the file's mtime was within the filesystem's timestamp granularity
of "now" is not persisted (a write in the same clock tick could otherwise go
unnoticed: git's "racily clean" problem).

Storage is one row per directory (a msgpack map name -> signature + digest),
loaded lazily: a scan of a million files reads thousands of rows, not millions,
and a directory whose files did not change is not rewritten. Memory is bounded:
``trim`` writes what changed and forgets the directories held (a scan calls it
as it goes), so a tree of any size holds a few thousand directories at a time.
"""

from __future__ import annotations

import os
import sqlite3
import threading

import msgspec

from yeet.model.paths import name_of, parent_of
from yeet.replica.scan.blockcache import BlockCache
from yeet.state import replica_tables as sql
from yeet.state.db import transaction

RACY_NS = 2_000_000_000  # timestamps coarser than this are not trusted

StatSig = tuple[int, int, int, int, int]
"""``(inode, size, mtime_ns, ctime_ns, mode)``: a plain tuple (cheap to build and compare)."""

_Dir = dict[str, tuple[StatSig, bytes]]

_enc = msgspec.msgpack.Encoder()
_dec = msgspec.msgpack.Decoder(dict[bytes, tuple[int, int, int, int, int, bytes]])


def sig_of(st: os.stat_result) -> StatSig:
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_mode)


class StatCache:
    """The stat cache of one side; thread-safe enough for a scanner and a writer."""

    def __init__(self, conn: sqlite3.Connection, lock: threading.RLock, side: str) -> None:
        self.conn = conn
        self.lock = lock
        self.side = side
        self._known: set[str] = set()
        self._held = 0  # entries in memory (about: trim's measure)
        self._dirs: dict[str, _Dir] = {}
        self._persist: dict[str, _Dir] = {}  # what is (or will be) in the table
        self._dirty: set[str] = set()
        self.blocks = BlockCache(conn, lock, side)
        self.load()

    def load(self) -> None:
        with self.lock:
            rows = self.conn.execute(sql.DIRCACHE_PATHS, (self.side,)).fetchall()
            self._known = {os.fsdecode(p) for (p,) in rows}  # directories with a row
            self._dirs = {}
            self._persist = {}
            self._held = 0

    def _dir(self, path: str) -> _Dir:
        d = self._dirs.get(path)
        if d is None:
            d = {}
            if path in self._known:
                row = self.conn.execute(
                    sql.DIRCACHE_ENTRIES, (self.side, os.fsencode(path))
                ).fetchone()
                try:
                    if row is not None:
                        d = {os.fsdecode(n): (v[:5], v[5]) for n, v in _dec.decode(row[0]).items()}
                except (msgspec.DecodeError, ValueError, TypeError):
                    d = {}
            self._dirs[path] = d
            self._persist[path] = dict(d)
            self._held += len(d)
        return d

    def get(self, path: str) -> tuple[StatSig, bytes] | None:
        with self.lock:
            return self._dir(parent_of(path)).get(name_of(path))

    def lookup(self, path: str, sig: StatSig) -> bytes | None:
        hit = self.get(path)
        if hit is not None and hit[0] == sig:
            return hit[1]
        return None

    def trim(self, max_entries: int) -> None:
        """Keep about ``max_entries`` files' entries in memory at most: write the
        changed directories and forget the rest (read again when needed)."""
        if self._held <= max_entries:
            return
        with self.lock:
            self._flush()
            # what is only in memory (racily clean digests) stays, with its directory
            keep = {p for p, d in self._dirs.items() if d != self._persist.get(p)}
            self._dirs = {p: self._dirs[p] for p in keep}
            self._persist = {p: self._persist[p] for p in keep}
            self._held = sum(len(d) for d in self._dirs.values())

    def store(
        self,
        path: str,
        sig: StatSig,
        digest: bytes,
        now_ns: int | None = None,
        leaves: list[bytes] | None = None,
    ) -> None:
        """Remember ``digest`` for a file with ``sig`` (and its tree ``leaves``, if known:
        without them, leaves cached for an older content are dropped).

        With ``now_ns`` (a digest we computed by reading the file at that time) an
        entry whose timestamps are that recent is kept in memory only: it is
        "racily clean" and will be hashed again next time. Without it (content we
        wrote and then ``fstat``ed ourselves) it is trusted.
        """
        if leaves is not None:
            self.blocks.put(path, sig, leaves)
        else:
            self.blocks.drop(path)
        with self.lock:
            self._store(path, sig, digest, now_ns)

    def _store(self, path: str, sig: StatSig, digest: bytes, now_ns: int | None) -> None:
        parent, name = parent_of(path), name_of(path)
        d = self._dir(parent)
        self._held += name not in d
        d[name] = (sig, digest)
        persist = self._persist[parent]
        racy = now_ns is not None and (sig[2] >= now_ns - RACY_NS or sig[3] >= now_ns - RACY_NS)
        if racy:
            if persist.pop(name, None) is not None:
                self._dirty.add(parent)
        elif persist.get(name) != (sig, digest):
            persist[name] = (sig, digest)
            self._dirty.add(parent)

    def drop(self, path: str) -> None:
        self.blocks.drop(path)
        parent, name = parent_of(path), name_of(path)
        with self.lock:
            self._dir(parent).pop(name, None)
            if self._persist[parent].pop(name, None) is not None:
                self._dirty.add(parent)

    def listed(self, path: str, names: set[str]) -> None:
        """A complete listing of directory ``path`` holds exactly these file names."""
        self.blocks.drop_under(path, names)
        with self.lock:
            d = self._dir(path)
            persist = self._persist[path]
            for name in [n for n in d if n not in names]:
                del d[name]
            gone = [n for n in persist if n not in names]
            for name in gone:
                del persist[name]
            if gone:
                self._dirty.add(path)

    def prune_dirs(self, seen: set[str], under: str = "") -> None:
        """Forget directories below ``under`` that a complete scan did not see."""
        prefix = under + "/" if under else ""
        with self.lock:
            for path in list(self._known):
                if (path == under or path.startswith(prefix) or under == "") and path not in seen:
                    self.blocks.drop_under(path, set())
                    self._persist[path] = {}
                    self._dirs[path] = {}
                    self._dirty.add(path)

    def flush(self) -> None:
        with self.lock:
            self._flush()

    def _flush(self) -> None:
        if not self._dirty:
            return
        dirty, self._dirty = self._dirty, set()
        upserts = []
        deletes = []
        for path in dirty:
            persist = self._persist.get(path) or {}
            key = os.fsencode(path)
            if persist:
                blob = _enc.encode({os.fsencode(n): (*sig, d) for n, (sig, d) in persist.items()})
                upserts.append((self.side, key, blob))
            else:
                deletes.append((self.side, key))
        with self.lock, transaction(self.conn):
            self.conn.executemany(sql.DIRCACHE_PUT, upserts)
            self.conn.executemany(sql.DIRCACHE_DROP, deletes)
        for _side, key, _blob in upserts:
            self._known.add(os.fsdecode(key))
        for _side, key in deletes:
            self._known.discard(os.fsdecode(key))
