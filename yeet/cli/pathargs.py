"""What a PATH argument of ``diff``, ``resolve`` and ``trash --restore`` names.

Invariant owned here: a PATH argument becomes a relpath inside the session's
roots or the command fails with a usage error (exit 2) saying why; it is never
silently reinterpreted. The argument may be in the quoted form yeet prints
(``yeet.model.quoting``); ``.`` is the root itself; a trailing ``/`` marks "what
is under it"; an absolute path is taken relative to a *local* root it lies in
(as given or through symlinks of its parent directories), and refused otherwise.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass

from yeet.core.decisions import Side
from yeet.model.address import parse
from yeet.model.errors import UsageError
from yeet.model.paths import BadPath, check_relpath
from yeet.model.quoting import quote, unquote


@dataclass(frozen=True)
class PathArg:
    path: str  # the relpath ("" is the root)
    under: bool  # given as DIR/ (or the root): what lies below it


def local_roots(addresses: Mapping[Side, str]) -> dict[Side, str]:
    """The roots of a session that are directories on this machine."""
    out = {}
    for side, address in addresses.items():
        loc = parse(address)
        if loc.is_local:
            out[side] = loc.path
    return out


def path_argument(text: str, roots: Mapping[Side, str]) -> PathArg:
    """``text`` (as typed) as a relpath; ``roots``: the session's local roots."""
    name = unquote(text)
    if name == "":
        raise UsageError(
            "the path is empty", hint="give a path relative to the roots, or . for all"
        )
    under = name.endswith("/")
    if name.startswith("/"):
        rel = _inside(name, roots)
    else:
        rel = posixpath.normpath(name)
        if rel == ".":
            rel = ""
    if rel == "":
        return PathArg("", True)
    try:
        check_relpath(rel)
    except BadPath as err:
        raise UsageError(
            f"{quote(name)} is not a path inside the roots ({err})",
            hint="give the path relative to the synchronised roots",
        ) from None
    return PathArg(rel, under)


def _inside(name: str, roots: Mapping[Side, str]) -> str:
    path = posixpath.normpath(name)
    for root in roots.values():
        for base, target in ((root, path), (_real(root), _real_parent(path))):
            base = posixpath.normpath(base)
            if target == base:
                return ""
            if target.startswith(base.rstrip("/") + "/"):
                return target[len(base.rstrip("/")) + 1 :]
    where = ", ".join(f"{s}: {quote(r)}" for s, r in roots.items()) or "none is on this machine"
    raise UsageError(
        f"{quote(name)} is an absolute path outside the session's local roots ({where})",
        hint="give the path relative to the roots",
    )


def _real(path: str) -> str:
    return os.path.realpath(path)


def _real_parent(path: str) -> str:
    """``path`` with its parent directories' symlinks resolved (not the last name:
    that is the entry the command is about, a symlink or not)."""
    head, tail = posixpath.split(path)
    return posixpath.join(os.path.realpath(head), tail) if tail else os.path.realpath(path)
