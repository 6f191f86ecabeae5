"""Making written data and renames durable, in batches.

Invariant owned here: after ``barrier`` returns, every write and rename made
before it on that filesystem is on stable storage. On Linux one ``syncfs`` per
batch does it (far cheaper than an ``fsync`` per file); elsewhere each written
file is ``fsync``ed as it is closed (``sync_file``) and each touched directory
at the barrier.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Iterable

_libc = ctypes.CDLL(None, use_errno=True)  # libc: already loaded (no ldconfig run)
_syncfs = getattr(_libc, "syncfs", None) if sys.platform.startswith("linux") else None


def sync_file(fd: int) -> None:
    """Call before closing a written file; the barrier makes it durable on Linux."""
    if _syncfs is None:
        os.fsync(fd)


def barrier(fs_fd: int, dir_fds: Iterable[int] = ()) -> None:
    """Make everything written on ``fs_fd``'s filesystem durable."""
    if _syncfs is not None:
        if _syncfs(fs_fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"syncfs: {os.strerror(err)}")
        return
    for fd in dir_fds:
        try:
            os.fsync(fd)
        except OSError:
            pass
    os.fsync(fs_fd)
