"""The upload half of ``RemoteEndpoint``: large files staged on the agent, written behind.

Invariants owned here:

* Stage handles belong to the agent process that gave them out: the client hands
  out its own numbers and translates them for the connection a call goes out on,
  so after a reconnect an old handle fails (an ``OSError``: the file is a
  transient problem, sent again by the next pass) and never aliases a new upload.
* Writes are behind but bounded: at most ``STAGE_WINDOW`` pieces in flight per
  upload and ``BULK_BYTES`` over all of them; a failed piece fails a later write
  or the upload's ``apply``, never silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
from typing import Any, cast

from yeet.contract.values import StageInfo
from yeet.model.entries import Entry
from yeet.remote.client.bulk import BulkLink
from yeet.remote.client.rpc import ConnectionLost, RpcClient, retrieve
from yeet.replica.fs.inuse import Dropped

STAGE_WINDOW = 4
"""Stage writes in flight per upload: the link never waits for an answer."""
WRITE_PIECE = 2 << 20
"""A stage write goes out in calls of at most this many bytes; the agent writes,
makes durable and records each one as it arrives, so a link lost mid-chunk loses
only the pieces not yet recorded, and a chunk's bytes never wait for its last one."""
BULK_BYTES = 8 << 20
"""Upload bytes in flight (sent, not yet recorded by the agent), over all uploads:
what a lost link can cost is at most this much sent again (one chunk, the
executor's ``MAX_CHUNK``), and whatever is sent next on the session's channel (a
small file, a rename) waits behind at most this much (head-of-line bound)."""


