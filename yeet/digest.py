"""Content digests: blake3 when available, blake2b-256 otherwise.

Invariant owned here: a session uses exactly one algorithm for all its digests
(recorded in its state); digests of different algorithms are never compared.
"""

from __future__ import annotations

import hashlib
import os
from types import ModuleType
from typing import Protocol

_blake3: ModuleType | None
try:
    import blake3 as _blake3
except ImportError:  # a bare remote python3 without the compiled extra
    _blake3 = None

CHUNK = 1 << 20


class Hasher(Protocol):
    def update(self, data: bytes | memoryview, /) -> object: ...

    def digest(self) -> bytes: ...


def available() -> tuple[str, ...]:
    return ("blake3", "blake2b") if _blake3 is not None else ("blake2b",)


def new(alg: str, *, threads: bool = False) -> Hasher:
    if alg == "blake3":
        if _blake3 is None:
            raise ValueError("blake3 is not installed here")
        if threads:
            hasher: Hasher = _blake3.blake3(max_threads=_blake3.blake3.AUTO)
            return hasher
        plain: Hasher = _blake3.blake3()
        return plain
    if alg == "blake2b":
        return hashlib.blake2b(digest_size=32)
    raise ValueError(f"unknown digest algorithm {alg!r}")


def of_bytes(alg: str, data: bytes) -> bytes:
    h = new(alg)
    h.update(data)
    return h.digest()


def of_fd(alg: str, fd: int, size_hint: int = 0) -> tuple[bytes, int]:
    """Digest of everything readable from ``fd`` (from its current offset); and its size."""
    h = new(alg, threads=size_hint >= 64 << 20)
    total = 0
    if size_hint <= CHUNK:
        data = os.read(fd, size_hint + 1)
        while data:
            h.update(data)
            total += len(data)
            data = os.read(fd, CHUNK)
        return h.digest(), total
    buf = bytearray(CHUNK * 4)
    view = memoryview(buf)
    while n := os.readv(fd, [buf]):
        h.update(view[:n])
        total += n
    return h.digest(), total
