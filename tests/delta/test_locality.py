"""An edit only changes the chunks around it; small edits make small deltas."""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.delta.strategies import SMALL
from yeet.delta import Data, delta, fine_params, finish, match, region_signature, regions, signature
from yeet.delta.chunking import Params, cut_points

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
RESYNC = 16  # max chunks (of max_size) an edit may disturb after its end


def literal_bytes(ops: list) -> int:  # type: ignore[type-arg]
    return sum(len(op.data) for op in ops if isinstance(op, Data))


@SETTINGS
@given(
    seed=st.integers(0, 2**32),
    size=st.integers(8 << 10, 128 << 10),
    kind=st.sampled_from(["overwrite", "insert", "delete"]),
    at=st.floats(0, 1),
    n=st.integers(1, 2048),
)
def test_cut_points_stable_away_from_edit(
    seed: int, size: int, kind: str, at: float, n: int
) -> None:
    rnd = random.Random(seed)
    base = rnd.randbytes(size)
    p = int(at * size)
    if kind == "overwrite":
        new = base[:p] + rnd.randbytes(n) + base[p + n :]
        shift, edit_end = 0, p + n
    elif kind == "insert":
        new = base[:p] + rnd.randbytes(n) + base[p:]
        shift, edit_end = n, p + n
    else:
        new = base[:p] + base[p + n :]
        shift, edit_end = -min(n, size - p), p
    old_cuts = cut_points(base, SMALL)
    new_cuts = cut_points(new, SMALL)
    # before the edit: identical (a cut at c depends on bytes up to c inclusive)
    assert [c for c in old_cuts if c < p] == [c for c in new_cuts if c < p]
    # after the edit: the cut sequences meet again within RESYNC chunks, then agree
    horizon = edit_end + RESYNC * SMALL.max_size
    old_after = {c + shift for c in old_cuts if c + shift > edit_end}
    new_after = [c for c in new_cuts if c > edit_end]
    meet = next((c for c in new_after if c in old_after), None)
    if meet is None:  # no common cut: only possible when the data ends first
        assert len(new) <= horizon
        return
    assert meet <= horizon
    assert [c for c in new_after if c >= meet] == sorted(c for c in old_after if c >= meet)


@SETTINGS
@given(
    seed=st.integers(0, 2**32),
    size=st.integers(16 << 10, 256 << 10),
    k=st.integers(1, 8),
    n=st.integers(1, 512),
)
def test_delta_small_for_small_edits(seed: int, size: int, k: int, n: int) -> None:
    """k overwrites of n bytes cost at most ~k * (n + a few chunks) of literal data."""
    rnd = random.Random(seed)
    base = rnd.randbytes(size)
    new = bytearray(base)
    for _ in range(k):
        p = rnd.randrange(0, size - n)
        new[p : p + n] = rnd.randbytes(n)
    new_b = bytes(new)
    ops = list(delta(new_b, signature(base, size, params=SMALL)))
    bound = k * (n + RESYNC * SMALL.max_size)
    assert literal_bytes(ops) <= bound
    # typical cost is much lower than the bound: about n + 2 average chunks per edit
    coarse = Params(4096, 1024, 16384)
    sig = signature(base, size, params=coarse)
    plan = list(match(new_b, sig))
    fine = [region_signature(lambda o, m: base[o : o + m], r, SMALL) for r in regions(plan, sig)]
    refined = list(finish(plan, fine, lambda o, m: new_b[o : o + m]))
    assert literal_bytes(refined) <= bound


def test_typical_literal_cost() -> None:
    """Measured, not a property: average literal bytes per 64-byte edit."""
    rnd = random.Random(7)
    base = rnd.randbytes(1 << 20)
    total, trials = 0, 30
    for _ in range(trials):
        new = bytearray(base)
        p = rnd.randrange(0, len(base) - 64)
        new[p : p + 64] = rnd.randbytes(64)
        total += literal_bytes(list(delta(bytes(new), signature(base, len(base), params=SMALL))))
    per_edit = total / trials
    print(f"avg literal bytes per 64-byte edit at avg chunk 256: {per_edit:.0f}")
    assert per_edit < 6 * SMALL.avg_size


def test_fine_params_for_small_coarse() -> None:
    assert fine_params(Params(1024, 256, 4096)).avg_size == 1024