class StagedUploads:
    """Mixed into ``RemoteEndpoint``, whose link (``_client``, ``_call``) it uses."""

    where: str
    bulk: BulkLink
    sent_bytes: int
    _generation: int
    _next_stage: int

    async def _client(self) -> tuple[RpcClient, int]:
        raise NotImplementedError

    async def _call(self, name: str, *args: Any) -> Any:
        raise NotImplementedError

    def _init_uploads(self) -> None:
        self._stages: dict[int, tuple[int, int]] = {}  # local -> (generation, agent's)
        self._writes: dict[int, list[asyncio.Task[Any]]] = {}
        self._bulk = 0  # bytes of uploads in flight (BULK_BYTES)
        self._bulk_freed = asyncio.Event()
        self._write_errors: dict[int, BaseException] = {}
        self._settling: set[int] = set()  # uploads being committed or aborted
        self._partials: dict[int, tuple[str, int]] = {}  # stage handle -> (partial path, size)

    async def stage_open(self, path: str, new: Entry) -> StageInfo:
        # Retried after a reconnect, the handle comes from the new agent: it is current.
        info = cast(StageInfo, await self._call("stage_open", path, new))
        local = self._next_stage
        self._next_stage += 1
        self._stages[local] = (self._generation, info.handle)
        if info.partial:
            self._partials[local] = (info.partial, new.size)
        return StageInfo(local, info.have, info.maybe)

    def _agent_handle(self, handle: int, generation: int | None = None) -> int | None:
        """The agent's number for local stage ``handle``, if the agent of ``generation``
        (default: the current one) gave it out; else ``None`` (lost with its agent)."""
        gen, remote = self._stages.get(handle, (-1, -1))
        return remote if gen == (self._generation if generation is None else generation) else None

    async def _staged(self, name: str, handle: int, *args: Any) -> Any:
        """Call ``name(agent handle, *args)`` without retry. The handle is translated
        for the connection the call goes out on (after any reconnect), so a new
        agent never receives an old agent's number (which may be one of its own)."""
        rpc, gen = await self._client()
        remote = self._agent_handle(handle, gen)
        if remote is None:
            raise self._gone(handle)
        return await rpc.call(name, remote, *args)

    def _gone(self, handle: int) -> OSError:
        """Why local stage ``handle`` has no agent handle: the upload was dropped here
        (committed, or aborted after another of its chunks failed), or it was lost
        with the agent that gave it out."""
        if handle not in self._stages or handle in self._settling:
            return Dropped("the upload")
        return OSError(
            errno.ECONNRESET,
            f"the upload to {self.where} was interrupted by a lost connection; "
            "it is sent again on the next pass",
        )

    async def stage_write(self, handle: int, offset: int, data: bytes) -> None:
        """Write-behind: returns once the chunk is on its way, in pieces of
        ``WRITE_PIECE`` (``STAGE_WINDOW`` in flight per upload, ``BULK_BYTES`` in all);
        a failed piece fails a later ``stage_write`` or the ``apply`` of the upload."""
        for at in range(0, max(len(data), 1), WRITE_PIECE):
            await self._stage_piece(handle, offset + at, data[at : at + WRITE_PIECE])

    async def _stage_piece(self, handle: int, offset: int, data: bytes) -> None:
        pending = self._open_writes(handle)
        while len(pending) >= STAGE_WINDOW:
            await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            pending = self._open_writes(handle, pending)
        self._raise_write_error(handle)
        while self._bulk and self._bulk + len(data) > BULK_BYTES:
            self._bulk_freed.clear()
            await self._bulk_freed.wait()
        pending = self._open_writes(handle, pending)
        self.sent_bytes += len(data)
        self._bulk += len(data)
        task = asyncio.ensure_future(self._stage_write(handle, offset, data))
        task.add_done_callback(retrieve)
        task.add_done_callback(functools.partial(self._bulk_done, len(data)))
        pending.append(task)

    async def _stage_write(self, handle: int, offset: int, data: bytes) -> None:
        """A chunk goes on the bulk channel when there is one (``yeet.remote.client.bulk``)."""
        target = self._partials.get(handle)
        if target is not None and await self.bulk.write(*target, offset, data):
            return
        await self._staged("stage_write", handle, offset, data)

    def _upload_done(self, handle: int) -> None:
        self._stages.pop(handle, None)
        self._settling.discard(handle)
        self._write_errors.pop(handle, None)
        target = self._partials.pop(handle, None)
        if target is not None:
            self.bulk.done(target[0])

    def _bulk_done(self, size: int, _task: asyncio.Future[Any]) -> None:
        self._bulk -= size
        self._bulk_freed.set()

    def _open_writes(
        self, handle: int, waited: list[asyncio.Task[Any]] | None = None
    ) -> list[asyncio.Task[Any]]:
        """The writes in flight of upload ``handle`` (finished ones harvested), if it is
        still open; ``_gone`` if it is not. ``waited``: the list a caller waited on,
        which must still be the upload's (an abort or apply meanwhile took it: waiting
        for room in it would never end, and what is written on goes unheard)."""
        if self._agent_handle(handle) is None or handle in self._settling:
            raise self._gone(handle)
        pending = self._writes.setdefault(handle, [])
        if waited is not None and pending is not waited:
            raise Dropped("the upload")
        self._harvest(handle)
        return pending

    def _harvest(self, handle: int) -> None:
        pending = self._writes.get(handle, [])
        for task in [t for t in pending if t.done()]:
            pending.remove(task)
            if not task.cancelled() and task.exception() is not None:
                self._write_errors.setdefault(handle, cast(BaseException, task.exception()))

    def _raise_write_error(self, handle: int) -> None:
        err = self._write_errors.pop(handle, None)
        if err is not None:
            raise err

    async def _settle_writes(self, handle: int) -> BaseException | None:
        """Wait for an upload's chunks in flight; the first failure, if any."""
        pending = self._writes.pop(handle, [])
        while any(not t.done() for t in pending):  # (all of them: the list may have grown)
            await asyncio.wait([t for t in pending if not t.done()])
        for task in pending:
            if not task.cancelled() and task.exception() is not None:
                self._write_errors.setdefault(handle, cast(BaseException, task.exception()))
        return self._write_errors.pop(handle, None)

    async def stage_keep(self, handle: int, offset: int, length: int, expected: bytes) -> bool:
        if self._agent_handle(handle) is None:
            return False  # the upload is gone with the connection: send the range
        return bool(await self._staged("stage_keep", handle, offset, length, expected))

    async def stage_abort(self, handle: int, keep: bool = False) -> None:
        self._settling.add(handle)  # no chunk is sent for it any more
        await self._settle_writes(handle)
        if self._agent_handle(handle) is not None:
            with contextlib.suppress(ConnectionLost, OSError):
                await self._staged("stage_abort", handle, keep)
        self._upload_done(handle)
