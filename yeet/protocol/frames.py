"""Length-prefixed frames: the only way bytes after the banner are read.

Invariant owned here: a frame is ``length (u32) | kind (u8) | flags (u8) |
method (u16) | call id (u64) | payload``, big-endian, ``length`` counting
everything after itself. A length beyond the maximum (or too short to hold the
header) is rejected as soon as its four bytes arrive, so no length field can
make the decoder wait for, buffer or allocate more than ``max_frame`` bytes;
bytes are buffered incrementally and frames come out whole however the stream
was split. Pure: no I/O.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from yeet.model.errors import ProtocolError

HEADER = struct.Struct(">IBBHQ")
HEADER_SIZE = HEADER.size  # 16
FIXED = HEADER_SIZE - 4  # header bytes counted by the length field
DEFAULT_MAX_FRAME = 64 << 20
MIN_MAX_FRAME = 1 << 10


class Kind(enum.IntEnum):
    HELLO = 1
    WELCOME = 2
    CALL = 3
    RESULT = 4
    ITEM = 5
    END = 6
    ERROR = 7
    CANCEL = 8
    CREDIT = 9


FLAG_ZSTD = 0x01
FLAG_ZLIB = 0x02
FLAG_NAMES = 0x04  # strings in the payload are escaped (yeet.protocol.names)
COMPRESSION_FLAGS = FLAG_ZSTD | FLAG_ZLIB
KNOWN_FLAGS = COMPRESSION_FLAGS | FLAG_NAMES
_KINDS = frozenset(int(k) for k in Kind)


@dataclass(frozen=True)
class Frame:
    kind: Kind
    flags: int
    method: int
    call: int
    payload: bytes


def encode_frame(
    kind: Kind,
    payload: bytes,
    *,
    flags: int = 0,
    method: int = 0,
    call: int = 0,
    max_frame: int = DEFAULT_MAX_FRAME,
) -> bytes:
    """The bytes of one frame; a frame that would exceed ``max_frame`` is our own fault."""
    n = FIXED + len(payload)
    if n > max_frame:
        raise ProtocolError(f"refusing to send a {n}-byte frame (limit {max_frame})", local=True)
    if not 0 <= call < 1 << 64 or not 0 <= method < 1 << 16 or flags & ~KNOWN_FLAGS:
        raise ProtocolError("invalid frame header fields", local=True)
    return HEADER.pack(n, int(kind), flags, method, call) + payload


class FrameDecoder:
    """Incremental frame parser over an arbitrarily split byte stream."""

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        if max_frame < MIN_MAX_FRAME:
            raise ValueError("max_frame too small")
        self.max_frame = max_frame
        self._buf = bytearray()
        self._pos = 0

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        if self._pos and self._pos >= len(self._buf) // 2:
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data

    @property
    def buffered(self) -> int:
        return len(self._buf) - self._pos

    def next_frame(self) -> Frame | None:
        """The next complete frame, or None until more bytes arrive."""
        buf, pos = self._buf, self._pos
        avail = len(buf) - pos
        if avail < 4:
            return None
        n = int.from_bytes(buf[pos : pos + 4], "big")
        if n < FIXED or n > self.max_frame:
            raise ProtocolError(
                f"frame length {n} outside 12..{self.max_frame} (garbage on the stream?)"
            )
        if avail < HEADER_SIZE:
            return None
        _n, kind, flags, method, call = HEADER.unpack_from(buf, pos)
        if kind not in _KINDS:
            raise ProtocolError(f"unknown frame kind {kind}")
        if flags & ~KNOWN_FLAGS:
            raise ProtocolError(f"unknown frame flags {flags:#x}")
        if avail < 4 + n:
            return None
        with memoryview(buf) as view:  # one copy (a bytearray slice would make two)
            payload = bytes(view[pos + HEADER_SIZE : pos + 4 + n])
        self._pos = pos + 4 + n
        if self._pos == len(buf):
            buf.clear()
            self._pos = 0
        return Frame(Kind(kind), flags, method, call, payload)
