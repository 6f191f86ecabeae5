"""What a watched root *is*: its inode, its mount and the mounts inside it.

Invariant owned here: two ``Layout`` values of the same root path are equal
only if, as far as the kernel can tell, the path still names the same
directory on the same mount with the same filesystems mounted below it. The
journal compares a root's layout at every answer: anything unmounted,
remounted, mounted over or mounted inside changes it, and the answer then
says "rescan" - the journal never vouches across such a change. Mounts are
named by the kernel's never-reused 64-bit mount id (``STATX_MNT_ID_UNIQUE``,
Linux 6.8+) where the kernel has it, else by the reusable one.
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass

from yeet.tracer.journal import within
from yeet.tracer.paths import mounts

AT_FDCWD = -100
AT_SYMLINK_NOFOLLOW = 0x100
STATX_MNT_ID = 0x1000
STATX_MNT_ID_UNIQUE = 0x4000
_STX_MASK, _STX_MNT_ID = 0, 144  # offsets in struct statx

_libc = ctypes.CDLL(None, use_errno=True)
_statx = getattr(_libc, "statx", None)
if _statx is not None:
    _statx.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_uint, ctypes.c_void_p]
    _statx.restype = ctypes.c_int


def mount_id(path: str) -> int:
    """The id of the mount ``path`` (not followed if a symlink) lies on; 0 if unknown."""
    if _statx is None:
        return 0
    buf = ctypes.create_string_buffer(256)
    for want in (STATX_MNT_ID_UNIQUE, STATX_MNT_ID):
        if _statx(AT_FDCWD, os.fsencode(path), AT_SYMLINK_NOFOLLOW, want, buf) != 0:
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e), path)
        got = int.from_bytes(buf.raw[_STX_MASK : _STX_MASK + 4], "little")
        if got & want:
            return int.from_bytes(buf.raw[_STX_MNT_ID : _STX_MNT_ID + 8], "little")
    return 0


@dataclass(frozen=True)
class Layout:
    dev: int
    ino: int
    mount: int
    nested: tuple[tuple[str, int], ...] = ()  # mount points strictly inside, with their ids

    @property
    def points(self) -> list[str]:
        """The nested mount points (each a filesystem to watch too)."""
        return [p for p, _ in self.nested]


def layout_of(root: str) -> Layout:
    """``root``'s layout now (``root`` is an absolute real path); raises ``OSError``."""
    st = os.stat(root)
    nested = []
    for m in mounts():
        point = os.path.normpath(m.point)
        if point != root and within(point, root):
            try:
                nested.append((point, mount_id(point)))
            except OSError:
                nested.append((point, -1))  # hidden by another mount: still a change
    return Layout(st.st_dev, st.st_ino, mount_id(root), tuple(sorted(set(nested))))


def describe_change(old: Layout, new: Layout) -> str:
    """Why a root's layout changed, in words."""
    if (old.dev, old.ino) != (new.dev, new.ino):
        return "the root directory was replaced, unmounted or mounted over"
    if old.mount != new.mount:
        return "the root's mount changed (unmounted and mounted again?)"
    before, after = set(old.nested), set(new.nested)
    changed = sorted({p for p, _ in before ^ after})
    return f"mounts inside the root changed: {', '.join(changed[:3])}"
