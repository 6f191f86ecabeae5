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

from collections.abc import Iterator

from yeet.delta.chunking import Source, chunks, params_for
from yeet.delta.ops import PIECE, Copy, Data, Literal, Op
from yeet.delta.signature import Index, Signature


def _as_index(sig: Signature | Index) -> Index:
    return sig if isinstance(sig, Index) else Index([sig])


def _scan(
    new: Source, index: Index, *, keep: bool, size_hint: int, offset: int, threads: bool
) -> Iterator[Copy | Data | Literal]:
    """Core loop: ``Copy`` runs and either ``Data`` (keep) or ``Literal`` spans."""
    params = index.params or params_for(size_hint)  # no signature at all: all literal
    run_base, run_len = -1, 0
    lit_start, lit_len = offset, 0
    lit = bytearray()
    cut = chunks(new, params, want=index.wants, size_hint=size_hint, offset=offset, threads=threads)
    for c in cut:
        found = None
        if c.strong is not None:
            found = index.find(c.length, c.weak, c.strong, run_base + run_len)
        if found is None:
            if run_len:
                yield Copy(run_base, run_len)
                run_base, run_len = -1, 0
            if keep:
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


def delta(
    new: Source,
    sig: Signature | Index,
    *,
    size_hint: int = 0,
    offset: int = 0,
    threads: bool = True,
) -> Iterator[Op]:
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
