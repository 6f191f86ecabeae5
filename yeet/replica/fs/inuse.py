"""Open files that several threads write into, and one thread may drop at any time.

Invariant owned here: a file descriptor guarded by ``InUse`` is never closed while
a call is using it, and never used after it was retired. Without this, a chunk of a
large upload being written while another chunk's failure drops the upload could
write through a closed descriptor number that the kernel has meanwhile given to an
unrelated file (or fail with ``ValueError``/``KeyError`` instead of a per-path
problem). A call on a retired resource fails with ``Dropped``, an ``OSError``, so it
is the ordinary per-path failure of the upload it belonged to.
"""

from __future__ import annotations

import contextlib
import errno
import threading
from collections.abc import Iterator


class Dropped(OSError):
    """The upload or patch was dropped (another part of it failed, or it was committed)."""

    def __init__(self, what: str) -> None:
        super().__init__(errno.EBADF, f"{what} was dropped (another part of it failed)")


class InUse:
    """Counts the calls using a resource; ``retire`` waits for them and refuses later ones."""

    def __init__(self, what: str = "the upload") -> None:
        self.what = what
        self._cond = threading.Condition()
        self._users = 0
        self._retired = False

    @contextlib.contextmanager
    def use(self) -> Iterator[None]:
        with self._cond:
            if self._retired:
                raise Dropped(self.what)
            self._users += 1
        try:
            yield
        finally:
            with self._cond:
                self._users -= 1
                if self._users == 0:
                    self._cond.notify_all()

    def retire(self) -> bool:
        """Refuse new users and wait for the current ones to finish; False if it was
        retired already (the caller must not close anything twice)."""
        with self._cond:
            if self._retired:
                return False
            self._retired = True
            while self._users:
                self._cond.wait()
            return True

    @property
    def retired(self) -> bool:
        return self._retired
