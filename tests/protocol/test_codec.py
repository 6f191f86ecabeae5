"""Per-frame compression: round trips, incompressible data skipped, bombs refused."""

from __future__ import annotations

import os
import zlib

import pytest
import zstandard
from hypothesis import given
from hypothesis import strategies as st

from yeet.model.errors import ProtocolError
from yeet.protocol import codec
from yeet.protocol.frames import FLAG_ZLIB, FLAG_ZSTD


@pytest.mark.parametrize("name", ["zstd", "zlib", "none"])
@given(data=st.binary(max_size=5000) | st.just(b"abc" * 100_000))
def test_round_trip(name: str, data: bytes) -> None:
    c = codec.Codec(name)
    flags, packed = c.pack(data)
    assert c.unpack(flags, packed, 1 << 20) == data


def test_compressible_is_compressed_incompressible_is_not() -> None:
    c = codec.Codec("zstd")
    flags, packed = c.pack(b"hello world " * 50_000)
    assert flags == FLAG_ZSTD and len(packed) < 10_000
    noise = os.urandom(4 << 20)
    flags, packed = c.pack(noise)
    assert flags == 0 and packed is noise


def test_choose() -> None:
    assert codec.choose(("zstd", "zlib", "none"), ("zlib", "none")) == "zlib"
    assert codec.choose(("none",), ("zstd", "zlib", "none")) == "none"
    assert codec.choose(("zstd", "zlib"), ("zstd", "zlib", "none")) == "zstd"


def test_zstd_bomb_refused_before_allocation() -> None:
    bomb = zstandard.ZstdCompressor().compress(bytes(50 << 20))
    with pytest.raises(ProtocolError, match="excessive"):
        codec.Codec("zstd").unpack(FLAG_ZSTD, bomb, 1 << 20)


def test_zstd_without_declared_size_refused() -> None:
    obj = zstandard.ZstdCompressor(write_content_size=False).compressobj()
    data = obj.compress(b"x" * 1000) + obj.flush()
    with pytest.raises(ProtocolError):
        codec.Codec("zstd").unpack(FLAG_ZSTD, data, 1 << 20)


def test_zlib_bomb_refused() -> None:
    bomb = zlib.compress(bytes(50 << 20))
    with pytest.raises(ProtocolError):
        codec.Codec("zlib").unpack(FLAG_ZLIB, bomb, 1 << 20)


@pytest.mark.parametrize("name,flag", [("zstd", FLAG_ZSTD), ("zlib", FLAG_ZLIB)])
def test_corrupt_data(name: str, flag: int) -> None:
    with pytest.raises(ProtocolError):
        codec.Codec(name).unpack(flag, b"\x00garbage" * 10, 1 << 20)


def test_wrong_flag_for_negotiated_codec() -> None:
    with pytest.raises(ProtocolError, match="negotiated"):
        codec.Codec("zlib").unpack(FLAG_ZSTD, b"x", 1 << 20)
