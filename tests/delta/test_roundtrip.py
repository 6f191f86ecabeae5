"""patch(base, delta(new, signature(base))) == new, for any data and edits."""

from __future__ import annotations

import io
import itertools
import random
from unittest import mock

import msgspec
from blake3 import blake3
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.delta.strategies import SMALL, Edit, apply_all, blobs, edits, splits
from yeet.delta import (
    Copy,
    Data,
    DeltaOp,
    Literal,
    Signature,
    changed_ranges,
    chunking,
    delta,
    fine_params,
    finish,
    match,
    match_signatures,
    merge,
    patch,
    region_signature,
    regions,
    signature,
    target_size,
)
from yeet.delta.chunking import Params

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def reader(b: bytes):  # type: ignore[no-untyped-def]
    return lambda o, n: b[o : o + n]


def rebuild(base: bytes, ops: list[DeltaOp]) -> bytes:
    return b"".join(patch(reader(base), ops))


def two_round(base: bytes, new: bytes, params: Params, fine: Params) -> list[DeltaOp]:
    sig = signature(base, len(base), params=params)
    plan = list(match(new, sig))
    want = regions(plan, sig)
    fine_sigs = [region_signature(reader(base), r, fine) for r in want]
    return list(finish(plan, fine_sigs, reader(new)))


@FAST
@given(base=blobs(), es=st.lists(edits(), max_size=4), seed=st.integers(0, 2**32))
def test_roundtrip_small_params(base: bytes, es: list[Edit], seed: int) -> None:
    new = apply_all(base, es)
    sig = signature(base, len(base), params=SMALL)
    assert sig.size == len(base)
    ops = list(delta(new, sig))
    assert rebuild(base, ops) == new
    assert target_size(ops) == len(new)
    # same ops whatever the source type and read split
    rnd = random.Random(seed)
    assert list(delta(io.BytesIO(new), sig)) == ops
    assert list(delta(splits(new, rnd), sig)) == ops
    assert signature(splits(base, rnd), len(base), params=SMALL) == sig
    # consecutive copies are merged, no empty ops
    for a, b in itertools.pairwise(ops):
        assert not (
            isinstance(a, Copy)
            and isinstance(b, Copy)
            and a.base_offset + a.length == b.base_offset
        )
    assert all((op.length if isinstance(op, Copy) else len(op.data)) > 0 for op in ops)


@FAST
@given(base=blobs(), es=st.lists(edits(), max_size=4))
def test_roundtrip_default_params(base: bytes, es: list[Edit]) -> None:
    new = apply_all(base, es)
    ops = list(delta(new, signature(base, len(base))))
    assert rebuild(base, ops) == new


@FAST
@given(base=blobs(), es=st.lists(edits(), max_size=4))
def test_roundtrip_two_rounds(base: bytes, es: list[Edit]) -> None:
    new = apply_all(base, es)
    ops = two_round(base, new, Params(1024, 256, 4096), SMALL)
    assert rebuild(base, ops) == new


@settings(max_examples=40, deadline=None)
@given(base=blobs(max_size=96 << 10), es=st.lists(edits(), max_size=3), seed=st.integers(0, 99))
def test_multi_window_and_threads(base: bytes, es: list[Edit], seed: int) -> None:
    """Tiny windows and forced hashing threads give the same signature and ops."""
    new = apply_all(base, es)
    plain_sig = signature(base, len(base), params=SMALL, threads=False)
    plain_ops = list(delta(new, plain_sig, threads=False))
    with (
        mock.patch.object(chunking, "_MIN_WINDOW", 4096),
        mock.patch.object(chunking, "_THREAD_MIN", 0),
    ):
        rnd = random.Random(seed)
        sig = signature(splits(base, rnd), 0, params=SMALL)
        assert sig == plain_sig
        assert list(delta(io.BytesIO(new), sig)) == plain_ops
        assert list(delta(memoryview(new), sig)) == plain_ops
    assert rebuild(base, plain_ops) == new


@FAST
@given(base=blobs(), new=blobs())
def test_unrelated_data(base: bytes, new: bytes) -> None:
    assert rebuild(base, list(delta(new, signature(base, len(base), params=SMALL)))) == new
    assert rebuild(base, two_round(base, new, Params(1024, 256, 4096), SMALL)) == new


@FAST
@given(base=blobs(), es=st.lists(edits(), max_size=4))
def test_changed_ranges_rebuild(base: bytes, es: list[Edit]) -> None:
    """Writing only the changed ranges over the base (then resizing) gives the target."""
    new = apply_all(base, es)
    ops = list(delta(new, signature(base, len(base), params=SMALL)))
    out = bytearray(base)
    out[len(new) :] = b""
    out.extend(bytes(len(new) - len(out)))
    ranges = changed_ranges(ops)
    for o, n in ranges:
        out[o : o + n] = new[o : o + n]
    assert bytes(out) == new
    # and a plan (copies + literals) describes the same ranges as the final ops
    plan = list(match(new, signature(base, len(base), params=SMALL)))
    assert changed_ranges(plan) == ranges


@FAST
@given(
    ops=st.lists(
        st.one_of(
            st.builds(Copy, st.integers(0, 1000), st.integers(0, 50)),
            st.builds(Data, st.binary(max_size=40)),
        ),
        max_size=20,
    ),
    max_data=st.integers(1, 100),
)
def test_merge_keeps_meaning(ops: list[Copy | Data], max_data: int) -> None:
    base = bytes(range(256)) * 5
    merged = list(merge(ops, max_data=max_data))
    assert rebuild(base, merged) == rebuild(base, ops)
    assert len(merged) <= len(ops)


@FAST
@given(base=blobs(), es=st.lists(edits(), max_size=3))
def test_wire_roundtrip(base: bytes, es: list[Edit]) -> None:
    new = apply_all(base, es)
    sig = signature(base, len(base), params=SMALL)
    wire = msgspec.msgpack.encode(sig)
    sig2 = msgspec.msgpack.decode(wire, type=Signature)
    assert sig2 == sig
    ops = list(delta(new, sig2))
    ops2 = msgspec.msgpack.decode(msgspec.msgpack.encode(ops), type=list[DeltaOp])
    assert ops2 == ops
    plan = list(match(new, sig))
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(plan), type=list[Copy | Literal]) == plan
    # about 14-16 bytes per chunk, whatever the count
    assert len(wire) <= 40 + 16 * len(sig)


def test_fine_params_scale() -> None:
    from yeet.delta import params_for

    coarse = params_for(4 << 30)
    assert coarse.avg_size == 1 << 20
    assert fine_params(coarse).avg_size == 4096
    assert params_for(0).avg_size == 1024
    assert params_for(1 << 50).avg_size == 4 << 20


@FAST
@given(base=blobs(), es=st.lists(edits(), max_size=4))
def test_match_signatures_is_match(base: bytes, es: list[Edit]) -> None:
    """Joining two signatures plans the same as scanning the new data."""
    new = apply_all(base, es)
    sig = signature(base, len(base), params=SMALL, digest=True)
    assert sig.digest == blake3(base).digest()
    new_sig = signature(new, len(new), params=SMALL)
    assert list(match_signatures(new_sig, sig)) == list(match(new, sig))
