"""A real full disk for tests: a small tmpfs (these machines run as root), filled to
its last byte."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def small_tmpfs(where: Path, size: str) -> Iterator[Path]:
    where.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


def fill(directory: Path) -> list[Path]:
    """Write until the filesystem is full (to the last byte); the filler files."""
    fillers = []
    for name, piece in (("filler", 1 << 16), ("crumbs", 1)):
        fillers.append(directory / name)
        fd = os.open(fillers[-1], os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            while True:
                os.write(fd, b"\0" * piece)
        except OSError as err:
            assert err.errno == errno.ENOSPC
        finally:
            os.close(fd)
    return fillers
