"""Client of the ``yeet tracer`` service (see ``service.py``), for unprivileged sessions.

Invariant owned here: a ``Changes`` with ``rescan=False`` is the service's
promise that it lists every change under the root since the cursor; anything
else (no service, an error, another service instance) surfaces as
``rescan=True`` or an exception - never as an empty, trustworthy answer.
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass

from yeet.errors import TracerUnavailable
from yeet.tracer.loader import FileId
from yeet.tracer.ranges import WHOLE, Ranges, RangeSet

DEFAULT_SOCKET = "/run/yeet/tracer.sock"


@dataclass(frozen=True)
class Cursor:
    """Where a session stands in a service's journal (store it between syncs)."""

    instance: str
    seq: int


@dataclass(frozen=True)
class Changes:
    files: dict[str, tuple[FileId, Ranges]]  # path -> (identity, dirty bytes)
    cursor: Cursor
    rescan: bool
    reasons: tuple[str, ...]


class TracerClient:
    def __init__(self, socket_path: str = DEFAULT_SOCKET, timeout: float = 30.0) -> None:
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        try:
            self._sock.connect(socket_path)
        except OSError as e:
            self._sock.close()
            raise TracerUnavailable(f"no yeet tracer service at {socket_path} ({e})") from e
        self._buf = b""

    def _call(self, req: dict[str, object]) -> dict[str, object]:
        self._sock.sendall(json.dumps(req).encode() + b"\n")
        while b"\n" not in self._buf:
            chunk = self._sock.recv(1 << 16)
            if not chunk:
                raise TracerUnavailable("the yeet tracer service closed the connection")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        reply = json.loads(line)
        if not isinstance(reply, dict):
            raise TracerUnavailable("the yeet tracer service sent nonsense")
        if not reply.get("ok"):
            raise PermissionError(str(reply.get("error")))
        return reply

    def watch(self, root: str) -> Cursor:
        """Ask the service to journal ``root``; returns the cursor of "now"."""
        r = self._call({"op": "watch", "root": root})
        return Cursor(str(r["instance"]), int(str(r["cursor"])))

    def changes(self, root: str, since: Cursor) -> Changes:
        r = self._call(
            {"op": "changes", "root": root, "instance": since.instance, "cursor": since.seq}
        )
        files: dict[str, tuple[FileId, Ranges]] = {}
        raw = r["files"]
        assert isinstance(raw, list)
        for f in raw:
            fid = FileId(int(f["dev"]), int(f["ino"]), int(f["gen"]))
            rs: Ranges = WHOLE if f["whole"] else RangeSet(tuple(x) for x in f["ranges"])
            files[str(f["path"])] = (fid, rs)
        reasons = r["reasons"]
        assert isinstance(reasons, list)
        return Changes(
            files,
            Cursor(str(r["instance"]), int(str(r["cursor"]))),
            bool(r["rescan"]),
            tuple(str(x) for x in reasons),
        )

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> TracerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
