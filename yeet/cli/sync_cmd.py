"""``yeet sync``: run a session until both sides agree, then exit.

Invariant owned here: the exit status says whether the trees are in sync
(0) or not (1: conflicts, problems or halted). (The session records its verdict
for ``yeet status``: ``yeet.session.outcome``.)
"""

from __future__ import annotations

import sys
import time
from typing import Any

from yeet.cli import interrupt, report
from yeet.cli.progress import Progress
from yeet.cli.roots import check_new_pair
from yeet.cli.runner import (
    Overrides,
    endpoints,
    has_pair,
    locked_store,
    resolve_name,
    settings_for,
)
from yeet.core.guard import Acknowledged
from yeet.session.outcome import Outcome
from yeet.session.settings import Settings
from yeet.session.sync import Session
from yeet.state.store import SessionStore


async def _run(
    store: SessionStore,
    settings: Settings,
    allow: Acknowledged,
    progress: Progress,
    watch: bool,
    quiet: bool,
) -> Outcome:
    settled: list[str] = []  # the state last reported as settled (watching)

    def on_progress(p: dict[str, Any]) -> None:
        progress(p)
        state = "pending" if p["busy"] or not settled else settled[0]
        store.set_progress({**p, "state": state})

    last: list[str] = []

    def on_settled(outcome: Outcome) -> None:
        """Watching: the session caught up (and recorded it); tell the user."""
        settled[:] = [outcome.state]
        store.set_progress({"state": outcome.state, "time": time.time()})
        line = report.summary(settings.name, outcome)
        if (not quiet or not outcome.in_sync) and line not in last:
            last[:] = [line]  # our own writes echo back as no-op passes: say it once
            progress.done()
            print(line, flush=True)

    async with endpoints(store, settings) as (eps, roots):
        session = Session(settings, store, eps, roots, allow=allow, on_progress=on_progress)
        if watch:
            return await session.watch(on_settled)
        return await session.run()


def sync(
    alpha: str | None,
    beta: str | None,
    name: str | None,
    overrides: Overrides,
    *,
    allow_empty: bool,
    allow_deletions: bool = False,
    quiet: bool,
    as_json: bool,
    watch: bool = False,
) -> int:
    name, a, b = resolve_name(alpha, beta, name)
    digest = None
    if not has_pair(name):  # a new session: nothing is created until both ends are usable
        digest = interrupt.run(check_new_pair(a, b, overrides.via or ()))
    with locked_store(name, create=True) as store:
        settings = settings_for(store, name, a, b, overrides, digest)
        progress = Progress(not quiet)
        store.set_meta(last_state="pending", last_start=time.time())
        store.set_progress({"state": "pending", "time": time.time()})
        try:
            allow = Acknowledged(empty=allow_empty, deletions=allow_deletions)
            outcome = interrupt.run(_run(store, settings, allow, progress, watch, quiet))
        finally:
            progress.done()
        store.set_progress({})  # nobody is syncing: status reads the recorded state
    for note in outcome.notes:
        print(f"yeet: {note}", file=sys.stderr)
    if as_json:
        print(report.outcome_json(name, outcome))
    elif not quiet or not outcome.in_sync:
        report.print_outcome(name, outcome)
    if outcome.halt is not None and not as_json:
        print(f"yeet: {report.halt_hint(name, outcome.halt)}", file=sys.stderr)
    return 0 if outcome.in_sync else 1
