"""Asking this host's change journal (the ``yeet tracer`` service) what changed.

Invariant owned here: ``ask()`` never returns ``complete=True`` unless the
service said so for exactly this root and cursor; every failure - no
service, not Linux, a refused or garbled answer, a timeout - becomes
``complete=False`` with a reason the user can act on, never an exception
and never an empty answer that looks trustworthy.

Standard library only and Python 3.9-clean: the remote agent runs this
against the service on *its* host.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import sys
from collections.abc import Callable
from typing import Any

from yeet.contract.values import Changes
from yeet.model.settings import TRACER_SOCKET, environment

DEFAULT_SOCKET = TRACER_SOCKET
TIMEOUT = 60.0


def socket_path() -> str:
    """Where the service listens: ``$YEET_TRACER_SOCKET``, else ``/run/yeet/tracer.sock``."""
    return environment().tracer_socket


def _unavailable(since: bytes | None, reason: str) -> Changes:
    return Changes(cursor=since or b"", complete=False, reason=reason)


def ask(root: str, since: bytes | None, path: str | None = None) -> Changes:
    """What changed under ``root`` since ``since`` (``None``: start journalling now)."""
    path = path or socket_path()
    host = socket.gethostname()
    if not sys.platform.startswith("linux"):
        return _unavailable(
            since, f"no change journal on {host}: it needs Linux (eBPF and fanotify); scanning"
        )
    try:
        reply = _call(path, {"op": "journal", "root": os.path.abspath(root), "cursor": _b64(since)})
    except FileNotFoundError:
        return _unavailable(
            since, f"no change journal on {host}: start `yeet tracer` (as root; see {path})"
        )
    except ConnectionRefusedError:
        return _unavailable(
            since, f"no change journal on {host}: nothing listens on {path} (start `yeet tracer`)"
        )
    except (OSError, ValueError) as err:
        return _unavailable(since, f"the change journal on {host} did not answer: {err}")
    if not reply.get("ok"):
        return _unavailable(since, f"the change journal on {host} refused: {reply.get('error')}")
    try:
        return _changes(reply)
    except (KeyError, TypeError, ValueError) as err:
        return _unavailable(since, f"the change journal on {host} sent nonsense: {err}")


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode()


def _call(path: str, request: Any) -> Any:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(TIMEOUT)
    try:
        sock.connect(path)
        sock.sendall(json.dumps(request).encode() + b"\n")
        chunks = []
        while True:
            chunk = sock.recv(1 << 20)
            if not chunk:
                raise ValueError("the service closed the connection")
            chunks.append(chunk)
            if chunk.endswith(b"\n"):
                break
    finally:
        sock.close()
    reply = json.loads(b"".join(chunks))
    if not isinstance(reply, dict):
        raise ValueError("not an object")
    return reply


def _changes(reply: Any) -> Changes:
    files: list[tuple[str, tuple[tuple[int, int], ...]]] = []
    for path, ranges in reply.get("files", []):
        files.append((str(path), tuple((int(s), int(e)) for s, e in ranges)))
    complete = reply["complete"]
    if not isinstance(complete, bool):
        raise TypeError("complete is not a boolean")
    return Changes(
        cursor=base64.b64decode(reply["cursor"], validate=True),
        complete=complete,
        dirs=tuple(str(d) for d in reply.get("dirs", [])),
        files=tuple(files),
        reason=str(reply.get("reason", "")),
    )


def without_ignored(changes: Changes, ignored: Callable[[str, bool], bool]) -> Changes:
    """``changes`` minus what lies in ignored paths (``ignored(relpath, is_dir)``):
    a scan never looks there, so neither may a pass scoped by the journal."""

    def hidden(path: str, is_dir: bool) -> bool:
        parts = path.split("/") if path else []
        for i in range(1, len(parts)):
            if ignored("/".join(parts[:i]), True):
                return True
        return bool(parts) and ignored(path, is_dir)

    return Changes(
        cursor=changes.cursor,
        complete=changes.complete,
        dirs=tuple(d for d in changes.dirs if not hidden(d, True)),
        files=tuple((f, r) for f, r in changes.files if not hidden(f, False)),
        reason=changes.reason,
    )
