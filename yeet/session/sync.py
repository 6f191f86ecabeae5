"""One synchronisation session: scan, reconcile, apply, record; once or continuously.

Invariants owned here:

* Scans stream into one reconciler and decisions are applied while the scans
  go on; deletions wait until every scan of the pass is complete.
* A side whose root has vanished, or whose root is suddenly empty while the
  ancestor remembers content, or a pass that would delete more than the
  deletion limit of a side's files, *halts* the session: nothing is deleted
  anywhere, and the halt sticks (``yeet.core.guard``) until acknowledged.
* A pass that hit "modified since scan" is followed by another pass, up to a
  limit (one-shot), or marks the directory dirty for the next pass (watching).
* Continuous mode arms both watchers before the first full scan, then runs
  *scoped* passes over just the directories reported dirty; the recorded
  conflicts and problems of directories a pass did not look at are kept.
* A one-shot sync asks both hosts' change journals first (``journal_scope``):
  when both vouch for the interval since the last committed sync, its passes
  are scoped the same way (no full scan); the cursors are stored only after
  everything was applied and recorded.

Hints for the transfer path: ``Session.hints[side]`` maps each file the
change journal of ``side`` reported changed (relpath) to its dirty byte
ranges ``((start, end), ...)`` since the last committed sync (end -1: to the
end of the file; ``((0, -1),)``: the whole file): every byte where that
side's file may differ from its ancestor version lies inside them. A file
changed on a side but absent from a non-empty ``hints[side]`` has no
promise either way (it may be in a conflict or a problem of the last sync):
read it whole. Empty when that side's journal could not vouch for the
interval. In continuous mode each pass asks the journals again, from the
cursors of the previous answer (its first pass from the stored ones), and
the cursors are stored whenever the session settles.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from yeet.contract.endpoint import Endpoint
from yeet.contract.values import DirtySet, EndpointInfo, ScanBatch
from yeet.core.decisions import (
    AncestorRequest,
    AncestorUpdate,
    Change,
    Conflict,
    Decision,
    ListingRequest,
    Retry,
    Side,
)
from yeet.core.guard import (
    VANISHED,
    Acknowledged,
    Halt,
    parse_limit,
    pass_halt,
)
from yeet.core.localindex import LocalIndex
from yeet.core.reconcile import Reconciler
from yeet.model.entries import Problem
from yeet.model.errors import EndpointError
from yeet.model.paths import is_within, join, parent_of
from yeet.model.quoting import quote
from yeet.model.settings import environment
from yeet.session import intents, journal_scope
from yeet.session.counters import Counters
from yeet.session.executor import Executor
from yeet.session.outcome import Outcome, record_verdict, state_of
from yeet.session.settings import Settings
from yeet.state.store import SessionStore, Update

MAX_PASSES = 4
BACKLOG = 20_000  # changes queued before a scan pauses (memory bound, not tree size)
SETTLE_SECONDS = 0.05  # coalesce a burst of change events (only while events flow)


@dataclass
class _Pass:
    conflicts: list[Conflict] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    transient: set[str] = field(default_factory=set)  # parents of "modified since scan"
    halt: Halt | None = None
    changes: int = 0
    decided: set[str] = field(default_factory=set)
    decided_under: set[str] = field(default_factory=set)
    remembered: bool = False
    arriving: dict[Side, set[bytes]] = field(default_factory=dict)  # file digests, per side


class Session:
    def __init__(
        self,
        settings: Settings,
        store: SessionStore,
        endpoints: Mapping[Side, Endpoint],
        roots: Mapping[Side, str],
        *,
        allow: Acknowledged | None = None,
        on_progress: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.endpoints = endpoints
        self.roots = roots
        self.halt = Halt.from_meta(store.get_meta("halt"))  # a halt of an earlier run
        self.allow = (allow or Acknowledged()).including(self.halt)
        self.max_delete = parse_limit(settings.max_delete)
        self.on_progress = on_progress
        self.counters = {Side.ALPHA: Counters(), Side.BETA: Counters()}
        self._scanned = {Side.ALPHA: 0, Side.BETA: 0}
        self.listed = {Side.ALPHA: 0, Side.BETA: 0}  # directory listings read, all passes
        self.hints: dict[Side, journal_scope.Hints] = {Side.ALPHA: {}, Side.BETA: {}}
        self._executor: Executor | None = None
        cap = environment().copy_index
        self._index: dict[Side, LocalIndex] = {s: LocalIndex(cap) for s in Side}
        self._current: _Pass | None = None

    async def open(self) -> dict[Side, EndpointInfo]:
        fresh = self.store.ancestor_count() == 0
        infos = {}
        for side in Side:
            config = self.settings.endpoint_config(
                side, self.roots[side], create_root=fresh and side is Side.BETA
            )
            infos[side] = await self.endpoints[side].open(config)
        return infos

    def _halt(self, outcome: Outcome, halt: Halt) -> None:
        outcome.state, outcome.halt, outcome.halted = "halted", halt, halt.reason

    async def _start(self, outcome: Outcome) -> bool:
        """Open both endpoints; False (and ``outcome`` halted) if a root vanished or
        the session is still halted from an earlier run."""
        if self.halt is not None and not self.allow.covers(self.halt):
            self._halt(outcome, self.halt)  # it sticks, whatever appeared meanwhile
            return False
        infos = await self.open()
        for info in infos.values():
            outcome.notes.extend(info.notes)
        missing = [s for s in Side if not infos[s].root_exists]
        if missing:
            side = missing[0]
            if self.store.ancestor_count() == 0:
                raise EndpointError(
                    f"{side} root {self.roots[side]} does not exist",
                    hint="check the path (only beta is created, on a session's first sync)",
                )
            reason = (
                f"{side} root {quote(self.roots[side])} has vanished (unmounted disk?); "
                "nothing was synchronised or deleted"
            )
            self._halt(outcome, Halt(VANISHED, reason, side.value))
            return False
        await intents.settle(self.store, self.endpoints)  # a crashed run's own writes first
        delta_min, inplace_min = delta_options()
        self._executor = Executor(
            self.endpoints,
            self.store.record,
            self._report,
            self._index,
            delta_min=delta_min,
            inplace_min=inplace_min,
            intents=self.store,
            counters=self.counters,
        )
        self._executor.trash_pass = self.store.next_pass()  # one-shot: the run is one pass
        self._executor.start()
        return True

    def wire(self) -> dict[str, tuple[int, int]]:
        out = {}
        for side, endpoint in self.endpoints.items():
            got = _wire_of(endpoint)
            if got is not None:
                out[str(side)] = got
        return out

    def _report(self, problem: Problem, transient: bool) -> None:
        current = self._current
        if current is None:
            return
        current.problems.append(problem)
        if transient:
            current.transient.add(parent_of(problem.path))
        if current.remembered:  # continuous mode: the pass was recorded already
            self.store.add_problems([problem])

    # -- one-shot ---------------------------------------------------------------------

    def _hint_transfers(self) -> None:
        """A file the journal of its side saw written in a few places: the delta that
        carries it to the other side sends just those pages (verified by digest)."""
        assert self._executor is not None
        for side, hints in self.hints.items():
            for path, ranges in hints.items():
                if any(start == 0 and end < 0 for start, end in ranges):
                    continue  # the whole file: let the delta find what changed
                spans = tuple(
                    (start, (end if end >= 0 else 1 << 62) - start) for start, end in ranges
                )
                self._executor.hint(side.other, path, spans)

    async def run(self) -> Outcome:
        """Passes until both sides agree (or only conflicts/problems remain); what
        they found and the verdict are recorded in the session's store."""
        outcome = await self._run()
        record_verdict(self.store, outcome)
        return outcome

    async def _run(self) -> Outcome:
        outcome = Outcome("synced")
        if not await self._start(outcome):
            return outcome
        assert self._executor is not None
        journal = await self._ask_journals(None, outcome)
        scope = journal.scope
        outcome.journal = scope is not None
        progress = asyncio.create_task(self._report_progress())
        settled = False
        try:
            for n in range(1, MAX_PASSES + 1):
                result = await self._pass(scope)
                await self._executor.drain()
                outcome.passes = n
                if scope is None:
                    outcome.conflicts, outcome.problems = result.conflicts, result.problems
                self._remember(result, scope)  # (a scoped pass keeps what it did not see)
                if result.halt is not None:
                    self._halt(outcome, result.halt)
                    break
                if not result.transient:
                    settled = True
                    break
                if scope is not None:
                    scope = set(result.transient)
            await self._executor.finish()
            self.store.refresh_digests()
            outcome.wire = self.wire()
        finally:
            progress.cancel()
        if outcome.journal:
            outcome.conflicts, outcome.problems = self.store.conflicts(), self.store.problems()
        if settled:  # everything up to the cursors is applied and recorded
            journal_scope.commit(self.store, self.settings, journal.cursors)
        outcome.counters = self.counters
        outcome.listed = dict(self.listed)
        outcome.hinted = {s: len(h) for s, h in self.hints.items()}
        if outcome.state != "halted":
            outcome.state = state_of(len(outcome.conflicts), len(outcome.problems))
        return outcome

    # -- continuous -------------------------------------------------------------------

    async def watch(self, on_outcome: Callable[[Outcome], None]) -> Outcome:
        """Synchronise, then keep synchronising what changes, until cancelled or halted.

        Whenever the session settles (nothing queued), the verdict is recorded and
        ``on_outcome`` is called with it.
        """
        outcome = await self._watch(on_outcome)
        record_verdict(self.store, outcome)
        return outcome

    async def _watch(self, on_outcome: Callable[[Outcome], None]) -> Outcome:
        outcome = Outcome("synced")
        if not await self._start(outcome):
            return outcome
        executor = self._executor
        assert executor is not None
        events: asyncio.Queue[tuple[Side, DirtySet | BaseException]] = asyncio.Queue()
        armed = {s: asyncio.Event() for s in Side}

        async def follow(side: Side) -> None:
            try:
                async for dirty in self.endpoints[side].watch():
                    if not armed[side].is_set():
                        armed[side].set()
                        if not dirty.overflow:
                            continue
                    await events.put((side, dirty))
                raise EndpointError(f"{side} stopped reporting changes")
            except asyncio.CancelledError:
                raise
            except BaseException as err:  # re-raised by the session loop
                armed[side].set()
                await events.put((side, err))

        watchers = [asyncio.create_task(follow(s)) for s in Side]
        progress = asyncio.create_task(self._report_progress())
        try:
            for s in Side:
                await armed[s].wait()
            while not events.empty():  # the first pass scans everything anyway
                _side, first = events.get_nowait()
                if isinstance(first, BaseException):
                    raise first  # a watcher failed before it was armed
            journal = await self._ask_journals(None, outcome)
            scope = journal.scope  # the first pass looks at everything, unless vouched
            outcome.journal = scope is not None
            while True:
                if outcome.passes:
                    executor.trash_pass = self.store.next_pass()
                result = await self._pass(scope)
                outcome.passes += 1
                self._remember(result, scope)
                if result.halt is not None:
                    self._halt(outcome, result.halt)
                    break

                # Wait for new changes *or* for the queued work to finish, whichever
                # comes first: a big transfer in flight never delays the next pass.
                def settle(done: Outcome, cursors: Mapping[Side, bytes | None]) -> None:
                    journal_scope.commit(self.store, self.settings, cursors)
                    record_verdict(self.store, done)
                    on_outcome(done)

                scope = await self._next_scope(
                    events, result, outcome, functools.partial(settle, cursors=journal.cursors)
                )
                # A burst of events: take everything that arrives while it flows.
                # (asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a
                # Ctrl-C that lands as an event arrives, and the watch never ends)
                while True:
                    try:
                        async with asyncio.timeout(SETTLE_SECONDS):
                            _side, dirty = await events.get()
                    except TimeoutError:
                        break
                    scope = self._absorb(scope, dirty)
                # the written ranges since the last answer: large files are read and
                # sent where they were written (the watchers still say where to look)
                journal = await self._ask_journals(journal.cursors, outcome)
                if scope is not None and journal.scope is not None:
                    scope |= journal.scope
        except BaseException:
            # Ctrl-C or a failure: stop now. Waiting for the queue could mean waiting
            # for a 4 GiB upload; partial uploads stay and resume on the next run.
            await self._stop_following(progress, watchers)
            await executor.abort()
            raise
        await self._stop_following(progress, watchers)
        await executor.finish()
        return outcome

    async def _ask_journals(
        self, since: Mapping[Side, bytes | None] | None, outcome: Outcome
    ) -> journal_scope.JournalScope:
        """Ask both hosts' change journals (from the stored cursors, or ``since``); the
        answer's hints replace the last ones (hints not yet taken by a queued change
        stay with it)."""
        answer = await journal_scope.ask(self.store, self.settings, self.endpoints, since)
        outcome.notes.extend(answer.notes)
        self.hints = {s: answer.hints.get(s, {}) for s in Side}
        self._hint_transfers()
        return answer

    @staticmethod
    async def _stop_following(
        progress: asyncio.Task[None], watchers: list[asyncio.Task[None]]
    ) -> None:
        progress.cancel()
        for w in watchers:
            w.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)

    async def _next_scope(
        self,
        events: asyncio.Queue[tuple[Side, DirtySet | BaseException]],
        result: _Pass,
        outcome: Outcome,
        on_outcome: Callable[[Outcome], None],
    ) -> set[str] | None:
        """Block until there is something to look at; report whenever we settle."""
        executor = self._executor
        assert executor is not None
        settled = False
        while True:
            executor.raise_fatal()
            if result.transient and not executor.busy():
                # "modified since the scan": look at those directories again
                return set(result.transient)
            if not events.empty():
                _side, dirty = events.get_nowait()
                return self._absorb(set(), dirty)
            get = asyncio.ensure_future(events.get())
            waiters: list[asyncio.Future[Any]] = [get]
            if not settled:
                waiters.append(asyncio.ensure_future(executor.drain()))
            done, pending = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            for f in pending:
                f.cancel()
            for f in done:
                if f is not get:
                    f.result()  # a transfer failure that is no per-path problem ends the session
            if get in done:
                _side, dirty = get.result()
                return self._absorb(set(), dirty)
            if result.transient:
                continue
            settled = True
            self.store.refresh_digests()
            outcome.conflicts = self.store.conflicts()
            outcome.problems = self.store.problems()
            outcome.state = state_of(len(outcome.conflicts), len(outcome.problems))
            outcome.counters = self.counters
            on_outcome(outcome)

    @staticmethod
    def _absorb(scope: set[str] | None, dirty: DirtySet | BaseException) -> set[str] | None:
        if isinstance(dirty, BaseException):
            raise dirty  # a watcher failed: the session cannot see changes any more
        if scope is None or dirty.overflow:
            return None
        scope.update(dirty.dirs)
        return scope

    def _remember(self, result: _Pass, scope: set[str] | None) -> None:
        """Record a pass's conflicts and problems; keep those it did not look at."""
        result.remembered = True
        if scope is None:
            self.store.replace_conflicts(result.conflicts)
            self.store.replace_problems(result.problems)
            return

        def looked_at(path: str) -> bool:
            return (
                parent_of(path) in result.decided
                or path in scope
                or any(is_within(path, r) for r in result.decided_under)
            )

        kept_c = [c for c in self.store.conflicts() if not looked_at(c.path)]
        kept_p = [p for p in self.store.problems() if not looked_at(p.path)]
        self.store.replace_conflicts(kept_c + result.conflicts)
        self.store.replace_problems(kept_p + result.problems)

    # -- one pass ---------------------------------------------------------------------

    async def _pass(self, scope: set[str] | None) -> _Pass:
        """Scan (everything, or the ``scope`` directories), reconcile, queue changes."""
        result = _Pass()
        self._current = result
        store = self.store
        executor = self._executor
        assert executor is not None
        executor.new_pass()  # what this pass finds goes before older queued work
        rec = Reconciler(
            self.settings.mode,
            store.ancestor_digests(),
            scope,
            portable_modes=self.settings.permissions == "portable",
            stale=executor.stale,
        )
        had_ancestor = store.ancestor_count() > 0
        root_empty: dict[Side, bool] = {}
        agreed: list[Update] = []
        tasks: set[asyncio.Task[None]] = set()

        def dispatch(decisions: list[Decision]) -> None:
            changes: list[Change] = []
            for d in decisions:
                if isinstance(d, Change):
                    changes.append(d)
                    if d.new is not None and d.new.is_file:
                        result.arriving.setdefault(d.side, set()).add(d.new.digest)
                elif isinstance(d, AncestorUpdate):
                    agreed.append(Update(d.path, d.entry, applied=False))
                elif isinstance(d, Retry):
                    result.transient.add(parent_of(d.path))  # look again, next pass
                else:
                    result.conflicts.append(d)
            if changes:
                result.changes += len(changes)
                executor.submit(changes)
            if len(agreed) >= 1000:
                store.record(agreed)
                agreed.clear()

        def serve() -> None:
            while wants := rec.wants():
                for w in wants:
                    if isinstance(w, ListingRequest):
                        start(w.side, self.endpoints[w.side].scan([w.path]), [w.path], True)
                    elif w.subtree:
                        rec.ancestor_subtree(w.path, store.ancestor_subtree(w.path))
                    else:
                        assert isinstance(w, AncestorRequest)
                        rec.ancestor_children(w.path, store.ancestor_children(w.path))
            dispatch(rec.take())

        def feed(side: Side, batch: ScanBatch) -> None:
            if batch.root_names >= 0:
                root_empty[side] = batch.root_names == 0
            idx = self._index[side]
            for path, entries in batch.listings:
                self.listed[side] += 1
                for name, e in (entries or {}).items():
                    if e.is_file:
                        idx.add(e.digest, join(path, name))
                rec.listing(side, path, entries)
                serve()
            self._scanned[side] = max(self._scanned[side], batch.files)
            result.problems.extend(batch.problems)

        async def consume(
            side: Side, batches: AsyncIterator[ScanBatch], tops: Iterable[str], recursive: bool
        ) -> None:
            async for batch in batches:
                feed(side, batch)
                await executor.room(BACKLOG)
            for top in tops:
                if scope is None:
                    rec.finish(side)
                else:
                    rec.scanned(side, top, recursive)
            serve()

        def start(
            side: Side, batches: AsyncIterator[ScanBatch], tops: list[str], recursive: bool
        ) -> None:
            task = asyncio.create_task(consume(side, batches, tops, recursive))
            tasks.add(task)

        serve()
        for side in Side:
            if scope is None:
                start(side, self.endpoints[side].scan(), [""], True)
            elif scope:
                tops = sorted(scope)
                start(side, self.endpoints[side].scan(tops, recursive=False), tops, False)
        while tasks:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                tasks.discard(t)
                t.result()
        serve()
        assert rec.done, "reconciler left work undone"
        if agreed:
            store.record(agreed)
        result.decided, result.decided_under = rec.decided, rec.decided_under
        emptied = [s for s in Side if root_empty.get(s) and had_ancestor]
        result.halt = pass_halt(
            emptied,
            executor.deferred(),
            lambda: executor.held_deletions(result.arriving),
            self.store.ancestor_files,
            self.allow,
            self.max_delete,
            self.roots,
        )
        if result.halt is None:
            executor.release()
        store.refresh_digests()
        return result

    async def _report_progress(self) -> None:
        if self.on_progress is None:
            return
        while True:
            self.on_progress(self.progress())
            await asyncio.sleep(0.5)

    def progress(self) -> dict[str, Any]:
        ex = self._executor
        work = ex.progress() if ex is not None else {}
        busy = self._current is not None and not self._current.remembered
        return {
            "time": time.time(),
            "busy": busy or not work.pop("idle", True),
            "scanned": {str(s): n for s, n in self._scanned.items()},
            "queued": 0,
            "queued_bytes": 0,
            "in_flight": 0,
            "deferred": 0,
            "rate": 0.0,
            "uploads": [],
            **work,
            "applied": {str(s): c.as_dict() for s, c in self.counters.items()},
        }


def _wire_of(endpoint: object) -> tuple[int, int] | None:
    wire = getattr(endpoint, "wire", None)
    return wire() if callable(wire) else None


def delta_options() -> tuple[int | None, int]:
    """Delta thresholds (``yeet.model.settings.Environment``): the smallest old and
    new size of a file updated by a delta (None: no deltas), and the smallest file
    patched in place."""
    env = environment()
    return env.delta_min, env.inplace_min
