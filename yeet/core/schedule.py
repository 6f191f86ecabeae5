"""What an idle transfer worker does next: one priority queue for all work.

Invariants owned here (pure: values in, values out, no I/O, no clock):

* Metadata changes and small files go first, large files are cut into chunks;
  so a small item waits for at most the chunks already being worked on (one
  chunk time), however many large chunks are queued.
* Never starved: while large chunks wait, at most ``workers - 1`` workers do
  small work, so large files always progress.
* Idle workers *steal* chunks of the large file in flight with the most bytes
  left, so one big file uses every worker when nothing else waits.
* Recent work first: items from later passes (changes noticed while older work
  was queued) go before older ones of the same class.
* Dependencies hold: nothing is applied under a directory whose creation is
  still queued or in flight; deletions run deepest first, one depth at a time;
  a directory replaced by something else waits for the deletions below it.
"""

from __future__ import annotations

import enum
import heapq
import itertools
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

from yeet.core.decisions import Change, Side
from yeet.model.paths import depth, parent_of


class Phase(enum.IntEnum):
    NORMAL = 0
    REMOVALS = 1  # deletions, deepest first
    REPLACE = 2  # directories replaced by files or links


@dataclass
class Batch:
    """Small changes applied in one call (metadata, small files)."""

    side: Side
    changes: list[Change]
    size: int
    phase: bool = False  # deletions / replacements (after the scans)


@dataclass
class Chunk:
    """One piece of a large file's content."""

    upload: Upload
    offset: int
    length: int


@dataclass
class Commit:
    """All chunks of a large file arrived: verify and rename it into place."""

    upload: Upload


@dataclass
class Prepare:
    """Before its chunks exist: work out a delta for a large file (signatures,
    matching); the executor then sets ``upload.todo`` (delta pieces, or whole
    chunks when no delta is possible)."""

    upload: Upload


Work = Batch | Chunk | Commit | Prepare


def missing(have: Iterable[tuple[int, int]], offset: int, length: int) -> list[tuple[int, int]]:
    """The parts of ``offset``+``length`` that no range of ``have`` covers, in order.
    A range may be covered by several ranges of ``have`` together (the receiver
    journals the chunks it got, whose size may differ from today's chunks)."""
    start, end = offset, offset + length
    out: list[tuple[int, int]] = []
    for lo, hi in sorted((off, off + n) for off, n in have):
        if hi <= start or lo >= end:
            continue
        if lo > start:
            out.append((start, lo - start))
        start = max(start, hi)
        if start >= end:
            break
    if start < end:
        out.append((start, end - start))
    return out


@dataclass(eq=False)
class Upload:
    """A large file on its way: chunks to send, in flight, done."""

    change: Change
    size: int
    rank: tuple[int, int]
    todo: list[tuple[int, int]] = field(default_factory=list)
    inflight: int = 0
    started: bool = False
    handle: int | None = None  # the receiving endpoint's stage handle
    failed: bool = False
    have: tuple[tuple[int, int], ...] = ()  # ranges the receiver already held
    maybe: tuple[tuple[int, int], ...] = ()  # ranges of an older version it may keep
    prepare: bool = False  # a delta candidate whose Prepare has not been handed out
    delta: object = None  # the executor's delta state, once prepared as a delta

    def holds(self, offset: int, length: int) -> bool:
        """Does the receiver hold every byte of this range (in one or several ranges)?"""
        return not missing(self.have, offset, length)

    def may_keep(self, offset: int, length: int) -> bool:
        return not missing(self.maybe, offset, length)

    @property
    def left(self) -> int:
        return sum(n for _, n in self.todo)


@dataclass(order=True)
class _Small:
    rank: tuple[int, int, int]
    change: Change = field(compare=False)


