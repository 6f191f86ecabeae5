"""Permission bits, owner and modification time: read from the disk, written to it.

Invariant owned here: what yeet creates or updates is never more open than the entry
it writes says. A new file or directory is created with at most the entry's bits (the
umask may take more away; the exact bits are set afterwards), never with a wider
default first; setuid, setgid and sticky are never set. With ``portable``
permissions (filesystems without modes) only the exec bit is synced: a new file gets
this side's default bits, never more than its source had, and an updated file keeps
its bits. Owner and times are read and written only where the session syncs them
(``owner``, ``times``).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from typing import Any

from yeet.model.entries import PERMISSION_BITS, Entry

UMASK = os.umask(0o022)
os.umask(UMASK)

PRESERVE, PORTABLE = "preserve", "portable"
PERMISSIONS = (PRESERVE, PORTABLE)


@dataclass(frozen=True)
class MetaOptions:
    """Which metadata a session syncs (``--permissions``, ``--owner``, ``--times``)."""

    permissions: str = PRESERVE
    owner: bool = False
    times: bool = False

    @property
    def portable(self) -> bool:
        return self.permissions == PORTABLE


def bits(st: os.stat_result) -> int:
    return st.st_mode & PERMISSION_BITS


_names: dict[tuple[str, int], str] = {}
_ids: dict[tuple[str, str], int] = {}


def _name(kind: str, number: int) -> str:
    key = (kind, number)
    if key not in _names:
        try:
            if kind == "user":
                import pwd

                _names[key] = pwd.getpwuid(number).pw_name
            else:
                import grp

                _names[key] = grp.getgrgid(number).gr_name
        except (KeyError, ImportError):
            _names[key] = str(number)
    return _names[key]


def owner_of(st: os.stat_result) -> str:
    """``user:group`` by name where this host knows the ids, else by number."""
    return f"{_name('user', st.st_uid)}:{_name('group', st.st_gid)}"


def _id(kind: str, name: str) -> int:
    key = (kind, name)
    if key not in _ids:
        if name.isdigit():
            _ids[key] = int(name)
        else:
            try:
                if kind == "user":
                    import pwd

                    _ids[key] = pwd.getpwnam(name).pw_uid
                else:
                    import grp

                    _ids[key] = grp.getgrnam(name).gr_gid
            except (KeyError, ImportError):
                raise OSError(f"no {kind} named {name!r} on this host") from None
    return _ids[key]


def ids_of(owner: str) -> tuple[int, int]:
    user, _, group = owner.partition(":")
    return _id("user", user), _id("group", group)


def file_meta(st: os.stat_result, opts: MetaOptions) -> dict[str, Any]:
    """The metadata fields of a file entry scanned with ``st``."""
    out: dict[str, Any] = {"mode": st.st_mode}
    if opts.owner:
        out["owner"] = owner_of(st)
    if opts.times:
        out["mtime"] = st.st_mtime_ns
    return out


def dir_meta(st: os.stat_result, opts: MetaOptions) -> dict[str, Any]:
    out: dict[str, Any] = {"mode": st.st_mode}
    if opts.owner:
        out["owner"] = owner_of(st)
    return out


def file_mode(new: Entry, old: os.stat_result | None, opts: MetaOptions) -> int:
    """The permission bits of a file yeet writes as ``new`` over ``old`` (None: new)."""
    if new.mode and not opts.portable:
        return new.mode & PERMISSION_BITS
    new_file = old is None or not stat.S_ISREG(old.st_mode)
    base = 0o666 & ~UMASK if new_file or old is None else bits(old) & ~0o111
    if new.executable:
        base |= (base & 0o444) >> 2
    if new.mode:
        base &= new.mode  # never more open than the source
    return base


def dir_mode(new: Entry, opts: MetaOptions) -> int:
    """The bits a directory yeet creates gets at first: the entry's, plus what its
    owner needs to fill it (narrowed by a later sync; see ``created_dir``)."""
    if new.mode and not opts.portable:
        return (new.mode & PERMISSION_BITS) | 0o700
    return 0o777 & ~UMASK


def differs(st: os.stat_result, old: Entry, opts: MetaOptions) -> str:
    """Why ``st`` no longer has ``old``'s metadata ("" if it has it)."""
    if old.mode and not opts.portable:
        if bits(st) != old.mode & PERMISSION_BITS:
            return "permissions changed since the scan"
    elif old.is_file and bool(st.st_mode & stat.S_IXUSR) != old.executable:
        return "exec bit changed since the scan"
    if old.owner and opts.owner and owner_of(st) != old.owner:
        return "owner changed since the scan"
    if old.mtime and opts.times and old.is_file and st.st_mtime_ns != old.mtime:
        return "modification time changed since the scan"
    return ""


def apply_fd(fd: int, new: Entry, mode: int, opts: MetaOptions) -> None:
    """Give an open file (or directory) ``mode`` and, where synced, owner and time."""
    if opts.owner and new.owner:
        uid, gid = ids_of(new.owner)
        os.fchown(fd, uid, gid)  # (before the mode: chown clears setuid/setgid)
    os.fchmod(fd, mode)
    if opts.times and new.mtime and new.is_file:
        os.utime(fd, ns=(new.mtime, new.mtime))


def apply_at(dir_fd: int, name: str, new: Entry, mode: int, opts: MetaOptions) -> None:
    """``apply_fd`` for a name in a directory that the caller checked is no symlink."""
    if opts.owner and new.owner:
        uid, gid = ids_of(new.owner)
        os.chown(name, uid, gid, dir_fd=dir_fd, follow_symlinks=False)
    os.chmod(name, mode, dir_fd=dir_fd)
    if opts.times and new.mtime and new.is_file:
        os.utime(name, ns=(new.mtime, new.mtime), dir_fd=dir_fd, follow_symlinks=False)
