"""The banner: found behind shell noise, bounded, version mismatches named."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from yeet.model.errors import ProtocolError
from yeet.protocol.banner import BannerScanner, banner_line

LINE = banner_line("1.2.3", ["blake3", "zstd"])


@given(
    st.binary(max_size=2000).filter(lambda b: b"YEET-AGENT/" not in b),
    st.binary(max_size=50),
    st.integers(1, 64),
)
def test_noise_is_skipped(noise: bytes, after: bytes, step: int) -> None:
    stream = noise + b"\n" + LINE + after
    sc = BannerScanner("1.2.3")
    got = None
    i = 0
    while got is None:
        got = sc.feed(stream[i : i + step])
        i += step
    assert got.version == "1.2.3" and got.caps == ("blake3", "zstd")
    assert sc.rest + stream[i:] == after


def test_banner_first() -> None:
    sc = BannerScanner("x")
    assert sc.feed(LINE) is not None


def test_magic_inside_a_line_is_noise() -> None:
    sc = BannerScanner("x")
    assert sc.feed(b"echo YEET-AGENT/1 fake x\n") is None


def test_noise_limit() -> None:
    sc = BannerScanner("x", noise_limit=1000)
    with pytest.raises(ProtocolError, match="no yeet agent banner within 1000 bytes"):
        for _ in range(100):
            sc.feed(b"Welcome to the machine!\n")


def test_version_mismatch_names_both() -> None:
    sc = BannerScanner("0.1.0")
    with pytest.raises(ProtocolError) as err:
        sc.feed(b"YEET-AGENT/2 0.9.0 -\n")
    text = str(err.value)
    assert "protocol 2 (yeet 0.9.0)" in text and "protocol 1 (yeet 0.1.0)" in text


def test_eof_error_shows_what_remote_said() -> None:
    sc = BannerScanner("x")
    sc.feed(b"sh: 1: python3: not found\n")
    assert "python3: not found" in str(sc.eof_error())


@pytest.mark.parametrize(
    "line", [b"YEET-AGENT/x 1 -\n", b"YEET-AGENT/1 only-two\n", b"YEET-AGENT/1 \xff\xfe x\n"]
)
def test_malformed_banner(line: bytes) -> None:
    with pytest.raises(ProtocolError):
        BannerScanner("x").feed(line)
