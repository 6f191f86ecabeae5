"""``yeet tracer``: the privileged change-journal service for unprivileged sessions.

One root-owned process loads the kernel tracer and keeps a journal of dirty
ranges. Sessions (any user) connect to a Unix socket and ask "what changed
under ROOT since my cursor?"; cursors belong to the clients (a one-shot
``yeet sync`` stores its cursor and asks again next time).

Invariant owned here: an answer either covers every change under the root
since the cursor, or says ``rescan`` (the journal was restarted - another
``instance`` - or trimmed past the cursor, or the kernel reported drops). And
it names only files the asking user (``SO_PEERCRED``) may read: the service
checks every path by ``access(R_OK)`` in a child process running as that
user, and refuses roots the user cannot read.

Protocol: one JSON object per line each way (see ``client.py``):
``{"op": "watch", "root": R}`` -> ``{"ok", "instance", "cursor", ...}``;
``{"op": "changes", "root": R, "instance": I, "cursor": N}`` ->
``{"ok", "instance", "cursor", "rescan", "reasons", "files": [{"path", "dev",
"ino", "gen", "whole", "ranges"}]}``; errors are ``{"ok": false, "error"}``.

Run it as a systemd service (the lead wires ``yeet tracer`` to ``main()``)::

    # /etc/systemd/system/yeet-tracer.service
    [Unit]
    Description=yeet write tracer (change journal for yeet sessions)
    [Service]
    ExecStart=/usr/bin/yeet tracer --socket /run/yeet/tracer.sock
    RuntimeDirectory=yeet
    RuntimeDirectoryMode=0755
    Restart=on-failure
    [Install]
    WantedBy=multi-user.target
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pwd
import socket
import struct
import uuid
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from yeet.tracer.loader import FileId, Tracer
from yeet.tracer.ranges import WHOLE, Ranges, RangeSet, merge

MAX_JOURNAL = 200_000
MAX_LINE = 1 << 20


@dataclass(frozen=True)
class Peer:
    pid: int
    uid: int
    gid: int


@dataclass
class _Entry:
    seq: int
    fid: FileId | None  # None: a rescan marker for everyone
    ranges: Ranges
    path: str | None
    reason: str = ""


@dataclass
class Journal:
    """Changes in arrival order, each with a sequence number (the cursor)."""

    instance: str = field(default_factory=lambda: uuid.uuid4().hex)
    seq: int = 0
    trimmed: int = 0  # entries with seq <= trimmed are gone
    entries: deque[_Entry] = field(default_factory=deque)

    def append(
        self, fid: FileId | None, ranges: Ranges, path: str | None, reason: str = ""
    ) -> None:
        self.seq += 1
        self.entries.append(_Entry(self.seq, fid, ranges, path, reason))
        while len(self.entries) > MAX_JOURNAL:
            self.trimmed = self.entries.popleft().seq

    def since(self, cursor: int) -> tuple[list[_Entry], list[str]]:
        """Entries after ``cursor``, and why a rescan is needed (empty: none)."""
        reasons = []
        if cursor < self.trimmed:
            reasons.append("the journal no longer reaches back to this cursor")
        out = [e for e in self.entries if e.seq > cursor]
        reasons += [e.reason for e in out if e.fid is None]
        return [e for e in out if e.fid is not None], reasons


def peer_of(sock: socket.socket) -> Peer:
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    return Peer(pid, uid, gid)


def readable_as(peer: Peer, paths: list[str]) -> list[bool]:
    """For each path: may ``peer`` open it for reading? Checked by the kernel,
    in a child that takes on the peer's uid, gid and supplementary groups."""
    if not paths:
        return []
    if peer.uid == 0:
        return [os.path.exists(p) for p in paths]
    try:  # in the parent: the child only makes system calls
        groups = os.getgrouplist(pwd.getpwuid(peer.uid).pw_name, peer.gid)
    except KeyError:
        groups = [peer.gid]
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns
        code = 0
        try:
            os.close(r)
            os.setgroups(groups)
            os.setgid(peer.gid)
            os.setuid(peer.uid)
            verdict = b"".join(b"1" if os.access(p, os.R_OK) else b"0" for p in paths)
            os.write(w, verdict)
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(w)
    data = b""
    while chunk := os.read(r, 65536):
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    if len(data) != len(paths):
        return [False] * len(paths)
    return [c == ord("1") for c in data]


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _encode(r: Ranges) -> dict[str, object]:
    if r is WHOLE:
        return {"whole": True}
    assert isinstance(r, RangeSet)
    return {"whole": False, "ranges": [list(x) for x in r]}


