"""``yeet agent``'s serving loop: one ``LocalEndpoint`` behind the protocol, on two pipes.

Invariants owned here:

* Every call runs as its own task, so calls overlap as they do in-process; a
  stream sends an item only against credit; every call gets exactly one final
  message, also when it fails or is cancelled.
* Nothing from the wire is trusted: every path is checked (``check_relpath``)
  before it reaches the endpoint, a bad one becomes a per-path problem (batch
  calls) or a failed call (single-path calls), and the endpoint itself walks
  paths with ``O_NOFOLLOW`` (``yeet.fs.rootdir``), so nothing is ever read or
  written outside the root. Stage handles are checked to be ones this agent
  gave out. A malformed frame ends the connection with a ``ProtocolError``
  sent to the client, never with a crash.
* The agent's own state (stat cache, trash, staging) lives outside the tree,
  under the remote user's XDG state directory, one directory per
  (session, side, root), locked so that two agents never share it.
"""

from __future__ import annotations

import asyncio
import fcntl
import functools
import hashlib
import os
import socket
import stat
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

from yeet import __version__, digest
from yeet.endpoint.api import (
    EndpointConfig,
    EndpointInfo,
    Op,
    OpResult,
    ReadRequest,
    ReadResult,
    ReadSource,
    RootInfo,
)
from yeet.endpoint.local import LocalEndpoint, read_with_sig
from yeet.endpoint.rootinfo import probe_root, resolve
from yeet.errors import EndpointError, ProtocolError, SessionBusy, YeetError
from yeet.fs.meta import MetaOptions, differs
from yeet.fs.rootdir import RootDir
from yeet.paths import BadPath, check_relpath, parent_of
from yeet.protocol import codec
from yeet.protocol.connection import (
    AgentConnection,
    CallReceived,
    CancelReceived,
    CreditReceived,
    HelloReceived,
    State,
)
from yeet.protocol.messages import Fault
from yeet.state.db import open_database
from yeet.state.sessions import check_name, state_home
from yeet.transfer import partial
from yeet.transport.faults import fault_of

READ_SIZE = 1 << 20
MAX_CURSOR = 4096
LOCK_WAIT = 60.0


def storage_for(config: EndpointConfig) -> Path:
    """Where an agent keeps a side's state: keyed by session, side and root (as the
    session's address names it: ``state_key``)."""
    check_name(config.session)
    if config.side not in ("alpha", "beta"):
        raise ProtocolError(f"unknown side {config.side!r}")
    key = config.state_key or config.root
    tag = hashlib.blake2b(key.encode("utf-8", "surrogateescape"), digest_size=4).hexdigest()
    return state_home() / "agent" / f"{config.session}-{config.side}-{tag}"