class Scheduler:
    def __init__(
        self,
        workers: int = 4,
        small_limit: int = 1 << 20,
        chunk: int = 4 << 20,
        batch_ops: int = 1024,
        batch_bytes: int = 2 << 20,
    ) -> None:
        self.workers = workers
        self.small_limit = small_limit
        self.chunk = chunk
        self.batch_ops = batch_ops
        self.batch_bytes = batch_bytes
        self._seq = itertools.count()
        self._small: dict[Side, list[_Small]] = {Side.ALPHA: [], Side.BETA: []}
        self._blocked: dict[tuple[Side, str], list[_Small]] = {}
        self._creating: dict[Side, dict[str, int]] = {Side.ALPHA: {}, Side.BETA: {}}
        self._uploads: list[Upload] = []
        self._waiting_uploads: dict[tuple[Side, str], list[Upload]] = {}
        self._commits: list[Upload] = []
        self._held: dict[Phase, list[Change]] = {Phase.REMOVALS: [], Phase.REPLACE: []}
        self._phase_work: list[Change] = []  # released removals/replacements, in order
        self._phase_inflight = 0
        self._phase_level = -1
        self.busy_small = 0
        self.busy = 0
        self.delta_min: int | None = None  # old and new file at least this large: try a delta
        self.no_delta: set[tuple[Side, str]] = set()  # paths whose delta failed: whole files

    # -- input ------------------------------------------------------------------------

    def add(
        self, changes: Iterable[Change], generation: int = 0, local: Collection[str] = ()
    ) -> None:
        """Queue changes; ``generation`` (the pass number) orders recent work first;
        files in ``local`` get their content on the receiving side (a copy of a file
        there), so they are small work whatever their size."""
        for c in changes:
            if c.new is None or (c.old is not None and c.old.is_dir and not c.new.is_dir):
                self._held[Phase.REMOVALS if c.new is None else Phase.REPLACE].append(c)
                continue
            rank = (-generation, next(self._seq))
            if c.new.is_dir and not (c.old is not None and c.old.is_dir):
                self._creating[c.side][c.path] = self._creating[c.side].get(c.path, 0) + 1
            if self._is_large(c) and c.path not in local:
                if self._wants_delta(c):
                    up = Upload(c, c.new.size, rank, prepare=True)
                else:
                    up = Upload(c, c.new.size, rank, self._chunks(c.new.size))
                self._park_upload(up)
            else:
                item = _Small((0 if not c.new.is_file else 1, *rank), c)
                self._park_small(item)

    def release(self) -> None:
        """The scans are complete: let the held deletions and replacements go."""
        removals = sorted(self._held[Phase.REMOVALS], key=lambda c: -depth(c.path))
        self._phase_work.extend(removals)
        self._phase_work.extend(self._held[Phase.REPLACE])
        self._held[Phase.REMOVALS].clear()
        self._held[Phase.REPLACE].clear()

    def held(self) -> int:
        return len(self._held[Phase.REMOVALS]) + len(self._held[Phase.REPLACE])

    def held_deletions(self, moved: Mapping[Side, Collection[bytes]]) -> dict[Side, int]:
        """Files and links each side would lose by the held-back deletions, leaving out
        files whose content arrives elsewhere on that side (``moved``: renames)."""
        out: dict[Side, int] = {}
        for c in self._held[Phase.REMOVALS]:
            old = c.old
            if old is None or old.is_dir:
                continue
            if old.is_file and old.digest in moved.get(c.side, ()):
                continue
            out[c.side] = out.get(c.side, 0) + 1
        return out

    def _is_large(self, c: Change) -> bool:
        new = c.new
        if new is None or not new.is_file or new.size <= self.small_limit:
            return False
        # exec-bit-only changes carry no content
        return not (c.old is not None and c.old.is_file and c.old.digest == new.digest)

    def _wants_delta(self, c: Change) -> bool:
        old, new = c.old, c.new
        return (
            self.delta_min is not None
            and old is not None
            and new is not None
            and old.is_file
            and min(old.size, new.size) >= self.delta_min
            and (c.side, c.path) not in self.no_delta
        )

    def _chunks(self, size: int) -> list[tuple[int, int]]:
        return [(off, min(self.chunk, size - off)) for off in range(0, size, self.chunk)]

    def pieces(self, ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
        """Ranges cut into pieces of at most one chunk (the unit a worker moves)."""
        out = []
        for off, n in ranges:
            end = off + n
            while off < end:
                out.append((off, min(self.chunk, end - off)))
                off += self.chunk
        return out

    def _parent_pending(self, side: Side, path: str) -> bool:
        return parent_of(path) in self._creating[side]

    def _park_small(self, item: _Small) -> None:
        c = item.change
        if self._parent_pending(c.side, c.path):
            self._blocked.setdefault((c.side, parent_of(c.path)), []).append(item)
        else:
            heapq.heappush(self._small[c.side], item)

    def _park_upload(self, up: Upload) -> None:
        c = up.change
        if self._parent_pending(c.side, c.path):
            self._waiting_uploads.setdefault((c.side, parent_of(c.path)), []).append(up)
        else:
            self._uploads.append(up)

    # -- output -----------------------------------------------------------------------

    def next(self) -> Work | None:
        """The next piece of work for an idle worker, or None (nothing ready, or
        every worker busy)."""
        if self.busy >= self.workers:
            return None
        if self._commits:
            up = self._commits.pop(0)
            return self._take(Commit(up))
        if self._phase_work and not self._normal_pending():
            batch = self._phase_batch()
            if batch is not None:
                return self._take(batch)
        chunk_ready = any(u.todo or u.prepare for u in self._uploads)
        small_ready = any(self._small[s] for s in Side)
        if small_ready and (self.busy_small < self.workers - 1 or not chunk_ready):
            return self._take(self._small_batch())
        if chunk_ready:
            return self._take(self._steal_chunk())
        return None

    def _normal_pending(self) -> bool:
        """Deletions wait until creations and updates queued before them are done,
        so a file copied locally from a path that is then deleted still exists."""
        return (
            any(self._small[s] for s in Side)
            or bool(self._blocked)
            or bool(self._uploads)
            or bool(self._waiting_uploads)
            or bool(self._commits)
            or self.busy > self._phase_inflight
        )

    def _phase_batch(self) -> Batch | None:
        first = self._phase_work[0]
        if first.new is None:
            # one depth at a time: everything deeper is done before this level starts
            level = depth(first.path)
            if self._phase_inflight and self._phase_level != level:
                return None
            self._phase_level = level
            side = first.side
            take = [c for c in self._phase_work if c.new is None and depth(c.path) == level][
                : self.batch_ops
            ]
        else:
            if self._phase_inflight:
                return None  # replacements after every deletion finished
            side = first.side
            take = [c for c in self._phase_work if c.new is not None][: self.batch_ops]
        ids = {id(c) for c in take}
        self._phase_work = [c for c in self._phase_work if id(c) not in ids]
        by_side = [c for c in take if c.side is side]
        self._phase_work[:0] = [c for c in take if c.side is not side]
        self._phase_inflight += 1
        return Batch(side, by_side, 0, phase=True)

    def _small_batch(self) -> Batch:
        # the side whose best item ranks highest
        side = min((s for s in Side if self._small[s]), key=lambda s: self._small[s][0].rank)
        heap = self._small[side]
        changes: list[Change] = []
        size = 0
        while heap and len(changes) < self.batch_ops and size < self.batch_bytes:
            item = heapq.heappop(heap)
            changes.append(item.change)
            new = item.change.new
            if new is not None and new.is_file:
                size += new.size
        self.busy_small += 1
        return Batch(side, changes, size)

    def _steal_chunk(self) -> Chunk | Prepare:
        started = [u for u in self._uploads if u.started and u.todo]
        if started:
            up = max(started, key=lambda u: (u.left, u.rank))
        else:
            up = min((u for u in self._uploads if u.todo or u.prepare), key=lambda u: u.rank)
            up.started = True
        if up.prepare:
            up.prepare = False
            up.inflight += 1
            return Prepare(up)
        offset, length = up.todo.pop(0)
        up.inflight += 1
        return Chunk(up, offset, length)

    def _take(self, work: Work) -> Work:
        self.busy += 1
        return work

    # -- feedback ---------------------------------------------------------------------

    def skip(self, up: Upload, have: Iterable[tuple[int, int]]) -> None:
        """Bytes the receiver already holds (a resumed upload) need not be sent: what
        is left of each chunk after taking away the ranges ``have`` cover."""
        up.have = tuple(have)
        up.todo = [piece for off, n in up.todo for piece in missing(up.have, off, n)]
        self._maybe_commit(up)

    def finished(self, work: Work, applied: Iterable[Change] = ()) -> None:
        """``work`` is over; ``applied`` are the changes that really took effect."""
        self.busy -= 1
        if isinstance(work, Batch):
            if work.phase:
                self._phase_inflight -= 1
            else:
                self.busy_small -= 1
            for c in work.changes:
                if c.new is not None and c.new.is_dir:
                    self._dir_done(c.side, c.path)
        elif isinstance(work, (Chunk, Prepare)):
            work.upload.inflight -= 1
            self._maybe_commit(work.upload)
        else:
            self._uploads = [u for u in self._uploads if u is not work.upload]

    def fail_upload(self, up: Upload) -> None:
        """The upload cannot go on (source changed, link lost): drop its chunks."""
        up.failed = True
        up.todo.clear()
        if up.inflight == 0:
            self._uploads = [u for u in self._uploads if u is not up]

    def _maybe_commit(self, up: Upload) -> None:
        if not up.todo and up.inflight == 0 and up in self._uploads and up not in self._commits:
            if up.failed:
                self._uploads = [u for u in self._uploads if u is not up]
            else:
                self._commits.append(up)

    def _dir_done(self, side: Side, path: str) -> None:
        count = self._creating[side].get(path, 0) - 1
        if count > 0:
            self._creating[side][path] = count
            return
        self._creating[side].pop(path, None)
        for item in self._blocked.pop((side, path), []):
            self._park_small(item)
        for up in self._waiting_uploads.pop((side, path), []):
            self._park_upload(up)

    # -- introspection ------------------------------------------------------------------

    def queued(self) -> tuple[int, int]:
        """(items, bytes) waiting, held-back deletions excluded."""
        items = sum(len(h) for h in self._small.values()) + sum(
            len(v) for v in self._blocked.values()
        )
        size = sum(
            i.change.new.size
            for h in self._small.values()
            for i in h
            if i.change.new is not None and i.change.new.is_file
        )
        ups = self._uploads + [u for v in self._waiting_uploads.values() for u in v]
        return items + len(ups) + len(self._phase_work), size + sum(u.left for u in ups)

    def in_flight(self) -> list[Upload]:
        return [u for u in self._uploads if u.started]

    @property
    def idle(self) -> bool:
        return self.busy == 0 and self.next_would_be_none()

    def next_would_be_none(self) -> bool:
        return not (
            self._commits
            or self._phase_work
            or any(self._small[s] for s in Side)
            or any(u.todo or u.prepare for u in self._uploads)
            or self._blocked
            or self._waiting_uploads
        )
