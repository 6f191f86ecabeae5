"""``yeet sync``: run a session until both sides agree, then exit.

Invariant owned here: the exit status says whether the trees are in sync
(0) or not (1: conflicts, problems or halted); the verdict is recorded in the
session state so ``yeet status`` can report it later.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

from yeet.cli import report
from yeet.cli.runner import Overrides, endpoints, locked_store, resolve_name, settings_for
from yeet.session import Outcome, Session, Settings
from yeet.state.store import SessionStore


class _Ticker:
    """A one-line progress display on stderr, when it is a terminal."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self.last = 0.0

    def __call__(self, progress: dict[str, Any]) -> None:
        if not self.enabled:
            return
        applied = progress["applied"]
        files = applied["beta"]["files"] + applied["alpha"]["files"]
        size = applied["beta"]["bytes"] + applied["alpha"]["bytes"]
        scanned = sum(progress["scanned"].values())
        line = (
            f"scanned {scanned} files, applied {files} files ({report.human_bytes(size)}), "
            f"{progress['queued']} queued, {progress['deferred']} deletions waiting"
        )
        sys.stderr.write("\r\x1b[2K" + line)
        sys.stderr.flush()

    def done(self) -> None:
        if self.enabled:
            sys.stderr.write("\r\x1b[2K")
            sys.stderr.flush()


async def _run(
    store: SessionStore, settings: Settings, allow_empty: bool, ticker: _Ticker
) -> Outcome:
    def on_progress(p: dict[str, Any]) -> None:
        ticker(p)
        store.set_progress({"state": "pending", **p})

    async with endpoints(store, settings) as (eps, roots):
        session = Session(
            settings, store, eps, roots, allow_empty=allow_empty, on_progress=on_progress
        )
        return await session.run()


def sync(
    alpha: str | None,
    beta: str | None,
    name: str | None,
    overrides: Overrides,
    *,
    allow_empty: bool,
    quiet: bool,
    as_json: bool,
) -> int:
    name, a, b = resolve_name(alpha, beta, name)
    with locked_store(name, create=True) as store:
        if store.rebuilt_note:
            print(f"yeet: warning: {store.rebuilt_note}", file=sys.stderr)
        settings = settings_for(store, name, a, b, overrides)
        ticker = _Ticker(not quiet)
        store.set_meta(last_state="pending", last_start=time.time())
        try:
            outcome = asyncio.run(_run(store, settings, allow_empty, ticker))
        finally:
            ticker.done()
        store.replace_conflicts(outcome.conflicts)
        store.replace_problems(outcome.problems)
        store.set_meta(
            last_state=outcome.state,
            last_sync=time.time(),
            halted=outcome.halted,
        )
        store.set_progress({"state": outcome.state, "time": time.time()})
    for note in outcome.notes:
        print(f"yeet: {note}", file=sys.stderr)
    if as_json:
        print(report.outcome_json(name, outcome))
    elif not quiet or not outcome.in_sync:
        report.print_outcome(name, outcome)
    return 0 if outcome.in_sync else 1
