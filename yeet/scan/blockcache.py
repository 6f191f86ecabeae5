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
            rows = conn.execute("SELECT path FROM blockcache WHERE side=?", (side,)).fetchall()
        self._paths = {os.fsdecode(p) for (p,) in rows}

    def __contains__(self, path: str) -> bool:
        return path in self._paths

    def get(self, path: str) -> tuple[StatSig, list[bytes]] | None:
        if path not in self._paths:
            return None
        with self.lock:
            row = self.conn.execute(
                "SELECT sig, leaves FROM blockcache WHERE side=? AND path=?",
                (self.side, os.fsencode(path)),
            ).fetchone()
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

    def put(self, path: str, sig: StatSig, leaves: list[bytes]) -> None:
        if sig[1] < MIN_SIZE:
            self.drop(path)
            return
        with self.lock, transaction(self.conn):
            self.conn.execute(
                "INSERT OR REPLACE INTO blockcache VALUES (?, ?, ?, ?)",
                (self.side, os.fsencode(path), _sig.encode(sig), b"".join(leaves)),
            )
        self._paths.add(path)

    def drop(self, path: str) -> None:
        if path not in self._paths:
            return
        self._paths.discard(path)
        with self.lock, transaction(self.conn):
            self.conn.execute(
                "DELETE FROM blockcache WHERE side=? AND path=?", (self.side, os.fsencode(path))
            )

    def drop_under(self, directory: str, keep: set[str]) -> None:
        """A complete listing of ``directory`` holds only the file names ``keep``."""
        prefix = directory + "/" if directory else ""
        for path in [p for p in self._paths if p.startswith(prefix)]:
            rest = path[len(prefix) :]
            if "/" not in rest and rest not in keep:
                self.drop(path)
