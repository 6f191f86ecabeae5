"""``hinted``: a plan from dirty ranges reproduces the new data when the ranges
cover every change, and copies everything else in place."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from yeet.delta.ops import Copy, Data, Literal, changed_ranges, hinted, patch

PAGE = 16


@st.composite
def edited(draw: st.DrawFn) -> tuple[bytes, bytes, list[tuple[int, int]]]:
    old = draw(st.binary(min_size=0, max_size=400))
    new = bytearray(old)
    ranges = []
    for _ in range(draw(st.integers(0, 4))):
        if not new:
            break
        off = draw(st.integers(0, len(new) - 1))
        n = draw(st.integers(1, 40))
        chunk = draw(st.binary(min_size=n, max_size=n))
        new[off : off + n] = chunk[: len(new) - off] + b""
        ranges.append((off, n))
    size = draw(st.integers(0, len(old) + 60))
    if size > len(new):
        new += draw(st.binary(min_size=size - len(new), max_size=size - len(new)))
    else:
        del new[size:]
    return old, bytes(new), ranges


@settings(max_examples=300)
@given(edited())
def test_hinted_plan_rebuilds_the_new_data(
    case: tuple[bytes, bytes, list[tuple[int, int]]],
) -> None:
    old, new, ranges = case
    plan = hinted(len(old), len(new), ranges, page=PAGE)
    ops = [
        op if isinstance(op, Copy) else Data(new[op.offset : op.offset + op.length]) for op in plan
    ]
    out = b"".join(patch(lambda o, n: old[o : o + n], ops))
    assert out == new
    for op in plan:  # in place: copies never move data, literals are whole pages or the tail
        if isinstance(op, Copy):
            assert op.length > 0
        else:
            assert isinstance(op, Literal)
            assert op.offset % PAGE == 0 or op.offset == min(len(old), len(new))
            end = op.offset + op.length
            assert end % PAGE == 0 or end == len(new) or end == min(len(old), len(new))
    assert all(o + n <= len(new) for o, n in changed_ranges(plan))


def test_hinted_pages_and_tail() -> None:
    plan = hinted(100, 120, [(5, 2), (40, 30)], page=16)
    assert plan == [Literal(0, 16), Copy(16, 16), Literal(32, 48), Copy(80, 20), Literal(100, 20)]
    assert hinted(100, 50, [(60, 10)], page=16) == [Copy(0, 50)]
    assert hinted(0, 0, []) == []
