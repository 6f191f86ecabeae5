"""From kernel identities back to paths, and the /proc facts the tracer needs.

Invariant owned here: a path returned for a (dev, ino, gen) names that very
inode at the time of the call (checked by the kernel through a file handle -
which carries the generation, so a reused inode number is another inode - and
by ``lstat`` against the inode number), or the answer is ``None`` - never a
guess; and no lookup raises (a path the kernel cannot spell, such as one
longer than ``PATH_MAX``, is "cannot tell"). Device numbers crossing this
module are userspace ``st_dev`` values.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000
MAX_HANDLE_SZ = 128
FS_IOC_GETVERSION = 0x80087601  # _IOR('v', 1, long)


class _FileHandle(ctypes.Structure):
    _fields_ = [
        ("handle_bytes", ctypes.c_uint),
        ("handle_type", ctypes.c_int),
        ("f_handle", ctypes.c_ubyte * MAX_HANDLE_SZ),
    ]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.name_to_handle_at.argtypes = [
    ctypes.c_int,
    ctypes.c_char_p,
    ctypes.POINTER(_FileHandle),
    ctypes.POINTER(ctypes.c_int),
    ctypes.c_int,
]
_libc.name_to_handle_at.restype = ctypes.c_int
_libc.open_by_handle_at.argtypes = [ctypes.c_int, ctypes.POINTER(_FileHandle), ctypes.c_int]
_libc.open_by_handle_at.restype = ctypes.c_int


class Found(NamedTuple):
    """Where an inode is: ``(path, True, nlink)``; ``(None, True, 0)``: it has no
    name any more (deleted); ``(None, False, nlink)``: it exists but no path could
    be confirmed (``nlink`` 0 when even that is unknown)."""

    path: str | None
    known: bool
    nlink: int = 0


@dataclass(frozen=True)
class Mount:
    mount_id: int
    dev: int  # userspace dev_t of the superblock (mountinfo major:minor)
    root: str  # path inside the filesystem that is mounted here
    point: str  # where it is mounted
    fstype: str
    options: str = ""  # the superblock's options ("rw,relatime,...")


def mounts() -> list[Mount]:
    out: list[Mount] = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            parts = left.split()
            major, minor = (int(x) for x in parts[2].split(":"))
            tail = right.split()
            out.append(
                Mount(
                    mount_id=int(parts[0]),
                    dev=os.makedev(major, minor),
                    root=_unescape(parts[3]),
                    point=_unescape(parts[4]),
                    fstype=tail[0] if tail else "",
                    options=tail[2] if len(tail) > 2 else "",
                )
            )
    return out


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo
    if "\\" not in field:
        return field
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 3 < len(field) + 1 and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mount_of(path: str) -> Mount | None:
    """The mount a (real, absolute) path lies on: the longest mount point prefix."""
    real = os.path.realpath(path)
    best: Mount | None = None
    for m in mounts():
        p = m.point.rstrip("/") or "/"
        inside = real == p or real.startswith(p.rstrip("/") + "/") or p == "/"
        if inside and (best is None or len(p) >= len(best.point.rstrip("/") or "/")):
            best = m
    return best


def superblock_dev(path: str) -> int:
    """The dev of the filesystem holding ``path`` as the kernel names it.

    Equal to ``st_dev`` on most filesystems; differs on btrfs subvolumes,
    where ``st_dev`` is per subvolume but the tracer sees the superblock's.
    """
    st = os.stat(path)
    m = mount_of(path)
    if m is not None and m.dev != st.st_dev:
        return m.dev
    return st.st_dev


def generation(path_or_fd: str | int) -> int | None:
    """The inode generation (FS_IOC_GETVERSION; where a filesystem has no such
    ioctl, tmpfs for one, read from its file handle), or None if it won't say."""
    fd = path_or_fd
    opened = False
    if isinstance(path_or_fd, str):
        flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(path_or_fd, flags | os.O_NOATIME)  # looking leaves no trace
        except PermissionError:
            try:
                fd = os.open(path_or_fd, flags)
            except OSError:
                return None
        except OSError:
            return None
        opened = True
    assert isinstance(fd, int)
    try:
        buf = bytearray(8)
        fcntl.ioctl(fd, FS_IOC_GETVERSION, buf)
        return int(struct.unpack("<q", bytes(buf))[0]) & 0xFFFFFFFF
    except OSError:
        return _generation_of_handle(fd)
    finally:
        if opened:
            os.close(fd)


