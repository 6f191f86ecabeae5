"""What a path holds, as a value: the vocabulary every other module speaks.

Invariant owned here: two entries are *the same* exactly when they are equal as
values (``==``). For files that means same digest, same permission bits (and,
where the session syncs them, owner and modification time; the size follows
from the digest); for directories the same permission bits (their contents are
compared path by path); for symlinks the same target. ``SPECIAL`` entries
(sockets, FIFOs, devices, links leaving the root, unreadable files) are never
synchronised: they are reported as problems and block changes that would have
to delete them.

Metadata that an entry does not know is ``0``/``""`` (``mode``, ``owner``,
``mtime``): entries recorded by an older yeet (before permissions were synced)
or fields the session does not sync. ``kept`` compares a side with the
ancestor ignoring what the ancestor does not know, so an upgrade never turns
into conflicts. ``mode`` holds the file type and the permission bits
(``0o777``; a file without any bits is ``0o100000``, not unknown): setuid,
setgid and sticky are never synchronised.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Mapping

import msgspec


class Kind(enum.IntEnum):
    DIRECTORY = 1
    FILE = 2
    SYMLINK = 3
    SPECIAL = 4


class Entry(msgspec.Struct, frozen=True, array_like=True, omit_defaults=True):
    """The synchronisable state of one path (never its name)."""

    kind: Kind
    digest: bytes = b""
    size: int = 0
    executable: bool = False
    target: str = ""
    reason: str = ""
    mode: int = 0  # file type | permission bits (0o777); 0: unknown (not recorded)
    owner: str = ""  # "user:group" (``--owner``); "": not synced
    mtime: int = 0  # modification time in ns (``--times``); 0: not synced

    @property
    def is_dir(self) -> bool:
        return self.kind is Kind.DIRECTORY

    @property
    def is_file(self) -> bool:
        return self.kind is Kind.FILE

    @property
    def is_symlink(self) -> bool:
        return self.kind is Kind.SYMLINK

    @property
    def is_special(self) -> bool:
        return self.kind is Kind.SPECIAL

    def short(self) -> str:
        """A human description: ``file 1234 B abcd1234``, ``dir``, ``symlink -> x``."""
        meta = f" {self.mode & PERMISSION_BITS:04o}" if self.mode else ""
        if self.owner:
            meta += f" {self.owner}"
        if self.kind is Kind.FILE:
            x = " +x" if self.executable and not self.mode else ""
            return f"file {self.size} B {self.digest.hex()[:12]}{x}{meta}"
        if self.kind is Kind.DIRECTORY:
            return f"dir{meta}"
        if self.kind is Kind.SYMLINK:
            return f"symlink -> {self.target}"
        return f"special ({self.reason})"


DIRECTORY = Entry(Kind.DIRECTORY)
"""A directory whose permission bits are not known."""

PERMISSION_BITS = 0o777
_S_IFDIR, _S_IFREG = 0o040000, 0o100000


def file_entry(
    digest: bytes,
    size: int,
    executable: bool = False,
    mode: int = 0,
    owner: str = "",
    mtime: int = 0,
) -> Entry:
    """A file; with ``mode`` (``st_mode``), ``executable`` is its owner's exec bit."""
    if mode:
        executable = bool(mode & 0o100)
        mode = _S_IFREG | mode & PERMISSION_BITS
    return Entry(
        Kind.FILE,
        digest=digest,
        size=size,
        executable=executable,
        mode=mode,
        owner=owner,
        mtime=mtime,
    )


def dir_entry(mode: int = 0, owner: str = "") -> Entry:
    """A directory; ``mode`` is its ``st_mode`` (0: bits unknown)."""
    return Entry(Kind.DIRECTORY, mode=_S_IFDIR | mode & PERMISSION_BITS if mode else 0, owner=owner)


def symlink_entry(target: str) -> Entry:
    return Entry(Kind.SYMLINK, target=target)


def special_entry(reason: str) -> Entry:
    return Entry(Kind.SPECIAL, reason=reason)


def is_dir(entry: Entry | None) -> bool:
    return entry is not None and entry.kind is Kind.DIRECTORY


def is_special(entry: Entry | None) -> bool:
    return entry is not None and entry.kind is Kind.SPECIAL


def portable(entry: Entry | None) -> Entry | None:
    """What ``--permissions portable`` compares: the exec bit, not the other mode bits."""
    if entry is None or not entry.mode:
        return entry
    return msgspec.structs.replace(entry, mode=0)


def kept(ancestor: Entry | None, entry: Entry | None) -> bool:
    """``entry`` is what ``ancestor`` recorded, as far as the ancestor knows: metadata
    it did not record (an older yeet, a field the session did not sync) is ignored."""
    if ancestor == entry:
        return True
    if ancestor is None or entry is None or ancestor.kind is not entry.kind:
        return False
    known = msgspec.structs.replace(
        entry,
        mode=entry.mode if ancestor.mode else 0,
        owner=entry.owner if ancestor.owner else "",
        mtime=entry.mtime if ancestor.mtime else 0,
    )
    return known == ancestor


def same_content(x: Entry | None, y: Entry | None) -> bool:
    """Same kind and content (digest, size, target): they may differ in metadata only."""
    return (
        x is not None
        and y is not None
        and x.kind is y.kind
        and x.digest == y.digest
        and x.size == y.size
        and x.target == y.target
    )


def narrower(x: Entry, y: Entry) -> bool:
    """``x``'s permission bits are a subset of ``y``'s (it is at most as open)."""
    return x.mode & ~y.mode & PERMISSION_BITS == 0


class Problem(msgspec.Struct, frozen=True):
    """A per-path failure: data, not an exception. ``side`` is ``alpha``/``beta``/``""``."""

    path: str
    reason: str
    side: str = ""


def describe_change(before: Entry | None, after: Entry | None) -> str:
    """One word (or two) for what happened to a path between two states.

    Used by ``yeet conflicts``: ``created``, ``deleted``, ``modified``,
    ``exec-changed``, ``mode-changed``, ``owner-changed``, ``time-changed``,
    ``became-dir``/``became-file``/``became-symlink``, ``unchanged``.
    """
    if before == after:
        return "unchanged"
    if before is None:
        return "created" if after is None or not after.is_dir else "created-dir"
    if after is None:
        return "deleted"
    if before.kind is not after.kind:
        return {
            Kind.DIRECTORY: "became-dir",
            Kind.FILE: "became-file",
            Kind.SYMLINK: "became-symlink",
            Kind.SPECIAL: "became-special",
        }[after.kind]
    if same_content(before, after):
        if before.is_file and before.executable != after.executable:
            return "exec-changed"
        if before.mode != after.mode and before.mode and after.mode:
            return "mode-changed"
        if before.owner != after.owner:
            return "owner-changed"
        if before.mtime != after.mtime:
            return "time-changed"
        return "mode-changed" if before.mode != after.mode else "unchanged"
    if after.is_dir:
        return "modified-contents"
    return "modified"


_listing_encoder = msgspec.msgpack.Encoder()


def listing_digest(entries: Mapping[str, Entry]) -> bytes:
    """A digest of a directory listing: equal exactly when the listings are equal."""
    items = sorted((n.encode("utf-8", "surrogateescape"), e) for n, e in entries.items())
    data = _listing_encoder.encode(items)
    return hashlib.blake2b(data, digest_size=16).digest()
