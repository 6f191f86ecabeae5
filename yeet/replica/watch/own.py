"""Recognising yeet's own writes among a watcher's events.

Invariant owned here: an event is taken for yeet's own write only when the path
holds *right now* exactly what yeet's writer left there (same inode and stat
signature; for a directory, the same inode; for a removal, nothing), or is a
temporary name the writer uses. Anything a user did after yeet's write changes
the signature, so it is never hidden. While the writer is changing a path
(``begin`` .. ``wrote``/``end``) its events are *pending*: the watcher holds them
until the writer is done with it (``listener``), then judges them; a path the
writer gave up on (``end``) is foreign, and the watcher never holds an event for
longer than ``PENDING_SECONDS``: after that it is reported (a pass for nothing,
never a miss).
"""

from __future__ import annotations

import os
import stat
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Union

Marker = Union[None, str, tuple[int, ...]]
_TEMP = "temp"
LIMIT = 200_000  # paths remembered (oldest forgotten first)
PENDING_SECONDS = 5.0

OWN, PENDING, FOREIGN = "own", "pending", "foreign"


def marker(st: os.stat_result | None) -> Marker:
    if st is None:
        return None
    if stat.S_ISDIR(st.st_mode):
        return (st.st_ino,)  # its mtime moves as yeet fills it
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_mode)


class OwnWrites:
    """Paths yeet's writer changed, and what it left there (thread-safe)."""

    def __init__(self) -> None:
        self._left: OrderedDict[str, Marker] = OrderedDict()
        self._pending: dict[str, int] = {}
        self._lock = threading.Lock()
        self.listener: Callable[[], None] | None = None  # called when pending paths settle

    def begin(self, paths: Iterable[str]) -> None:
        """The writer is about to change ``paths``."""
        with self._lock:
            for path in paths:
                self._pending[path] = self._pending.get(path, 0) + 1

    def wrote(self, path: str, st: os.stat_result | None) -> None:
        """``path`` now holds what ``st`` describes (None: yeet removed it)."""
        self._put(path, marker(st))
        self.end([path])

    def end(self, paths: Iterable[str]) -> None:
        """The writer is done with ``paths`` (``wrote`` was called, or it wrote nothing)."""
        with self._lock:
            for path in paths:
                left = self._pending.get(path, 0) - 1
                if left > 0:
                    self._pending[path] = left
                else:
                    self._pending.pop(path, None)
        listener = self.listener
        if listener is not None:
            listener()

    def temp(self, path: str) -> None:
        """``path`` is a temporary name of the writer's (any event on it is ours)."""
        self._put(path, _TEMP)

    def _put(self, path: str, value: Marker) -> None:
        with self._lock:
            self._left[path] = value
            self._left.move_to_end(path)
            while len(self._left) > LIMIT:
                self._left.popitem(last=False)

    def state(self, path: str, full: str) -> str:
        """Whether an event at ``path`` (``full`` on disk) is explained by yeet's own
        write (``OWN``), may be once the writer is done (``PENDING``), or not."""
        with self._lock:
            left = self._left.get(path, FOREIGN)
            if left == _TEMP:
                return OWN
            if path in self._pending:
                return PENDING
        if left == FOREIGN:
            return FOREIGN
        try:
            now = marker(os.lstat(full))
        except FileNotFoundError:
            now = None
        except OSError:
            return FOREIGN
        return OWN if now == left else FOREIGN
