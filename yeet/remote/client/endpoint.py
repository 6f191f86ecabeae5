"""``RemoteEndpoint``: the ``Endpoint`` protocol spoken to an agent, surviving lost links.

Invariants owned here:

* Every ``Endpoint`` call becomes one RPC (large batches are split into
  several calls that run concurrently, so no frame exceeds the limit and the
  link stays busy).
* When the link is lost, it is re-established with exponential backoff (for
  at most ``reconnect_for`` seconds), the endpoint is re-opened with the same
  configuration, and calls whose repetition is harmless are repeated: reads,
  scans (resumed: listings already delivered are not delivered again) and
  ``apply`` (every op names what it expects to find, so a repeated op either
  finds its work done, which the agent reports as success, or reports
  "modified since scan"). Nothing that arrived before the cut is sent again,
  except the one batch or file that was in flight.
* Stage handles belong to the agent process that gave them out: after a
  reconnect, an old handle fails (an ``OSError``, so the file is reported as a
  transient problem and sent again by the next pass), it never aliases a new
  upload.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, TypeVar, cast

import msgspec

from yeet.contract.calls import CALLS
from yeet.contract.endpoint import Endpoint
from yeet.contract.values import (
    DirtySet,
    EndpointConfig,
    EndpointInfo,
    Op,
    OpResult,
    PlanReply,
    ReadRequest,
    ReadResult,
    ReadSource,
    ScanBatch,
    SigReply,
)
from yeet.delta.ops import Data, DeltaOp
from yeet.delta.signature import Signature
from yeet.model.entries import Entry
from yeet.model.errors import EndpointError, YeetError
from yeet.protocol.messages import Welcome
from yeet.remote.client.bulk import BulkLink
from yeet.remote.client.channel import Channel, Connector, drop_link
from yeet.remote.client.rpc import ConnectionLost, RpcClient, retrieve
from yeet.remote.client.uploads import StagedUploads
from yeet.replica.fs.inuse import Dropped
from yeet.replica.fs.space import is_full

T = TypeVar("T")

READ_AHEAD = 3
"""Ranges of a file read before they are asked for (sequential reads of large files)."""
READ_SOURCES = 64
"""Large files whose ``read_open`` answer is remembered (the bulk channel reads them)."""
PIECE_BYTES = 8 << 20
PIECE_ITEMS = 512
MAX_RETRIES = 8
RECONNECT_FOR = 120.0
CLOSE_WAIT = 10.0  # seconds for the agent to say goodbye before the link is dropped


def _notify(message: str) -> None:
    print(f"yeet: {message}", file=sys.stderr)


class RemoteEndpoint(StagedUploads, Endpoint):
    """An endpoint served by a ``yeet agent`` at the other end of a ``Connector``."""

    def __init__(
        self,
        connector: Connector,
        *,
        reconnect_for: float = RECONNECT_FOR,
        notify: Callable[[str], None] = _notify,
        state_key: str = "",
    ) -> None:
        self.connector = connector
        self.state_key = state_key  # the root as the address names it (EndpointConfig)
        self.where = connector.where
        self.reconnect_for = reconnect_for
        self.notify = notify
        self.config: EndpointConfig | None = None
        self.welcome: Welcome | None = None
        self.reconnects = 0
        self.sent_bytes = 0  # file content sent (apply data, stage writes), retries included
        self.received_bytes = 0  # file content received (read_files, read_range)
        self._rpc: RpcClient | None = None
        self._channel: Channel | None = None
        self._generation = 0
        self._lock = asyncio.Lock()
        self._ahead: dict[tuple[str, bytes, int, int], asyncio.Task[bytes]] = {}
        self._next_stage = 1
        self._wire = [0, 0]  # bytes sent, received by earlier links
        self._patches: dict[int, tuple[int, int]] = {}  # local handle -> (generation, agent's)
        self._closed = False
        self.bulk = BulkLink(connector.sibling(), notify)
        self._init_uploads()
        self._sources: dict[tuple[str, bytes], ReadSource] = {}  # files the bulk channel reads

    # -- the link -----------------------------------------------------------------------

    async def connect(self) -> Welcome:
        """Connect now (normally done by the first call); returns the agent's welcome."""
        rpc, _gen = await self._client()
        assert rpc.welcome is not None
        return rpc.welcome

    async def _client(self) -> tuple[RpcClient, int]:
        rpc = self._rpc
        if rpc is not None and rpc.alive:
            return rpc, self._generation
        async with self._lock:
            rpc = self._rpc
            if rpc is not None and rpc.alive:
                return rpc, self._generation
            if self._closed:
                raise EndpointError(f"the connection to {self.where} is closed")
            first = self._generation == 0
            await self._drop()
            delay = 0.2
            deadline = time.monotonic() + self.reconnect_for
            while True:
                try:
                    rpc = await self._open_link()
                    break
                except ConnectionLost as err:
                    if first or time.monotonic() + delay > deadline:
                        raise EndpointError(
                            f"cannot reach {self.where}: {err.strerror or err}",
                            hint="check the host name, the network and that sshd runs there"
                            if first
                            else f"gave up reconnecting after {self.reconnect_for:g} s",
                        ) from None
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 10.0)
            self._rpc = rpc
            self._generation += 1
            if not first:
                self.reconnects += 1
                self.notify(f"reconnected to {self.where}")
            return rpc, self._generation

    async def _open_link(self) -> RpcClient:
        channel = await self.connector.open_channel()
        self._channel = channel
        rpc = RpcClient(channel.reader, channel.writer, self.where, stderr_tail=channel.stderr_tail)
        try:
            self.welcome = await rpc.start()
            if self.config is not None:
                await rpc.call("open", self.config)
        except BaseException:
            await rpc.aclose()
            await self._drop()
            raise
        return rpc

    def wire(self) -> tuple[int, int]:
        """Bytes sent to and received from the agent (protocol frames, after
        compression; SSH's own framing and encryption not included)."""
        sent, received = self._wire
        if self._rpc is not None:
            sent += self._rpc.wire_sent
            received += self._rpc.wire_received
        bulk = self.bulk.wire()
        return sent + bulk[0], received + bulk[1]

    async def _drop(self) -> None:
        rpc, self._rpc = self._rpc, None
        channel, self._channel = self._channel, None
        await drop_link(rpc, channel, self._wire, polite=True)

    def _lost(self, err: ConnectionLost, what: str) -> None:
        if not self._closed:
            self.notify(f"{err.strerror or err} during {what}; reconnecting")

    async def _call(self, name: str, *args: Any) -> Any:
        """One RPC; repeated after a lost link if the call's definition says that is
        harmless (``Call.repeat``)."""
        retry = CALLS[name].repeat
        attempts = 0
        while True:
            rpc, _gen = await self._client()
            try:
                return await rpc.call(name, *args)
            except ConnectionLost as err:
                attempts += 1
                if not retry or attempts > MAX_RETRIES:
                    raise
                self._lost(err, name)

    # -- Endpoint: the calls with nothing to add are the contract's own bodies ----------

    async def _forward(self, name: str, *args: Any) -> Any:
        return await self._call(name, *args)

    async def open(self, config: EndpointConfig) -> EndpointInfo:
        if self.state_key and not config.state_key:
            config = msgspec.structs.replace(config, state_key=self.state_key)
        welcome = await self.connect()
        if config.digest not in welcome.digests:
            raise EndpointError(
                f"{config.side}: session {config.session!r} uses the {config.digest} digest, "
                f"which the yeet agent on {self.where} cannot compute (its python "
                f"{welcome.python} has {', '.join(welcome.digests)})",
                hint=f"install the {config.digest} module for that python3, or start the "
                f"session afresh (`yeet forget {config.session}`) so yeet picks a digest "
                "both ends have",
            )
        info = cast(EndpointInfo, await self._call("open", config))
        self.config = config
        return info

    async def scan(
        self, under: Sequence[str] = ("",), recursive: bool = True, partial_parent: bool = False
    ) -> AsyncIterator[ScanBatch]:
        seen: set[str] = set()
        reported: set[tuple[str, str]] = set()
        resumed = False
        attempts = 0
        while True:
            rpc, _gen = await self._client()
            try:
                async for raw in rpc.stream("scan", list(under), recursive, partial_parent):
                    batch = cast(ScanBatch, raw)
                    if resumed:
                        listings = tuple(x for x in batch.listings if x[0] not in seen)
                        problems = tuple(
                            p for p in batch.problems if (p.path, p.reason) not in reported
                        )
                        batch = ScanBatch(
                            listings, problems, batch.files, batch.bytes_hashed, batch.root_names
                        )
                    seen.update(path for path, _ in batch.listings)
                    reported.update((p.path, p.reason) for p in batch.problems)
                    yield batch
                return
            except ConnectionLost as err:
                attempts += 1
                if attempts > MAX_RETRIES:
                    raise
                self._lost(err, "scan")
                resumed = True

    async def watch(self) -> AsyncIterator[DirtySet]:
        """Follow the agent's watcher; after a lost connection, events may have been
        missed: report an overflow (a full rescan) once the new watch is armed."""
        lost = False
        while True:
            rpc, _gen = await self._client()
            try:
                async for raw in rpc.stream("watch"):
                    dirty = cast(DirtySet, raw)
                    if lost:
                        lost = False
                        dirty = DirtySet(dirty.dirs, True)
                    yield dirty
                return
            except ConnectionLost as err:
                self._lost(err, "watch")
                lost = True

    async def read_files(self, requests: Sequence[ReadRequest]) -> list[ReadResult]:
        pieces = _pieces(requests, lambda r: r.expected.size)
        if len(pieces) == 1:
            out = cast(list[ReadResult], await self._call("read_files", pieces[0]))
        else:
            done = await asyncio.gather(*(self._call("read_files", p) for p in pieces))
            out = [r for part in done for r in part]
        self.received_bytes += sum(len(r.data) for r in out if r.data is not None)
        return out

    async def read_range(self, path: str, expected: Entry, offset: int, length: int) -> bytes:
        """Sequential reads of a large file are pipelined: the next ranges are already
        on their way when they are asked for."""
        key = (path, expected.digest, offset, length)
        task = self._ahead.pop(key, None)
        if task is None:
            task = self._fetch_range(path, expected, offset, length)
        nxt = offset + length
        for _ in range(READ_AHEAD):
            if nxt >= expected.size or length <= 0:
                break
            n = min(length, expected.size - nxt)
            k = (path, expected.digest, nxt, n)
            if k not in self._ahead:
                self._ahead[k] = self._fetch_range(path, expected, nxt, n)
            nxt += n
        while len(self._ahead) > 2 * READ_AHEAD:  # abandoned read-aheads: drop the oldest
            self._ahead.pop(next(iter(self._ahead))).cancel()
        data = await task
        self.received_bytes += len(data)
        return data

    def _fetch_range(self, path: str, expected: Entry, offset: int, length: int) -> Any:
        task = asyncio.ensure_future(self._read_piece(path, expected, offset, length))
        task.add_done_callback(retrieve)
        return task

    async def _read_piece(self, path: str, expected: Entry, offset: int, length: int) -> bytes:
        """On the bulk channel when there is one (``yeet.remote.client.bulk``), from the
        file the session's agent checked once per (path, digest) (``read_open``)."""
        if self.bulk.enabled:
            key = (path, expected.digest)
            source = self._sources.get(key)
            if source is None:
                source = await self.read_open(path, expected)
                self._sources[key] = source
                while len(self._sources) > READ_SOURCES:
                    self._sources.pop(next(iter(self._sources)))
            try:
                data = await self.bulk.read(source, offset, length)
            except ConnectionLost:
                data = None  # this range on the session's channel
            except OSError:
                self._sources.pop(key, None)  # e.g. changed: the next pass checks it again
                raise
            if data is not None:
                return data
        return cast(bytes, await self._call("read_range", path, expected, offset, length))

    async def apply(self, ops: Sequence[Op], trash_pass: int = 0) -> list[OpResult]:
        failed: dict[int, BaseException] = {}
        for op in ops:
            if op.stage is not None:
                self._settling.add(op.stage)  # no chunk is sent for it any more
                err = await self._settle_writes(op.stage)
                if err is not None:
                    failed[op.stage] = err
        attempts = 0
        while True:
            # Connect first: handles are translated for the agent the ops go to.
            rpc, gen = await self._client()
            wire: list[Op] = []
            lost: dict[int, OpResult] = {}
            for i, op in enumerate(ops):
                if op.stage is None:
                    wire.append(op)
                    continue
                remote = self._agent_handle(op.stage, gen)
                if op.stage in failed:
                    err = failed[op.stage]
                    why = (err.strerror if isinstance(err, OSError) else None) or str(err)
                    if is_full(err):  # the receiver's disk: not worth another pass now
                        lost[i] = OpResult(op.path, False, why)
                    else:
                        lost[i] = OpResult(
                            op.path, False, f"its upload failed: {why}", transient=True
                        )
                elif remote is None:
                    lost[i] = OpResult(
                        op.path,
                        False,
                        "its upload was interrupted by a lost connection",
                        transient=True,
                    )
                else:
                    wire.append(_with_stage(op, remote))
            try:
                if attempts and wire:
                    results = await self._apply_retry(rpc, wire, trash_pass)
                else:
                    self.sent_bytes += sum(len(op.data) for op in wire if op.data is not None)
                    results = (
                        cast(list[OpResult], await rpc.call("apply", wire, trash_pass))
                        if wire
                        else []
                    )
                break
            except ConnectionLost as err:
                attempts += 1
                if attempts > MAX_RETRIES:
                    raise
                self._lost(err, "apply")
        for op in ops:
            if op.stage is not None:
                if op.stage in failed and self._agent_handle(op.stage) is not None:
                    with contextlib.suppress(ConnectionLost, OSError):
                        await self._staged("stage_abort", op.stage)
                self._upload_done(op.stage)
        done = iter(results)
        return [lost[i] if i in lost else next(done) for i in range(len(ops))]

    async def _apply_retry(
        self, rpc: RpcClient, wire: list[Op], trash_pass: int = 0
    ) -> list[OpResult]:
        """A batch whose answer was lost may have been applied already. Ask first
        with the contents left out (the agent reports ops whose path already holds
        the new entry as done, and cannot apply the others), then send contents
        only for what is still missing: a lost answer costs no re-sent data."""
        probe = [
            msgspec.structs.replace(op, data=None) if op.data is not None else op for op in wire
        ]
        first = cast(list[OpResult], await rpc.call("apply", probe, trash_pass))
        pairs = enumerate(zip(wire, first, strict=True))
        again = [i for i, (op, r) in pairs if not r.ok and op.data is not None]
        if not again:
            return first
        resend = [wire[i] for i in again]
        self.sent_bytes += sum(len(op.data) for op in resend if op.data is not None)
        second = cast(list[OpResult], await rpc.call("apply", resend, trash_pass))
        out = list(first)
        for i, r in zip(again, second, strict=True):
            out[i] = r
        return out

    # -- deltas: calls are small (signatures, plans, one piece of ops) --------------------

    def _no_delta(self) -> bool:
        return self.welcome is not None and "pyfastcdc" in self.welcome.stand_ins

    async def signature(self, path: str, expect: Entry, size_hint: int = 0) -> SigReply:
        if self._no_delta():
            return SigReply(unsupported=True, problem="the agent cannot chunk (no pyfastcdc)")
        reply = cast(SigReply, await self._call("signature", path, expect, size_hint))
        if reply.sig is not None:
            self.received_bytes += _sig_size(reply.sig)
        return reply

    async def region_signatures(
        self, path: str, expect: Entry, regions: list[tuple[int, int]], size_hint: int = 0
    ) -> list[Signature]:
        sigs = cast(
            list[Signature],
            await self._call("region_signatures", path, expect, list(regions), size_hint),
        )
        self.received_bytes += sum(_sig_size(s) for s in sigs)
        return sigs

    async def delta_plan(self, path: str, expected: Entry, sig: Signature) -> PlanReply:
        if self._no_delta():
            return PlanReply(unsupported=True, problem="the agent cannot chunk (no pyfastcdc)")
        self.sent_bytes += _sig_size(sig)
        return cast(PlanReply, await self._call("delta_plan", path, expected, sig))

    async def delta_ops(
        self, path: str, expected: Entry, offset: int, length: int, fine: list[Signature]
    ) -> list[DeltaOp]:
        self.sent_bytes += sum(_sig_size(s) for s in fine)
        ops = cast(
            list[DeltaOp], await self._call("delta_ops", path, expected, offset, length, fine)
        )
        self.received_bytes += sum(len(op.data) for op in ops if isinstance(op, Data))
        return ops

    async def patch_open(self, path: str, old: Entry, new: Entry, inplace: bool) -> int:
        remote = cast(int, await self._call("patch_open", path, old, new, inplace))
        local = self._next_stage
        self._next_stage += 1
        self._patches[local] = (self._generation, remote)
        return local

    def _agent_patch(self, handle: int) -> int:
        if handle not in self._patches:
            raise Dropped("the delta")  # aborted: another piece of it failed
        gen, remote = self._patches[handle]
        if gen != self._generation:
            raise OSError(
                errno.ECONNRESET,
                f"the delta to {self.where} was interrupted by a lost connection; "
                "it is sent again on the next pass",
            )
        return remote

    async def patch_write(self, handle: int, offset: int, ops: list[DeltaOp]) -> None:
        remote = self._agent_patch(handle)
        self.sent_bytes += sum(len(op.data) for op in ops if isinstance(op, Data))
        await self._call("patch_write", remote, offset, ops)

    async def patch_commit(self, handle: int) -> OpResult:
        try:
            remote = self._agent_patch(handle)
        except OSError as err:
            return OpResult("", False, str(err), transient=True)
        finally:
            self._patches.pop(handle, None)
        try:
            return cast(OpResult, await self._call("patch_commit", remote))
        except ConnectionLost as err:
            return OpResult("", False, f"connection lost while committing a delta: {err}", True)

    async def patch_abort(self, handle: int) -> None:
        gen, remote = self._patches.pop(handle, (-1, -1))
        if gen == self._generation:
            with contextlib.suppress(ConnectionLost):
                await self._call("patch_abort", remote)

    async def close(self) -> None:
        if self._closed:
            return
        for task in self._ahead.values():
            task.cancel()
        self._ahead.clear()
        # Uploads still writing were cut off (Ctrl-C, a failure): do not wait for their
        # chunks to cross a slow link; the agent keeps what it verified, to resume.
        cut = [task for pending in self._writes.values() for task in pending]
        self._writes.clear()
        for task in cut:
            task.cancel()
        await asyncio.gather(*cut, return_exceptions=True)
        rpc = self._rpc
        try:
            if rpc is not None and rpc.alive and self.config is not None:
                with contextlib.suppress(ConnectionLost, YeetError, TimeoutError):
                    # the agent's state is durable as it goes: do not hold up an exit
                    await asyncio.wait_for(rpc.call("close"), CLOSE_WAIT)
        finally:
            self._closed = True
            await self.bulk.aclose()
            await self._drop()
            await self.connector.aclose()


def _sig_size(sig: Signature) -> int:
    return len(sig.lengths) + len(sig.weak) + len(sig.strong) + 32


def _with_stage(op: Op, handle: int) -> Op:
    return Op(op.path, op.old, op.new, op.data, handle, op.copy_from)


def _pieces(items: Sequence[T], size: Callable[[T], int]) -> list[list[T]]:
    out: list[list[T]] = [[]]
    total = 0
    for item in items:
        n = size(item)
        if out[-1] and (total + n > PIECE_BYTES or len(out[-1]) >= PIECE_ITEMS):
            out.append([])
            total = 0
        out[-1].append(item)
        total += n
    return out
