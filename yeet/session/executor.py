"""Carrying out a plan: workers take work from the scheduler and move content.

Invariants owned here:

* What runs next is the scheduler's decision (``yeet.core.schedule``):
  metadata and small files first, large files in chunks that idle workers
  steal, deletions after the scans, deepest first.
* The ancestor learns about a change only after the endpoint reported it
  applied (and durable); what is about to be applied is recorded first
  (``IntentLog``), so a crash in between never makes yeet's own writes look
  like edits of the receiving side.
* A file whose content already exists on the receiving side (same digest) is
  copied there locally instead of being sent (renames, copies); a large upload
  interrupted earlier resumes from the chunks the receiver already holds.
* Memory stays bounded: at most ``workers`` pieces of work (each at most one
  batch or one chunk) are in flight.
* A changed large file whose receiver holds the old version goes as a delta
  (``yeet.session.deltajob``) in the same work units; a delta that cannot be
  made or does not verify becomes a whole-file upload, never a wrong file.
* A step that fails is a problem of its path only, on the side whose call failed
  (``yeet.session.failure``); the pieces of a dropped upload that other workers
  still hold end quietly (their calls fail as ``OSError``). Only what is no
  per-path failure (a bug, a lost endpoint) fails the session.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from yeet.contract.endpoint import Endpoint
from yeet.contract.values import Op, OpResult, ReadRequest, ReadResult
from yeet.core.decisions import Change, Side
from yeet.core.localindex import LocalIndex
from yeet.core.schedule import (
    Batch,
    Chunk,
    Commit,
    Prepare,
    Scheduler,
    Upload,
    Work,
    missing,
)
from yeet.core.trees import applied_update
from yeet.delta.ops import Data
from yeet.model.entries import Entry, Problem
from yeet.model.paths import parent_of
from yeet.replica.write.partial import range_hash
from yeet.session import deltajob
from yeet.session.counters import Counters, IntentLog, Rate
from yeet.session.failure import SideFailure, on
from yeet.state.store import Update

SMALL = 1 << 20
WORKERS = 4
MIN_CHUNK, MAX_CHUNK = 1 << 20, 8 << 20
CHUNK_SECONDS = 0.25  # chunk size follows the link: about this long per chunk
ABORT_GRACE = 3.0  # seconds an interrupted apply may take to be answered and recorded


class Executor:
    def __init__(
        self,
        endpoints: Mapping[Side, Endpoint],
        record: Callable[[list[Update]], None],
        report: Callable[[Problem, bool], None],
        local_index: Mapping[Side, LocalIndex],
        workers: int = WORKERS,
        delta_min: int | None = SMALL,
        inplace_min: int = deltajob.INPLACE_MIN,
        intents: IntentLog | None = None,
        counters: dict[Side, Counters] | None = None,
    ) -> None:
        self.endpoints = endpoints
        self.record = record
        self.intents = intents
        self.report = report
        self.index = local_index
        self.counters = counters or {Side.ALPHA: Counters(), Side.BETA: Counters()}
        self.sched = Scheduler(workers=workers, small_limit=SMALL, chunk=4 << 20)
        self.sched.delta_min = delta_min
        self.inplace_min = inplace_min
        self.hints: dict[tuple[Side, str], tuple[tuple[int, int], ...]] = {}
        """Dirty ranges of changed large files (kernel tracer), by (receiving side,
        path): the delta sends just those pages, see ``deltajob``."""
        self._requeued: set[tuple[Side, str]] = set()
        self.generation = 0
        self._gen_of: dict[tuple[Side, str], int] = {}  # the pass that decided a change
        self._late: set[str] = set()  # applied this pass, decided by an earlier one
        self._late_under: set[str] = set()  # directories with such a path below them
        self.trash_pass = 0  # the pass number what this trashes is marked with
        self.rate = Rate()
        self._workers = workers
        self._wake = asyncio.Event()
        self._closed = False
        self._stopping = False  # aborted: workers take no more work
        self._applying: set[asyncio.Task[Any]] = set()  # workers awaiting an apply
        self.fatal: Exception | None = None  # the first failure that was no per-path problem
        self._tasks: list[asyncio.Task[None]] = []
        self._known: dict[tuple[Side, str], tuple[Entry | None, Entry | None]] = {}
        # by upload (not by ``id``: a new upload may get the id of a failed one)
        self._opening: dict[Upload, asyncio.Future[None]] = {}
        self._progress: dict[Upload, int] = {}  # bytes sent
        self._idle = asyncio.Event()
        self._idle.set()
        self._room = asyncio.Event()  # set whenever work finishes (see ``room``)

    # -- input ------------------------------------------------------------------------

    def submit(self, changes: Iterable[Change]) -> None:
        """Queue changes; one identical to a change already queued or in flight
        (a later pass deciding the same thing again) is dropped."""
        fresh = []
        for c in changes:
            key = (c.side, c.path)
            if self._known.get(key) == (c.old, c.new):
                continue
            self._known[key] = (c.old, c.new)
            self._gen_of[key] = self.generation
            fresh.append(c)
        if fresh:
            local = {
                c.path
                for c in fresh
                if c.new is not None
                and c.new.is_file
                and self.index[c.side].get(c.new.digest, c.path) != c.path
            }
            self.sched.add(fresh, self.generation, local)
            self._idle.clear()
            self._wake.set()

    def new_pass(self) -> None:
        """A pass begins: what it decides goes before older queued work, and work of
        earlier passes that lands from now on makes its paths ``stale``."""
        self.generation += 1
        self._late.clear()
        self._late_under.clear()

    def stale(self, path: str, subtree: bool) -> bool:
        """Work decided by an earlier pass was applied at ``path``, or at a directory
        above it (or, with ``subtree``, below it) since this pass began: the pass's
        listings and ancestor data for it may straddle that write."""
        if subtree and path in self._late_under:
            return True
        p = path
        while p:
            if p in self._late:
                return True
            p = parent_of(p)
        return False

    def _landed(self, side: Side, path: str) -> None:
        generation = self._gen_of.pop((side, path), self.generation)
        if generation < self.generation:
            self._late.add(path)
            p = parent_of(path)
            while p:
                self._late_under.add(p)
                p = parent_of(p)

    def backlog(self) -> int:
        """Changes queued or in flight that can run now (held-back deletions excluded)."""
        return len(self._known) - self.sched.held()

    async def room(self, limit: int) -> None:
        """Wait while more than ``limit`` changes wait to run: a scan that outruns the
        transfers pauses instead of queueing the whole tree in memory. It never waits
        while nothing runs (what is queued then waits for the scan itself: work
        that depends on held-back replacements)."""
        while self.backlog() > limit and self.sched.busy > 0:
            self.raise_fatal()
            self._room.clear()
            await self._room.wait()

    def hint(self, side: Side, path: str, ranges: tuple[tuple[int, int], ...]) -> None:
        """Dirty byte ranges of ``path`` since the last sync (from the kernel tracer of
        the *source* host), for the change that updates it on ``side``: the delta
        then sends just those pages. A wrong hint costs a whole-file retry, never a
        wrong file (the receiver verifies the digest). A hint not yet taken (a change
        still queued) grows by the new ranges."""
        self.hints[(side, path)] = ranges + self.hints.get((side, path), ())

    def busy(self) -> bool:
        """Some change is being carried out now."""
        return self.sched.busy > 0

    def progress(self) -> dict[str, Any]:
        """What is queued and running, for progress reports (``idle``: nothing runs
        and nothing could start)."""
        return {
            "idle": self.sched.busy == 0 and self.sched.next_would_be_none(),
            "queued": self.queued(),
            "queued_bytes": self.queued_bytes(),
            "in_flight": self.sched.busy,
            "deferred": self.deferred(),
            "rate": self.rate.value,
            "uploads": self.uploads(),
        }

    def release(self) -> None:
        """The scans are complete: queue the held-back deletions and replacements."""
        self.sched.release()
        self._wake.set()

    def deferred(self) -> int:
        return self.sched.held()

    def held_deletions(self, moved: Mapping[Side, set[bytes]]) -> dict[Side, int]:
        """Files (and links) each side would lose when the held-back work is released
        (not counting content that ``moved`` says arrives elsewhere on that side)."""
        return self.sched.held_deletions(moved)

    def queued(self) -> int:
        return self.sched.queued()[0]

    def queued_bytes(self) -> int:
        return self.sched.queued()[1]

    def uploads(self) -> list[tuple[str, int, int]]:
        """Large files in flight: (path, bytes sent, size)."""
        return [(u.change.path, self._progress.get(u, 0), u.size) for u in self.sched.in_flight()]

    # -- running ----------------------------------------------------------------------

    def start(self) -> None:
        for n in range(self._workers):
            self._tasks.append(asyncio.create_task(self._worker(), name=f"transfer-{n}"))

    async def drain(self) -> None:
        """Wait until everything queued so far (not held back) has been done; a
        failure that was not a per-path problem is raised here (never swallowed:
        work that failed that way must not look done)."""
        while not (self.sched.busy == 0 and self.sched.next_would_be_none()):
            self.raise_fatal()
            self._idle.clear()
            await self._idle.wait()
        self.raise_fatal()

    def raise_fatal(self) -> None:
        if self.fatal is not None:
            raise self.fatal

    async def abort(self) -> None:
        """Stop the workers now, whatever is queued (interrupted: an upload cut off
        keeps its partial file and resumes later).

        A worker waiting for the answer to an ``apply`` gets up to ``ABORT_GRACE``
        seconds to receive and record it: the receiver completes an apply it has
        begun whether or not we wait, and content that arrived without its ancestor
        being recorded would look like a second, conflicting creation to the next run
        once the source changes again."""
        self._closed = self._stopping = True
        for task in self._tasks:
            if task not in self._applying:
                task.cancel()
        applying = [t for t in self._tasks if t in self._applying]
        if applying:
            await asyncio.wait(applying, timeout=ABORT_GRACE)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def finish(self) -> None:
        """Do everything queued (and released), then stop the workers."""
        await self.drain()
        self._closed = True
        self._wake.set()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.raise_fatal()

    async def _worker(self) -> None:
        while not self._stopping:
            work = self.sched.next()
            if work is None:
                if self.sched.busy == 0 and self.sched.next_would_be_none():
                    self._idle.set()
                if self._closed:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            applied: list[Change] = []
            try:
                applied = await self._do(work)
            except Exception as err:  # not a per-path problem: the session must fail
                if self.fatal is None:
                    self.fatal = err
                self._idle.set()
                self._room.set()
            finally:
                self.sched.finished(work, applied)
                self._forget(work)
                self._wake.set()
                self._room.set()

    def _forget(self, work: Work) -> None:
        """Work that is over (done or failed) may be decided again by a later pass."""
        if isinstance(work, Batch):
            changes = work.changes
        elif isinstance(work, Commit) or work.upload.failed:
            changes = [work.upload.change]
            if work.upload.inflight == 0:  # its last piece: nothing of it runs any more
                self._opening.pop(work.upload, None)
                self._progress.pop(work.upload, None)
        else:
            return
        for c in changes:
            if (c.side, c.path) in self._requeued:  # a failed delta, queued again whole
                self._requeued.discard((c.side, c.path))
                continue
            if self._known.get((c.side, c.path)) == (c.old, c.new):
                del self._known[(c.side, c.path)]
                self._gen_of.pop((c.side, c.path), None)

    async def _do(self, work: Work) -> list[Change]:
        if isinstance(work, Batch):
            return await self._batch(work)
        if isinstance(work, Chunk):
            await self._chunk(work)
            return []
        if isinstance(work, Prepare):
            await self._prepare(work.upload)
            return []
        return await self._commit(work)

    # -- small files and metadata -----------------------------------------------------

    async def _batch(self, batch: Batch) -> list[Change]:
        source = self.endpoints[batch.side.other]
        target = self.endpoints[batch.side]
        index = self.index[batch.side]
        ops: list[Op | None] = []
        reads: list[tuple[int, Change]] = []
        large: list[tuple[int, Change]] = []
        for c in batch.changes:
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
                self.counters[batch.side].copied_locally += 1
                continue
            ops.append(None)
            (large if new.size > SMALL else reads).append((len(ops) - 1, c))
        if reads:
            t = time.monotonic()
            try:
                with on(batch.side.other):
                    results = await source.read_files(
                        [ReadRequest(c.path, c.new) for _, c in reads if c.new is not None]
                    )
            except SideFailure as failure:  # the whole call: every read of it
                why = failure.reason("cannot read")
                results = [ReadResult(c.path, problem=why) for _, c in reads]
            self.rate.add(sum(len(r.data or b"") for r in results), time.monotonic() - t)
            for (i, c), r in zip(reads, results, strict=True):
                if r.data is None:
                    self._problem(c.path, r.problem or "cannot read", batch.side.other, True)
                else:
                    ops[i] = Op(c.path, c.old, c.new, data=r.data)
        for i, c in large:  # only in replacement batches (directory -> large file)
            handle = await self._upload_whole(source, target, c)
            if handle is not None:
                ops[i] = Op(c.path, c.old, c.new, stage=handle)
        wire = [op for op in ops if op is not None]
        if not wire:
            return []
        return await self._apply(batch.side, wire)

    async def _upload_whole(self, source: Endpoint, target: Endpoint, c: Change) -> int | None:
        new = c.new
        assert new is not None
        handle: int | None = None
        try:
            with on(c.side):
                info = await target.stage_open(c.path, new)
            handle = info.handle
            for start in range(0, new.size, self.sched.chunk):
                piece = min(self.sched.chunk, new.size - start)
                for offset, length in missing(info.have, start, piece):
                    with on(c.side.other):
                        data = await source.read_range(c.path, new, offset, length)
                    with on(c.side):
                        await target.stage_write(handle, offset, data)
        except SideFailure as failure:
            if handle is not None:
                await self._abandon(target, handle, failure)
            self._failed(c.path, failure, "transfer interrupted")
            return None
        return handle

    async def _abandon(self, target: Endpoint, handle: int, failure: SideFailure) -> None:
        """A lost link keeps the upload open (it resumes from its chunks); a full
        filesystem drops it with its partial (which holds the space others need); any
        other failure (typically: the source changed mid-transfer) closes it but keeps
        the partial, whose chunks the next upload of the path checks and keeps."""
        err = failure.err
        if not isinstance(err, ConnectionError) and err.errno != errno.ECONNRESET:
            try:
                await target.stage_abort(handle, keep=not failure.full)
            except OSError:
                pass

    # -- large files ------------------------------------------------------------------

    async def _open(self, up: Upload) -> None:
        """Open the upload on the receiver once, whichever worker gets there first."""
        fut = self._opening.get(up)
        if fut is not None:
            await asyncio.shield(fut)
            return
        fut = asyncio.get_running_loop().create_future()
        self._opening[up] = fut
        try:
            assert up.change.new is not None
            with on(up.change.side):
                info = await self.endpoints[up.change.side].stage_open(
                    up.change.path, up.change.new
                )
            up.handle = info.handle
            up.maybe = info.maybe
            if info.have:
                self.sched.skip(up, info.have)
            fut.set_result(None)
        except BaseException as err:
            fut.set_exception(err)
            fut.exception()  # retrieved: other waiters re-raise it
            raise

    async def _prepare(self, up: Upload) -> None:
        c = up.change
        source, target = self.endpoints[c.side.other], self.endpoints[c.side]
        hint = self.hints.pop((c.side, c.path), None)
        try:
            got = await deltajob.prepare(source, target, c, hint, self.inplace_min)
        except SideFailure as failure:  # (prepare aborts its own patch handle)
            self.sched.fail_upload(up)
            self._failed(c.path, failure, "delta interrupted")
            return
        if isinstance(got, deltajob.Whole):
            up.todo = self.sched.pieces([(0, up.size)])
        elif isinstance(got, deltajob.Refused):
            self.sched.fail_upload(up)
            self.counters[c.side].transient += 1
            side = c.side.other if got.side_is_source else c.side
            self._problem(c.path, got.reason, side, True)
        else:
            up.delta = got
            up.handle = got.handle
            up.todo = self.sched.pieces(got.literals)
            self.counters[c.side].signature_bytes += got.signature_bytes

    async def _delta_piece(self, up: Upload, d: deltajob.Delta, chunk: Chunk) -> None:
        c = up.change
        assert c.new is not None
        t = time.monotonic()
        with on(c.side.other):
            ops = await self.endpoints[c.side.other].delta_ops(
                c.path, c.new, chunk.offset, chunk.length, d.fine_for(chunk.offset)
            )
        with on(c.side):
            await self.endpoints[c.side].patch_write(d.handle, chunk.offset, ops)
        sent = sum(len(op.data) for op in ops if isinstance(op, Data))
        d.sent += sent
        self.counters[c.side].literal_bytes += sent
        self.rate.add(sent, time.monotonic() - t)
        self._progress[up] = self._progress.get(up, 0) + chunk.length

    async def _chunk(self, chunk: Chunk) -> None:
        """One piece of a large file; if its upload fails meanwhile (another piece
        did), the rest of this one ends quietly."""
        up = chunk.upload
        c = up.change
        source, target = self.endpoints[c.side.other], self.endpoints[c.side]
        if up.failed:
            return
        if isinstance(up.delta, deltajob.Delta):
            try:
                await self._delta_piece(up, up.delta, chunk)
            except SideFailure as failure:
                if not up.failed:
                    self.sched.fail_upload(up)
                    with contextlib.suppress(OSError):
                        await target.patch_abort(up.delta.handle)
                    self._failed(c.path, failure, "delta interrupted")
            return
        try:
            await self._open(up)
            handle, new = up.handle, c.new
            if up.failed or handle is None or new is None:
                return  # failed meanwhile (a dropped upload has no chunks to send)
            # Only what the receiver lacks: a resumed upload's chunk record (``up.have``)
            # arrived after this chunk was cut, and its ranges need not match it.
            for offset, length in missing(up.have, chunk.offset, chunk.length):
                t = time.monotonic()
                with on(c.side.other):
                    data = await source.read_range(c.path, new, offset, length)
                self._progress[up] = self._progress.get(up, 0) + len(data)
                with on(c.side):
                    kept = up.may_keep(offset, length) and await target.stage_keep(
                        handle, offset, length, range_hash(data)
                    )
                if kept:
                    # an upload of an older version delivered these bytes already
                    self.counters[c.side].kept += len(data)
                    continue
                with on(c.side):
                    await target.stage_write(handle, offset, data)
                self.rate.add(len(data), time.monotonic() - t)
                self._adapt_chunk()
        except SideFailure as failure:
            if not up.failed:
                self.sched.fail_upload(up)
                if up.handle is not None:
                    await self._abandon(target, up.handle, failure)
                self._failed(c.path, failure, "transfer interrupted")

    def _adapt_chunk(self) -> None:
        if self.rate.value > 0:
            want = int(self.rate.value * CHUNK_SECONDS)
            size = MIN_CHUNK
            while size * 2 <= min(want, MAX_CHUNK):
                size *= 2
            self.sched.chunk = size

    async def _commit(self, commit: Commit) -> list[Change]:
        up = commit.upload
        c = up.change
        self._progress.pop(up, None)
        self._opening.pop(up, None)
        if up.handle is None:
            return []
        if isinstance(up.delta, deltajob.Delta):
            return await self._commit_delta(up, up.delta)
        op = Op(c.path, c.old, c.new, stage=up.handle)
        return await self._apply(c.side, [op])

    async def _commit_delta(self, up: Upload, d: deltajob.Delta) -> list[Change]:
        c = up.change
        self._intend(c.side, [Op(c.path, c.old, c.new)])
        try:
            with on(c.side):
                result = await self.endpoints[c.side].patch_commit(d.handle)
        except SideFailure as failure:  # (whether it landed is unknown: the intent stays)
            self._failed(c.path, failure, "delta interrupted")
            return []
        if result.path != c.path:
            result = OpResult(c.path, result.ok, result.problem, result.transient, result.whole)
        counters = self.counters[c.side]
        if result.whole:  # the delta did not reproduce the file: send it whole
            self._record(c.side, [], [c.path])
            self.sched.no_delta.add((c.side, c.path))
            self._requeued.add((c.side, c.path))
            self.sched.add([c], self.generation)
            return []
        op = Op(c.path, c.old, c.new)
        applied = self._account(c.side, [op], [result])
        if applied:
            counters.delta_files += 1
            assert c.new is not None
            counters.delta_bytes += c.new.size
            counters.bytes -= c.new.size  # counted whole by _account: only literals moved
            counters.bytes += d.sent
        return applied

    # -- results ----------------------------------------------------------------------

    def _problem(self, path: str, reason: str, side: Side, transient: bool) -> None:
        self.report(Problem(path, reason, side.value), transient)

    def _failed(self, path: str, failure: SideFailure, doing: str) -> None:
        """A step of ``path`` failed on one side: the problem names that side."""
        self._problem(path, failure.reason(doing), failure.side, failure.transient)

    async def _apply(self, side: Side, ops: list[Op]) -> list[Change]:
        """Apply and record, as one step that ``abort`` lets finish (briefly). A call
        failing as a whole (``OSError``) fails each op: nothing of it is recorded."""
        task = asyncio.current_task()
        assert task is not None
        self._applying.add(task)
        try:
            self._intend(side, ops)
            try:
                with on(side):
                    results = await self.endpoints[side].apply(ops, self.trash_pass)
            except SideFailure as failure:
                results = [
                    OpResult(op.path, False, failure.reason("not applied"), failure.transient)
                    for op in ops
                ]
                # whether they landed is unknown: their intents stay for the next run
                return self._account(side, ops, results, settle=False)
            return self._account(side, ops, results)
        finally:
            self._applying.discard(task)

    def _intend(self, side: Side, ops: list[Op]) -> None:
        if self.intents is not None:
            self.intents.intend(side.value, [(op.path, op.old, op.new) for op in ops])

    def _record(self, side: Side, updates: list[Update], paths: list[str]) -> None:
        """Record what was applied; the intents of ``paths`` are over with it."""
        if self.intents is not None:
            self.intents.record(updates, settled=(side.value, paths))
        elif updates:
            self.record(updates)

    def _account(
        self, side: Side, ops: list[Op], results: list[OpResult], settle: bool = True
    ) -> list[Change]:
        """Record what was applied and report what was not; ``settle``: the intents of
        ``ops`` are over (not when the outcome is unknown: a lost answer)."""
        by_path: dict[str, Op] = {op.path: op for op in ops}
        updates: list[Update] = []
        applied: list[Change] = []
        counters = self.counters[side]
        for r in results:
            op = by_path[r.path]
            self._landed(side, r.path)
            if not r.ok:
                counters.failed += 1
                counters.transient += r.transient
                self._problem(r.path, r.problem or "failed", side, r.transient)
                continue
            entry = r.applied or op.new
            updates.append(Update(r.path, entry, applied=applied_update(op.old, entry)))
            applied.append(Change(side, r.path, op.old, op.new))
            counters.count(op.new, op.old)
            if op.new is not None and op.new.is_file:
                self.index[side].add(op.new.digest, r.path)
        self._record(side, updates, list(by_path) if settle else [])
        return applied