def _generation_of_handle(fd: int) -> int | None:
    h = _FileHandle(handle_bytes=MAX_HANDLE_SZ)
    mount_id = ctypes.c_int(0)
    if _libc.name_to_handle_at(fd, b"", h, ctypes.byref(mount_id), AT_EMPTY_PATH):
        return None
    try:
        ino = os.fstat(fd).st_ino
    except OSError:
        return None
    fmt = _guess_format(h, ino, None)
    if fmt is None:
        return None
    data = bytes(h.f_handle[: h.handle_bytes])
    if fmt.layout == "ino32_gen":
        return int(struct.unpack_from("<I", data, 4)[0])
    if fmt.layout == "ino64_gen":
        return int(struct.unpack_from("<I", data, 8)[0])
    if fmt.layout == "shmem":
        return int(struct.unpack_from("<I", data, 0)[0])
    return int(struct.unpack_from("<I", data, 16)[0])


# ---- file handles ----------------------------------------------------------------


@dataclass(frozen=True)
class _HandleFormat:
    handle_type: int
    layout: str  # "ino32_gen", "ino64_gen", "shmem", "btrfs"
    extra: bytes = b""  # btrfs: root objectid


class HandleResolver:
    """(dev, ino, gen) -> path through ``open_by_handle_at`` (needs root).

    The handle layout of each filesystem is learned from a template file on it
    (``learn``) and checked by rebuilding the template's own handle. No file
    descriptor is kept between lookups: a watched filesystem stays unmountable.
    Every path ``learn`` was given is an anchor (newest first); one that lies on
    another filesystem now (unmounted, remounted elsewhere) is forgotten, so a
    filesystem that comes back under the same device number is resolved through
    its new anchors, and a file of its old incarnation is "gone" (its handle's
    generation does not match), not "cannot tell".
    """

    def __init__(self) -> None:
        # dev -> [(path on it, its st_dev, handle layout)], newest first
        self._anchors: dict[int, list[tuple[str, int, _HandleFormat]]] = {}

    def close(self) -> None:
        self._anchors.clear()

    def learn(self, path: str, dev: int) -> bool:
        h = _FileHandle(handle_bytes=MAX_HANDLE_SZ)
        mount_id = ctypes.c_int(0)
        if _libc.name_to_handle_at(AT_FDCWD, os.fsencode(path), h, ctypes.byref(mount_id), 0):
            return False
        st = os.stat(path)
        fmt = _guess_format(h, st.st_ino, generation(path))
        if fmt is None:
            return False
        known = [a for a in self._anchors.get(dev, []) if a[0] != path]
        self._anchors[dev] = [(path, st.st_dev, fmt), *known]
        return True

    def knows(self, dev: int) -> bool:
        return dev in self._anchors

    def path_of(self, dev: int, ino: int, gen: int) -> str | None:
        return self.lookup(dev, ino, gen).path

    def lookup(self, dev: int, ino: int, gen: int) -> Found:
        """Where the inode is (see ``Found``)."""
        for anchor in list(self._anchors.get(dev, [])):
            path, anchor_dev, fmt = anchor
            try:
                mount_fd = open_anchor(path)
            except OSError:
                self._forget(dev, anchor)
                continue
            try:
                if os.fstat(mount_fd).st_dev != anchor_dev:  # another fs there now
                    self._forget(dev, anchor)
                    continue
                return name_of_handle(mount_fd, fmt.handle_type, _build(fmt, ino, gen))
            except OSError:
                return Found(None, False)
            finally:
                os.close(mount_fd)
        return Found(None, False)

    def open(self, dev: int, ino: int, gen: int, flags: int) -> int:
        """The inode itself, opened by handle; ``FileNotFoundError`` if it is gone,
        ``OSError`` if this resolver cannot reach it."""
        for anchor in list(self._anchors.get(dev, [])):
            path, anchor_dev, fmt = anchor
            try:
                mount_fd = open_anchor(path)
            except OSError:
                self._forget(dev, anchor)
                continue
            try:
                if os.fstat(mount_fd).st_dev != anchor_dev:
                    self._forget(dev, anchor)
                    continue
                try:
                    return open_handle(mount_fd, fmt.handle_type, _build(fmt, ino, gen), flags)
                except OSError as e:
                    if e.errno in (errno.ESTALE, errno.ENOENT):
                        raise FileNotFoundError(e.errno, e.strerror) from e
                    raise
            finally:
                os.close(mount_fd)
        raise OSError(errno.ENODEV, "no anchor on that filesystem")

    def _forget(self, dev: int, anchor: tuple[str, int, _HandleFormat]) -> None:
        left = [a for a in self._anchors.get(dev, []) if a != anchor]
        if left:
            self._anchors[dev] = left
        else:
            self._anchors.pop(dev, None)


def open_anchor(path: str) -> int:
    """An fd ``open_by_handle_at`` accepts as its mount fd (it refuses ``O_PATH``)."""
    return os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)


