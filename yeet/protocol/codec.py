"""Per-frame compression: zstd when both ends have it, else zlib, else none.

Invariants owned here:

* A payload is compressed only when that pays: small payloads and payloads
  whose sample does not compress (already-compressed or random data) are sent
  as they are, so incompressible bulk data costs one small probe, not a full
  compression pass.
* Decompression never produces more than the frame limit: the declared size
  (zstd) or the output (zlib) is checked against it before anything larger is
  allocated; any corrupt input is a ``ProtocolError``.

Pure: computation only, no I/O.
"""

from __future__ import annotations

import zlib
from types import ModuleType

from yeet.model.errors import ProtocolError
from yeet.protocol.frames import FLAG_ZLIB, FLAG_ZSTD

_zstd: ModuleType | None
try:
    import zstandard as _zstd
except ImportError:  # a bare python3: zlib only
    _zstd = None

MIN_SIZE = 512
"""Payloads shorter than this are never compressed."""
PROBE_FROM = 128 << 10
"""Payloads at least this long are probed with a sample first."""
PROBE_SIZE = 16 << 10
WORTH = 0.92
"""Compressed output must be at most this fraction of the input to be used."""

PREFERENCE = ("zstd", "zlib", "none")


def available() -> tuple[str, ...]:
    """Compressions this Python can do, best first."""
    return PREFERENCE if _zstd is not None else ("zlib", "none")


def choose(offered: tuple[str, ...] | list[str], here: tuple[str, ...]) -> str:
    """The best compression both ends have (``none`` always works)."""
    for name in PREFERENCE:
        if name in offered and name in here:
            return name
    return "none"


class Codec:
    """Compression of one connection direction pair (both directions use one method)."""

    def __init__(self, name: str = "none", level: int = 1) -> None:
        if name not in PREFERENCE or (name == "zstd" and _zstd is None):
            raise ProtocolError(f"compression {name!r} is not available here", local=True)
        self.name = name
        self.flag = FLAG_ZSTD if name == "zstd" else FLAG_ZLIB if name == "zlib" else 0
        self.level = level
        self._zc = _zstd.ZstdCompressor(level=level) if _zstd is not None else None
        self._zd = _zstd.ZstdDecompressor() if _zstd is not None else None
        self.sent_raw = 0
        self.sent_packed = 0

    def _compress(self, data: bytes | memoryview) -> bytes:
        if self.name == "zstd":
            assert self._zc is not None
            out: bytes = self._zc.compress(data)
            return out
        return zlib.compress(data, self.level)

    def pack(self, payload: bytes) -> tuple[int, bytes]:
        """``(flags, data)`` for a payload: compressed when that pays, else as it is."""
        n = len(payload)
        if self.flag == 0 or n < MIN_SIZE:
            return 0, payload
        if n >= PROBE_FROM:
            mid = (n - PROBE_SIZE) // 2
            sample = memoryview(payload)[mid : mid + PROBE_SIZE]
            if len(self._compress(sample)) > PROBE_SIZE * WORTH:
                self.sent_raw += n
                return 0, payload
        packed = self._compress(payload)
        if len(packed) > n * WORTH:
            self.sent_raw += n
            return 0, payload
        self.sent_packed += n
        return self.flag, packed

    def unpack(self, flags: int, data: bytes, limit: int) -> bytes:
        """The payload of a received frame, at most ``limit`` bytes once decompressed."""
        if flags == 0:
            return data
        if flags != self.flag:
            raise ProtocolError(
                f"frame compressed with flags {flags:#x}, but {self.name!r} was negotiated"
            )
        if self.name == "zstd":
            assert _zstd is not None and self._zd is not None
            try:
                size = _zstd.frame_content_size(data)
            except _zstd.ZstdError:
                raise ProtocolError("corrupt zstd frame header") from None
            if size < 0 or size > limit:
                raise ProtocolError(f"zstd frame of undeclared or excessive size ({size})")
            try:
                out: bytes = self._zd.decompress(data)
            except _zstd.ZstdError as err:
                raise ProtocolError(f"corrupt zstd data: {err}") from None
            if len(out) != size:
                raise ProtocolError("zstd data does not match its declared size")
            return out
        d = zlib.decompressobj()
        try:
            out = d.decompress(data, limit)
        except zlib.error as err:
            raise ProtocolError(f"corrupt zlib data: {err}") from None
        if d.unconsumed_tail or d.unused_data or not d.eof:
            raise ProtocolError("zlib data is truncated or larger than the frame limit")
        return out
