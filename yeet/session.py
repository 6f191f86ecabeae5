"""One synchronisation session run: scan both sides, reconcile, apply, record.

Invariants owned here:

* Both scans stream into one reconciler and decisions are applied while the
  scans go on; deletions wait until both scans are complete.
* A side whose root has vanished, or whose root is suddenly empty while the
  ancestor remembers content, *halts* the session: nothing is deleted anywhere.
* A pass that hit "modified since scan" is followed by another pass (a rescan
  of what changed), up to a limit; the state records the last pass's verdict.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from yeet.endpoint.api import Endpoint, EndpointConfig, EndpointInfo
from yeet.engine.entries import Problem
from yeet.engine.reconcile import (
    AncestorRequest,
    AncestorUpdate,
    Change,
    Conflict,
    Decision,
    Mode,
    Reconciler,
    Side,
)
from yeet.errors import EndpointError
from yeet.paths import join
from yeet.state.store import SessionStore, Update
from yeet.transfer.executor import Counters, Executor

MAX_PASSES = 4


@dataclass(frozen=True)
class Settings:
    """What a session is: stored at creation, updated by explicit options."""

    name: str
    alpha: str
    beta: str
    mode: Mode = Mode.TWO_WAY_SAFE
    ignores: tuple[str, ...] = ()
    ignore_vcs: bool = False
    symlinks: str = "portable"
    trash_days: float = 30.0
    digest: str = "blake3"

    def endpoint_config(self, side: Side, root: str, create_root: bool) -> EndpointConfig:
        return EndpointConfig(
            session=self.name,
            side=side.value,
            root=root,
            ignores=self.ignores,
            ignore_vcs=self.ignore_vcs,
            symlinks=self.symlinks,
            create_root=create_root,
            digest=self.digest,
            trash_days=self.trash_days,
        )


@dataclass
class Outcome:
    state: str  # synced | conflicts | problems | halted
    conflicts: list[Conflict] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    counters: dict[Side, Counters] = field(default_factory=dict)
    halted: str = ""
    passes: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def in_sync(self) -> bool:
        return self.state == "synced"


@dataclass
class _Pass:
    conflicts: list[Conflict] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    transient: bool = False
    halted: str = ""
    changes: int = 0


class Session:
    def __init__(
        self,
        settings: Settings,
        store: SessionStore,
        endpoints: Mapping[Side, Endpoint],
        roots: Mapping[Side, str],
        *,
        allow_empty: bool = False,
        on_progress: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.ep = endpoints
        self.roots = roots
        self.allow_empty = allow_empty
        self.on_progress = on_progress
        self.counters = {Side.ALPHA: Counters(), Side.BETA: Counters()}
        self._scanned = {Side.ALPHA: 0, Side.BETA: 0}

    async def open(self) -> dict[Side, EndpointInfo]:
        fresh = self.store.ancestor_count() == 0
        infos = {}
        for side in Side:
            config = self.settings.endpoint_config(
                side, self.roots[side], create_root=fresh and side is Side.BETA
            )
            infos[side] = await self.ep[side].open(config)
        return infos

    async def run(self) -> Outcome:
        infos = await self.open()
        outcome = Outcome("synced")
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
            outcome.state = "halted"
            outcome.halted = (
                f"{side} root {self.roots[side]} has vanished (unmounted disk?); "
                "nothing was synchronised or deleted"
            )
            return outcome
        for n in range(1, MAX_PASSES + 1):
            result = await self._pass()
            outcome.passes = n
            outcome.conflicts = result.conflicts
            outcome.problems = result.problems
            if result.halted:
                outcome.state = "halted"
                outcome.halted = result.halted
                break
            if not result.transient:
                break
        outcome.counters = self.counters
        if outcome.state != "halted":
            if outcome.conflicts:
                outcome.state = "conflicts"
            elif outcome.problems:
                outcome.state = "problems"
        return outcome

    # -- one pass -----------------------------------------------------------------------

    async def _pass(self) -> _Pass:
        result = _Pass()
        store = self.store
        rec = Reconciler(self.settings.mode, store.ancestor_digests())
        had_ancestor = store.ancestor_count() > 0
        index: dict[Side, dict[bytes, str]] = {Side.ALPHA: {}, Side.BETA: {}}
        root_empty: dict[Side, bool] = {}
        agreed: list[Update] = []

        def report(problem: Problem, transient: bool) -> None:
            result.problems.append(problem)
            result.transient |= transient

        executor = Executor(self.ep, store.record, report, index)
        executor.counters = self.counters

        def dispatch(decisions: list[Decision]) -> None:
            changes: list[Change] = []
            for d in decisions:
                if isinstance(d, Change):
                    changes.append(d)
                elif isinstance(d, AncestorUpdate):
                    agreed.append(Update(d.path, d.entry, applied=False))
                else:
                    result.conflicts.append(d)
            if changes:
                result.changes += len(changes)
                executor.submit(changes)
            if len(agreed) >= 1000:
                store.record(agreed)
                agreed.clear()

        def answer() -> None:
            while wants := rec.wants():
                for w in wants:
                    assert isinstance(w, AncestorRequest), "full passes are never asked to scan"
                    if w.subtree:
                        rec.ancestor_subtree(w.path, store.ancestor_subtree(w.path))
                    else:
                        rec.ancestor_children(w.path, store.ancestor_children(w.path))

        async def consume(side: Side) -> None:
            async for batch in self.ep[side].scan():
                if batch.root_names >= 0:
                    root_empty[side] = batch.root_names == 0
                for path, entries in batch.listings:
                    if entries:
                        idx = index[side]
                        for name, e in entries.items():
                            if e.is_file:
                                idx.setdefault(e.digest, join(path, name))
                    rec.listing(side, path, entries)
                    answer()
                    dispatch(rec.take())
                self._scanned[side] = batch.files
                for p in batch.problems:
                    result.problems.append(p)
            rec.finish(side)
            answer()
            dispatch(rec.take())

        executor.start()
        progress = asyncio.create_task(self._report_progress(executor))
        try:
            await asyncio.gather(consume(Side.ALPHA), consume(Side.BETA))
            if agreed:
                store.record(agreed)
                agreed.clear()
            emptied = [s for s in Side if root_empty.get(s) and had_ancestor]
            if emptied and executor.deferred() and not self.allow_empty:
                result.halted = (
                    f"{emptied[0]} root {self.roots[emptied[0]]} is empty but held synchronised "
                    "content; deletions were not propagated (rerun with --allow-empty if the "
                    "emptying was intended)"
                )
            else:
                executor.release()
            await executor.finish()
        finally:
            progress.cancel()
            store.refresh_digests()
        return result

    async def _report_progress(self, executor: Executor) -> None:
        if self.on_progress is None:
            return
        while True:
            self.on_progress(self.progress(executor))
            await asyncio.sleep(0.5)

    def progress(self, executor: Executor | None = None) -> dict[str, Any]:
        return {
            "time": time.time(),
            "scanned": {str(s): n for s, n in self._scanned.items()},
            "queued": executor.queued() if executor else 0,
            "deferred": executor.deferred() if executor else 0,
            "applied": {str(s): c.as_dict() for s, c in self.counters.items()},
        }
