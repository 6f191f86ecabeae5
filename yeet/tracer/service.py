"""``yeet tracer``: the change journal of this host, for every yeet session on it.

One root-owned process keeps, per watched root, what changed: written byte
ranges from the BPF write tracer (``loader.Tracer``) and name changes from
fanotify (``fanotify.NameWatcher``: create, delete, rename, link, mkdir,
rmdir, chmod...). Sessions of any user ask it over a Unix socket "what
changed under ROOT since my cursor?" (``yeet.replica.changes`` is the
client); a one-shot ``yeet sync`` then re-lists only the directories named
and reads only the ranges named, instead of scanning the whole tree.

Invariant owned here: an answer with ``complete`` true names every directory
below the root whose listing changed and every file whose content changed
(with ranges covering every changed byte) since the cursor was issued, as far
as the asking user may know (directories it can ``lstat``, files it can read:
``peers.allowed_as``). Anything that makes that uncertain - another service
instance, kernel drops, a path that cannot be resolved, the root or a mount
inside it replaced, a file with several hard links, a failure anywhere in the
drain (``drain.Drain`` fails closed) - makes the answer incomplete, with the
reason; never silently short. What happens outside every root (files no root
holds, directories in no root) never makes an answer incomplete.

Protocol: one JSON object per line each way.
``{"op": "journal", "root": ABSPATH, "cursor": BASE64 | null}`` ->
``{"ok": true, "cursor": BASE64, "complete": bool, "reason": str,
"dirs": [relpath...], "files": [[relpath, [[start, end]...]]...]}`` where an
``end`` of -1 means "to the end of the file" (``[0, -1]``: the whole file);
errors are ``{"ok": false, "error": str}``.

Run it as a systemd service::

    # /etc/systemd/system/yeet-tracer.service
    [Unit]
    Description=yeet change journal (eBPF write tracer + fanotify)
    [Service]
    ExecStart=/usr/local/bin/yeet tracer
    Restart=on-failure
    [Install]
    WantedBy=multi-user.target

then ``systemctl enable --now yeet-tracer``. The socket is
``/run/yeet/tracer.sock`` (``--socket``; clients read ``YEET_TRACER_SOCKET``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import socket
import sys
import uuid

from yeet.model.errors import TracerUnavailable
from yeet.model.settings import TRACER_SOCKET, environment
from yeet.tracer import fanotify
from yeet.tracer.drain import Drain, Root
from yeet.tracer.inodes import InodeIndex
from yeet.tracer.journal import ChangeLog, Since, relative, within
from yeet.tracer.loader import FileId, Tracer
from yeet.tracer.peers import READ, SEE, Peer, allowed_as, peer_of
from yeet.tracer.ranges import END, WHOLE, Ranges, RangeSet
from yeet.tracer.roots import describe_change, layout_of

DEFAULT_SOCKET = TRACER_SOCKET
MAX_LINE = 1 << 20
MAX_ANSWER = 1_000_000  # more names than this: "rescan" is the cheaper answer
SETTLE = 0.05  # drain the write tracer this long after it first says "dirty"
CURSOR_VERSION = 1


def encode_cursor(instance: str, seq: int, root: str) -> bytes:
    return json.dumps([CURSOR_VERSION, instance, seq, root]).encode()


def decode_cursor(raw: bytes) -> tuple[str, int, str] | None:
    try:
        v, instance, seq, root = json.loads(raw)
    except (ValueError, TypeError):
        return None
    if v != CURSOR_VERSION or not isinstance(seq, int) or not isinstance(root, str):
        return None
    return str(instance), seq, root


def _wire_ranges(r: Ranges) -> list[list[int]]:
    if r is WHOLE:
        return [[0, -1]]
    assert isinstance(r, RangeSet)
    return [[s, -1 if e == END else e] for s, e in r]


class TracerService:
    """The journal and its socket: ``await serve()`` until cancelled, then ``close()``."""

    def __init__(self, socket_path: str, *, max_files: int = 65536) -> None:
        self.socket_path = socket_path
        self.instance = uuid.uuid4().hex
        self.log = ChangeLog()
        self.tracer = Tracer.open([], max_files=max_files)
        try:
            self.names = fanotify.NameWatcher()
        except BaseException:
            self.tracer.close()
            raise
        self.drainer = Drain(self.tracer, self.names, self.log)
        self._points: dict[str, int] = {}  # tracer roots -> users
        self._marks: dict[int, int] = {}  # fsid -> users
        self._arming: dict[str, asyncio.Future[Root]] = {}
        self._server: asyncio.AbstractServer | None = None
        self._drain_soon: asyncio.TimerHandle | None = None

    @property
    def roots(self) -> dict[str, Root]:
        return self.drainer.roots

    # ---- roots -----------------------------------------------------------------------

    async def _arm(self, path: str, reset: str) -> Root:
        layout = layout_of(path)
        points = [path, *layout.points]
        w = Root(path, layout, 0, reset, InodeIndex(points), points=points)
        problems = []
        for p in w.points:
            if self._points.get(p, 0) == 0:
                try:
                    self.tracer.add_root(p)
                except OSError as e:
                    problems.append(f"the write tracer cannot watch {p}: {e.strerror}")
                    continue
            self._points[p] = self._points.get(p, 0) + 1
        for p in w.points:
            try:
                fsid = self.names.mark(p)  # marking again is harmless (a remount drops marks)
            except OSError as e:
                problems.append(f"{p}: {e.strerror}")
                continue
            w.marks.append((fsid, p))
            self._marks[fsid] = self._marks.get(fsid, 0) + 1
        # in the journal's view from now on (names bound below it are added to its
        # index as the walk runs); cursors are good once the walk is done
        w.since = 1 << 62
        self.roots[path] = w
        self.drainer.rebuild_anchors()
        await asyncio.to_thread(w.index.build)
        if w.index.problem:
            problems.append(w.index.problem)
        w.problem = "; ".join(problems)
        w.since = self.log.tick()
        print(f"yeet tracer: watching {path} ({w.index.files} files)", file=sys.stderr, flush=True)
        return w

    def _disarm(self, w: Root) -> None:
        for p in w.points:
            n = self._points.get(p, 0) - 1
            if n <= 0:
                self._points.pop(p, None)
                with contextlib.suppress(OSError, ValueError):
                    self.tracer.remove_root(p)
            else:
                self._points[p] = n
        for fsid, _p in w.marks:
            n = self._marks.get(fsid, 0) - 1
            if n <= 0:
                self._marks.pop(fsid, None)
                self.names.unmark(fsid)
            else:
                self._marks[fsid] = n
        self.roots.pop(w.path, None)
        self.drainer.rebuild_anchors()

    async def _root_for(self, path: str) -> Root:
        """The armed root, re-armed if what the path names changed since."""
        if path in self._arming:  # another question armed it a moment ago
            return await asyncio.shield(self._arming[path])
        w = self.roots.get(path)
        if w is not None:
            now = layout_of(path)
            if now == w.layout:
                return w
            why = describe_change(w.layout, now)
            print(f"yeet tracer: {path}: {why}", file=sys.stderr, flush=True)
            self._disarm(w)
        else:
            why = "the change journal of this root starts now"
        fut: asyncio.Future[Root] = asyncio.ensure_future(self._arm(path, why))
        self._arming[path] = fut
        try:
            return await asyncio.shield(fut)
        finally:
            if fut.done():
                self._arming.pop(path, None)

    # ---- draining the kernel ------------------------------------------------------------

    def drain(self) -> None:
        """Move everything the kernel has reported into the journal, now (never raises)."""
        if self._drain_soon is not None:
            self._drain_soon.cancel()
            self._drain_soon = None
        self.drainer.run()

    def _schedule_writes(self) -> None:
        if self._drain_soon is None:
            loop = asyncio.get_running_loop()
            self._drain_soon = loop.call_later(SETTLE, self.drain)

    # ---- answering ------------------------------------------------------------------------

    async def journal(self, peer: Peer, root: str, raw_cursor: bytes | None) -> dict[str, object]:
        if not os.path.isabs(root):
            return {"ok": False, "error": f"not an absolute path: {root}"}
        # the asker's own verdict first: root must not tell them what exists where
        # they cannot look
        if not allowed_as(peer, [(root, READ)])[0]:
            return {"ok": False, "error": f"permission denied (or no such path): {root}"}
        root = os.path.realpath(root)
        if not os.path.isdir(root):
            return {"ok": False, "error": f"not a directory: {root}"}
        w = await self._root_for(root)  # armed first: the drain can then place its files
        self.drain()  # the answer reaches up to now
        reasons = [w.problem] if w.problem else []
        waiting = self.drainer.unplaced_for(w)
        if waiting:
            reasons.append("cannot find the path of a written file yet")
            print(
                f"yeet tracer: {root}: no path yet for {len(waiting)} written file(s): "
                + ", ".join(f"dev {f.dev} inode {f.ino}" for f in waiting[:4]),
                file=sys.stderr,
                flush=True,
            )
        cursor = decode_cursor(raw_cursor) if raw_cursor else None
        since: Since | None = None
        if not raw_cursor:
            reasons.append("the change journal starts now")
        elif cursor is None:
            reasons.append("not a cursor of this change journal")
        elif cursor[0] != self.instance:
            reasons.append("the tracer service restarted since the last sync")
        elif cursor[2] != root:
            reasons.append("the cursor belongs to another root")
        elif cursor[1] < w.since:
            reasons.append(w.reset)
        else:
            since = self.log.since(cursor[1], root)
            reasons += since.reasons
        answer: dict[str, object] = {
            "ok": True,
            "cursor": base64.b64encode(encode_cursor(self.instance, self.log.seq, root)).decode(),
        }
        if since is not None and not reasons:
            dirs, files, why = self._visible(peer, root, since)
            if why:
                reasons.append(why)
            else:
                answer["dirs"] = dirs
                answer["files"] = files
        answer["complete"] = not reasons
        answer["reason"] = "; ".join(dict.fromkeys(reasons))
        return answer

    def _visible(
        self, peer: Peer, root: str, since: Since
    ) -> tuple[list[str], list[list[object]], str]:
        """Relative dirs and files the peer may know about; or why the answer is incomplete."""
        files: dict[str, Ranges] = {}
        for key, _recorded, r in since.files:
            assert isinstance(key, FileId)
            found = self.tracer.locate(key)
            if found.path is None:
                if not found.known:
                    return [], [], "cannot find the path of a written file"
                continue
            if within(found.path, root):
                if any(within(found.path, b) for b in since.bound):
                    r = WHOLE  # moved onto a name bound since: not what was there
                files[found.path] = r
        dirs = set(since.dirs) | {os.path.dirname(p) for p in files}
        if len(dirs) + len(files) > MAX_ANSWER:
            return [], [], "more changes than the journal answers at once"
        order_d = sorted(d for d in dirs if within(d, root))
        order_f = sorted(files)
        checks = [(d, SEE) for d in order_d] + [(f, READ) for f in order_f]
        checks += [(f, SEE) for f in order_f]
        ok = allowed_as(peer, checks)
        nd, nf = len(order_d), len(order_f)
        ok_d, read_f, see_f = ok[:nd], ok[nd : nd + nf], ok[nd + nf :]
        for f, seen in zip(order_f, see_f, strict=True):
            if not seen:
                continue
            try:
                links = os.lstat(f).st_nlink
            except OSError:
                continue
            if links > 1:
                return [], [], "a changed file has several hard links (its other names are unknown)"
        out_d = [relative(d, root) for d, good in zip(order_d, ok_d, strict=True) if good]
        out_f: list[list[object]] = [
            [relative(f, root), _wire_ranges(files[f])]
            for f, good in zip(order_f, read_f, strict=True)
            if good
        ]
        return out_d, out_f, ""

    # ---- socket ----------------------------------------------------------------------------

    async def serve(self, ready: asyncio.Event | None = None) -> None:
        loop = asyncio.get_running_loop()
        self.tracer.attach_loop(loop, on_dirty=self._schedule_writes)
        loop.add_reader(self.names.fileno(), self.drainer.names)
        _claim_socket(self.socket_path)
        self._server = await asyncio.start_unix_server(
            self._client, path=self.socket_path, limit=MAX_LINE
        )
        os.chmod(self.socket_path, 0o666)  # anyone may ask; answers are per user
        print(f"yeet tracer: serving on {self.socket_path}", file=sys.stderr, flush=True)
        if ready is not None:
            ready.set()
        async with self._server:
            await self._server.serve_forever()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = peer_of(writer.get_extra_info("socket"))
        try:
            while line := await reader.readline():
                reply = await self.reply(peer, line)
                writer.write(json.dumps(reply).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            writer.close()

    async def reply(self, peer: Peer, line: bytes) -> dict[str, object]:
        """The answer to one request line; never raises (a failure is an error
        answer, which the asker turns into "incomplete": it scans)."""
        try:
            return await self._handle(peer, json.loads(line))
        except (ValueError, KeyError, TypeError) as e:
            return {"ok": False, "error": f"bad request: {e}"}
        except OSError as e:
            return {"ok": False, "error": f"{e.filename or 'root'}: {e.strerror}"}
        except Exception as e:
            print(f"yeet tracer: answering failed: {e!r}", file=sys.stderr, flush=True)
            return {"ok": False, "error": f"the change journal failed to answer: {e}"}

    async def _handle(self, peer: Peer, req: dict[str, object]) -> dict[str, object]:
        op = req["op"]
        if op == "journal":
            cursor = req.get("cursor")
            if cursor is not None and not isinstance(cursor, str):
                raise TypeError("cursor must be base64 text or null")
            raw = base64.b64decode(cursor, validate=True) if cursor is not None else None
            return await self.journal(peer, str(req["root"]), raw)
        return {"ok": False, "error": f"unknown op {op!r}"}

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
        if self._drain_soon is not None:
            self._drain_soon.cancel()
        self.names.close()
        self.tracer.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)


def _claim_socket(path: str) -> None:
    """Take over ``path`` unless a live service answers there."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return
    finally:
        probe.close()
    raise TracerUnavailable(f"another yeet tracer is already serving {path}")


