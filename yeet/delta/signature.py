"""Signatures of base data, and the sender's index over them.

Invariant owned here: a ``Signature`` lists, in order and without gaps, every
chunk of the base range ``[offset, offset + size)`` as chunked with ``params``:
its length, its weak key and its strong fingerprint. ``Index.find`` only ever
answers with a base offset whose chunk has the same length, weak key *and*
strong fingerprint as the chunk asked about.

Wire form (msgspec, array-like): per chunk 2 or 4 bytes of length, 4 bytes of
weak key and ``STRONG_LEN`` (8) bytes of blake3, packed little-endian into three
``bytes`` columns — 14-16 bytes per chunk, no per-entry framing.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Iterable, Iterator

import msgspec

from yeet.delta.chunking import STRONG_LEN, Params, Source, chunks, params_for

try:
    from blake3 import blake3
except ImportError:  # a bare remote: signatures still decode, chunking is off
    blake3 = None  # type: ignore[assignment,misc]


class Signature(msgspec.Struct, frozen=True, array_like=True, omit_defaults=True):
    """The chunk list of one base range, compact enough to cross the wire."""

    params: Params
    offset: int
    size: int
    lengths: bytes
    weak: bytes
    strong: bytes
    digest: bytes = b""
    """blake3 of the whole signed range, when asked for (``signature(digest=True)``):
    lets the other side check that the base is the version it planned against."""

    def __len__(self) -> int:
        return len(self.weak) // 4

    def entries(self) -> Iterator[tuple[int, int, int, bytes]]:
        """``(base_offset, length, weak, strong)`` for every chunk, in order."""
        lengths = _unpack(self.lengths, _length_code(self.params))
        weaks = _unpack(self.weak, "I")
        if len(lengths) != len(weaks) or len(self.strong) != STRONG_LEN * len(weaks):
            raise ValueError("malformed signature: column lengths differ")
        pos = self.offset
        for i, (n1, w) in enumerate(zip(lengths, weaks)):  # (equal lengths: checked above)
            n = n1 + 1
            yield pos, n, w, self.strong[i * STRONG_LEN : (i + 1) * STRONG_LEN]
            pos += n
        if pos != self.offset + self.size:
            raise ValueError("malformed signature: lengths do not add up to size")


def _length_code(params: Params) -> str:
    return "H" if params.max_size <= 0x10000 else "I"


def _pack(values: list[int], code: str) -> bytes:
    arr = array(code, values)
    if sys.byteorder != "little":
        arr.byteswap()
    return arr.tobytes()


def _unpack(data: bytes, code: str) -> array[int]:
    arr = array(code)
    if len(data) % arr.itemsize:
        raise ValueError("malformed signature: ragged column")
    arr.frombytes(data)
    if sys.byteorder != "little":
        arr.byteswap()
    return arr


def signature(
    base: Source,
    size_hint: int,
    *,
    params: Params | None = None,
    offset: int = 0,
    threads: bool = True,
    digest: bool = False,
) -> Signature:
    """Chunk and fingerprint ``base`` (whose first byte is at absolute ``offset``).

    ``size_hint`` picks the chunk parameters when ``params`` is not given (the
    coarse ones, ``params_for(size_hint)``) and sizes the read buffers; it need
    not be exact. With ``digest`` the blake3 of all of ``base`` is computed in
    the same pass (on the hashing thread, where it costs little wall time).
    Memory: the chunking windows (see ``chunking``) plus ~16 bytes per chunk.
    """
    if params is None:
        params = params_for(size_hint)
    lengths: list[int] = []
    weaks: list[int] = []
    strongs: list[bytes] = []
    whole = blake3() if digest else None
    cut = chunks(base, params, size_hint=size_hint, offset=offset, threads=threads, digest=whole)
    for c in cut:
        assert c.strong is not None
        lengths.append(c.length - 1)
        weaks.append(c.weak)
        strongs.append(c.strong)
    return Signature(
        params=params,
        offset=offset,
        size=sum(lengths) + len(lengths),
        lengths=_pack(lengths, _length_code(params)),
        weak=_pack(weaks, "I"),
        strong=b"".join(strongs),
        digest=whole.digest() if whole is not None else b"",
    )


def key(length: int, weak: int) -> int:
    """The weak lookup key of a chunk."""
    return (length << 32) | weak


class Index:
    """Lookup of base chunks by weak key, confirmed by strong fingerprint.

    Built from one or more signatures with the same ``params`` (for example the
    fine signatures of several refinement regions). Memory: about 150 bytes per
    chunk.
    """

    def __init__(self, sigs: Iterable[Signature]) -> None:
        self.params: Params | None = None
        self._by_key: dict[int, list[tuple[int, bytes]]] = {}
        self.base_end = 0
        for sig in sigs:
            if self.params is None:
                self.params = sig.params
            elif sig.params != self.params:
                raise ValueError("signatures with different chunk parameters")
            self.base_end = max(self.base_end, sig.offset + sig.size)
            for pos, n, w, h in sig.entries():
                self._by_key.setdefault(key(n, w), []).append((pos, h))

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_key.values())

    def wants(self, length: int, weak: int) -> bool:
        """Whether a chunk with this weak key could match (then hash it)."""
        return key(length, weak) in self._by_key

    def find(self, length: int, weak: int, strong: bytes, prefer: int) -> int | None:
        """The base offset of a chunk equal to the one described, or ``None``.

        Among equal base chunks (repeated content) the one at ``prefer`` wins,
        so that runs of copies stay contiguous and merge.
        """
        found: int | None = None
        for pos, h in self._by_key.get(key(length, weak), ()):
            if h == strong:
                if pos == prefer:
                    return pos
                if found is None:
                    found = pos
        return found