class _Lock:
    """An exclusive ``flock`` on a state directory, waited for (an old agent may be exiting)."""

    def __init__(self, directory: Path, wait: float) -> None:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.fd = os.open(str(directory / "lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(self.fd)
                    raise SessionBusy(
                        f"another yeet agent is using {directory}",
                        hint="wait for the other sync of this session to finish",
                    ) from None
                time.sleep(0.1)

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class AgentEndpoint:
    """The agent's view of its endpoint: untrusted input checked, state opened lazily."""

    def __init__(self, state_dir: Path | None = None, lock_wait: float = LOCK_WAIT) -> None:
        self.state_dir = state_dir
        self.lock_wait = lock_wait
        self.ep: LocalEndpoint | None = None
        self.config: EndpointConfig | None = None
        self._lock: _Lock | None = None
        self._conn: Any = None
        self._handles: set[int] = set()
        self._patches: set[int] = set()
        self._bulk: dict[int, partial.Partial] = {}  # bulk channel: attached uploads
        self._next_bulk = 1

    def _local(self) -> LocalEndpoint:
        if self.ep is None:
            raise EndpointError("the client called the agent before opening the endpoint")
        return self.ep

    async def open(self, config: EndpointConfig) -> EndpointInfo:
        if self.ep is not None:
            raise EndpointError("the endpoint is already open")
        _check_root(config.root)
        if config.state_key:
            _check_root(config.state_key)
        # the state directory is keyed by the root as the address names it (``~``
        # expanded, as it always was), the endpoint opens it made absolute
        key = config.state_key or config.root
        config = msgspec.structs.replace(
            config,
            root=resolve(config.root),
            state_key=os.path.expanduser(key) if key.startswith("~") else key,
        )
        directory = self.state_dir or storage_for(config)
        self._lock = await asyncio.to_thread(_Lock, directory, self.lock_wait)
        conn, note = open_database(directory / "state.db")
        self._conn = conn
        self.ep = LocalEndpoint(conn, threading.RLock(), directory)
        self.config = config
        info = await self.ep.open(config)
        if note:
            return EndpointInfo(
                info.root,
                info.root_exists,
                info.root_created,
                info.host,
                info.version,
                info.digest,
                (*info.notes, f"{config.side}: {note}"),
            )
        return info

    async def probe(self, root: str) -> RootInfo:
        _check_root(root)
        return await asyncio.to_thread(probe_root, root)

    async def close(self) -> None:
        for upload in self._bulk.values():
            upload.close()
        self._bulk.clear()
        if self.ep is not None:
            ep, self.ep = self.ep, None
            await ep.close()
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    # -- reading ------------------------------------------------------------------------

    def scan(
        self, under: Sequence[str] = ("",), recursive: bool = True, partial_parent: bool = False
    ) -> Any:
        for p in under:
            check_relpath(p)
        return self._local().scan(under, recursive, partial_parent)

    def watch(self) -> Any:
        return self._local().watch()

    async def changes(self, since: bytes | None) -> Any:
        if since is not None and len(since) > MAX_CURSOR:
            raise BadPath(f"a journal cursor of {len(since)} bytes")
        return await self._local().changes(since)

    async def read_files(self, requests: Sequence[ReadRequest]) -> list[ReadResult]:
        good: list[ReadRequest] = []
        bad: dict[int, ReadResult] = {}
        for i, r in enumerate(requests):
            try:
                check_relpath(r.path)
                if r.path == "":
                    raise BadPath("the root is not a file")
                good.append(r)
            except BadPath as err:
                bad[i] = ReadResult(r.path, problem=f"invalid path: {err}")
        done = iter(await self._local().read_files(good) if good else [])
        return [bad[i] if i in bad else next(done) for i in range(len(requests))]

    async def read_range(self, path: str, expected: Any, offset: int, length: int) -> bytes:
        _file_path(path)
        _check_range(offset, length)
        return await self._local().read_range(path, expected, offset, length)

    async def read_open(self, path: str, expected: Any) -> ReadSource:
        _file_path(path)
        return await self._local().read_open(path, expected)

    async def stat_paths(self, paths: Sequence[str]) -> list[Any]:
        for p in paths:
            check_relpath(p)
        return await self._local().stat_paths(paths)

    # -- writing ------------------------------------------------------------------------

    async def stage_open(self, path: str, new: Any) -> Any:
        _file_path(path)
        if not new.is_file or new.size < 0:
            raise BadPath(f"stage_open needs a file entry: {path}")
        info = await self._local().stage_open(path, new)
        self._handles.add(info.handle)
        return info

    async def stage_write(self, handle: int, offset: int, data: bytes) -> None:
        if handle not in self._handles:
            raise OSError(9, f"unknown stage handle {handle} (lost with a previous connection?)")
        if offset < 0:
            raise BadPath(f"negative offset {offset}")
        await self._local().stage_write(handle, offset, data)

    # -- a bulk channel (``BulkAgent``): no session; chunks of partial uploads, ranges of
    # files the session's agent checked ----------------------------------------------

    async def bulk_open(self, path: str, size: int) -> int:
        try:
            upload = await asyncio.to_thread(partial.attach, path, size)
        except ValueError as err:
            raise BadPath(str(err)) from None
        handle = self._next_bulk
        self._next_bulk += 1
        self._bulk[handle] = upload
        return handle

    async def bulk_write(self, handle: int, offset: int, data: bytes) -> None:
        upload = self._bulk.get(handle)
        if upload is None:
            raise OSError(9, f"unknown bulk handle {handle}")
        if offset < 0:
            raise BadPath(f"negative offset {offset}")
        await asyncio.to_thread(upload.write, offset, data)

    async def bulk_close(self, handle: int) -> None:
        upload = self._bulk.pop(handle, None)
        if upload is not None:
            await asyncio.to_thread(upload.close)  # (after its writes in flight)

    async def bulk_read(self, source: ReadSource, offset: int, length: int) -> bytes:
        if not os.path.isabs(source.root) or "\x00" in source.root:
            raise BadPath(f"not an absolute root: {source.root!r}")
        _file_path(source.path)
        _check_range(offset, length)
        return await asyncio.to_thread(
            read_with_sig, source.root, source.path, source.sig, offset, length
        )

    async def stage_keep(self, handle: int, offset: int, length: int, expected: bytes) -> bool:
        if handle not in self._handles:
            raise OSError(9, f"unknown stage handle {handle} (lost with a previous connection?)")
        if offset < 0 or length < 0:
            raise BadPath(f"negative range {offset}+{length}")
        return await self._local().stage_keep(handle, offset, length, expected)

    async def stage_abort(self, handle: int, keep: bool = False) -> None:
        if handle in self._handles:
            self._handles.discard(handle)
            await self._local().stage_abort(handle, keep)

    async def apply(self, ops: Sequence[Op], trash_pass: int = 0) -> list[OpResult]:
        good: list[Op] = []
        bad: dict[int, OpResult] = {}
        for i, op in enumerate(ops):
            problem = self._check_op(op)
            if problem:
                # a lost staged upload is worth another pass (it resumes); bad paths are not
                lost = op.stage is not None and op.stage not in self._handles
                bad[i] = OpResult(op.path, False, problem, transient=lost)
            else:
                good.append(op)
                if op.stage is not None:
                    self._handles.discard(op.stage)
        results = await self._local().apply(good, trash_pass) if good else []
        if any(not r.ok and r.transient for r in results):
            results = await asyncio.to_thread(self._settle, good, results)
        done = iter(results)
        return [bad[i] if i in bad else next(done) for i in range(len(ops))]

    def _check_op(self, op: Op) -> str:
        try:
            _file_path(op.path)
            if op.copy_from is not None:
                _file_path(op.copy_from)
        except BadPath as err:
            return f"invalid path: {err}"
        if op.stage is not None and op.stage not in self._handles:
            return "its staged upload was lost (connection reset?); it will be sent again"
        if (
            op.new is not None
            and op.new.is_file
            and op.data is not None
            and (len(op.data) != op.new.size)
        ):
            return "content size does not match its entry"
        return ""

    def _settle(self, ops: Sequence[Op], results: list[OpResult]) -> list[OpResult]:
        """A transient failure where the path already holds the new entry is a success.

        That is what a retried batch finds after a lost connection: the first
        attempt applied it, the answer was lost.
        """
        assert self.config is not None
        root = RootDir(self.config.root)
        try:
            out = []
            opts = self._local().meta()
            for op, r in zip(ops, results):
                if not r.ok and r.transient and _holds(root, op, self.config.digest, opts):
                    out.append(OpResult(r.path, True))
                else:
                    out.append(r)
            return out
        finally:
            root.close()

    # -- deltas -----------------------------------------------------------------------

    async def signature(self, path: str, expect: Any, size_hint: int = 0) -> Any:
        _file_path(path)
        return await self._local().signature(path, expect, size_hint)

    async def region_signatures(
        self, path: str, expect: Any, regions: list[Any], size_hint: int = 0
    ) -> Any:
        _file_path(path)
        return await self._local().region_signatures(path, expect, regions, size_hint)

    async def delta_plan(self, path: str, expected: Any, sig: Any) -> Any:
        _file_path(path)
        return await self._local().delta_plan(path, expected, sig)

    async def delta_ops(
        self, path: str, expected: Any, offset: int, length: int, fine: list[Any]
    ) -> Any:
        _file_path(path)
        if offset < 0 or length < 0 or length > 64 << 20:
            raise BadPath(f"invalid range {offset}+{length}")
        return await self._local().delta_ops(path, expected, offset, length, fine)

    async def patch_open(self, path: str, old: Any, new: Any, inplace: bool) -> int:
        _file_path(path)
        if not (old.is_file and new.is_file) or new.size < 0:
            raise BadPath(f"patch_open needs file entries: {path}")
        handle = await self._local().patch_open(path, old, new, inplace)
        self._patches.add(handle)
        return handle

    def _patch(self, handle: int) -> None:
        if handle not in self._patches:
            raise OSError(9, f"unknown patch handle {handle} (lost with a previous connection?)")

    async def patch_write(self, handle: int, offset: int, ops: list[Any]) -> None:
        self._patch(handle)
        if offset < 0:
            raise BadPath(f"negative offset {offset}")
        await self._local().patch_write(handle, offset, ops)

    async def patch_commit(self, handle: int) -> OpResult:
        self._patch(handle)
        self._patches.discard(handle)
        return await self._local().patch_commit(handle)

    async def patch_abort(self, handle: int) -> None:
        if handle in self._patches:
            self._patches.discard(handle)
            await self._local().patch_abort(handle)

    async def trash_list(self) -> list[Any]:
        return await self._local().trash_list()

    async def trash_restore(
        self, items: Sequence[int], force: bool = False, trash_pass: int = 0
    ) -> list[OpResult]:
        return await self._local().trash_restore(items, force, trash_pass)


def _check_root(root: str) -> None:
    if not root or "\x00" in root:
        raise BadPath(f"invalid root {root!r}")


def _check_range(offset: int, length: int) -> None:
    if offset < 0 or length < 0 or length > 64 << 20:
        raise BadPath(f"invalid range {offset}+{length}")


def _file_path(path: str) -> None:
    check_relpath(path)
    if path == "":
        raise BadPath("the root itself is not a file")


def _holds(root: RootDir, op: Op, alg: str, opts: MetaOptions) -> bool:
    new = op.new
    try:
        st = root.lstat(op.path)
        if new is None:  # absent, in a parent that really is a directory inside the root
            up = root.lstat(parent_of(op.path))
            return st is None and up is not None and stat.S_ISDIR(up.st_mode)
        if st is None:
            return False
        if new.is_dir:
            return stat.S_ISDIR(st.st_mode) and not differs(st, new, opts)
        if new.is_symlink:
            return stat.S_ISLNK(st.st_mode) and root.readlink(op.path) == new.target
        if not new.is_file or not stat.S_ISREG(st.st_mode) or st.st_size != new.size:
            return False
        if differs(st, new, opts):
            return False
        fd = root.open_file(op.path)
        try:
            value, _size = digest.of_fd(alg, fd, st.st_size)
        finally:
            os.close(fd)
        return value == new.digest
    except (OSError, ValueError):
        return False
    finally:
        root.forget()


class AgentServer:
    """Serves one connection: reads calls from ``reader``, writes answers to ``writer``."""

    def __init__(self, reader: Any, writer: Any, endpoint: AgentEndpoint) -> None:
        self.reader = reader
        self.writer = writer
        self.endpoint = endpoint
        self.conn = AgentConnection(__version__)
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._credit: dict[int, asyncio.Event] = {}
        self._write_lock = asyncio.Lock()
        self._closing = False

    async def _send(self, data: bytes) -> None:
        if not data or self._closing:
            return
        try:
            self.writer.write(data)
            async with self._write_lock:
                await self.writer.drain()
        except (ConnectionError, OSError):
            self._closing = True

    async def run(self) -> None:
        caps = list(digest.available()) + list(codec.available())
        await self._send(self.conn.banner(caps))
        try:
            while True:
                data = await self.reader.read(READ_SIZE)
                if not data:
                    break
                self.conn.receive_data(data)
                while True:
                    event = self.conn.next_event()
                    if event is None:
                        break
                    await self._dispatch(event)
        except ProtocolError as err:
            await self._send(self.conn.fatal(Fault("ProtocolError", str(err), err.hint)))
        finally:
            self._closing = True
            for task in self._tasks.values():
                task.cancel()
            if self._tasks:
                await asyncio.gather(*self._tasks.values(), return_exceptions=True)
            await self.endpoint.close()

    async def _dispatch(self, event: Any) -> None:
        if isinstance(event, HelloReceived):
            await self._send(
                self.conn.welcome(
                    digest.available(),
                    host=socket.gethostname(),
                    python=sys.version.split()[0],
                    stand_ins=_stand_ins(),
                )
            )
        elif isinstance(event, CallReceived):
            if event.method.stream:
                self._credit[event.call] = asyncio.Event()
                self._credit[event.call].set()
            task = asyncio.ensure_future(self._serve(event))
            self._tasks[event.call] = task
            task.add_done_callback(functools.partial(self._done, event.call))
        elif isinstance(event, CancelReceived):
            running = self._tasks.get(event.call)
            if running is not None:
                running.cancel()
        elif isinstance(event, CreditReceived):
            ev = self._credit.get(event.call)
            if ev is not None:
                ev.set()

    def _done(self, call: int, _task: object = None) -> None:
        self._tasks.pop(call, None)
        self._credit.pop(call, None)

    async def _serve(self, event: CallReceived) -> None:
        call, method = event.call, event.method
        try:
            func = getattr(self.endpoint, method.name)
            if method.stream:
                stream = func(*event.args)
                try:
                    async for item in stream:
                        while self.conn.credit_left(call) <= 0:
                            ev = self._credit[call]
                            ev.clear()
                            await ev.wait()
                        await self._send(self.conn.item(call, item))
                finally:
                    await stream.aclose()
                await self._send(self.conn.end(call))
            else:
                value = await func(*event.args)
                await self._send(self.conn.result(call, value))
        except asyncio.CancelledError:
            if not self._closing and self.conn.is_open(call):
                await self._send(self.conn.error(call, Fault("Cancelled", "cancelled")))
        except ProtocolError as err:  # e.g. an answer too large for one frame
            if self.conn.is_open(call) and self.conn.state is State.READY:
                await self._send(self.conn.error(call, fault_of(err)))
        except Exception as err:
            if not isinstance(err, (OSError, BadPath, YeetError)):
                import traceback

                traceback.print_exc(file=sys.stderr)
            if self.conn.is_open(call) and not self._closing:
                await self._send(self.conn.error(call, fault_of(err)))


def _stand_ins() -> tuple[str, ...]:
    msgspec = sys.modules.get("msgspec")
    out = []
    if msgspec is not None and msgspec.__name__.startswith("yeet."):
        out.append("msgspec")
    if "zstd" not in codec.available():
        out.append("zstandard")
    if "blake3" not in digest.available():
        out.append("blake3")
    from yeet.delta.chunking import available

    if not available():
        out.append("pyfastcdc")
    return tuple(out)
