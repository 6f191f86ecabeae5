"""The stat cache holds a bounded number of entries and loses nothing by trimming."""

from __future__ import annotations

from pathlib import Path

from yeet.replica.scan.statcache import StatCache
from yeet.state.store import SessionStore

SIG = (1, 10, 5, 5, 0o100644)


def test_trim_writes_and_forgets_then_reads_again(tmp_path: Path) -> None:
    store = SessionStore(tmp_path / "s.db")
    cache = StatCache(store.conn, store.lock, "alpha")
    for d in range(50):
        for f in range(3):
            cache.store(f"d{d}/f{f}", SIG, bytes([d, f]) * 16)
    cache.store("racy/f", SIG, b"r" * 32, now_ns=SIG[2])  # too recent to persist
    cache.trim(10)
    assert len(cache._dirs) == 1  # only the directory with an in-memory-only entry
    assert cache.lookup("d7/f2", SIG) == bytes([7, 2]) * 16  # read back from the table
    assert cache.lookup("racy/f", SIG) == b"r" * 32
    cache.drop("d7/f2")
    cache.trim(0)
    assert cache.get("d7/f2") is None
    # another cache on the same table (the next run) sees what was written
    again = StatCache(store.conn, store.lock, "alpha")
    assert again.lookup("d49/f0", SIG) == bytes([49, 0]) * 16
    assert again.get("racy/f") is None and again.get("d7/f2") is None
    # a complete scan that did not see d3 forgets it
    again.prune_dirs({f"d{d}" for d in range(50) if d != 3} | {""})
    again.flush()
    assert StatCache(store.conn, store.lock, "alpha").get("d3/f0") is None
    store.close()
