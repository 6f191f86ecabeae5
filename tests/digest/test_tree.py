"""The block-tree digests: one value per content however it is computed."""

from __future__ import annotations

import hashlib
import os
import tempfile

import blake3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from yeet.model import digest
from yeet.model.digest import BLOCK, TreeHasher, TreeUpdate

ALGS = ["blake3-tree", "blake2b-tree"]


def full(alg: str, data: bytes) -> tuple[bytes, list[bytes]]:
    h = TreeHasher(alg)
    h.update(data)
    return h.digest(), h.leaves()


@pytest.mark.parametrize("alg", ALGS)
@pytest.mark.parametrize("size", [0, 1, BLOCK - 1, BLOCK])
def test_a_file_of_one_block_has_the_plain_digest(alg: str, size: int) -> None:
    data = os.urandom(size)
    plain = digest.of_bytes(digest.TREE_LEAF[alg], data)
    assert digest.of_bytes(alg, data) == plain


@pytest.mark.parametrize("alg", ALGS)
def test_a_larger_file_has_a_root_no_plain_digest_can_equal(alg: str) -> None:
    data = os.urandom(BLOCK + 1)
    root, leaves = full(alg, data)
    assert len(leaves) == 2
    assert root != digest.of_bytes(digest.TREE_LEAF[alg], data)
    # a file holding exactly what the root hashes is not a collision either
    fake = (len(data)).to_bytes(8, "little") + b"".join(leaves)
    assert digest.of_bytes(alg, fake) != root
    if alg == "blake3-tree":
        assert root != blake3.blake3(fake).digest()
    else:
        assert root != hashlib.blake2b(fake, digest_size=32).digest()


@settings(max_examples=60, deadline=None)
@given(
    data=st.binary(max_size=5 * BLOCK + 7),
    cuts=st.lists(st.integers(min_value=0, max_value=6 * BLOCK), max_size=6),
)
def test_streaming_in_any_pieces_gives_the_same_digest(data: bytes, cuts: list[int]) -> None:
    for alg in ALGS:
        h = TreeHasher(alg)
        last = 0
        for c in sorted(c for c in cuts if c <= len(data)):
            h.update(data[last:c])
            last = c
        h.update(data[last:])
        assert h.digest() == full(alg, data)[0]


@st.composite
def edits(draw: st.DrawFn) -> tuple[bytes, bytes, list[tuple[int, int]]]:
    old = draw(st.binary(min_size=0, max_size=4 * BLOCK + 100))
    new = bytearray(old)
    ranges: list[tuple[int, int]] = []
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["write", "truncate", "append"]))
        if kind == "write" and new:
            off = draw(st.integers(0, len(new) - 1))
            piece = draw(st.binary(min_size=1, max_size=3000))
            new[off : off + len(piece)] = piece
            ranges.append((off, off + len(piece)))
        elif kind == "truncate":
            size = draw(st.integers(0, len(new)))
            del new[size:]
            ranges.append((size, -1))
        else:
            piece = draw(st.binary(min_size=1, max_size=BLOCK + 10))
            ranges.append((len(new), len(new) + len(piece)))
            new += piece
    return old, bytes(new), ranges


@settings(max_examples=150, deadline=None)
@given(case=edits())
def test_an_update_from_cached_leaves_equals_hashing_everything(
    case: tuple[bytes, bytes, list[tuple[int, int]]],
) -> None:
    old, new, ranges = case
    for alg in ALGS:
        _root, leaves = full(alg, old)
        up = TreeUpdate(alg, leaves, len(old), len(new))
        for start, end in ranges:
            up.changed(start, end)
        root, new_leaves, nread = up.finish(lambda off, n: new[off : off + n])
        assert (root, new_leaves) == full(alg, new)
        assert nread <= len(new)


def test_an_update_reads_only_the_blocks_written() -> None:
    size = 256 * BLOCK
    with tempfile.TemporaryFile() as f:
        f.truncate(size)
        fd = f.fileno()
        value, n, leaves = digest.tree_of_fd("blake3-tree", fd, size)
        assert n == size and leaves is not None
        up = TreeUpdate("blake3-tree", leaves, size, size)
        for i in range(16):
            off = i * 15 * BLOCK + 100
            os.pwrite(fd, b"x" * 4096, off)
            up.changed(off, off + 4096)
        root, _leaves, nread = up.finish_fd(fd)
        os.lseek(fd, 0, os.SEEK_SET)
        assert root == digest.of_fd("blake3-tree", fd, size)[0] != value
        assert nread == 16 * BLOCK


def test_leaves_that_do_not_fit_the_size_are_refused() -> None:
    with pytest.raises(ValueError):
        TreeUpdate("blake3-tree", [b"x" * 32], 3 * BLOCK, 3 * BLOCK)
    with pytest.raises(ValueError):
        digest.root_of("blake3-tree", [b"x" * 32] * 3, BLOCK)
