"""Hypothesis strategies shared by the delta tests: data, edits, small chunk params."""

from __future__ import annotations

import random
from dataclasses import dataclass

from hypothesis import strategies as st

from yeet.delta.chunking import Params

SMALL = Params(avg_size=256, min_size=64, max_size=1024)
"""The smallest parameters pyfastcdc accepts: many chunks in little data."""


@st.composite
def blobs(draw: st.DrawFn, max_size: int = 32 << 10) -> bytes:
    """Arbitrary bytes: random-looking, low-entropy or hypothesis' own."""
    kind = draw(st.sampled_from(["random", "random", "text", "raw", "zeros"]))
    n = draw(st.integers(0, max_size))
    if kind == "raw":
        return draw(st.binary(max_size=min(n, 4096)))
    rnd = random.Random(draw(st.integers(0, 2**32)))
    if kind == "random":
        return rnd.randbytes(n)
    if kind == "text":
        words = [b"alpha", b"beta", b"gamma", b"delta\n", b"    ", b"{}", b"yeet"]
        out = bytearray()
        while len(out) < n:
            out += rnd.choice(words)
        return bytes(out[:n])
    return bytes(n)


@dataclass(frozen=True)
class Edit:
    kind: str  # overwrite | insert | delete | append | truncate
    pos: float  # where, as a fraction of the current length
    data: bytes
    length: int

    def apply(self, b: bytes) -> bytes:
        at = int(self.pos * len(b))
        if self.kind == "overwrite":
            return b[:at] + self.data + b[at + len(self.data) :]
        if self.kind == "insert":
            return b[:at] + self.data + b[at:]
        if self.kind == "delete":
            return b[:at] + b[at + self.length :]
        if self.kind == "append":
            return b + self.data
        return b[:at]  # truncate


@st.composite
def edits(draw: st.DrawFn, max_data: int = 4096) -> Edit:
    kind = draw(st.sampled_from(["overwrite", "insert", "delete", "append", "truncate"]))
    pos = draw(st.floats(0, 1))
    rnd = random.Random(draw(st.integers(0, 2**32)))
    n = draw(st.integers(0, max_data))
    data = rnd.randbytes(n) if draw(st.booleans()) else draw(st.binary(max_size=64))
    return Edit(kind, pos, data, n)


def apply_all(base: bytes, es: list[Edit]) -> bytes:
    for e in es:
        base = e.apply(base)
    return base


def splits(data: bytes, rnd: random.Random) -> list[bytes]:
    """``data`` cut into random pieces (to feed an Iterable[bytes] source)."""
    out, i = [], 0
    while i < len(data):
        n = rnd.randint(1, 5000)
        out.append(data[i : i + n])
        i += n
    return out
