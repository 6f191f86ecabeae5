"""What a sync found, and where it is recorded.

Invariant owned here: a session's verdict (its state, when, its halt) is recorded in
one place, ``record_verdict``, for one-shot and continuous runs alike, and only by the
session (``yeet.session.sync``), so ``yeet status`` reads the same thing however the
session ran. (Conflicts and problems are recorded by the session as each pass ends.)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from yeet.core.decisions import Conflict, Side
from yeet.core.guard import Halt
from yeet.model.entries import Problem
from yeet.session.counters import Counters
from yeet.state.store import SessionStore


@dataclass
class Outcome:
    state: str  # synced | conflicts | problems | halted
    conflicts: list[Conflict] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    counters: dict[Side, Counters] = field(default_factory=dict)
    halted: str = ""
    halt: Halt | None = None
    passes: int = 0
    notes: list[str] = field(default_factory=list)
    journal: bool = False  # the change journals scoped the first pass (no full scan)
    listed: dict[Side, int] = field(default_factory=dict)  # directory listings read
    hinted: dict[Side, int] = field(default_factory=dict)  # files with dirty ranges known
    wire: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Per remote side: protocol bytes (sent, received) over its link."""

    @property
    def in_sync(self) -> bool:
        return self.state == "synced"


def state_of(conflicts: int, problems: int) -> str:
    return "conflicts" if conflicts else "problems" if problems else "synced"


def record_verdict(store: SessionStore, outcome: Outcome) -> None:
    """The verdict for ``yeet status``; a halt is kept until a run goes ahead."""
    halt = outcome.halt.to_meta() if outcome.halt is not None else None
    store.set_meta(
        last_state=outcome.state, last_sync=time.time(), halted=outcome.halted, halt=halt
    )
    if store.get_meta("set_aside") is not None:
        store.set_meta(set_aside=None)  # a sync completed on the new state: nothing to tell
