"""narrow, changed_ranges, patch errors, local reuse by digest."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from yeet.delta import (
    Copy,
    Data,
    DeltaError,
    LocalSource,
    changed_ranges,
    local_sources,
    narrow,
    patch,
)


@settings(max_examples=500, deadline=None)
@given(
    old=st.binary(max_size=3000),
    changes=st.lists(
        st.tuples(st.integers(0, 3000), st.binary(min_size=1, max_size=40)), max_size=6
    ),
    extra=st.binary(max_size=50),
    cut=st.integers(0, 3000),
    offset=st.integers(0, 10**9),
    block=st.sampled_from([1, 7, 64, 512]),
    slack=st.integers(0, 100),
)
def test_narrow(
    old: bytes,
    changes: list[tuple[int, bytes]],
    extra: bytes,
    cut: int,
    offset: int,
    block: int,
    slack: int,
) -> None:
    new = bytearray(old)
    for p, d in changes:
        new[p : p + len(d)] = d
    new_b = bytes(new[: max(cut, len(old))]) + extra
    ranges = narrow(offset, old, new_b, block=block, slack=slack)
    out = bytearray(old[: len(new_b)]) + bytes(max(0, len(new_b) - len(old)))
    for o, n in ranges:
        assert n > 0 and offset <= o and o + n <= offset + len(new_b)
        out[o - offset : o - offset + n] = new_b[o - offset : o - offset + n]
    assert bytes(out) == new_b
    # sorted, disjoint, at least `slack` apart, tight at both ends
    for (a, n), (b, _) in itertools.pairwise(ranges):
        assert a + n + slack <= b
    for o, n in ranges:
        s, e = o - offset, o - offset + n
        assert s >= len(old) or old[s] != new_b[s]
        assert e - 1 >= len(old) or old[e - 1] != new_b[e - 1]
    if old[: len(new_b)] == new_b and len(new_b) <= len(old):
        assert ranges == []


def test_changed_ranges_table() -> None:
    ops = [Copy(0, 10), Data(b"xx"), Copy(12, 5), Copy(30, 3), Data(b"y"), Copy(21, 4)]
    # identity copies at 0 and 12 are unchanged; the moved one and literals change
    assert changed_ranges(ops) == [(10, 2), (17, 4)]
    assert changed_ranges([]) == []
    assert changed_ranges([Copy(5, 5)]) == [(0, 5)]


def test_patch_short_base() -> None:
    with pytest.raises(DeltaError):
        b"".join(patch(lambda o, n: b"ab"[o : o + n], [Copy(0, 5)]))
    with pytest.raises(DeltaError):
        list(patch(lambda o, n: b"", [Copy(-1, 5)]))


def test_local_sources() -> None:
    d1, d2, d3 = b"1" * 32, b"2" * 32, b"3" * 32
    have = {d1: ["a", "old/a"], d2: ["b"], d3: ["c"]}
    wanted = {"new/a": d1, "b": d2, "x": d3, "y": b"9" * 32, "c": d1}
    got = local_sources(wanted, have, doomed={"a", "c"})
    assert got == [
        LocalSource("c", "old/a", d1),  # survives the batch, preferred over "a"
        LocalSource("new/a", "old/a", d1),
        LocalSource("x", "c", d3, source_doomed=True),  # copy before "c" is replaced
    ]
    # "b" already holds d2; "y" has no local source
