"""Is a page of a file's page cache dirty right now? (``/proc/self/pagemap`` and
``/proc/kpageflags``, root only.)

Tests of writers inside the kernel (a loop device, process accounting) need the
case where a write lands in a page that is *still* dirty - the kernel's
page-dirty hook does not fire again for it - and must check that it is, since
writeback (anybody's ``sync``, memory pressure) may clean it at any moment.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import struct
from pathlib import Path

from tests.pagecache import MAP_FAILED as _MAP_FAILED
from tests.pagecache import libc as _libc

PAGE = mmap.PAGESIZE
_KPF_DIRTY = 1 << 4
_PM_PRESENT = 1 << 63
_PM_PFN = (1 << 55) - 1


def page_dirty(path: Path, offset: int) -> bool:
    """Whether the cached page holding ``offset`` of ``path`` is dirty (False if not cached)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        start = offset - offset % PAGE
        addr = _libc.mmap(None, PAGE, mmap.PROT_READ, mmap.MAP_SHARED, fd, start)
        if addr in (None, _MAP_FAILED):
            raise OSError(ctypes.get_errno(), "mmap")
        try:
            ctypes.c_char.from_address(addr).value  # noqa: B018 - map it (it is cached: no I/O)
            with open("/proc/self/pagemap", "rb") as pm:
                pm.seek(addr // PAGE * 8)
                (entry,) = struct.unpack("<Q", pm.read(8))
            if not entry & _PM_PRESENT:
                return False
            with open("/proc/kpageflags", "rb") as kf:
                kf.seek((entry & _PM_PFN) * 8)
                (flags,) = struct.unpack("<Q", kf.read(8))
            return bool(flags & _KPF_DIRTY)
        finally:
            _libc.munmap(addr, PAGE)
    finally:
        os.close(fd)