class TracerService:
    """The service: ``await serve()`` until ``close()``."""

    def __init__(self, socket_path: str, *, max_files: int = 65536) -> None:
        self.socket_path = socket_path
        self.journal = Journal()
        self.tracer = Tracer.open([], max_files=max_files)
        self._roots: dict[str, int] = {}  # root -> refcount (one per (uid, root))
        self._since: dict[str, int] = {}  # root -> journal seq when watching began
        self._watchers: set[tuple[int, str]] = set()
        self._server: asyncio.AbstractServer | None = None

    # ---- journal -------------------------------------------------------------

    def drain(self) -> None:
        d = self.tracer.dirty_files()
        if d.rescan:
            self.journal.append(None, WHOLE, None, "; ".join(d.reasons))
        for fid, r in d.items():
            self.journal.append(fid, r, self.tracer.path_of(fid))

    def changes(self, peer: Peer, root: str, instance: str, cursor: int) -> dict[str, object]:
        self.drain()  # the answer reaches up to now
        if instance != self.journal.instance:
            return self._answer(rescan=["the tracer service restarted"])
        entries, reasons = self.journal.since(cursor)
        if cursor < self._since.get(root, 0):
            reasons.append("the service began watching this root after the cursor")
        merged: dict[FileId, Ranges] = {}
        paths: dict[FileId, str] = {}
        for e in entries:
            assert e.fid is not None
            if e.path is None or not _under(e.path, root):
                continue
            merged[e.fid] = merge(merged[e.fid], e.ranges) if e.fid in merged else e.ranges
            paths[e.fid] = e.path
        order = list(merged)
        root_ok, *allowed = readable_as(peer, [root] + [paths[f] for f in order])
        if not root_ok:
            return {"ok": False, "error": f"permission denied: {root}"}
        files = [
            {"path": paths[f], "dev": f.dev, "ino": f.ino, "gen": f.gen, **_encode(merged[f])}
            for f, ok in zip(order, allowed, strict=True)
            if ok
        ]
        return self._answer(files=files, rescan=reasons)

    def _answer(
        self, files: Iterable[dict[str, object]] = (), rescan: list[str] | None = None
    ) -> dict[str, object]:
        return {
            "ok": True,
            "instance": self.journal.instance,
            "cursor": self.journal.seq,
            "rescan": bool(rescan),
            "reasons": rescan or [],
            "files": list(files),
        }

    def watch(self, peer: Peer, root: str) -> dict[str, object]:
        if not os.path.isabs(root) or not os.path.isdir(root):
            return {"ok": False, "error": f"not an absolute directory: {root}"}
        root = os.path.realpath(root)
        if not readable_as(peer, [root])[0]:
            return {"ok": False, "error": f"permission denied: {root}"}
        if (peer.uid, root) not in self._watchers:
            self._watchers.add((peer.uid, root))
            if root not in self._roots:
                self.tracer.add_root(root)
                # a fresh sequence number: cursors handed out before it predate
                # the watch even when nothing was journaled in between
                self.journal.seq += 1
                self._since[root] = self.journal.seq
            self._roots[root] = self._roots.get(root, 0) + 1
        self.drain()
        return self._answer() | {"root": root}

    # ---- socket ----------------------------------------------------------------

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        self.tracer.attach_loop(loop, on_dirty=self.drain)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)
        self._server = await asyncio.start_unix_server(
            self._client, path=self.socket_path, limit=MAX_LINE
        )
        os.chmod(self.socket_path, 0o666)  # anyone may ask; answers are per user
        async with self._server:
            await self._server.serve_forever()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        peer = peer_of(sock)
        try:
            while line := await reader.readline():
                try:
                    req = json.loads(line)
                    reply = self._handle(peer, req)
                except (ValueError, KeyError, TypeError) as e:
                    reply = {"ok": False, "error": f"bad request: {e}"}
                writer.write(json.dumps(reply).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            writer.close()

    def _handle(self, peer: Peer, req: dict[str, object]) -> dict[str, object]:
        op = req["op"]
        if op == "watch":
            return self.watch(peer, str(req["root"]))
        if op == "changes":
            root = os.path.realpath(str(req["root"]))
            if (peer.uid, root) not in self._watchers:
                w = self.watch(peer, root)  # e.g. after a service restart
                if not w["ok"]:
                    return w
            cursor = req["cursor"]
            if not isinstance(cursor, int):
                raise TypeError("cursor must be an integer")
            return self.changes(peer, root, str(req["instance"]), cursor)
        return {"ok": False, "error": f"unknown op {op!r}"}

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self.tracer.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)


def main(argv: list[str] | None = None) -> int:
    """``python -m yeet.tracer.service [--socket PATH]`` (the lead wires ``yeet tracer``)."""
    import argparse
    import signal

    ap = argparse.ArgumentParser(prog="yeet tracer")
    ap.add_argument("--socket", default="/run/yeet/tracer.sock")
    args = ap.parse_args(argv)
    os.makedirs(os.path.dirname(args.socket) or ".", mode=0o755, exist_ok=True)
    service = TracerService(args.socket)

    async def run() -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.ensure_future(service.serve())
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    try:
        asyncio.run(run())
    finally:
        service.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
