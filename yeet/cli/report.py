"""Human and machine output of commands.

Invariant owned here: line formats that scripts parse (``status``,
``conflicts``, ``trash``) are tab-separated, one record per line, fields in the
documented order; new fields are only ever appended. Every name, address or
free text in a field is printed through ``yeet.model.quoting`` (so a tab, a
newline or a byte that is not UTF-8 in a name never splits a record), and every
hint that names a PATH puts ``--`` before it (a name may start with ``-``).
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any, TextIO

from yeet.core.decisions import Side
from yeet.core.guard import DELETIONS, EMPTIED, Halt
from yeet.model.quoting import dumps, quote
from yeet.model.units import size_text

if TYPE_CHECKING:
    from yeet.session.outcome import Outcome


def iso(t: float | None) -> str:
    if not t:
        return "-"
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(t))


def summary(name: str, outcome: Outcome) -> str:
    parts = []
    for target, label in ((Side.BETA, "alpha→beta"), (Side.ALPHA, "beta→alpha")):
        c = outcome.counters.get(target)
        if c is None:
            continue
        bits = []
        if c.files:
            bits.append(f"{c.files} files ({size_text(c.bytes)})")
        if c.dirs:
            bits.append(f"{c.dirs} dirs")
        if c.removed:
            bits.append(f"{c.removed} removed")
        if c.copied_locally:
            bits.append(f"{c.copied_locally} copied locally")
        if bits:
            parts.append(f"{label}: " + ", ".join(bits))
    changes = "; ".join(parts) if parts else "no changes"
    return f"{outcome.state}\t{name}\t{changes}"


def halt_hint(name: str, halt: Halt) -> str:
    """What to run to go ahead after a halt (once the user checked it is meant)."""
    if halt.kind == DELETIONS:
        return (
            f"the deletions were held back; if they are meant: `yeet sync --name {name} "
            "--allow-deletions` (once), or raise the limit with --max-delete N|P%|none"
        )
    if halt.kind == EMPTIED:
        return (
            f"if the emptying was meant: `yeet sync --name {name} --allow-empty` (it "
            "deletes the other side's files, into its trash)"
        )
    return (
        f"when the root is back (mounted), check it and run `yeet resume {name}` "
        f"(or `yeet sync --name {name} --allow-empty`)"
    )


def print_outcome(name: str, outcome: Outcome, out: TextIO = sys.stdout) -> None:
    print(summary(name, outcome), file=out)
    if outcome.halted:
        print(f"halted: {outcome.halted}", file=out)
    for c in outcome.conflicts:
        print(f"conflict\t{quote(c.path)}\talpha {c.alpha_action}\tbeta {c.beta_action}", file=out)
    for p in outcome.problems:
        print(problem_line(p.side, p.path, p.reason), file=out)
    if outcome.conflicts:
        print(
            f"{len(outcome.conflicts)} conflict(s): see `yeet diff {name} -- PATH`, settle with "
            f"`yeet resolve {name} --keep alpha|beta -- PATH`",
            file=out,
        )


def problem_line(side: str | None, path: str, reason: str) -> str:
    return f"problem\t{side or '-'}\t{quote(path)}\t{quote(reason)}"


def outcome_json(name: str, outcome: Outcome) -> str:
    doc: dict[str, Any] = {
        "name": name,
        "state": outcome.state,
        "halted": outcome.halted or None,
        "passes": outcome.passes,
        "applied": {str(s): c.as_dict() for s, c in outcome.counters.items()},
        "wire": {s: {"sent": w[0], "received": w[1]} for s, w in outcome.wire.items()},
        "conflicts": [
            {"path": quote(c.path), "alpha": c.alpha_action, "beta": c.beta_action}
            for c in outcome.conflicts
        ],
        "problems": [
            {"side": p.side, "path": quote(p.path), "reason": p.reason} for p in outcome.problems
        ],
        # how much was looked at: "journal" true when the change journals scoped the
        # sync (no full scan); "listed": directory listings read on each side;
        # "hinted": files whose dirty byte ranges the journal of that side gave
        "scan": {
            "journal": outcome.journal,
            "listed": {str(s): n for s, n in outcome.listed.items()},
            "hinted": {str(s): n for s, n in outcome.hinted.items()},
        },
    }
    return dumps(doc)
