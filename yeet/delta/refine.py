"""Two-round deltas: coarse chunks for the whole file, fine chunks where it changed.

Why: with one round, the chunk size trades signature bytes (``size / avg``
entries) against literal bytes (each edit costs about two chunks). Rsync's
fixed blocks win that trade for scattered in-place edits. Refinement takes
both: round 1 uses coarse chunks (``params_for(size)``: ~sqrt(size)/16
entries, 64 KiB of signature for 4 GiB); round 2 re-chunks, with fine
parameters, only the base regions that sit where the new data did not match,
so literals shrink to a few KiB per edit.

Protocol (the caller moves the values between the two hosts)::

    receiver: sig = signature(base, size)                    -> sender
    sender:   plan = list(match(new, sig))
              want = regions(plan, sig)                       -> receiver
    receiver: fine = [region_signature(read_base, r, fine_params(sig.params))
                      for r in want]                          -> sender
    sender:   ops = finish(plan, fine, read_new)              -> receiver
    receiver: patch(read_base, ops) / apply in place

Invariant owned here: ``finish`` yields ops that reproduce the new data
exactly whatever regions were asked for (regions only decide *where* fine
matches are looked for, never correctness); every ``Literal`` of the plan is
replaced by ops covering exactly its range.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import msgspec

from yeet.delta.chunking import SCALE_FINE, Params, params_for
from yeet.delta.diff import delta
from yeet.delta.ops import PIECE, Copy, Data, DeltaError, DeltaOp, Literal, Reader, merge
from yeet.delta.signature import Index, Signature, signature


class Region(msgspec.Struct, frozen=True, array_like=True):
    """A base range ``[offset, offset + length)`` to sign with fine chunks."""

    offset: int
    length: int


def fine_params(coarse: Params) -> Params:
    """Fine chunk parameters for refinement regions of about 1.5 coarse chunks."""
    return params_for(coarse.avg_size * 3 // 2, SCALE_FINE)


def regions(
    plan: Sequence[Copy | Literal], sig: Signature, *, max_region: int | None = None
) -> list[Region]:
    """The base ranges that probably hold the old version of each literal.

    A literal between two copies most likely replaced the base bytes between
    those copies (an in-place edit, an insertion, a deletion); at the start or
    end of the file the gap reaches the base's start or end. Gaps longer than
    ``max_region`` (default 16 coarse chunks) are cut to their two edges, where
    fine matches can still be found. Overlapping regions are merged.
    """
    cap = max_region if max_region is not None else 16 * sig.params.avg_size
    base_start, base_end = sig.offset, sig.offset + sig.size
    found: list[tuple[int, int]] = []
    for i, op in enumerate(plan):
        if not isinstance(op, Literal):
            continue
        prev = plan[i - 1] if i > 0 else None
        nxt = plan[i + 1] if i + 1 < len(plan) else None
        lo = prev.base_offset + prev.length if isinstance(prev, Copy) else base_start
        hi = nxt.base_offset if isinstance(nxt, Copy) else base_end
        if hi < lo:  # content moved around: look right after the previous copy
            hi = min(lo + op.length, base_end)
        if hi - lo > cap:
            found.append((lo, lo + cap // 2))
            found.append((hi - cap // 2, hi))
        elif hi > lo:
            found.append((lo, hi))
    found.sort()
    out: list[Region] = []
    for lo, hi in found:
        if out and lo <= out[-1].offset + out[-1].length:
            end = max(hi, out[-1].offset + out[-1].length)
            out[-1] = Region(out[-1].offset, end - out[-1].offset)
        else:
            out.append(Region(lo, hi - lo))
    return out


def read_range(read: Reader, offset: int, length: int, piece: int = PIECE) -> Iterator[bytes]:
    """The bytes ``[offset, offset + length)`` through ``read``, piece by piece.

    Raises ``DeltaError`` if the data ends early (it changed under us).
    """
    pos, end = offset, offset + length
    while pos < end:
        got = read(pos, min(piece, end - pos))
        if not got:
            raise DeltaError(f"data ended at {pos}, expected {end - pos} more bytes")
        yield got
        pos += len(got)


def region_signature(read_base: Reader, region: Region, params: Params) -> Signature:
    """The receiver's fine signature of one requested base region."""
    return signature(
        read_range(read_base, region.offset, region.length),
        region.length,
        params=params,
        offset=region.offset,
    )


def finish(
    plan: Sequence[Copy | Literal],
    fine: Sequence[Signature],
    read_new: Reader,
    *,
    threads: bool = True,
) -> Iterator[DeltaOp]:
    """Final ops: the plan's copies, its literals delta-ed against ``fine``."""
    index = Index(fine) if fine else None

    def expand() -> Iterator[DeltaOp]:
        for op in plan:
            if isinstance(op, Copy):
                yield op
            elif index is not None:
                yield from delta(
                    read_range(read_new, op.offset, op.length),
                    index,
                    size_hint=op.length,
                    offset=op.offset,
                    threads=threads,
                )
            else:
                for piece in read_range(read_new, op.offset, op.length):
                    yield Data(piece)

    return merge(expand())
