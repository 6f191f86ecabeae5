"""A session's identity file: ``session.json`` next to its ``state.db``.

Invariant owned here: what a session *is* (its two addresses and the format they
were written in, the roots they resolved to, its digest, jump hosts, creation time
and the options given) is kept outside the database too, replaced atomically
(written, made durable, renamed) whenever it changes. A damaged database that is
set aside therefore never loses where the session's trees are: the new database
starts from this file, and commands that only read can name the endpoints of a
session whose database they cannot open.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from yeet.state.sessions import IDENTITY_FILE

FILE = IDENTITY_FILE

KEYS = (
    "alpha",
    "beta",
    "addresses",
    "alpha_root",
    "beta_root",
    "via",
    "digest",
    "created",
    "mode",
    "ignores",
    "ignore_vcs",
    "symlinks",
    "trash_days",
    "permissions",
    "owner",
    "times",
    "max_delete",
)


def read(directory: Path) -> dict[str, Any] | None:
    """The identity of the session in ``directory``; None if it has none (or it is unreadable)."""
    try:
        doc = json.loads((directory / FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("alpha"), str):
        return None
    return {k: doc[k] for k in KEYS if k in doc}


def write(directory: Path, doc: dict[str, Any]) -> None:
    """Replace the identity file with ``doc`` (its ``KEYS`` only), durably."""
    target = directory / FILE
    tmp = directory / f".{FILE}.tmp"
    data = json.dumps({k: doc[k] for k in KEYS if k in doc}, indent=1).encode()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, target)
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
