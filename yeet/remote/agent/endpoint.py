"""``AgentEndpoint``: the calls of the contract as the agent serves them, nothing trusted.

Invariants owned here:

* Every argument from the wire is checked before it reaches the ``LocalEndpoint``,
  as the call's definition says (``yeet.contract.endpoint.Call``): relpaths
  (``check_relpath``; a file argument is never the root), byte ranges, and handles
  (one this agent gave out, of the right kind; a handle's last call forgets it). One
  generic check (``_forward``) serves every call; only calls with more to check
  (``open``, ``read_files``, ``apply``, entries that must be files) add their own.
  A bad path becomes a per-path problem in batch calls and a failed call otherwise;
  the endpoint itself walks paths with ``O_NOFOLLOW`` (``yeet.replica.fs.rootdir``).
* The agent's own state (stat cache, trash, staging) lives outside the tree, under
  the remote user's XDG state directory, one directory per (session, side, root),
  locked so that two agents never share it.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import sqlite3
import stat
import threading
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import msgspec

from yeet.contract.calls import CALLS, ENDPOINT
from yeet.contract.endpoint import BulkAgent, Endpoint
from yeet.contract.values import (
    Changes,
    DirtySet,
    EndpointConfig,
    EndpointInfo,
    Op,
    OpResult,
    ReadRequest,
    ReadResult,
    ReadSource,
    RootInfo,
    ScanBatch,
    StageInfo,
)
from yeet.model import digest
from yeet.model.entries import Entry
from yeet.model.errors import EndpointError, ProtocolError
from yeet.model.paths import BadPath, check_relpath, parent_of
from yeet.replica.endpoint import LocalEndpoint
from yeet.replica.fs.meta import MetaOptions, differs
from yeet.replica.fs.rootdir import RootDir
from yeet.replica.rootinfo import probe_root, resolve
from yeet.replica.scan.signed import read_with_sig
from yeet.replica.write import partial
from yeet.state import replica_tables
from yeet.state.db import open_database
from yeet.state.sessions import DirectoryLock, check_name, state_home

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


class AgentEndpoint(Endpoint, BulkAgent):
    """The agent's view of its endpoint: untrusted input checked, state opened lazily."""

    def __init__(self, state_dir: Path | None = None, lock_wait: float = LOCK_WAIT) -> None:
        self.state_dir = state_dir
        self.lock_wait = lock_wait
        self.local_endpoint: LocalEndpoint | None = None
        self.config: EndpointConfig | None = None
        self._lock: DirectoryLock | None = None
        self._conn: sqlite3.Connection | None = None
        # handles given out, by kind (``Call.handle``)
        self._held: dict[str, set[int]] = {"stage": set(), "patch": set(), "bulk": set()}
        self._bulk: dict[int, partial.Partial] = {}  # bulk channel: attached uploads
        self._next_bulk = 1

    def _local(self) -> LocalEndpoint:
        if self.local_endpoint is None:
            raise EndpointError("the client called the agent before opening the endpoint")
        return self.local_endpoint

    # -- the generic check: every call goes through it ----------------------------------

    def _checked(self, name: str, args: Sequence[Any]) -> tuple[Any, ...]:
        """``args`` (defaults filled in) once they pass what call ``name`` requires."""
        spec = CALLS[name]
        full = ENDPOINT.named(name).bind(args)
        named = dict(zip(ENDPOINT.named(name).params, full))
        for param in spec.files:
            _file_path(named[param])
        for param in spec.paths:
            value = named[param]
            for path in [value] if isinstance(value, str) else value:
                check_relpath(path)
        if spec.span is not None:
            offset = named[spec.span[0]]
            length = named[spec.span[1]] if spec.span[1] else 0
            if offset < 0 or length < 0 or (spec.limit and length > spec.limit):
                raise BadPath(f"invalid range {offset}+{length}")
        return full

    async def _forward(self, name: str, *args: Any) -> Any:
        spec = CALLS[name]
        full = self._checked(name, args)
        held = self._held.get(spec.handle)
        if held is not None:
            handle = full[ENDPOINT.named(name).params.index("handle")]
            if handle not in held:
                if spec.missing_ok:
                    return None
                raise OSError(
                    errno.EBADF,
                    f"unknown {spec.handle} handle {handle} (lost with a previous connection?)",
                )
            if spec.ends:
                held.discard(handle)
        target = getattr(self, f"_{name}") if name.startswith("bulk_") else None
        result = await (target or getattr(self._local(), name))(*full)
        if spec.gives:
            self._held[spec.gives].add(result if isinstance(result, int) else result.handle)
        return result

    # -- calls with more to check than their definition says ----------------------------

    async def open(self, config: EndpointConfig) -> EndpointInfo:
        if self.local_endpoint is not None:
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
        lock = DirectoryLock(
            directory,
            f"another yeet agent is using {directory}",
            "wait for the other sync of this session to finish",
            wait=self.lock_wait,
            mode=0o700,
        )
        self._lock = await asyncio.to_thread(lock.__enter__)
        conn, note = open_database(directory / "state.db", replica_tables.SCHEMA)
        self._conn = conn
        self.local_endpoint = LocalEndpoint(conn, threading.RLock(), directory)
        self.config = config
        info = await self.local_endpoint.open(config)
        if note:
            return msgspec.structs.replace(info, notes=(*info.notes, f"{config.side}: {note}"))
        return info

    async def probe(self, root: str) -> RootInfo:
        _check_root(root)
        return await asyncio.to_thread(probe_root, root)

    async def close(self) -> None:
        for upload in self._bulk.values():
            upload.close()
        self._bulk.clear()
        if self.local_endpoint is not None:
            local, self.local_endpoint = self.local_endpoint, None
            await local.close()
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def scan(
        self, under: Sequence[str] = ("",), recursive: bool = True, partial_parent: bool = False
    ) -> AsyncIterator[ScanBatch]:
        return self._local().scan(*self._checked("scan", (under, recursive, partial_parent)))

    def watch(self) -> AsyncIterator[DirtySet]:
        return self._local().watch()

    async def changes(self, since: bytes | None) -> Changes:
        if since is not None and len(since) > MAX_CURSOR:
            raise BadPath(f"a journal cursor of {len(since)} bytes")
        return await super().changes(since)

    async def read_files(self, requests: Sequence[ReadRequest]) -> list[ReadResult]:
        good: list[ReadRequest] = []
        bad: dict[int, ReadResult] = {}
        for i, r in enumerate(requests):
            try:
                _file_path(r.path)
                good.append(r)
            except BadPath as err:
                bad[i] = ReadResult(r.path, problem=f"invalid path: {err}")
        done = iter(await self._local().read_files(good) if good else [])
        return [bad[i] if i in bad else next(done) for i in range(len(requests))]

    async def stage_open(self, path: str, new: Entry) -> StageInfo:
        if not new.is_file or new.size < 0:
            raise BadPath(f"stage_open needs a file entry: {path}")
        return await super().stage_open(path, new)

    async def patch_open(self, path: str, old: Entry, new: Entry, inplace: bool) -> int:
        if not (old.is_file and new.is_file) or new.size < 0:
            raise BadPath(f"patch_open needs file entries: {path}")
        return await super().patch_open(path, old, new, inplace)

    async def apply(self, ops: Sequence[Op], trash_pass: int = 0) -> list[OpResult]:
        staged = self._held["stage"]
        good: list[Op] = []
        bad: dict[int, OpResult] = {}
        for i, op in enumerate(ops):
            problem = self._check_op(op)
            if problem:
                # a lost staged upload is worth another pass (it resumes); bad paths are not
                lost = op.stage is not None and op.stage not in staged
                bad[i] = OpResult(op.path, False, problem, transient=lost)
            else:
                good.append(op)
                if op.stage is not None:
                    staged.discard(op.stage)
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
        if op.stage is not None and op.stage not in self._held["stage"]:
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

    # -- the bulk channel (``BulkAgent``): no session; chunks of partial uploads, ranges
    # of files the session's agent checked (run by ``_forward`` once checked) ------------

    async def _bulk_open(self, path: str, size: int) -> int:
        try:
            upload = await asyncio.to_thread(partial.attach, path, size)
        except ValueError as err:
            raise BadPath(str(err)) from None
        handle = self._next_bulk
        self._next_bulk += 1
        self._bulk[handle] = upload
        return handle

    async def _bulk_write(self, handle: int, offset: int, data: bytes) -> None:
        await asyncio.to_thread(self._bulk[handle].write, offset, data)

    async def _bulk_close(self, handle: int) -> None:
        upload = self._bulk.pop(handle, None)
        if upload is not None:
            await asyncio.to_thread(upload.close)  # (after its writes in flight)

    async def _bulk_read(self, source: ReadSource, offset: int, length: int) -> bytes:
        if not os.path.isabs(source.root) or "\x00" in source.root:
            raise BadPath(f"not an absolute root: {source.root!r}")
        _file_path(source.path)
        return await asyncio.to_thread(
            read_with_sig, source.root, source.path, source.sig, offset, length
        )


def _check_root(root: str) -> None:
    if not root or "\x00" in root:
        raise BadPath(f"invalid root {root!r}")


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
