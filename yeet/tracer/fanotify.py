"""Name changes from the kernel: fanotify filesystem marks reporting directory + name.

Invariant owned here: every create, delete, rename, link, symlink, mkdir,
rmdir and attribute change (chmod, chown, utimes, xattrs) on a marked
filesystem, made after ``mark()`` returned, reaches ``read()`` as a
``NameEvent``: the file handle of the directory whose listing it changed
plus the name - a rename as one event with both ends - or ``read()``
reports why events were lost. The queue is unlimited (the service is root),
so it does not overflow under a storm of changes elsewhere. Nothing else is
promised: which directory a handle names *now* is ``yeet.tracer.paths``'s
business (``name_of_handle``).

Why fanotify and not more BPF syscall hooks: fsnotify sits in the VFS, so it
sees every way a name changes (the ~20 name syscalls, io_uring's
``renameat``/``unlinkat``/``mkdirat``..., nfsd, overlayfs copy-up) with the
parent directory's identity, not a user-space path string that names
something else by the time it is read. ``FAN_MARK_FILESYSTEM`` is required:
mount marks refuse directory-entry events (``EINVAL`` on 6.18) and would
miss changes made through another mount of the same filesystem. Needs
``CAP_SYS_ADMIN`` (the ``yeet tracer`` service runs as root).
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
from dataclasses import dataclass

from yeet.model.errors import TracerUnavailable

FAN_CLOEXEC = 0x1
FAN_NONBLOCK = 0x2
FAN_UNLIMITED_QUEUE = 0x10
FAN_CLASS_NOTIF = 0x0
FAN_REPORT_DIR_FID = 0x400
FAN_REPORT_NAME = 0x800
FAN_REPORT_DFID_NAME = FAN_REPORT_DIR_FID | FAN_REPORT_NAME

FAN_MARK_ADD = 0x1
FAN_MARK_REMOVE = 0x2
FAN_MARK_FILESYSTEM = 0x100

FAN_ATTRIB = 0x4
FAN_MOVED_FROM = 0x40
FAN_MOVED_TO = 0x80
FAN_CREATE = 0x100
FAN_DELETE = 0x200
FAN_Q_OVERFLOW = 0x4000
FAN_FS_ERROR = 0x8000
FAN_RENAME = 0x10000000
FAN_ONDIR = 0x40000000

# a rename comes as one FAN_RENAME event with both ends (so the service can tell a
# move within a root from one into it); MOVED_FROM/MOVED_TO would only repeat it
NAME_EVENTS = FAN_ATTRIB | FAN_RENAME | FAN_CREATE | FAN_DELETE | FAN_ONDIR

INFO_DFID_NAME = 2
INFO_DFID = 3
INFO_OLD_DFID_NAME = 10
INFO_NEW_DFID_NAME = 12
_DIR_INFOS = (INFO_DFID_NAME, INFO_DFID, INFO_OLD_DFID_NAME, INFO_NEW_DFID_NAME)
FILEID_INVALID = 0xFF

_META = struct.Struct("<IBBHQii")  # event_len, vers, reserved, metadata_len, mask, fd, pid
_INFO = struct.Struct("<BBH")  # info_type, pad, len
_FID = struct.Struct("<IIIi")  # fsid val[0], val[1]; handle_bytes, handle_type
FANOTIFY_METADATA_VERSION = 3

_libc = ctypes.CDLL(None, use_errno=True)
_libc.fanotify_init.argtypes = [ctypes.c_uint, ctypes.c_uint]
_libc.fanotify_init.restype = ctypes.c_int
_libc.fanotify_mark.argtypes = [
    ctypes.c_int,
    ctypes.c_uint,
    ctypes.c_uint64,
    ctypes.c_int,
    ctypes.c_char_p,
]
_libc.fanotify_mark.restype = ctypes.c_int


@dataclass(frozen=True)
class DirName:
    """A name in a directory: the directory's filesystem and handle, the name."""

    fsid: int
    handle_type: int
    handle: bytes
    name: str  # "" or "." when the event is about the directory itself

    @property
    def key(self) -> tuple[int, int, bytes]:
        return (self.fsid, self.handle_type, self.handle)


@dataclass(frozen=True)
class NameEvent:
    """One name change: ``where`` is the directory whose listing changed (for a
    rename: the new end), ``old`` the old end of a rename."""

    mask: int
    where: DirName
    old: DirName | None = None

    @property
    def is_dir(self) -> bool:
        return bool(self.mask & FAN_ONDIR)


def fsid_of(path: str) -> int:
    """The filesystem id fanotify reports for ``path`` (``statfs`` ``f_fsid``)."""
    return os.statvfs(path).f_fsid & 0xFFFF_FFFF_FFFF_FFFF


