"""Reads of a file that must still be what the scan saw.

Invariant owned here: bytes are read only from a file whose stat signature is the
one recorded for the entry the caller planned with; a file changed meanwhile is
``FileChangedError`` (an ``OSError``: a per-path problem), never read.
"""

from __future__ import annotations

import os

from yeet.replica.fs.rootdir import RootDir
from yeet.replica.scan.statcache import StatSig, sig_of


class FileChangedError(OSError):
    def __init__(self, path: str) -> None:
        super().__init__(f"{path}: modified since the scan")
        self.path = path


def open_with_sig(root_path: str, path: str, sig: StatSig) -> int:
    """``path`` opened inside ``root_path`` if it still has the stat signature ``sig``
    (else ``FileChangedError``): what both ``read_range`` and a bulk channel's
    ``bulk_read`` read from."""
    root = RootDir(root_path)
    try:
        fd = root.open_file(path)
    finally:
        root.close()
    if sig_of(os.fstat(fd)) != sig:
        os.close(fd)
        raise FileChangedError(path)
    return fd


def read_with_sig(root_path: str, path: str, sig: StatSig, offset: int, length: int) -> bytes:
    """A byte range of ``path`` in ``root_path`` if it still has the signature ``sig``."""
    fd = open_with_sig(root_path, path, sig)
    try:
        return os.pread(fd, length, offset)
    finally:
        os.close(fd)