def run(socket_path: str | None = None, *, max_files: int = 65536) -> int:
    """Run the service in the foreground until SIGINT/SIGTERM (``yeet tracer``).

    Raises ``TracerUnavailable`` saying why it cannot run here.
    """
    import signal

    if os.geteuid() != 0:
        raise TracerUnavailable(
            "`yeet tracer` must run as root (it loads BPF programs and watches "
            "whole filesystems with fanotify)",
            hint="run it as a systemd service; sessions of any user then ask it",
        )
    path = socket_path or environment().tracer_socket
    parent = os.path.dirname(path) or "."
    os.makedirs(parent, mode=0o755, exist_ok=True)
    service = TracerService(path, max_files=max_files)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.ensure_future(service.serve())
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    try:
        asyncio.run(main())
    finally:
        service.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m yeet.tracer.service [--socket PATH]`` (the same as ``yeet tracer``)."""
    import argparse

    ap = argparse.ArgumentParser(prog="yeet tracer", description=__doc__.split("\n\n")[0])
    ap.add_argument("--socket", default=None, help=f"default: {DEFAULT_SOCKET}")
    ap.add_argument("--max-files", type=int, default=65536, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    try:
        return run(args.socket, max_files=args.max_files)
    except TracerUnavailable as e:
        print(f"yeet tracer: {e.user_message()}", file=sys.stderr)
        return e.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
