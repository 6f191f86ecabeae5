"""Framing: any split of the byte stream yields the same frames; lengths are bounded."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from yeet.model.errors import ProtocolError
from yeet.protocol.frames import HEADER_SIZE, FrameDecoder, Kind, encode_frame

frames = st.lists(
    st.tuples(
        st.sampled_from(list(Kind)),
        st.binary(max_size=3000),
        st.integers(0, 2**16 - 1),
        st.integers(0, 2**64 - 1),
    ),
    max_size=12,
)


@settings(max_examples=300, deadline=None)
@given(frames, st.lists(st.integers(0, 20000), max_size=40))
def test_round_trip_under_any_split(
    items: list[tuple[Kind, bytes, int, int]], cuts: list[int]
) -> None:
    stream = b"".join(encode_frame(k, p, method=m, call=c) for k, p, m, c in items)
    points = sorted({min(c, len(stream)) for c in cuts} | {0, len(stream)})
    dec = FrameDecoder(1 << 16)
    got = []
    for a, b in itertools.pairwise(points):
        dec.feed(stream[a:b])
        while (f := dec.next_frame()) is not None:
            got.append((f.kind, f.payload, f.method, f.call))
    assert got == items
    assert dec.buffered == 0


def test_byte_by_byte() -> None:
    stream = encode_frame(Kind.RESULT, b"x" * 100, call=7) * 3
    dec = FrameDecoder()
    got = []
    for i in range(len(stream)):
        dec.feed(stream[i : i + 1])
        while (f := dec.next_frame()) is not None:
            got.append(f)
    assert [f.call for f in got] == [7, 7, 7]


@pytest.mark.parametrize("length", [0, 11, (1 << 16) + 1, 2**32 - 1])
def test_length_out_of_bounds_rejected_on_four_bytes(length: int) -> None:
    dec = FrameDecoder(1 << 16)
    dec.feed(length.to_bytes(4, "big"))
    with pytest.raises(ProtocolError) as err:
        dec.next_frame()
    assert not err.value.local


def test_huge_length_allocates_nothing_while_waiting() -> None:
    dec = FrameDecoder(1 << 16)
    header = (1 << 16).to_bytes(4, "big") + bytes([Kind.RESULT, 0, 0, 0]) + bytes(8)
    dec.feed(header + b"x" * 10)
    assert dec.next_frame() is None
    assert dec.buffered == HEADER_SIZE + 10


def test_unknown_kind_and_flags() -> None:
    good = encode_frame(Kind.END, b"", call=1)
    for bad in (good[:4] + b"\x63" + good[5:], good[:5] + b"\x80" + good[6:]):
        dec = FrameDecoder()
        dec.feed(bad)
        with pytest.raises(ProtocolError):
            dec.next_frame()


def test_sender_refuses_oversized_frame() -> None:
    with pytest.raises(ProtocolError) as err:
        encode_frame(Kind.RESULT, b"x" * 2000, max_frame=1024)
    assert err.value.local