def open_handle(mount_fd: int, handle_type: int, raw: bytes, flags: int) -> int:
    """``open_by_handle_at``: an fd, or raises ``OSError`` (``ESTALE``: no such inode)."""
    if len(raw) > MAX_HANDLE_SZ:
        raise OSError(errno.EINVAL, "file handle too long")
    h = _FileHandle(handle_bytes=len(raw), handle_type=handle_type)
    ctypes.memmove(h.f_handle, raw, len(raw))
    fd: int = _libc.open_by_handle_at(mount_fd, h, flags)
    if fd < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return fd


def name_of_handle(mount_fd: int, handle_type: int, raw: bytes, tries: int = 3) -> Found:
    """A current path of the inode a file handle names, checked by ``lstat``.

    ``Found(path, True, nlink)``; ``(None, True)`` when the inode is gone or has
    no name left (``ESTALE``, unlinked); ``(None, False, nlink)`` when it exists
    but no path could be confirmed (it kept moving, it lies outside this mount's
    view, its path is longer than the kernel will spell, or its dentry is
    disconnected: ``open_by_handle_at`` of an evicted file reads as "/").
    """
    try:
        fd = open_handle(mount_fd, handle_type, raw, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        return Found(None, e.errno in (errno.ESTALE, errno.ENOENT))
    try:
        st = os.fstat(fd)
        if st.st_nlink == 0:
            return Found(None, True)
        for _ in range(tries):  # a concurrent rename may move it between the two calls
            try:
                target = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:  # ENAMETOOLONG: deeper than PATH_MAX
                return Found(None, False, st.st_nlink)
            if target.endswith(" (deleted)") and not os.path.lexists(target):
                return Found(None, True)
            if not target.startswith("/"):
                return Found(None, False, st.st_nlink)
            try:
                now = os.lstat(target)
            except OSError:
                continue
            if (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino):
                return Found(target, True, st.st_nlink)
        return Found(None, False, st.st_nlink)
    except OSError:
        return Found(None, False)
    finally:
        os.close(fd)


def _guess_format(h: _FileHandle, ino: int, gen: int | None) -> _HandleFormat | None:
    data = bytes(h.f_handle[: h.handle_bytes])
    n = h.handle_bytes
    if n == 8:
        i, g = struct.unpack("<II", data)
        if i == ino & 0xFFFFFFFF and (gen is None or g == gen):
            return _HandleFormat(h.handle_type, "ino32_gen")
    if n == 12:
        i64, g = struct.unpack("<QI", data)
        if i64 == ino and (gen is None or g == gen):
            return _HandleFormat(h.handle_type, "ino64_gen")
        g, lo, hi = struct.unpack("<III", data)
        if (hi << 32 | lo) == ino and (gen is None or g == gen):
            return _HandleFormat(h.handle_type, "shmem")
    if n >= 20:
        obj, root, g = struct.unpack("<QQI", data[:20])
        if obj == ino and (gen is None or g == gen):
            return _HandleFormat(h.handle_type, "btrfs", struct.pack("<Q", root))
    return None


def _build(fmt: _HandleFormat, ino: int, gen: int) -> bytes:
    if fmt.layout == "ino32_gen":
        return struct.pack("<II", ino & 0xFFFFFFFF, gen)
    if fmt.layout == "ino64_gen":
        return struct.pack("<QI", ino, gen)
    if fmt.layout == "shmem":
        return struct.pack("<III", gen, ino & 0xFFFFFFFF, ino >> 32)
    return struct.pack("<Q", ino) + fmt.extra + struct.pack("<I", gen)


# ---- shared mappings ---------------------------------------------------------------


def shared_mappings(devs: Iterable[int] | None = None) -> dict[tuple[int, int], str]:
    """Files mapped MAP_SHARED by any process now: (dev, ino) -> path.

    ``devs`` restricts the answer to those filesystems. Processes that vanish
    while we read are skipped (their mappings are gone too).
    """
    want = set(devs) if devs is not None else None
    found: dict[tuple[int, int], str] = {}
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return found
    for pid in pids:
        try:
            with open(f"/proc/{pid}/maps", "rb") as f:
                data = f.read()
        except OSError:
            continue
        for line in data.splitlines():
            parts = line.split(None, 5)
            if len(parts) < 5 or len(parts[1]) < 4 or parts[1][3:4] != b"s":
                continue
            ino = int(parts[4])
            if ino == 0:
                continue
            major, minor = (int(x, 16) for x in parts[3].split(b":"))
            dev = os.makedev(major, minor)
            if want is not None and dev not in want:
                continue
            path = os.fsdecode(parts[5].strip()) if len(parts) > 5 else ""
            found[(dev, ino)] = path
    return found


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError as e:
        return e.errno == errno.EPERM
    return True
