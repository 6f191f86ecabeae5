"""When a session stops instead of deleting: halts, their acknowledgement, and the
deletion guard (rsync's ``--max-delete``, Unison's ``confirmbigdel``).

Invariant owned here: a halt sticks. Once a session halted (a root vanished, a root
emptied while the ancestor remembers content, or a pass would delete more than the
limit of a side's files), every later run halts again at once, whatever appeared on
the sides meanwhile, until the user acknowledges that kind of halt for one run
(``--allow-empty``, ``--allow-deletions`` or ``yeet resume``). Pure: values in,
values out.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from yeet.core.decisions import Side
from yeet.model.quoting import quote
from yeet.model.settings import MAX_DELETE

VANISHED, EMPTIED, DELETIONS = "vanished", "emptied", "deletions"
KINDS = (VANISHED, EMPTIED, DELETIONS)

DEFAULT_LIMIT = MAX_DELETE
MIN_GUARDED = 10
"""A pass deleting at most this many files never trips a percentage limit (in a tree of
a few files, deleting most of them is ordinary work; an emptied root still halts)."""


@dataclass(frozen=True)
class Halt:
    kind: str  # vanished | emptied | deletions
    reason: str  # what happened, for people
    side: str = ""
    acknowledged: bool = False  # ``yeet resume``: the next run goes ahead once

    def to_meta(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "reason": self.reason,
            "side": self.side,
            "acknowledged": self.acknowledged,
        }

    @staticmethod
    def from_meta(value: object) -> Halt | None:
        if not isinstance(value, dict) or value.get("kind") not in KINDS:
            return None
        return Halt(
            str(value["kind"]),
            str(value.get("reason", "")),
            str(value.get("side", "")),
            bool(value.get("acknowledged", False)),
        )


@dataclass(frozen=True)
class Acknowledged:
    """What the user allowed for this run."""

    empty: bool = False  # --allow-empty: an emptied or vanished-and-back root
    deletions: bool = False  # --allow-deletions: more deletions than the limit

    def covers(self, halt: Halt) -> bool:
        if halt.acknowledged:
            return True
        if halt.kind == DELETIONS:
            return self.deletions or self.empty
        return self.empty

    def including(self, halt: Halt | None) -> Acknowledged:
        """This run's acknowledgement plus a ``yeet resume`` of ``halt``."""
        if halt is None or not halt.acknowledged:
            return self
        if halt.kind == DELETIONS:
            return Acknowledged(self.empty, True)
        return Acknowledged(True, True)


@dataclass(frozen=True)
class Limit:
    """At most ``count`` files, or ``percent`` of a side's files, deleted by one pass."""

    count: int | None = None
    percent: float | None = None

    def __str__(self) -> str:
        if self.count is not None:
            return str(self.count)
        if self.percent is not None:
            return f"{self.percent:g}%"
        return "none"

    def exceeded(self, deletions: int, files: int) -> bool:
        if self.count is not None:
            return deletions > self.count
        if self.percent is not None:
            return deletions > MIN_GUARDED and deletions * 100 > self.percent * max(files, 1)
        return False


def parse_limit(text: str) -> Limit:
    """``"50%"``, ``"1000"`` or ``"none"``; ``ValueError`` for anything else."""
    value = text.strip().lower()
    if value in ("none", "off", "unlimited"):
        return Limit()
    if value.endswith("%"):
        percent = float(value[:-1])
        if not math.isfinite(percent) or not 0 <= percent <= 100:
            raise ValueError(f"a percentage between 0% and 100%, not {text!r}")
        return Limit(percent=percent)
    if not value.isdigit():
        raise ValueError(f"a number of files, a percentage (50%) or none, not {text!r}")
    return Limit(count=int(value))


def pass_halt(
    emptied: Sequence[Side],
    deferred: int,
    held: Callable[[], Mapping[Side, int]],
    ancestor_files: Callable[[], int],
    allow: Acknowledged,
    limit: Limit,
    roots: Mapping[Side, str],
) -> Halt | None:
    """Whether the held-back deletions of a pass may go ahead, or why it halts.

    ``emptied``: sides whose root is empty while the ancestor holds content;
    ``deferred``: changes held back for the end of the scans; ``held()``: the
    deletions held back per side (a file whose content arrives elsewhere on its side
    was moved, not lost); ``ancestor_files()``: files the ancestor knows (asked only
    when a percentage needs it)."""
    if emptied and deferred and not allow.empty:
        side = emptied[0]
        reason = (
            f"{side} root {quote(roots[side])} is empty but held synchronised "
            "content; nothing was deleted"
        )
        return Halt(EMPTIED, reason, side.value)
    if allow.deletions or allow.empty:
        return None
    counts = held()
    if limit.count is None and not any(n > MIN_GUARDED for n in counts.values()):
        return None  # (counting the ancestor's files costs a query)
    files = ancestor_files()
    for side, count in sorted(counts.items()):
        if limit.exceeded(count, files):
            reason = (
                f"this pass would delete {count} of {files} files on {side} (more than "
                f"--max-delete {limit}); nothing was deleted"
            )
            return Halt(DELETIONS, reason, side.value)
    return None
