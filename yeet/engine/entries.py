"""What a path holds, as a value: the vocabulary every other module speaks.

Invariant owned here: two entries are *the same content* exactly when they are
equal as values (``==``). For files that means same digest and same executable
bit (the size follows from the digest); for symlinks the same target; all
directories are equal to each other (their contents are compared path by path).
``SPECIAL`` entries (sockets, FIFOs, devices, links leaving the root, unreadable
files) are never synchronised: they are reported as problems and block changes
that would have to delete them.
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
        if self.kind is Kind.FILE:
            x = " +x" if self.executable else ""
            return f"file {self.size} B {self.digest.hex()[:12]}{x}"
        if self.kind is Kind.DIRECTORY:
            return "dir"
        if self.kind is Kind.SYMLINK:
            return f"symlink -> {self.target}"
        return f"special ({self.reason})"


DIRECTORY = Entry(Kind.DIRECTORY)


def file_entry(digest: bytes, size: int, executable: bool = False) -> Entry:
    return Entry(Kind.FILE, digest=digest, size=size, executable=executable)


def symlink_entry(target: str) -> Entry:
    return Entry(Kind.SYMLINK, target=target)


def special_entry(reason: str) -> Entry:
    return Entry(Kind.SPECIAL, reason=reason)


def is_dir(entry: Entry | None) -> bool:
    return entry is not None and entry.kind is Kind.DIRECTORY


def is_special(entry: Entry | None) -> bool:
    return entry is not None and entry.kind is Kind.SPECIAL


class Problem(msgspec.Struct, frozen=True):
    """A per-path failure: data, not an exception. ``side`` is ``alpha``/``beta``/``""``."""

    path: str
    reason: str
    side: str = ""


def describe_change(before: Entry | None, after: Entry | None) -> str:
    """One word (or two) for what happened to a path between two states.

    Used by ``yeet conflicts``: ``created``, ``deleted``, ``modified``,
    ``exec-changed``, ``became-dir``/``became-file``/``became-symlink``, ``unchanged``.
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
    if after.is_file and before.digest == after.digest:
        return "exec-changed"
    if after.is_dir:
        return "modified-contents"
    return "modified"


_listing_encoder = msgspec.msgpack.Encoder()


def listing_digest(entries: Mapping[str, Entry]) -> bytes:
    """A digest of a directory listing: equal exactly when the listings are equal."""
    items = sorted((n.encode("utf-8", "surrogateescape"), e) for n, e in entries.items())
    data = _listing_encoder.encode(items)
    return hashlib.blake2b(data, digest_size=16).digest()
