"""Properties of the pure range module, against a set-of-bytes model."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from yeet.tracer.ranges import END, WHOLE, RangeSet, from_kernel, merge

U = 300  # model universe: byte offsets 0..U-1

ranges = st.lists(
    st.tuples(st.integers(0, U), st.integers(0, U)).map(lambda t: (min(t), max(t))),
    max_size=12,
)


def model(rs: list[tuple[int, int]]) -> set[int]:
    return {i for s, e in rs for i in range(s, e)}


def bytes_of(r: RangeSet) -> set[int]:
    return model(list(r))


def assert_normal(r: RangeSet) -> None:
    prev_end = -2
    for s, e in r:
        assert s < e, "empty range kept"
        assert s > prev_end, "ranges overlap or touch"
        prev_end = e


@given(ranges)
def test_construction_is_exact_and_normal(rs: list[tuple[int, int]]) -> None:
    r = RangeSet(rs)
    assert_normal(r)
    assert bytes_of(r) == model(rs)
    assert r.total() == len(model(rs))


@given(ranges, st.integers(0, U), st.integers(0, U))
def test_add_is_union(rs: list[tuple[int, int]], a: int, b: int) -> None:
    s, e = min(a, b), max(a, b)
    r = RangeSet(rs).add(s, e)
    assert_normal(r)
    assert bytes_of(r) == model(rs) | set(range(s, e))


@given(ranges, ranges)
def test_union_and_merge(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> None:
    u = RangeSet(a).union(RangeSet(b))
    assert_normal(u)
    assert bytes_of(u) == model(a) | model(b)
    m = merge(RangeSet(a), RangeSet(b))
    assert m == u
    assert merge(RangeSet(a), WHOLE) is WHOLE
    assert merge(WHOLE, RangeSet(b)) is WHOLE


@given(ranges, st.integers(0, U), st.integers(0, U))
def test_covers_matches_model(rs: list[tuple[int, int]], a: int, b: int) -> None:
    s, e = min(a, b), max(a, b)
    assert RangeSet(rs).covers(s, e) == set(range(s, e)).issubset(model(rs))
    assert WHOLE.covers(s, e)


@given(ranges, st.integers(0, U))
def test_clip(rs: list[tuple[int, int]], size: int) -> None:
    c = RangeSet(rs).clip(size)
    assert_normal(c)
    assert bytes_of(c) == {i for i in model(rs) if i < size}
    assert RangeSet(rs).total(size) == c.total()


@given(ranges, st.integers(1, 64))
def test_aligned_only_grows(rs: list[tuple[int, int]], block: int) -> None:
    r = RangeSet(rs)
    al = r.aligned(block)
    assert_normal(al)
    assert bytes_of(r) <= bytes_of(al)
    for s, e in al:
        assert s % block == 0 and (e % block == 0 or e == END)


@given(st.lists(st.tuples(st.integers(0, U), st.integers(0, U)), max_size=32), st.booleans())
def test_from_kernel_skips_free_slots(slots: list[tuple[int, int]], whole: bool) -> None:
    r = from_kernel(slots, whole)
    if whole:
        assert r is WHOLE
    else:
        assert isinstance(r, RangeSet)
        assert bytes_of(r) == model([(s, e) for s, e in slots if s < e])


def test_end_means_to_end_of_file() -> None:
    r = RangeSet([(10, END)])
    assert r.covers(10, 1 << 40)
    assert not r.covers(9, 11)
    assert r.clip(100) == RangeSet([(10, 100)])
    assert r.total(100) == 90
    assert RangeSet([(0, END)]).aligned(4096) == RangeSet([(0, END)])


def test_whole_is_a_singleton() -> None:
    import copy
    import pickle

    assert pickle.loads(pickle.dumps(WHOLE)) is WHOLE
    assert copy.deepcopy(WHOLE) is WHOLE
    assert repr(WHOLE) == "WHOLE"


def test_rejects_out_of_bounds() -> None:
    with pytest.raises(ValueError):
        RangeSet([(-1, 5)])
    with pytest.raises(ValueError):
        RangeSet().add(0, END + 1)
