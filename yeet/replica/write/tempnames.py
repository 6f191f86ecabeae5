"""Temporary names yeet makes inside a tree, and the only ones it treats as its own.

When the staging directory is on another filesystem than the root, new content is
written next to its target under a temporary name, then renamed into place; so
are new symlinks. A crash can leave such a file behind. A user's file can have any
name, including one that looks like ours.

Invariants owned here:

* A name is yeet's only if yeet recorded it before making it: each run of an
  endpoint draws a random token, records it durably in the endpoint's own state
  (one row per run, committed before the first name is made) and makes names
  ``.yeet-tmp-<token>.<n>``. Any other name, e.g. a user's
  ``.yeet-tmp-0123456789abcdef``, is an ordinary file and is synced.
* A name of this run is left alone (it is being written); a name of an earlier run
  (a crash) is moved to the trash, never unlinked. An earlier run's token is
  forgotten only after a complete scan of the root found none of its names left.
"""

from __future__ import annotations

import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable

from yeet.state import replica_tables as sql
from yeet.state.db import transaction

PREFIX = ".yeet-tmp-"
PATTERN = re.compile(r"^\.yeet-tmp-([0-9a-f]{16})\.[0-9a-f]+$")


class TempNames:
    """The in-tree temporary names of one side's endpoint (its writer's, its scans')."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        lock: threading.RLock,
        side: str,
        trash: Callable[[int, str, str], object],
    ) -> None:
        self.conn = conn
        self.lock = lock
        self.side = side
        self._trash = trash  # (dir fd, name, relpath): move a leftover to the trash
        self._mint = threading.Lock()
        self._n = 0
        self.token: str | None = None  # this run's, once recorded
        with lock:
            rows = conn.execute(sql.TEMP_TOKENS, (side,)).fetchall()
        self.earlier = {str(t) for (t,) in rows}  # tokens of runs that did not end cleanly
        self.kept = 0  # leftovers that could not be trashed (their tokens stay recorded)

    def new(self) -> str:
        """A fresh temporary name, recorded as ours before it is returned."""
        with self._mint:
            if self.token is None:
                token = secrets.token_hex(8)
                with self.lock, transaction(self.conn):
                    self.conn.execute(sql.TEMP_ADD, (self.side, token, time.time()))
                self.token = token
            self._n += 1
            return f"{PREFIX}{self.token}.{self._n:x}"

    def claim(self, dir_fd: int, name: str, path: str) -> bool:
        """Is ``name`` (at ``path``, in ``dir_fd``) one of ours? This run's is left
        alone; an earlier run's leftover is moved to the trash. False: it is not
        ours, it is synced like any other file."""
        m = PATTERN.match(name) if name.startswith(PREFIX) else None
        if m is None:
            return False
        token = m.group(1)
        if token == self.token:
            return True
        if token not in self.earlier:
            return False
        try:
            self._trash(dir_fd, name, path)
        except (OSError, sqlite3.Error):
            self.kept += 1
        return True

    def scanned_all(self) -> None:
        """A complete scan of the whole root is over: earlier runs' tokens whose
        leftovers were all trashed are forgotten."""
        if self.kept or not self.earlier:
            return
        done, self.earlier = self.earlier, set()
        with self.lock, transaction(self.conn):
            self.conn.executemany(sql.TEMP_DROP, [(self.side, t) for t in done])

    def close(self, clean: bool) -> None:
        """The endpoint closes; ``clean``: none of this run's names is left in the tree."""
        if clean and self.token is not None:
            with self.lock, transaction(self.conn):
                self.conn.execute(sql.TEMP_DROP, (self.side, self.token))
            self.token = None
