"""Carrying out a plan: content from the winning side, applied on the other.

Invariants owned here:

* Changes on a side are applied in the order the reconciler emitted them
  (parents before children), one batch at a time; fetching content for later
  batches overlaps with applying earlier ones, with a bounded number in flight.
* Deletions and replacements of directories are held back until ``release``
  (the session calls it once both scans are complete and the root-safety checks
  passed), then applied deepest first.
* The ancestor learns about a change only after the endpoint reported it
  applied (and durable).
* A file whose content already exists on the receiving side (same digest) is
  copied there locally instead of being sent (renames, copies).
"""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from yeet.endpoint.api import Endpoint, Op, OpResult, ReadRequest
from yeet.engine.entries import Entry, Problem
from yeet.engine.reconcile import Change, Side
from yeet.paths import sort_key
from yeet.state.store import Update

SMALL = 1 << 20
CHUNK = 4 << 20
BATCH_OPS = 1024
BATCH_BYTES = 2 << 20  # x IN_FLIGHT: what a lost connection may make us send again
IN_FLIGHT = 4


@dataclass
class Counters:
    files: int = 0
    bytes: int = 0
    dirs: int = 0
    removed: int = 0
    copied_locally: int = 0
    failed: int = 0
    transient: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class _Job:
    side: Side
    changes: list[Change]
    ops: list[Op] = field(default_factory=list)


async def _call_apply(ep: Endpoint, ops: list[Op]) -> list[OpResult]:
    return await ep.apply(ops)


def _defers(c: Change) -> bool:
    """Deletions and directory replacements wait for the end of the scans."""
    return c.new is None or (c.old is not None and c.old.is_dir)


