"""Delta operations, and what they mean for the target: patching and changed ranges.

Invariant owned here: a delta is a sequence of ``Copy(base_offset, length)``
and ``Data(bytes)`` operations whose concatenated outputs, in order, are the
target; ``patch`` reproduces exactly that, reading the base only through the
caller's ``read(offset, length)``; ``changed_ranges`` returns exactly the
target ranges that are *not* produced by a copy of the base from the same
offset (i.e. a superset of the bytes an in-place update must write), and
``narrow`` shrinks such a range to the bytes that really differ.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Union

import msgspec

from yeet.model.errors import YeetError

PIECE = 1 << 20
"""Largest buffer ``patch`` asks ``read`` for, and largest ``Data`` that
``merge`` builds: the memory bound of patching is one piece."""


class DeltaError(YeetError):
    """A delta cannot be applied (the base is not what the signature described)."""


class Copy(msgspec.Struct, frozen=True, array_like=True, tag=0):
    """Copy ``length`` bytes of the base starting at ``base_offset``."""

    base_offset: int
    length: int


class Data(msgspec.Struct, frozen=True, array_like=True, tag=1):
    """Literal bytes of the target."""

    data: bytes


class Literal(msgspec.Struct, frozen=True, array_like=True, tag=2):
    """A range ``[offset, offset + length)`` of the new data that matched nothing.

    The first round of a refined delta (``diff.match``, see ``refine``) yields these instead of
    ``Data``, so that no literal bytes are held or sent before refinement.
    """

    offset: int
    length: int


DeltaOp = Union[Copy, Data]
"""What a delta is made of: the one delta-op type, in memory and on the wire."""
PlanOp = Union[Copy, Literal]
"""What a first-round plan is made of (``diff.match``)."""
Reader = Callable[[int, int], bytes]
"""``read(offset, length)`` on the base: returns ``length`` bytes (fewer only at EOF)."""


def op_length(op: Copy | Data | Literal) -> int:
    return len(op.data) if isinstance(op, Data) else op.length


def target_size(ops: Iterable[DeltaOp]) -> int:
    return sum(op_length(op) for op in ops)


def merge(ops: Iterable[DeltaOp], max_data: int = PIECE) -> Iterator[DeltaOp]:
    """Merge contiguous copies and adjacent small literals; drop empty ops."""
    copy: Copy | None = None
    data = bytearray()
    for op in ops:
        if isinstance(op, Copy):
            if not op.length:
                continue
            if data:
                yield Data(bytes(data))
                data.clear()
            if copy is not None and copy.base_offset + copy.length == op.base_offset:
                copy = Copy(copy.base_offset, copy.length + op.length)
            else:
                if copy is not None:
                    yield copy
                copy = op
        else:
            if not op.data:
                continue
            if copy is not None:
                yield copy
                copy = None
            if len(data) + len(op.data) > max_data:
                if data:
                    yield Data(bytes(data))
                    data.clear()
                if len(op.data) >= max_data:
                    yield op
                    continue
            data += op.data
    if copy is not None:
        yield copy
    if data:
        yield Data(bytes(data))


def patch(read: Reader, ops: Iterable[DeltaOp], piece: int = PIECE) -> Iterator[bytes]:
    """Stream the target: copies are read from the base in pieces of ``piece``."""
    for op in ops:
        if isinstance(op, Data):
            if op.data:
                yield op.data
            continue
        if op.base_offset < 0 or op.length < 0:
            raise DeltaError(f"bad copy {op}")
        pos, end = op.base_offset, op.base_offset + op.length
        while pos < end:
            n = min(piece, end - pos)
            got = read(pos, n)
            if len(got) != n:
                raise DeltaError(f"base too short: wanted {n} bytes at {pos}, got {len(got)}")
            yield got
            pos += n


def changed_ranges(ops: Iterable[Copy | Data | Literal]) -> list[tuple[int, int]]:
    """Target ``(offset, length)`` ranges not copied from the same base offset.

    Applying a delta in place means writing exactly these ranges (plus
    truncating or extending to the target size); everything else is already
    there. Adjacent ranges are merged. Also works on a refinement plan
    (``Literal`` for the unmatched ranges), before any literal bytes exist.
    """
    out: list[tuple[int, int]] = []
    pos = 0
    for op in ops:
        n = op_length(op)
        if not n:
            continue
        if not (isinstance(op, Copy) and op.base_offset == pos):
            if out and out[-1][0] + out[-1][1] == pos:
                out[-1] = (out[-1][0], out[-1][1] + n)
            else:
                out.append((pos, n))
        pos += n
    return out


def placed(ops: Iterable[DeltaOp]) -> Iterator[tuple[int, DeltaOp]]:
    """``(target_offset, op)`` for each op."""
    pos = 0
    for op in ops:
        yield pos, op
        pos += op_length(op)


def _first_diff(a: bytes, b: bytes) -> int:
    """Index of the first differing byte of equal-length ``a != b``."""
    lo, hi = 0, len(a)  # a[:lo] == b[:lo]; a[:hi] != b[:hi]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid
    return lo


def _last_diff(a: bytes, b: bytes) -> int:
    """Index of the last differing byte of equal-length ``a != b``."""
    n = len(a)
    lo, hi = 0, n  # a[n-lo:] == b[n-lo:]; a[n-hi:] != b[n-hi:]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[n - mid :] == b[n - mid :]:
            lo = mid
        else:
            hi = mid
    return n - hi


def narrow(
    offset: int, old: bytes, new: bytes, *, block: int = 512, slack: int = 64
) -> list[tuple[int, int]]:
    """The ``(offset, length)`` sub-ranges of ``new`` that differ from ``old``.

    ``old`` and ``new`` both start at target ``offset``; bytes of ``new`` past
    the end of ``old`` always count as different. Differences separated by fewer
    than ``slack`` equal bytes are merged into one range (fewer, larger writes).
    """
    out: list[tuple[int, int]] = []
    common = min(len(old), len(new))

    def add(start: int, end: int) -> None:
        if out and start - (out[-1][0] + out[-1][1] - offset) < slack:
            out[-1] = (out[-1][0], offset + end - out[-1][0])
        else:
            out.append((offset + start, end - start))

    i = 0
    while i < common:
        j = min(i + block, common)
        if old[i:j] == new[i:j]:
            i = j
            continue
        first = i + _first_diff(old[i:j], new[i:j])
        last_start, last_end = i, j
        k = j
        while k < common:
            e = min(k + block, common)
            if old[k:e] == new[k:e]:
                break
            last_start, last_end = k, e
            k = e
        a, b = old[last_start:last_end], new[last_start:last_end]
        add(first, last_start + _last_diff(a, b) + 1)
        i = k
    if len(new) > common:
        add(common, len(new))
    return out


def hinted(
    old_size: int, new_size: int, ranges: Iterable[tuple[int, int]], page: int = 4096
) -> list[Copy | Literal]:
    """A plan from dirty ranges alone (no signatures): copy everything in place
    except the ranges (widened to whole ``page``s) and the bytes past the old end.

    Correct only if the ranges cover every byte that differs between the old
    and the new data; the caller verifies the result's digest (a hint is never
    trusted for correctness).
    """
    keep = min(old_size, new_size)
    spans: list[tuple[int, int]] = []
    for off, n in sorted(ranges):
        if n <= 0 or off >= keep:
            continue
        lo = max(0, off - off % page)
        hi = min(keep, -(-(off + n) // page) * page)
        if lo >= hi:
            continue
        if spans and lo <= spans[-1][1]:
            spans[-1] = (spans[-1][0], max(hi, spans[-1][1]))
        else:
            spans.append((lo, hi))
    if new_size > keep:
        if spans and spans[-1][1] == keep:
            spans[-1] = (spans[-1][0], new_size)
        else:
            spans.append((keep, new_size))
    out: list[Copy | Literal] = []
    pos = 0
    for lo, hi in spans:
        if lo > pos:
            out.append(Copy(pos, lo - pos))
        out.append(Literal(lo, hi - lo))
        pos = hi
    if pos < new_size:
        out.append(Copy(pos, new_size - pos))
    return out
