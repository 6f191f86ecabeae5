"""The scanner re-reads a large file only where the journal says it was written."""

from __future__ import annotations

import os
import time
from pathlib import Path

from yeet.model import digest
from yeet.model.entries import Entry
from yeet.replica.fs.rootdir import RootDir
from yeet.replica.scan.blockcache import MIN_SIZE
from yeet.replica.scan.scanner import Scanner, ScanOptions
from yeet.replica.scan.statcache import StatCache
from yeet.state.store import SessionStore

ALG = "blake3-tree"
SIZE = 2 * MIN_SIZE


def scan(
    root: Path, cache: StatCache, ranges: dict[str, tuple[tuple[int, int], ...]], until: int
) -> tuple[dict[str, Entry], int]:
    opts = ScanOptions(digest=ALG, side="alpha", ranges=ranges, ranges_until_ns=until)
    rd = RootDir(str(root))
    scanner = Scanner(rd, opts, cache)
    out: dict[str, Entry] = {}
    try:
        scanner.run([""], lambda b: out.update(b.listings[0][1] or {}) if b.listings else None)
    finally:
        scanner.close()
        rd.close()
    return out, scanner.bytes_hashed


def full(path: Path) -> bytes:
    with open(path, "rb") as f:
        return digest.of_fd(ALG, f.fileno(), path.stat().st_size)[0]


def settled() -> int:
    """A moment after every write so far (their ctimes lie before it, beyond the slack)."""
    time.sleep(0.25)
    return time.time_ns()


def test_journalled_writes_are_all_that_is_read_again(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    big = root / "big.img"
    big.write_bytes(os.urandom(SIZE))
    store = SessionStore(tmp_path / "s.db")
    cache = StatCache(store.conn, store.lock, "alpha")
    entries, read = scan(root, cache, {}, 0)
    assert read == SIZE and entries["big.img"].digest == full(big)
    assert cache.blocks.get("big.img") is not None

    spots = [(1 << 20) - 100, (9 << 20) + 4000]  # across a block boundary; inside one
    with open(big, "r+b") as f:
        for off in spots:
            f.seek(off)
            f.write(os.urandom(4096))
    ranges = {"big.img": tuple((o, o + 4096) for o in spots)}
    entries, read = scan(root, cache, ranges, settled())
    assert entries["big.img"].digest == full(big)
    assert read == 3 * digest.BLOCK

    # written again after the journal was asked: its ranges cannot cover that
    until = settled()
    with open(big, "r+b") as f:
        f.write(b"late")
    entries, read = scan(root, cache, {"big.img": ((0, 4),)}, until)
    assert read == SIZE and entries["big.img"].digest == full(big)
    store.close()


def test_another_inode_or_a_small_file_is_hashed_whole(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    big = root / "big.img"
    data = os.urandom(SIZE)
    big.write_bytes(data)
    store = SessionStore(tmp_path / "s.db")
    cache = StatCache(store.conn, store.lock, "alpha")
    scan(root, cache, {}, 0)
    # replaced by another file (a new inode) that differs elsewhere too
    (root / "tmp").write_bytes(b"y" * 100 + data[100:])
    os.replace(root / "tmp", big)
    entries, read = scan(root, cache, {"big.img": ((0, 100),)}, settled())
    assert read == SIZE and entries["big.img"].digest == full(big)
    # shrunk below the cache's minimum: the leaves are forgotten, not kept stale
    with open(big, "r+b") as f:
        f.truncate(MIN_SIZE - 1)
    scan(root, cache, {}, 0)
    assert cache.blocks.get("big.img") is None
    big.unlink()
    scan(root, cache, {}, 0)
    assert "big.img" not in cache.blocks
    store.close()
