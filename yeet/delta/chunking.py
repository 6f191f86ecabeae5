"""Content-defined chunking (FastCDC, normalized) of a byte stream, with fingerprints.

Invariant owned here: **chunk boundaries are a function of the content and the
``Params`` only** — never of how the input is split into reads, of the window
size, or of where the stream started being read (a stream read from an
absolute ``offset`` is chunked exactly as if it were a file starting there). An
edit therefore only moves the cut points near it: the FastCDC cut decision for a
chunk that starts at ``s`` looks at bytes ``[s, s + max_size)`` only (and, in
practice, at the last 64 bytes before each candidate cut), so chunking
re-synchronises with the old cut points within a chunk or two after an edit.

Chunker choice (``bench/delta_cpu.py``, this project's 2-core VM, one core,
256 MiB of random data in memory): ``pyfastcdc``'s Cython ``FastCDC.cut_buf``
1.8-3.9 GB/s at avg 512 KiB-1 MiB (1.0 GB/s at avg 2 KiB, where per-chunk
Python overhead dominates), and it releases the GIL while scanning, reads
streams and hands out the Gear hash at each cut; ``fastcdc``'s ``fastcdc_cy``
1.2 GB/s at avg 512 KiB (1.0 GB/s at 2 KiB), holds the GIL, needs the whole
input as one buffer, does not expose the Gear hash and imports ``click``.
We use ``pyfastcdc`` with normalized chunking level 2 (the FastCDC paper's
recommended NC), ``min = avg/2`` (cut-point skipping: 17-36 % faster than
``avg/4`` for a 3 % larger mean chunk) and ``max = 4*avg``.

Weak fingerprint: ``pyfastcdc`` hands us the 64-bit Gear hash at each cut
point for free (it is the value whose masked bits decided the cut). It covers
the last 64 bytes before the cut; folded to 32 bits and paired with the chunk
length it is the weak key ``(length, weak)``. It is computed *alongside* the
chunking at zero cost, whereas ``zlib.crc32`` over every chunk runs at
~2.3 GB/s (avg 512 KiB) and would add ~40 % to the chunking time. Chunks
whose weak key is unknown to the other side (new data) are never
strong-hashed (``match`` against an unrelated signature: 1.7 GB/s vs 1.2 GB/s
when every chunk matches); chunks whose key is known are confirmed with
blake3 (the strong fingerprint, first ``STRONG_LEN`` bytes; 2.1 GB/s per core
at avg 512 KiB, 0.6 GB/s at 2 KiB). A weak key that matches while the chunk
differs (same length and tail, edited middle) only costs one blake3.

Chunk sizes scale with the data size (``params_for``)::

    avg = 2 ** round(log2(scale * sqrt(size)))   clamped to [1 KiB, 4 MiB]
    min = avg // 2,  max = avg * 4,  NC = 2

so a signature has about ``sqrt(size) / scale`` entries (``scale`` = 16 for the
coarse first round: 4 GiB -> avg 1 MiB -> ~3.5 k chunks, 56 KiB of signature;
``scale`` = 3 for a
single round or a refinement region, which minimises signature + literal bytes
for a handful of edits).

Memory bound: two windows of ``max(8 MiB, 2 * max_size)`` bytes (at most
2 * 32 MiB for the largest parameters) plus the chunk records of one window,
whatever the input size. Hashing of one window runs on a helper thread while
the next window is read and chunked (both pyfastcdc and blake3 release the
GIL): ~1.3x on two idle cores, nothing when the other core is busy.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import BinaryIO, Literal, NamedTuple, Protocol, Union

import msgspec

try:  # compiled extras; a bare remote python3 may lack them (see ``available``)
    from blake3 import blake3
    from pyfastcdc import FastCDC
except ImportError:  # the types below still import, so the wire protocol works
    blake3 = FastCDC = None  # type: ignore[assignment,misc]


def available() -> bool:
    """Whether chunking can run here (``pyfastcdc`` and ``blake3`` are installed).

    Without them the delta path is negotiated off and whole files are sent.
    """
    return FastCDC is not None and blake3 is not None


STRONG_LEN = 8
"""Bytes of blake3 kept per chunk (64 bits; a false match is also caught by the
whole-file digest check on the receiver)."""

NC_LEVEL: Literal[2] = 2
MIN_AVG = 1 << 10
MAX_AVG = 4 << 20
SCALE_COARSE = 16
SCALE_FINE = 3
_MIN_WINDOW = 8 << 20
_THREAD_MIN = 1 << 20  # windows smaller than this are hashed inline


class Params(msgspec.Struct, frozen=True, array_like=True):
    """FastCDC parameters; both sides must chunk with the same values."""

    avg_size: int
    min_size: int
    max_size: int

    def check(self) -> None:
        """Raise ``ValueError`` unless pyfastcdc accepts these values."""
        if not (256 <= self.avg_size <= MAX_AVG and self.avg_size & (self.avg_size - 1) == 0):
            raise ValueError(f"bad avg_size {self.avg_size}")
        if not (64 <= self.min_size <= self.avg_size <= self.max_size <= (16 << 20)):
            raise ValueError(f"bad chunk sizes {self}")
        if self.max_size < 1024:
            raise ValueError(f"bad max_size {self.max_size}")


def params_for(size: int, scale: int = SCALE_COARSE) -> Params:
    """Chunk parameters for ``size`` bytes of data (see the module docstring)."""
    target = scale * math.sqrt(max(size, 1))
    avg = 1 << max(0, round(math.log2(target)))
    avg = min(max(avg, MIN_AVG), MAX_AVG)
    return Params(avg_size=avg, min_size=avg // 2, max_size=avg * 4)


def _chunker(params: Params) -> FastCDC:
    params.check()
    return FastCDC(
        params.avg_size,
        min_size=params.min_size,
        max_size=params.max_size,
        normalized_chunking=NC_LEVEL,
    )


def fold(gear_hash: int) -> int:
    """The 32-bit weak fingerprint of a chunk from the Gear hash at its cut."""
    return (gear_hash ^ (gear_hash >> 32)) & 0xFFFFFFFF


def strong(data: bytes | bytearray | memoryview) -> bytes:
    """The strong fingerprint of a chunk (blake3 prefix)."""
    return blake3(data).digest(STRONG_LEN)


class Chunk(NamedTuple):
    """One chunk: absolute offset, length, weak key, strong (or None), bytes.

    ``data`` is a view into a reused window: it is valid only until the next
    chunk is requested from the generator; copy it (``bytes(c.data)``) to keep it.
    """

    offset: int
    length: int
    weak: int
    strong: bytes | None
    data: memoryview


class _Readinto(Protocol):
    def readinto(self, buffer: memoryview, /) -> int | None: ...


Source = Union[BinaryIO, Iterable[bytes], bytes, bytearray, memoryview]
"""What the pure functions accept as input data: a readable binary file object,
an iterable of byte strings, or a buffer held in memory (or mmap'd by the caller)."""


class _IterReader:
    """``readinto`` over an iterable of byte strings."""

    def __init__(self, it: Iterable[bytes]) -> None:
        self._it = iter(it)
        self._pending = memoryview(b"")

    def readinto(self, buffer: memoryview, /) -> int:
        while not self._pending:
            nxt = next(self._it, None)
            if nxt is None:
                return 0
            self._pending = memoryview(nxt).cast("B")
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n


class _ReadReader:
    """``readinto`` over an object that only has ``read``."""

    def __init__(self, f: BinaryIO) -> None:
        self._f = f

    def readinto(self, buffer: memoryview, /) -> int:
        data = self._f.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _as_reader(src: Source) -> _Readinto | memoryview:
    if isinstance(src, bytes | bytearray | memoryview):
        return memoryview(src).cast("B")
    if hasattr(src, "readinto"):
        return src  # type: ignore[return-value]
    if hasattr(src, "read"):
        return _ReadReader(src)  # type: ignore[arg-type]
    return _IterReader(src)


_Windows = Generator[tuple[memoryview, bool], int, None]


def _windows(src: Source, params: Params, size_hint: int) -> _Windows:
    """Yield ``(window, eof)``; the consumer sends back how many bytes it used.

    Protocol: after each yield the caller calls ``send(consumed)``; the next
    window starts with the unconsumed tail of the previous one. Windows
    alternate between two buffers, so a window stays intact while the next one
    is being filled (the hashing thread may still read it).
    """
    reader = _as_reader(src)
    size = max(_MIN_WINDOW, 2 * params.max_size)
    if isinstance(reader, memoryview):
        pos = 0
        while True:
            window = reader[pos : pos + size]
            eof = pos + len(window) >= len(reader)
            consumed = yield window, eof
            if eof and consumed >= len(window):
                return
            pos += consumed
    if size_hint > 0:  # small inputs get small buffers (the hint need not be exact)
        size = min(size, max(2 * params.max_size, size_hint + 1))
    buffers = [bytearray(size), bytearray(size)]
    views = [memoryview(b) for b in buffers]
    cur, tail_start, tail_len = 0, 0, 0
    prev: memoryview | None = None
    eof = False
    while True:
        view = views[cur]
        if prev is not None and tail_len:
            view[:tail_len] = prev[tail_start : tail_start + tail_len]
        filled = tail_len
        while filled < size and not eof:
            n = reader.readinto(view[filled:])
            if not n:
                eof = True
            else:
                filled += n
        window = view[:filled]
        consumed = yield window, eof
        if eof and consumed >= filled:
            return
        prev, tail_start, tail_len = window, consumed, filled - consumed
        cur ^= 1


_Cut = tuple[int, int, int, bool]  # window offset, length, weak, wanted

WantFn = Callable[[int, int], bool]
"""``want(length, weak)``: whether a chunk should get a strong fingerprint."""


class Hasher(Protocol):
    """What ``chunks`` needs of a whole-data digest (``blake3.blake3()``)."""

    def update(self, data: memoryview, /) -> object: ...


def _hash_batch(
    window: memoryview, cuts: list[_Cut], used: int, digest: Hasher | None
) -> list[bytes | None]:
    if digest is not None:
        digest.update(window[:used])
    return [strong(window[s : s + n]) if w else None for s, n, _, w in cuts]


def chunks(
    src: Source,
    params: Params,
    *,
    want: WantFn | None = None,
    size_hint: int = 0,
    offset: int = 0,
    threads: bool = True,
    digest: Hasher | None = None,
) -> Iterator[Chunk]:
    """Chunk ``src`` (whose first byte sits at absolute ``offset``).

    ``want`` selects the chunks that get a strong fingerprint (``None``: all).
    ``digest``, if given, is fed all the data in order (a whole-file hash for
    free in the same pass). With ``threads`` the hashing of one window
    overlaps the reading and chunking of the next.
    """
    cdc = _chunker(params)
    windows = _windows(src, params, size_hint)
    pool = ThreadPoolExecutor(1, thread_name_prefix="yeet-cdc") if threads else None
    pending: tuple[memoryview, list[_Cut], int, Future[list[bytes | None]]] | None = None
    base = offset
    try:
        window, eof = next(windows)
        while True:
            cuts: list[_Cut] = []
            limit = len(window) - params.max_size
            used = 0
            for c in cdc.cut_buf(window):
                start = c.offset
                if not eof and start > limit:
                    break
                n = c.length
                weak = fold(c.gear_hash)
                cuts.append((start, n, weak, want is None or want(n, weak)))
                used = start + n
            job: Future[list[bytes | None]]
            if pool is not None and len(window) >= _THREAD_MIN:
                job = pool.submit(_hash_batch, window, cuts, used, digest)
            else:
                job = Future()
                job.set_result(_hash_batch(window, cuts, used, digest))
            if pending is not None:
                yield from _emit(*pending)
            pending = (window, cuts, base, job)
            base += used
            try:
                window, eof = windows.send(used)
            except StopIteration:
                break
        if pending is not None:
            yield from _emit(*pending)
    finally:
        windows.close()
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def _emit(
    window: memoryview,
    cuts: list[_Cut],
    base: int,
    job: Future[list[bytes | None]],
) -> Iterator[Chunk]:
    strongs = job.result()
    if len(strongs) != len(cuts):  # (no zip(strict=True): the agent runs on 3.9)
        raise RuntimeError(f"{len(strongs)} digests for {len(cuts)} chunks")
    for (s, n, weak, _), h in zip(cuts, strongs):
        yield Chunk(base + s, n, weak, h, window[s : s + n])


def cut_points(src: Source, params: Params, *, offset: int = 0) -> list[int]:
    """Absolute end offsets of all chunks (for tests and diagnostics)."""
    return [c.offset + c.length for c in chunks(src, params, want=_never, offset=offset)]


def _never(length: int, weak: int) -> bool:
    return False
