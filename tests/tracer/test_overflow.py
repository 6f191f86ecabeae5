"""When the kernel side runs out of room it must say so - never lose a change silently."""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Callable
from pathlib import Path

from oracle import file_id, judge

from yeet.tracer import WHOLE, FileId, Ranges, RangeSet, Tracer


def _files(root: Path, n: int, size: int = 65536) -> list[str]:
    root.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        p = root / f"f{i:03}"
        p.write_bytes(os.urandom(size))
        out.append(str(p))
    return out


def _storm(paths: list[str], threads: int, writes_each: int, seed: int) -> None:
    def run(s: int) -> None:
        rng = random.Random(s)
        fds = {p: os.open(p, os.O_RDWR) for p in paths}
        for _ in range(writes_each):
            p = rng.choice(paths)
            os.pwrite(fds[p], rng.randbytes(rng.randint(1, 300)), rng.randrange(0, 65536))
        for fd in fds.values():
            os.close(fd)

    ts = [threading.Thread(target=run, args=(seed + i,)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


def test_range_list_overflow_becomes_whole_file(
    tmp_path: Path, open_tracer: Callable[..., Tracer]
) -> None:
    (p,) = _files(tmp_path / "t", 1, 1 << 20)
    tracer = open_tracer([tmp_path / "t"])
    tracer.dirty_files()
    shadow = {p: Path(p).read_bytes()}
    fd = os.open(p, os.O_RDWR)
    for i in range(200):  # 200 disjoint ranges: far more than fit in one entry
        os.pwrite(fd, b"\xff" * 10, i * 4096)
    os.close(fd)
    d = tracer.dirty_files()
    assert d[file_id(p)] is WHOLE
    assert d.stats["overflows"] >= 1
    assert not d.rescan  # overflow widens the mark, it loses nothing
    assert judge(shadow, d.files).missed_bytes == 0


def test_full_range_map_forces_a_rescan(tmp_path: Path, open_tracer: Callable[..., Tracer]) -> None:
    paths = _files(tmp_path / "t", 60)
    tracer = open_tracer([tmp_path / "t"], max_files=4)
    tracer.dirty_files()
    shadow = {p: Path(p).read_bytes() for p in paths}
    _storm(paths, threads=4, writes_each=3000, seed=1)
    d = tracer.dirty_files()
    print(f"\nstorm on a 4-file map: {len(d)} files recorded, stats {d.stats}, {d.reasons}")
    assert d.rescan, "dropped records must force a rescan"
    assert d.stats["map_full"] > 0 and d.stats["drops"] > 0
    # what the session does on a rescan: every file is suspect
    rescanned: dict[FileId, Ranges] = {file_id(p): WHOLE for p in paths}
    assert judge(shadow, rescanned).missed_bytes == 0
    # and what was recorded is still right
    for r in d.values():
        assert r is WHOLE or isinstance(r, RangeSet)

    # the tracer recovers: the next interval is exact again
    shadow = {p: Path(p).read_bytes() for p in paths[:3]}
    for p in paths[:3]:
        with open(p, "r+b") as f:
            f.seek(100)
            f.write(b"hello")
    d = tracer.dirty_files()
    assert not d.rescan, d.reasons
    v = judge(shadow, d.files)
    assert v.missed_bytes == 0 and v.whole_files == 0
    assert d[file_id(paths[0])] == RangeSet([(100, 105)])


def test_notice_ring_overflow_loses_no_ranges(
    tmp_path: Path, open_tracer: Callable[..., Tracer]
) -> None:
    """Notices only wake the reader; the range map holds the truth."""
    paths = _files(tmp_path / "t", 40)
    tracer = open_tracer([tmp_path / "t"], notice_ring=4096)
    tracer.dirty_files()
    shadow = {p: Path(p).read_bytes() for p in paths}
    _storm(paths, threads=2, writes_each=400, seed=5)
    d = tracer.dirty_files()
    assert d.stats["notice_lost"] > 0, d.stats
    assert not d.rescan, (d.reasons, d.stats)
    v = judge(shadow, d.files)
    assert v.missed_bytes == 0, v.misses[:5]
