"""``yeet tracer``: the change journal of this host, for every yeet session on it.

One root-owned process keeps, per watched root, what changed: written byte
ranges from the BPF write tracer (``loader.Tracer``) and name changes from
fanotify (``fanotify.NameWatcher``: create, delete, rename, link, mkdir,
rmdir, chmod...). Sessions of any user ask it over a Unix socket "what
changed under ROOT since my cursor?" (``yeet.endpoint.journal`` is the
client); a one-shot ``yeet sync`` then re-lists only the directories named
and reads only the ranges named, instead of scanning the whole tree.

Invariant owned here: an answer with ``complete`` true names every directory
below the root whose listing changed and every file whose content changed
(with ranges covering every changed byte) since the cursor was issued, as far
as the asking user may know (directories it can ``lstat``, files it can read:
``peers.allowed_as``). Anything that makes that uncertain - another service
instance, kernel drops or overflows, a path that cannot be resolved, the
root or a mount inside it replaced, a file with several hard links - makes
the answer incomplete, with the reason; never silently short.

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
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from yeet.errors import TracerUnavailable
from yeet.tracer import fanotify
from yeet.tracer.journal import ChangeLog, Since, relative, within
from yeet.tracer.loader import FileId, Tracer
from yeet.tracer.paths import name_of_handle, open_anchor, open_handle
from yeet.tracer.peers import READ, SEE, Peer, allowed_as, peer_of
from yeet.tracer.ranges import END, WHOLE, Ranges, RangeSet
from yeet.tracer.roots import Layout, describe_change, layout_of

DEFAULT_SOCKET = "/run/yeet/tracer.sock"
MAX_LINE = 1 << 20
MAX_ANSWER = 1_000_000  # more names than this: "rescan" is the cheaper answer
SETTLE = 0.05  # drain the write tracer this long after it first says "dirty"
UNRESOLVED_FOR = 30.0  # a written file whose path cannot be found for this long: lost
CURSOR_VERSION = 1


@dataclass
class _Root:
    path: str
    layout: Layout
    since: int  # cursors issued before this are void
    reset: str  # why
    problem: str = ""  # non-empty: this root can never be answered in full
    points: list[str] = field(default_factory=list)  # the root and mounts inside it
    marks: list[tuple[int, str]] = field(default_factory=list)  # (fsid, point) marked for it


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
        self.roots: dict[str, _Root] = {}
        self._points: dict[str, int] = {}  # tracer roots -> users
        self._marks: dict[int, int] = {}  # fsid -> users
        self._anchors: dict[int, list[str]] = {}  # fsid -> paths that resolve its handles
        self._server: asyncio.AbstractServer | None = None
        self._drain_soon: asyncio.TimerHandle | None = None
        # written files whose path could not be confirmed yet (they were being moved):
        # tried again at every drain; while one is left that may lie under a root
        # (seen there, or never seen anywhere), that root's answers are incomplete
        self._unresolved: dict[FileId, tuple[float, list[Any], set[str]]] = {}

    # ---- roots -----------------------------------------------------------------------

    def _arm(self, path: str, reset: str) -> _Root:
        layout = layout_of(path)
        w = _Root(path, layout, 0, reset, points=[path, *layout.points])
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
        w.problem = "; ".join(problems)
        w.since = self.log.tick()  # after arming: later cursors see everything
        self.roots[path] = w
        self._rebuild_anchors()
        print(f"yeet tracer: watching {path}", file=sys.stderr, flush=True)
        return w

    def _disarm(self, w: _Root) -> None:
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
        del self.roots[w.path]
        self._rebuild_anchors()

    def _rebuild_anchors(self) -> None:
        """Where to resolve each marked filesystem's handles: through the roots on it."""
        self._anchors = {}
        for r in self.roots.values():
            for fsid, p in r.marks:
                if p not in self._anchors.setdefault(fsid, []):
                    self._anchors[fsid].append(p)

    def _root_for(self, path: str) -> _Root:
        """The armed root, re-armed if what the path names changed since."""
        w = self.roots.get(path)
        if w is None:
            return self._arm(path, "the change journal of this root starts now")
        now = layout_of(path)
        if now != w.layout:
            why = describe_change(w.layout, now)
            print(f"yeet tracer: {path}: {why}", file=sys.stderr, flush=True)
            self._disarm(w)
            return self._arm(path, why)
        return w

    def _watched(self, path: str) -> bool:
        return any(within(path, r) for r in self.roots)

    @staticmethod
    def _may_hold(spots: set[str], roots: Iterable[str]) -> bool:
        """Could an unplaced written file lie under one of ``roots``? Yes if it was
        never seen anywhere, or was seen under one. A file only ever seen elsewhere
        (another tree's build, a download) does not make these roots' answers
        incomplete: were it moved in later, fanotify reports the move, and the sync
        reads the file whole (it has no written ranges there)."""
        roots = list(roots)
        return not spots or any(within(s, r) for s in spots for r in roots)

    # ---- draining the kernel ------------------------------------------------------------

    def drain(self) -> None:
        """Move everything the kernel has reported into the journal, now."""
        if self._drain_soon is not None:
            self._drain_soon.cancel()
            self._drain_soon = None
        self._drain_names()
        self._drain_writes()
        self._drain_names()  # renames that raced with the write drain

    def _schedule_writes(self) -> None:
        if self._drain_soon is None:
            loop = asyncio.get_running_loop()
            self._drain_soon = loop.call_later(SETTLE, self.drain)

    def _drain_writes(self) -> None:
        d = self.tracer.dirty_files()
        if d.rescan:
            self.log.lost("the write tracer lost changes: " + "; ".join(d.reasons))
        for fid, r in d.items():
            first, ranges, spots = self._unresolved.pop(fid, (time.monotonic(), [], set()))
            self._unresolved[fid] = (first, [*ranges, r], spots)
        for fid, (first, ranges, spots) in list(self._unresolved.items()):
            path, known = self.tracer.locate(fid)
            if path is None and not known:
                spot = self.tracer.glimpse(fid)
                if spot is not None and len(spots) < 16:
                    spots.add(spot)
                if time.monotonic() - first > UNRESOLVED_FOR:
                    del self._unresolved[fid]
                    if self._may_hold(spots, self.roots):
                        self.log.lost(f"cannot find the path of a written file (inode {fid.ino})")
                continue  # try again at the next drain (a temp file being renamed, ...)
            del self._unresolved[fid]
            if path is not None and self._watched(path):
                for r in ranges:
                    self.log.file_changed(fid, path, r)
            # path None: deleted; its directory's listing changed, fanotify said so

    def _drain_names(self) -> None:
        events, lost = self.names.read()
        if lost:
            self.log.lost(lost)
        if not events:
            return
        dirs: dict[tuple[int, int, bytes], set[str]] = {}
        for ev in events:
            selves = dirs.setdefault(ev.key, set())
            own = ev.mask & fanotify.FAN_ATTRIB and ev.mask & fanotify.FAN_ONDIR
            if own and ev.name not in ("", "."):
                selves.add(ev.name)  # a directory's own mode: whether it can be listed
        anchors: dict[str, int] = {}
        try:
            for (fsid, htype, handle), selves in dirs.items():
                self._note_dir(fsid, htype, handle, selves, anchors)
        finally:
            for fd in anchors.values():
                if fd >= 0:
                    os.close(fd)

    def _anchor_fd(self, path: str, fsid: int, cache: dict[str, int]) -> int:
        if path not in cache:
            try:
                fd = open_anchor(path)
            except OSError:
                fd = -1
            if fd >= 0 and fanotify.fsid_of(f"/proc/self/fd/{fd}") != fsid:
                os.close(fd)  # unmounted: another filesystem there now
                fd = -1
            cache[path] = fd
        return cache[path]

    def _note_dir(
        self, fsid: int, htype: int, handle: bytes, selves: set[str], cache: dict[str, int]
    ) -> None:
        anchors = self._anchors.get(fsid, [])
        fds = [fd for p in anchors if (fd := self._anchor_fd(p, fsid, cache)) >= 0]
        for fd in fds:
            path, known = name_of_handle(fd, htype, handle)
            if path is not None:
                for p in (path, *(os.path.join(path, n) for n in selves)):
                    if self._watched(p):
                        self.log.dir_changed(p)
                return
            if known:
                return  # removed: its own removal changed its parent's listing
        if not anchors:
            return  # a filesystem no root is on any more
        root = self._containing_root(fds, htype, handle)
        if root is not None:
            self.log.lost("a changed directory could not be named", root)

    def _containing_root(self, fds: list[int], htype: int, handle: bytes) -> str | None:
        """The watched root an unnameable directory lies in ("/" if unknown), by ``..``."""
        inodes: dict[tuple[int, int], str] = {}
        for w in self.roots.values():
            for p in w.points:
                with contextlib.suppress(OSError):
                    st = os.stat(p)
                    inodes[(st.st_dev, st.st_ino)] = w.path
        if not fds:
            return "/"
        try:
            fd = open_handle(fds[0], htype, handle, os.O_PATH | os.O_CLOEXEC)
        except OSError:
            return "/"
        try:
            for _ in range(4096):
                st = os.fstat(fd)
                if (st.st_dev, st.st_ino) in inodes:
                    return inodes[(st.st_dev, st.st_ino)]
                up = os.open("..", os.O_PATH | os.O_CLOEXEC, dir_fd=fd)
                os.close(fd)
                fd = up
                top = os.fstat(fd)
                if (top.st_dev, top.st_ino) == (st.st_dev, st.st_ino):
                    return None  # reached the top without passing a root
            return "/"
        except OSError:
            return "/"
        finally:
            os.close(fd)

    # ---- answering ------------------------------------------------------------------------

    def journal(self, peer: Peer, root: str, raw_cursor: bytes | None) -> dict[str, object]:
        if not os.path.isabs(root):
            return {"ok": False, "error": f"not an absolute path: {root}"}
        # the asker's own verdict first: root must not tell them what exists where
        # they cannot look
        if not allowed_as(peer, [(root, READ)])[0]:
            return {"ok": False, "error": f"permission denied (or no such path): {root}"}
        root = os.path.realpath(root)
        if not os.path.isdir(root):
            return {"ok": False, "error": f"not a directory: {root}"}
        w = self._root_for(root)  # armed first: the drain can then place its files
        self.drain()  # the answer reaches up to now
        reasons = [w.problem] if w.problem else []
        if any(self._may_hold(spots, [root]) for _f, _r, spots in self._unresolved.values()):
            reasons.append("cannot find the path of a written file yet")
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
            path, known = self.tracer.locate(key)
            if path is None:
                if not known:
                    return [], [], "cannot find the path of a written file"
                continue
            if within(path, root):
                files[path] = r
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
        loop.add_reader(self.names.fileno(), self._drain_names)
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
                try:
                    reply = self._handle(peer, json.loads(line))
                except (ValueError, KeyError, TypeError) as e:
                    reply = {"ok": False, "error": f"bad request: {e}"}
                except OSError as e:
                    reply = {"ok": False, "error": f"{e.filename or 'root'}: {e.strerror}"}
                writer.write(json.dumps(reply).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            writer.close()

    def _handle(self, peer: Peer, req: dict[str, object]) -> dict[str, object]:
        op = req["op"]
        if op == "journal":
            cursor = req.get("cursor")
            if cursor is not None and not isinstance(cursor, str):
                raise TypeError("cursor must be base64 text or null")
            raw = base64.b64decode(cursor, validate=True) if cursor is not None else None
            return self.journal(peer, str(req["root"]), raw)
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
    path = socket_path or os.environ.get("YEET_TRACER_SOCKET") or DEFAULT_SOCKET
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
