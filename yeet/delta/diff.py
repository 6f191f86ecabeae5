"""The sender's side: express new data as copies of base chunks plus literals.

Invariant owned here: the ops ``delta`` yields reproduce the new data exactly
(``patch(base, delta(new, signature(base))) == new``) for *any* base, provided
the base still is what the signature describes; a ``Copy`` is only emitted for
a chunk of the new data whose length, weak key and strong fingerprint all equal
those of the base chunk it copies. Runs of consecutive matches are merged into
one ``Copy``, consecutive literals into ``Data`` of at most ``PIECE`` bytes, so
the op stream stays small (one op per changed region, not per chunk).

Memory: the chunking windows (see ``chunking``), the index (about 150 bytes per
base chunk) and one ``PIECE`` (or one chunk, if larger) of pending literal bytes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import NamedTuple, Protocol

from yeet.delta.chunking import Source, chunks, params_for
from yeet.delta.ops import PIECE, Copy, Data, DeltaOp, Literal
from yeet.delta.signature import Index, Signature


def _as_index(sig: Signature | Index) -> Index:
    return sig if isinstance(sig, Index) else Index([sig])


class _Item(Protocol):
    """A chunk of the new data as ``_ops`` needs it (``chunking.Chunk`` fits)."""

    @property
    def offset(self) -> int: ...
    @property
    def length(self) -> int: ...
    @property
    def weak(self) -> int: ...
    @property
    def strong(self) -> bytes | None: ...
    @property
    def data(self) -> memoryview | None: ...


class _Entry(NamedTuple):
    offset: int
    length: int
    weak: int
    strong: bytes | None
    data: memoryview | None


def _ops(items: Iterable[_Item], index: Index, keep: bool) -> Iterator[Copy | Data | Literal]:
    """Core loop: ``Copy`` runs and either ``Data`` (keep) or ``Literal`` spans."""
    run_base, run_len = -1, 0
    lit_start, lit_len = 0, 0
    lit = bytearray()
    for c in items:
        found = None
        if c.strong is not None:
            found = index.find(c.length, c.weak, c.strong, run_base + run_len)
        if found is None:
            if run_len:
                yield Copy(run_base, run_len)
                run_base, run_len = -1, 0
            if keep:
                assert c.data is not None
                if len(lit) + c.length > PIECE and lit:
                    yield Data(bytes(lit))
                    lit.clear()
                lit += c.data
            else:
                if not lit_len:
                    lit_start = c.offset
                lit_len += c.length
            continue
        if keep and lit:
            yield Data(bytes(lit))
            lit.clear()
        elif lit_len:
            yield Literal(lit_start, lit_len)
            lit_len = 0
        if run_len and run_base + run_len == found:
            run_len += c.length
        else:
            if run_len:
                yield Copy(run_base, run_len)
            run_base, run_len = found, c.length
    if run_len:
        yield Copy(run_base, run_len)
    if lit:
        yield Data(bytes(lit))
    if lit_len:
        yield Literal(lit_start, lit_len)


def _scan(
    new: Source, index: Index, *, keep: bool, size_hint: int, offset: int, threads: bool
) -> Iterator[Copy | Data | Literal]:
    params = index.params or params_for(size_hint)  # no signature at all: all literal
    cut = chunks(new, params, want=index.wants, size_hint=size_hint, offset=offset, threads=threads)
    return _ops(cut, index, keep)


def delta(
    new: Source,
    sig: Signature | Index,
    *,
    size_hint: int = 0,
    offset: int = 0,
    threads: bool = True,
) -> Iterator[DeltaOp]:
    """Ops that turn the base described by ``sig`` into ``new`` (one pass).

    ``new`` is chunked with the signature's parameters; ``offset`` is the
    absolute position of its first byte (only used when delta-ing a range).
    """
    for op in _scan(
        new, _as_index(sig), keep=True, size_hint=size_hint, offset=offset, threads=threads
    ):
        assert not isinstance(op, Literal)
        yield op


def match(
    new: Source,
    sig: Signature | Index,
    *,
    size_hint: int = 0,
    offset: int = 0,
    threads: bool = True,
) -> Iterator[Copy | Literal]:
    """Like ``delta`` but unmatched ranges come as ``Literal(offset, length)``."""
    for op in _scan(
        new, _as_index(sig), keep=False, size_hint=size_hint, offset=offset, threads=threads
    ):
        assert not isinstance(op, Data)
        yield op


def match_signatures(new: Signature, base: Signature | Index) -> Iterator[Copy | Literal]:
    """``match`` from the new data's own signature: a join, no data is read.

    Lets both sides sign at the same time (each reads only its own file), or
    reuse signatures computed during a scan. ``new`` must use the same chunk
    parameters as ``base``. Unlike ``match`` every chunk of the new data was
    strong-hashed, so the weak key only narrows the lookup here.
    """
    index = _as_index(base)
    if index.params is not None and new.params != index.params:
        raise ValueError("signatures with different chunk parameters")
    items = (_Entry(pos, n, w, h, None) for pos, n, w, h in new.entries())
    for op in _ops(items, index, keep=False):
        assert not isinstance(op, Data)
        yield op
