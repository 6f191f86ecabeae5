"""The leaves of large files, so a file written in a few places is re-read only there.

Invariant owned here: an entry ``(sig, leaves)`` holds the block digests of
the file's content at a moment its lstat signature was ``sig``; whoever
observes that a file changed either stores fresh leaves or drops the entry
(``StatCache.store``/``drop`` do it for every caller), so an entry is never
older than the last change anybody saw. Entries are used only as the base of
a ``digest.TreeUpdate`` whose written ranges somebody vouches for (the kernel
tracer's journal, our own patch), and only for the same inode.

Only files of at least ``MIN_SIZE`` get an entry (smaller ones cost little to
hash again); one row per file, written at once (such files are few).
"""

from __future__ import annotations

import os
import sqlite3
import threading

import msgspec

from yeet.model import digest
from yeet.model.paths import join, name_of, parent_of
from yeet.state import replica_tables as sql
from yeet.state.db import transaction

MIN_SIZE = 8 << 20

StatSig = tuple[int, int, int, int, int]

_sig = msgspec.msgpack.Encoder()
_sig_dec = msgspec.msgpack.Decoder(tuple[int, int, int, int, int])


class BlockCache:
    def __init__(self, conn: sqlite3.Connection, lock: threading.RLock, side: str) -> None:
        self.conn = conn
        self.lock = lock
        self.side = side
        with lock:
            rows = conn.execute(sql.BLOCKCACHE_PATHS, (side,)).fetchall()
        self._names: dict[str, set[str]] = {}  # directory -> names with an entry
        for (p,) in rows:
            self._names.setdefault(parent_of(os.fsdecode(p)), set()).add(name_of(os.fsdecode(p)))

    def __contains__(self, path: str) -> bool:
        return name_of(path) in self._names.get(parent_of(path), ())

    def get(self, path: str) -> tuple[StatSig, list[bytes]] | None:
        if path not in self:
            return None
        with self.lock:
            row = self.conn.execute(sql.BLOCKCACHE_GET, (self.side, os.fsencode(path))).fetchone()
        if row is None:
            return None
        try:
            sig = _sig_dec.decode(row[0])
        except msgspec.DecodeError:
            return None
        blob: bytes = row[1]
        if len(blob) % 32:
            return None
        return sig, [blob[i : i + 32] for i in range(0, len(blob), 32)]

    def of_content(
        self, path: str, alg: str, size: int, value: bytes, sig: StatSig | None = None
    ) -> list[bytes] | None:
        """The cached leaves of ``path`` if they are those of the content of ``size``
        bytes with digest ``value`` (and were stored for signature ``sig``, if given)."""
        hit = self.get(path) if digest.is_tree(alg) else None
        if hit is None or hit[0][1] != size or (sig is not None and hit[0] != sig):
            return None
        try:
            return hit[1] if digest.root_of(alg, hit[1], size) == value else None
        except ValueError:
            return None

    def put(self, path: str, sig: StatSig, leaves: list[bytes]) -> None:
        if sig[1] < MIN_SIZE:
            self.drop(path)
            return
        with self.lock, transaction(self.conn):
            self.conn.execute(
                sql.BLOCKCACHE_PUT,
                (self.side, os.fsencode(path), _sig.encode(sig), b"".join(leaves)),
            )
        self._names.setdefault(parent_of(path), set()).add(name_of(path))

    def drop(self, path: str) -> None:
        if path not in self:
            return
        self._names[parent_of(path)].discard(name_of(path))
        with self.lock, transaction(self.conn):
            self.conn.execute(sql.BLOCKCACHE_DROP, (self.side, os.fsencode(path)))

    def drop_under(self, directory: str, keep: set[str]) -> None:
        """A complete listing of ``directory`` holds only the file names ``keep``."""
        for name in [n for n in self._names.get(directory, ()) if n not in keep]:
            self.drop(join(directory, name))