class Executor:
    def __init__(
        self,
        endpoints: Mapping[Side, Endpoint],
        record: Callable[[list[Update]], None],
        report: Callable[[Problem, bool], None],
        local_index: Mapping[Side, dict[bytes, str]],
    ) -> None:
        self.ep = endpoints
        self.record = record
        self.report = report
        self.index = local_index
        self.counters = {Side.ALPHA: Counters(), Side.BETA: Counters()}
        self._pending: dict[Side, list[Change]] = {Side.ALPHA: [], Side.BETA: []}
        self._deferred: dict[Side, list[Change]] = {Side.ALPHA: [], Side.BETA: []}
        self._wake = {s: asyncio.Event() for s in Side}
        self._closed = False
        self._ready: dict[Side, asyncio.Queue[tuple[_Job, asyncio.Task[None]] | None]] = {
            s: asyncio.Queue(IN_FLIGHT) for s in Side
        }
        self._tasks: list[asyncio.Task[None]] = []
        self._known: dict[tuple[Side, str], tuple[Entry | None, Entry | None]] = {}
        self._busy = 0  # batches taken but not yet accounted
        self._idle = asyncio.Event()
        self._idle.set()
        self._large_slot = asyncio.Semaphore(1)

    # -- input ------------------------------------------------------------------------

    def submit(self, changes: Iterable[Change]) -> None:
        """Queue changes; one identical to a change already queued or in flight
        (a later pass deciding the same thing again) is dropped."""
        for c in changes:
            key = (c.side, c.path)
            if self._known.get(key) == (c.old, c.new):
                continue
            self._known[key] = (c.old, c.new)
            (self._deferred if _defers(c) else self._pending)[c.side].append(c)
            self._idle.clear()
            self._wake[c.side].set()

    async def drain(self) -> None:
        """Wait until everything queued so far (not held back) has been applied."""
        while self._pending[Side.ALPHA] or self._pending[Side.BETA] or self._busy:
            self._idle.clear()
            await self._idle.wait()

    def _settled(self, job: _Job) -> None:
        for c in job.changes:
            self._known.pop((c.side, c.path), None)
        self._busy -= 1
        if self._busy == 0 and not (self._pending[Side.ALPHA] or self._pending[Side.BETA]):
            self._idle.set()

    def release(self) -> None:
        """Queue the held-back deletions and directory replacements, deepest first."""
        for side in Side:
            held = self._deferred[side]
            removals = sorted((c for c in held if c.new is None), key=lambda c: sort_key(c.path))
            replacements = [c for c in held if c.new is not None]
            self._pending[side].extend(reversed(removals))
            self._pending[side].extend(replacements)
            held.clear()
            self._wake[side].set()

    def deferred(self) -> int:
        return sum(len(v) for v in self._deferred.values())

    def queued(self) -> int:
        return sum(len(v) for v in self._pending.values())

    # -- running ----------------------------------------------------------------------

    def start(self) -> None:
        for side in Side:
            self._tasks.append(asyncio.create_task(self._batcher(side), name=f"batch-{side}"))
            self._tasks.append(asyncio.create_task(self._applier(side), name=f"apply-{side}"))

    async def finish(self) -> None:
        """Apply everything submitted (and released) so far, then stop."""
        self._closed = True
        for ev in self._wake.values():
            ev.set()
        try:
            await asyncio.gather(*self._tasks)
        finally:
            for t in self._tasks:
                t.cancel()

    async def _batcher(self, side: Side) -> None:
        queue = self._ready[side]
        while True:
            if not self._pending[side]:
                if self._closed:
                    break
                self._wake[side].clear()
                await self._wake[side].wait()
                continue
            job = self._take_batch(side)
            fetch = asyncio.create_task(self._fetch(job))
            await queue.put((job, fetch))
        await queue.put(None)

    def _take_batch(self, side: Side) -> _Job:
        pending = self._pending[side]
        job = _Job(side, [])
        size = 0
        n = 0
        while n < len(pending) and n < BATCH_OPS and size < BATCH_BYTES:
            c = pending[n]
            if c.new is not None and c.new.is_file:
                size += c.new.size
            n += 1
        job.changes = pending[:n]
        del pending[:n]
        self._busy += 1
        return job

    async def _applier(self, side: Side) -> None:
        """Send batches to the endpoint in order, several in flight; account in order."""
        queue = self._ready[side]
        ep = self.ep[side]
        inflight: list[tuple[_Job, asyncio.Task[list[OpResult]]]] = []

        async def settle_oldest() -> None:
            job, task = inflight.pop(0)
            try:
                self._account(job, await task)
            finally:
                self._settled(job)

        while True:
            if inflight and queue.empty():
                await settle_oldest()  # nothing else to send meanwhile: collect results
                continue
            item = await queue.get()
            if item is None:
                break
            job, fetch = item
            await fetch
            if not job.ops:
                self._settled(job)
                continue
            inflight.append((job, asyncio.create_task(_call_apply(ep, job.ops))))
            if len(inflight) >= IN_FLIGHT:
                await settle_oldest()
        while inflight:
            await settle_oldest()

    # -- content ----------------------------------------------------------------------

    async def _fetch(self, job: _Job) -> None:
        """Build the job's ops, fetching content from the other side where needed."""
        source = self.ep[job.side.other]
        target = self.ep[job.side]
        index = self.index[job.side]
        ops: list[Op | None] = []
        reads: list[tuple[int, Change]] = []
        large: list[tuple[int, Change]] = []
        for c in job.changes:
            new = c.new
            if (
                new is None
                or not new.is_file
                or (c.old is not None and c.old.is_file and c.old.digest == new.digest)
            ):
                ops.append(Op(c.path, c.old, new))
                continue
            local = index.get(new.digest)
            if local is not None and local != c.path:
                ops.append(Op(c.path, c.old, new, copy_from=local))
                self.counters[job.side].copied_locally += 1
                continue
            ops.append(None)
            (large if new.size > SMALL else reads).append((len(ops) - 1, c))
        if reads:
            results = await source.read_files(
                [ReadRequest(c.path, c.new) for _, c in reads if c.new is not None]
            )
            for (i, c), r in zip(reads, results, strict=True):
                if r.data is None:
                    self.report(Problem(c.path, r.problem or "cannot read", job.side.other), True)
                else:
                    ops[i] = Op(c.path, c.old, c.new, data=r.data)
        for i, c in large:
            async with self._large_slot:  # one large upload at a time (bounded re-send)
                handle = await self._send_large(source, target, c)
                if handle is not None:
                    ops[i] = Op(c.path, c.old, c.new, stage=handle)
        job.ops = [op for op in ops if op is not None]

    async def _send_large(self, source: Endpoint, target: Endpoint, c: Change) -> int | None:
        """Upload a large file in chunks, skipping those an earlier attempt delivered."""
        new = c.new
        assert new is not None
        info = await target.stage_open(c.path, new)
        have = set(info.have)
        try:
            for offset in range(0, new.size, CHUNK):
                length = min(CHUNK, new.size - offset)
                if (offset, length) in have:
                    continue
                data = await source.read_range(c.path, new, offset, length)
                await target.stage_write(info.handle, offset, data)
        except OSError as err:
            if not isinstance(err, ConnectionError) and err.errno != errno.ECONNRESET:
                await target.stage_abort(info.handle)  # the source changed: no use resuming
            self.report(Problem(c.path, f"transfer interrupted: {err}", c.side.other), True)
            return None
        return info.handle

    # -- results ----------------------------------------------------------------------

    def _account(self, job: _Job, results: list[OpResult]) -> None:
        by_path: dict[str, Op] = {op.path: op for op in job.ops}
        updates: list[Update] = []
        counters = self.counters[job.side]
        for r in results:
            op = by_path[r.path]
            if not r.ok:
                counters.failed += 1
                counters.transient += r.transient
                self.report(Problem(r.path, r.problem or "failed", job.side), r.transient)
                continue
            updates.append(Update(r.path, op.new, applied=True))
            self._count(counters, op.new, op.old)
            self._index(job.side, r.path, op.new)
        if updates:
            self.record(updates)

    @staticmethod
    def _count(counters: Counters, new: Entry | None, old: Entry | None) -> None:
        if new is None:
            counters.removed += 1
        elif new.is_dir:
            counters.dirs += 1
        else:
            counters.files += 1
            if new.is_file and not (old is not None and old.is_file and old.digest == new.digest):
                counters.bytes += new.size

    def _index(self, side: Side, path: str, new: Entry | None) -> None:
        if new is not None and new.is_file:
            self.index[side].setdefault(new.digest, path)