class NameWatcher:
    """One fanotify group; ``mark()`` filesystems, ``read()`` what changed."""

    def __init__(self) -> None:
        fd: int = _libc.fanotify_init(
            FAN_CLASS_NOTIF
            | FAN_CLOEXEC
            | FAN_NONBLOCK
            | FAN_UNLIMITED_QUEUE
            | FAN_REPORT_DFID_NAME,
            os.O_RDONLY | os.O_CLOEXEC,
        )
        if fd < 0:
            e = ctypes.get_errno()
            if e == errno.EPERM:
                raise TracerUnavailable(
                    "fanotify needs CAP_SYS_ADMIN to watch names (run `yeet tracer` as root)"
                )
            if e in (errno.EINVAL, errno.ENOSYS):
                raise TracerUnavailable(
                    "this kernel's fanotify cannot report directory entries "
                    "(FAN_REPORT_DFID_NAME needs Linux 5.9+)"
                )
            raise TracerUnavailable(f"fanotify_init failed: {os.strerror(e)}")
        self._fd = fd
        self.marked: dict[int, str] = {}  # fsid -> a path on it

    def fileno(self) -> int:
        return self._fd

    def mark(self, path: str) -> int:
        """Watch every name change on the filesystem holding ``path``; its fsid.

        Raises ``OSError`` saying why the filesystem cannot be watched.
        """
        fsid = fsid_of(path)
        if fsid == 0:
            raise OSError(errno.EOPNOTSUPP, "the filesystem reports no fsid")
        r = _libc.fanotify_mark(
            self._fd,
            FAN_MARK_ADD | FAN_MARK_FILESYSTEM,
            NAME_EVENTS,
            -100,
            os.fsencode(path),
        )
        if r < 0:
            e = ctypes.get_errno()
            raise OSError(e, f"fanotify cannot watch names on this filesystem: {os.strerror(e)}")
        self.marked[fsid] = path
        return fsid

    def unmark(self, fsid: int) -> None:
        """Stop watching a filesystem (quietly: it may be gone already)."""
        path = self.marked.pop(fsid, None)
        if path is not None:
            _libc.fanotify_mark(
                self._fd,
                FAN_MARK_REMOVE | FAN_MARK_FILESYSTEM,
                NAME_EVENTS,
                -100,
                os.fsencode(path),
            )

    def read(self) -> tuple[list[NameEvent], str]:
        """Everything queued now (never blocks); and why events were lost ("" if not)."""
        events: list[NameEvent] = []
        lost = ""
        while True:
            try:
                data = os.read(self._fd, 1 << 20)
            except BlockingIOError:
                break
            except OSError as e:
                if e.errno == errno.EINTR:
                    continue
                raise
            if not data:
                break
            lost = _parse(data, events) or lost
        return events, lost

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> NameWatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _parse(data: bytes, out: list[NameEvent]) -> str:
    """Append the events in one ``read()`` buffer; a reason if some were lost."""
    lost = ""
    off = 0
    while off + _META.size <= len(data):
        length, vers, _r, meta_len, mask, fd, _pid = _META.unpack_from(data, off)
        if length < meta_len or vers != FANOTIFY_METADATA_VERSION:
            return f"fanotify sent an event this version cannot read (version {vers})"
        if fd >= 0:
            os.close(fd)  # not asked for in FID mode; never leak one
        if mask & FAN_Q_OVERFLOW:
            lost = "the kernel's name-event queue overflowed"
        elif mask & FAN_FS_ERROR:
            lost = "a watched filesystem reported an error"
        p, end = off + meta_len, off + length
        where: DirName | None = None
        old: DirName | None = None
        bad = False
        while p + _INFO.size <= end:
            kind, _pad, ilen = _INFO.unpack_from(data, p)
            if ilen < _INFO.size or p + ilen > end:
                bad = True
                break
            if kind in _DIR_INFOS and ilen >= _INFO.size + _FID.size:
                v0, v1, hbytes, htype = _FID.unpack_from(data, p + _INFO.size)
                h0 = p + _INFO.size + _FID.size
                handle = data[h0 : h0 + hbytes]
                name = b""
                if kind != INFO_DFID:
                    name = data[h0 + hbytes : p + ilen].split(b"\0", 1)[0]
                if htype == FILEID_INVALID or len(handle) != hbytes:
                    bad = True
                else:
                    dn = DirName(v0 | v1 << 32, htype, handle, os.fsdecode(name))
                    if kind == INFO_OLD_DFID_NAME:
                        old = dn
                    else:
                        where = dn
            p += ilen
        if bad:
            lost = "fanotify could not encode a directory handle"
        if where is not None:
            out.append(NameEvent(int(mask), where, old))
        elif old is not None:  # a rename whose new end is not ours to see: its old end
            out.append(NameEvent(int(mask), old))
        elif not mask & (FAN_Q_OVERFLOW | FAN_FS_ERROR):
            lost = lost or f"a name event without a directory (mask {mask:#x})"
        off += length
    return lost
