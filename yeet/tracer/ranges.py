"""Dirty byte ranges of one file: a pure value type (no ``os``, no I/O).

Invariant owned here: a ``RangeSet`` is a sorted tuple of half-open
``(start, end)`` intervals that are non-empty, pairwise disjoint and not
adjacent (so every set of bytes has exactly one representation), and every
operation returns a set that covers at least the bytes of its inputs - a
range may grow (merging, the whole-file mark), it never shrinks. ``WHOLE``
("every byte of the file, whatever its size") absorbs everything.

``END`` as an end means "up to the end of the file": truncation and
similar size changes are recorded as ``(new_size, END)``.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator
from typing import Final

END: Final = 0xFFFF_FFFF_FFFF_FFFF


class Whole:
    """The whole file is dirty (a singleton: compare with ``is WHOLE``)."""

    _instance: Whole | None = None

    def __new__(cls) -> Whole:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "WHOLE"

    def __reduce__(self) -> str:
        return "WHOLE"

    def covers(self, start: int, end: int) -> bool:
        return True

    def total(self, size: int | None = None) -> int:
        return END if size is None else size


WHOLE: Final = Whole()


class RangeSet:
    """An immutable set of byte ranges (see the module invariant)."""

    __slots__ = ("_r",)

    def __init__(self, ranges: Iterable[tuple[int, int]] = ()) -> None:
        self._r: tuple[tuple[int, int], ...] = _normalize(ranges)

    @classmethod
    def _from_normal(cls, ranges: tuple[tuple[int, int], ...]) -> RangeSet:
        new = cls.__new__(cls)
        new._r = ranges
        return new

    @classmethod
    def single(cls, start: int, end: int) -> RangeSet:
        return cls(((start, end),))

    # -- queries ------------------------------------------------------------

    @property
    def ranges(self) -> tuple[tuple[int, int], ...]:
        return self._r

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter(self._r)

    def __len__(self) -> int:
        return len(self._r)

    def __bool__(self) -> bool:
        return bool(self._r)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RangeSet) and other._r == self._r

    def __hash__(self) -> int:
        return hash(self._r)

    def __repr__(self) -> str:
        inner = ", ".join(f"[{s}, {'END' if e == END else e})" for s, e in self._r)
        return f"RangeSet({inner})"

    def total(self, size: int | None = None) -> int:
        """Bytes covered; ranges are clipped to ``size`` when given."""
        if size is None:
            return sum(e - s for s, e in self._r)
        return sum(max(0, min(e, size) - s) for s, e in self._r if s < size)

    def covers(self, start: int, end: int) -> bool:
        """True if every byte of ``[start, end)`` is in the set."""
        if end <= start:
            return True
        i = bisect.bisect_right(self._r, (start, END + 1)) - 1
        return i >= 0 and self._r[i][0] <= start and end <= self._r[i][1]

    def contains(self, offset: int) -> bool:
        return self.covers(offset, offset + 1)

    # -- building -------------------------------------------------------------

    def add(self, start: int, end: int) -> RangeSet:
        """The set with ``[start, end)`` added."""
        if end <= start:
            return self
        return RangeSet._from_normal(_insert(self._r, start, end))

    def union(self, other: RangeSet) -> RangeSet:
        if not other._r:
            return self
        if not self._r:
            return other
        return RangeSet(self._r + other._r)

    def clip(self, size: int) -> RangeSet:
        """Only the bytes below ``size`` (what can be read from a file that long)."""
        return RangeSet((s, min(e, size)) for s, e in self._r if s < size)

    def aligned(self, block: int) -> RangeSet:
        """Widened outward to multiples of ``block`` (END stays END)."""
        if block <= 1:
            return self
        return RangeSet(
            (s - s % block, e if e == END else min(END, -(-e // block) * block)) for s, e in self._r
        )


Ranges = RangeSet | Whole


def merge(a: Ranges, b: Ranges) -> Ranges:
    """Union of two dirty states of the same file."""
    if a is WHOLE or b is WHOLE:
        return WHOLE
    assert isinstance(a, RangeSet) and isinstance(b, RangeSet)
    return a.union(b)


def covers(dirty: Ranges, start: int, end: int) -> bool:
    return dirty.covers(start, end)


def from_kernel(ranges: Iterable[tuple[int, int]], whole: bool) -> Ranges:
    """The kernel's per-inode record: live ranges (start < end) or whole."""
    if whole:
        return WHOLE
    return RangeSet((s, e) for s, e in ranges if s < e)


def _normalize(ranges: Iterable[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    items = sorted((int(s), int(e)) for s, e in ranges if e > s)
    out: list[tuple[int, int]] = []
    for s, e in items:
        if s < 0 or e > END:
            raise ValueError(f"range out of bounds: [{s}, {e})")
        if out and s <= out[-1][1]:
            if e > out[-1][1]:
                out[-1] = (out[-1][0], e)
        else:
            out.append((s, e))
    return tuple(out)


def _insert(r: tuple[tuple[int, int], ...], start: int, end: int) -> tuple[tuple[int, int], ...]:
    if start < 0 or end > END:
        raise ValueError(f"range out of bounds: [{start}, {end})")
    # first range whose end >= start (may touch), last whose start <= end
    lo = bisect.bisect_left([e for _, e in r], start)
    hi = bisect.bisect_right([s for s, _ in r], end)
    if lo < hi:
        start = min(start, r[lo][0])
        end = max(end, r[hi - 1][1])
    return (*r[:lo], (start, end), *r[hi:])
