"""One large file updated by a delta: the exchange between source and receiver.

The executor runs a delta in the same work units as an upload, so it
interleaves with small files (``yeet.core.schedule``): one ``Prepare``
(signatures and matching, below), then one piece per literal range of at most
one chunk (the source computes its final ops, the receiver stores them), then
the ``Commit`` (``patch_commit``: old version re-checked, new digest verified).

    both:     signature(path, old|new)              coarse, ~56 KiB for 4 GiB, concurrently
    client:   match_signatures(new sig, old sig)    Copy runs + Literal gaps (a join)
    receiver: region_signatures(path, old, regions) fine, only around the gaps
    receiver: patch_open; patch_write(copies)
    per piece: source delta_ops -> receiver patch_write
    receiver: patch_commit

With a dirty-range hint (the kernel tracer's, issue 6) the first three steps
are skipped: the plan copies everything but the hinted pages, which the source
reads and sends as data; the digest check at commit still decides.

Invariants owned here: a delta never decides what the receiver ends up with —
``patch_commit`` does, against the new entry's digest; anything this module
cannot do (a side without chunking, an empty plan) falls back to a whole-file
upload, and a receiver whose file is not the expected old version is reported
("modified since the scan": rescan), never overwritten.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from yeet.contract.endpoint import Endpoint
from yeet.core.decisions import Change
from yeet.delta.diff import match_signatures
from yeet.delta.ops import Copy, Literal, changed_ranges, hinted
from yeet.delta.refine import regions
from yeet.delta.signature import Signature
from yeet.replica.write.inplace import should_apply_inplace
from yeet.session.failure import of

INPLACE_MIN = 64 << 20


@dataclass
class Delta:
    """A prepared delta: the receiver's patch handle and what each piece needs."""

    handle: int
    literals: list[tuple[int, int]]  # new-file ranges the source must send
    fine: list[tuple[int, list[Signature]]] = field(default_factory=list)  # literal start -> sigs
    inplace: bool = False
    signature_bytes: int = 0
    copied: int = 0  # bytes the receiver takes from its old file
    sent: int = 0  # data bytes sent so far

    def fine_for(self, offset: int) -> list[Signature]:
        i = bisect.bisect_right([o for o, _ in self.fine], offset) - 1
        return self.fine[i][1] if i >= 0 else []


@dataclass
class Refused:
    """The receiver's file is not the expected old version, or the source changed."""

    reason: str
    side_is_source: bool = False


class Whole:
    """No delta here: send the whole file."""


def _sig_bytes(sig: Signature) -> int:
    return len(sig.lengths) + len(sig.weak) + len(sig.strong) + 32


def _fine_by_literal(
    plan: Sequence[Copy | Literal], coarse: Signature, fine: Sequence[Signature]
) -> list[tuple[int, list[Signature]]]:
    """For each literal, the fine signatures of the regions that probably hold its
    old version (``refine.regions`` of the literal and its neighbours)."""
    out: list[tuple[int, list[Signature]]] = []
    for i, op in enumerate(plan):
        if not isinstance(op, Literal):
            continue
        near = regions(plan[max(0, i - 1) : i + 2], coarse)
        sigs = [
            s
            for s in fine
            if any(s.offset < r.offset + r.length and r.offset < s.offset + s.size for r in near)
        ]
        out.append((op.offset, sigs))
    return out


async def prepare(
    source: Endpoint,
    target: Endpoint,
    change: Change,
    hint: Sequence[tuple[int, int]] | None,
    inplace_min: int = INPLACE_MIN,
) -> Delta | Refused | Whole:
    """The delta for ``change``; a failed call raises ``SideFailure`` naming its side."""
    old, new = change.old, change.new
    assert old is not None and new is not None
    path = change.path
    receiver, sender = change.side, change.side.other
    coarse: Signature | None = None
    sig_bytes = 0
    hint_size = min(old.size, new.size)
    if hint is not None:
        # the kernel's ranges are exact: send just those bytes (no page widening)
        plan: list[Copy | Literal] = hinted(old.size, new.size, hint, page=1)
    else:
        # both ends sign at once (each reads only its own file), then a join
        reply, mine = await asyncio.gather(
            of(receiver, target.signature(path, old, hint_size)),
            of(sender, source.signature(path, new, hint_size)),
        )
        if reply.unsupported or mine.unsupported:
            return Whole()
        if reply.sig is None:
            return Refused(reply.problem or "modified since the scan")
        if mine.sig is None:
            return Refused(mine.problem or "modified since the scan", side_is_source=True)
        coarse = reply.sig
        sig_bytes += _sig_bytes(coarse) + _sig_bytes(mine.sig)
        plan = list(match_signatures(mine.sig, coarse))
    literals = [(op.offset, op.length) for op in plan if isinstance(op, Literal)]
    fine: list[tuple[int, list[Signature]]] = []
    if coarse is not None and literals:
        want = regions(plan, coarse)
        sigs = (
            await of(
                receiver,
                target.region_signatures(
                    path, old, [(r.offset, r.length) for r in want], hint_size
                ),
            )
            if want
            else []
        )
        sig_bytes += sum(_sig_bytes(s) for s in sigs)
        fine = _fine_by_literal(plan, coarse, sigs)
    inplace = new.size >= inplace_min and should_apply_inplace(
        old.size, new.size, changed_ranges(plan), min_size=inplace_min
    )
    handle = await of(receiver, target.patch_open(path, old, new, inplace))
    try:
        copied = await of(receiver, _send_copies(target, handle, plan))
    except BaseException:
        with contextlib.suppress(OSError):
            await target.patch_abort(handle)
        raise
    return Delta(handle, literals, fine, inplace, sig_bytes, copied=copied)


async def _send_copies(target: Endpoint, handle: int, plan: Sequence[Copy | Literal]) -> int:
    copies: list[tuple[int, Copy]] = []
    pos = 0
    for step in plan:
        if isinstance(step, Copy):
            copies.append((pos, step))
        pos += step.length
    for at, copy in copies:  # merged runs: about one per edit
        await target.patch_write(handle, at, [copy])
    return sum(op.length for _, op in copies)
