"""Content digests: blake3 when available, blake2b-256 otherwise; plain or block-tree.

Invariant owned here: a session uses exactly one algorithm for all its digests
(recorded in its state); digests of different algorithms are never compared.

The tree algorithms (``blake3-tree``, ``blake2b-tree``; new sessions use them)
hash a file in fixed ``BLOCK``-sized blocks: each block's plain digest is a
*leaf*; a file of at most one block has its leaf as digest (the same value as
the plain algorithm), a larger one has the root digest of its size and its
leaves, taken with a separate, domain-separated hash (blake3 ``derive_key``
mode; blake2b with a personalisation), so a root never equals any plain
digest. The root depends on the content only, so every end that computes it,
streaming or from cached leaves, agrees; and a file whose leaves are cached
needs only the blocks that were written to be read again (``TreeUpdate``).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
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


BLOCK = 64 << 10
"""Leaf size of the tree algorithms: a 4 KiB write costs one 64 KiB block to re-hash."""

TREE_LEAF = {"blake3-tree": "blake3", "blake2b-tree": "blake2b"}
_ROOT_CONTEXT = "yeet 2026-11-23 block tree root v1"
_ROOT_PERSON = b"yeet-tree-root"


def available() -> tuple[str, ...]:
    """Best first: what a new session should use if every end has it."""
    if _blake3 is not None:
        return ("blake3-tree", "blake3", "blake2b-tree", "blake2b")
    return ("blake2b-tree", "blake2b")


def is_tree(alg: str) -> bool:
    return alg in TREE_LEAF


def _leaf(leaf_alg: str, data: bytes | bytearray | memoryview) -> bytes:
    if leaf_alg == "blake3":
        assert _blake3 is not None
        return bytes(_blake3.blake3(data).digest())
    return hashlib.blake2b(data, digest_size=32).digest()


def leaf_count(size: int) -> int:
    return max(1, -(-size // BLOCK))


def root_of(alg: str, leaves: list[bytes], size: int) -> bytes:
    """The digest of a file of ``size`` bytes whose blocks have these ``leaves``."""
    if len(leaves) != leaf_count(size):
        raise ValueError(f"{len(leaves)} leaves for {size} bytes")
    if size <= BLOCK:
        return leaves[0]
    h: Hasher
    if TREE_LEAF[alg] == "blake3":
        assert _blake3 is not None
        h = _blake3.blake3(derive_key_context=_ROOT_CONTEXT)
    else:
        h = hashlib.blake2b(digest_size=32, person=_ROOT_PERSON)
    h.update(size.to_bytes(8, "little"))
    h.update(b"".join(leaves))
    return h.digest()


class TreeHasher:
    """Streaming hasher of a tree algorithm; ``leaves()`` for the block cache."""

    def __init__(self, alg: str) -> None:
        self.alg = alg
        self._leaf_alg = TREE_LEAF[alg]
        self._leaves: list[bytes] = []
        self._buf = bytearray()
        self.size = 0

    def update(self, data: bytes | memoryview, /) -> object:
        view = memoryview(data).cast("B")
        self.size += len(view)
        if self._buf:
            take = BLOCK - len(self._buf)
            self._buf += view[:take]
            view = view[take:]
            if len(self._buf) < BLOCK:
                return None
            self._leaves.append(_leaf(self._leaf_alg, self._buf))
            self._buf = bytearray()
        whole = len(view) - len(view) % BLOCK
        for off in range(0, whole, BLOCK):
            self._leaves.append(_leaf(self._leaf_alg, view[off : off + BLOCK]))
        self._buf += view[whole:]
        return None

    def leaves(self) -> list[bytes]:
        out = list(self._leaves)
        if self._buf or not out:
            out.append(_leaf(self._leaf_alg, self._buf))
        return out

    def digest(self) -> bytes:
        return root_of(self.alg, self.leaves(), self.size)


def new(alg: str, *, threads: bool = False) -> Hasher:
    if alg in TREE_LEAF:
        if TREE_LEAF[alg] == "blake3" and _blake3 is None:
            raise ValueError("blake3 is not installed here")
        return TreeHasher(alg)
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
    return _feed(h, fd, size_hint)


def tree_of_fd(alg: str, fd: int, size_hint: int = 0) -> tuple[bytes, int, list[bytes] | None]:
    """Like ``of_fd``, with the leaves when ``alg`` is a tree algorithm."""
    h = new(alg, threads=size_hint >= 64 << 20)
    value, size = _feed(h, fd, size_hint)
    return value, size, h.leaves() if isinstance(h, TreeHasher) else None


def _feed(h: Hasher, fd: int, size_hint: int) -> tuple[bytes, int]:
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


def _pread(fd: int, length: int, offset: int) -> bytes:
    parts = []
    while length > 0:
        data = os.pread(fd, length, offset)
        if not data:
            raise OSError(f"short read at {offset}: the file shrank")
        parts.append(data)
        length -= len(data)
        offset += len(data)
    return b"".join(parts)


class TreeUpdate:
    """The new root of a file from its old leaves and the byte ranges written since.

    Blocks no range touches keep their leaf; touched blocks (and, when the size
    changed, the blocks from the old end on) are read again. Correct only if
    the ranges cover every write since the old leaves were taken: the caller
    vouches for that (the kernel tracer's journal; the writer's own patch).
    """

    def __init__(self, alg: str, old_leaves: list[bytes], old_size: int, new_size: int) -> None:
        if len(old_leaves) != leaf_count(old_size):
            raise ValueError(f"{len(old_leaves)} leaves for {old_size} bytes")
        self.alg = alg
        self.new_size = new_size
        self._leaves = old_leaves
        self.dirty: set[int] = set()
        if new_size != old_size:
            self.dirty.update(range(min(old_size, new_size) // BLOCK, leaf_count(new_size)))

    def changed(self, start: int, end: int) -> None:
        """Bytes ``[start, end)`` may differ (``end`` -1: to the end of the file)."""
        end = self.new_size if end < 0 else min(end, self.new_size)
        if end > start >= 0:
            self.dirty.update(range(start // BLOCK, (end - 1) // BLOCK + 1))

    def finish(self, read: Callable[[int, int], bytes]) -> tuple[bytes, list[bytes], int]:
        """``(root, leaves, bytes read)``; ``read(offset, length)`` gives new content."""
        n = leaf_count(self.new_size)
        leaves = self._leaves[:n] + [b""] * (n - min(n, len(self._leaves)))
        leaf_alg = TREE_LEAF[self.alg]
        total = 0
        for b in sorted(i for i in self.dirty if i < n):
            start = b * BLOCK
            length = min(BLOCK, self.new_size - start)
            data = read(start, length) if length > 0 else b""
            if len(data) != length:
                raise OSError(f"short read at {start}")
            leaves[b] = _leaf(leaf_alg, data)
            total += length
        return root_of(self.alg, leaves, self.new_size), leaves, total

    def finish_fd(self, fd: int) -> tuple[bytes, list[bytes], int]:
        """``finish`` reading the new content from ``fd`` (no read-ahead past the blocks)."""
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
        return self.finish(lambda off, n: _pread(fd, n, off))
