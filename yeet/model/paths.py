"""Relative paths inside a synchronised root: validation, joining and ordering.

Invariant owned here: a *relpath* is a ``str`` of ``/``-separated, non-empty
components, none of them ``.`` or ``..``, with no NUL, no leading or trailing
slash; the root itself is ``""``. Anything else is rejected by ``check_relpath``
before it reaches the disk. Pure: no I/O.

Ordering: ``sort_key`` maps a path to a key under which every subtree is
contiguous and follows its root (``"a" < "a/b" < "a-b"``), by ranking the
separator below every byte a name can contain.
"""

from __future__ import annotations


class BadPath(ValueError):
    """A path that must not be used inside a root."""


def check_relpath(path: str) -> str:
    """Return ``path`` if it is a valid relpath, else raise ``BadPath``."""
    if path == "":
        return path
    if "\x00" in path:
        raise BadPath(f"path contains NUL: {path!r}")
    if path.startswith("/"):
        raise BadPath(f"absolute path not allowed: {path!r}")
    for part in path.split("/"):
        if part in ("", ".", ".."):
            raise BadPath(f"path component {part!r} not allowed: {path!r}")
    return path


def join(parent: str, name: str) -> str:
    return f"{parent}/{name}" if parent else name


def parent_of(path: str) -> str:
    i = path.rfind("/")
    return path[:i] if i >= 0 else ""


def name_of(path: str) -> str:
    return path[path.rfind("/") + 1 :]


def is_within(path: str, root: str) -> bool:
    """True when ``path`` is ``root`` or lies below it."""
    if root == "":
        return True
    return path == root or path.startswith(root + "/")


def sort_key(path: str) -> str:
    """Key that keeps each subtree contiguous, right after its root."""
    return path.replace("/", "\x00")


def depth(path: str) -> int:
    return 0 if path == "" else path.count("/") + 1
