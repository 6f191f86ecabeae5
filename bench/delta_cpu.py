"""Delta engine benchmark: CPU throughput, and yeet vs rsync on a 4 GiB file.

Part 1 (``--cpu``): MB/s per core of chunking (pyfastcdc vs fastcdc), weak
fingerprints (Gear-at-cut vs zlib.crc32), blake3 (whole and per chunk), and
the end-to-end signature / match passes, next to the physical limits of this
machine: the disk's read speed (cold: fsync + posix_fadvise DONTNEED first),
the page cache's, and blake3's raw speed.

Part 2 (``--compare``): a 4 GiB base file and three new versions: (a) 16
random 4 KiB blocks overwritten in place, (b) 1 MiB inserted in the middle,
(c) 64 MiB appended. For each: yeet's two-round delta + receiver (in place
through the journal, or staged when in place would not pay), yeet with both
sides signing concurrently (join of two signatures), ``rsync --inplace
--no-whole-file`` and ``rsync --no-whole-file`` between two local directories.
Measured: wall time, bytes that would cross the wire (yeet: encoded
signatures + requests + ops; rsync: "Total bytes sent + received"), literal
bytes, and bytes the receiver wrote (``wchar`` and page-granular
``write_bytes`` from ``/proc/<pid>/io``, children included). Files are in the
page cache (warm) unless ``--cold``.

Usage: python3 bench/delta_cpu.py [--cpu] [--compare] [--dir D] [--size-gib 4]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from blake3 import blake3

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import delta_runners  # the measured runs (same directory)

from tests.pagecache import evict as drop_cache
from yeet.delta import (
    fine_params,
    match,
    params_for,
    signature,
)
from yeet.delta.chunking import chunks

MiB = 1 << 20
GiB = 1 << 30
BLOCK = 8 * MiB


# ---------------------------------------------------------------- helpers


def write_random(path: Path, size: int, seed: int) -> None:
    rnd = random.Random(seed)
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(BLOCK, left)
            f.write(rnd.randbytes(n))
            left -= n
        f.flush()
        os.fsync(f.fileno())


def copy_file(src: Path, dst: Path) -> None:
    with open(src, "rb") as fi, open(dst, "wb") as fo:
        left = os.fstat(fi.fileno()).st_size
        while left:
            left -= os.copy_file_range(fi.fileno(), fo.fileno(), min(left, 1 << 30))
        os.fsync(fo.fileno())


def file_digest(path: Path) -> bytes:
    h = blake3(max_threads=blake3.AUTO)
    h.update_mmap(str(path))
    return h.digest()


def warm(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    buf = bytearray(BLOCK)
    try:
        while os.readv(fd, [buf]):
            pass
    finally:
        os.close(fd)


def mbps(nbytes: int, seconds: float) -> float:
    return nbytes / seconds / 1e6 if seconds > 0 else float("inf")


def timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """(wall seconds, process CPU seconds, result)"""
    c0, t0 = time.process_time(), time.perf_counter()
    r = fn()
    return time.perf_counter() - t0, time.process_time() - c0, r


# ---------------------------------------------------------------- part 1: CPU


def cpu_bench(workdir: Path, size: int) -> list[tuple[str, float, str]]:
    from fastcdc.fastcdc_cy import fastcdc_cy  # type: ignore[import-not-found]
    from pyfastcdc import FastCDC  # type: ignore[import-not-found]

    rows: list[tuple[str, float, str]] = []
    path = workdir / "cpu.bin"
    if not path.exists() or path.stat().st_size != size:
        write_random(path, size, 1)
    drop_cache(path)
    fd = os.open(path, os.O_RDONLY)
    buf = bytearray(BLOCK)
    t0 = time.perf_counter()
    while os.readv(fd, [buf]):
        pass
    cold = mbps(size, time.perf_counter() - t0)
    rows.append(("disk read, cold (fadvise DONTNEED)", cold, f"{size / GiB:.2f} GiB"))
    os.lseek(fd, 0, 0)
    t0 = time.perf_counter()
    while os.readv(fd, [buf]):
        pass
    rows.append(("page-cache read (readv 8 MiB)", mbps(size, time.perf_counter() - t0), "1 GiB"))
    os.close(fd)

    sample = 256 * MiB
    with open(path, "rb") as f:
        data = f.read(sample)
    mv = memoryview(data)
    coarse = params_for(size)
    fine = fine_params(coarse)

    def row(name: str, fn: Callable[[], Any], note: str = "") -> Any:
        wall, cpu, r = timed(fn)
        rows.append((name, mbps(sample, wall), note or f"cpu {mbps(sample, cpu):.0f} MB/s"))
        return r

    row("blake3 whole buffer, 1 thread", lambda: blake3(data).digest())
    row("blake3 whole buffer, max_threads=AUTO", lambda: blake3(data, max_threads=-1).digest())
    for p in (coarse, fine):
        cdc = FastCDC(p.avg_size, min_size=p.min_size, max_size=p.max_size, normalized_chunking=2)
        cuts = row(
            f"pyfastcdc cut_buf avg {p.avg_size // 1024} KiB (gear weak: free)",
            lambda cdc=cdc: [(c.offset, c.length, c.gear_hash) for c in cdc.cut_buf(mv)],
        )
        row(
            f"fastcdc_cy avg {p.avg_size // 1024} KiB",
            lambda p=p: sum(1 for _ in fastcdc_cy(data, p.min_size, p.avg_size, p.max_size)),
        )
        row(
            f"  zlib.crc32 per chunk, avg {p.avg_size // 1024} KiB",
            lambda cuts=cuts: [zlib.crc32(mv[o : o + n]) for o, n, _ in cuts],
        )
        row(
            f"  blake3 per chunk, avg {p.avg_size // 1024} KiB",
            lambda cuts=cuts: [blake3(mv[o : o + n]).digest(8) for o, n, _ in cuts],
        )
        row(
            f"chunks() in memory, all hashed, 1 thread, avg {p.avg_size // 1024} KiB",
            lambda p=p: sum(1 for _ in chunks(mv, p, threads=False)),
        )

    def file_pass(name: str, fn: Callable[[Any], Any]) -> None:
        warm(path)
        with open(path, "rb", buffering=0) as f:
            wall, cpu, _ = timed(lambda: fn(f))
        rows.append((name, mbps(size, wall), f"cpu {mbps(size, cpu):.0f} MB/s per CPU-second"))

    def digest_pass(f: Any) -> bytes:
        h = blake3(max_threads=blake3.AUTO)
        buf = bytearray(BLOCK)
        view = memoryview(buf)
        while n := f.readinto(buf):
            h.update(view[:n])
        return h.digest()

    file_pass("digest only (readinto 8 MiB + blake3 AUTO): a scan's pass", digest_pass)
    file_pass("signature(file), 1 thread", lambda f: signature(f, size, threads=False))
    file_pass("signature(file), hashing thread", lambda f: signature(f, size))
    file_pass(
        "signature(file, digest=True), hashing thread",
        lambda f: signature(f, size, digest=True),
    )
    sig = signature(open(path, "rb"), size)  # noqa: SIM115
    file_pass("match(file, sig) (all chunks match)", lambda f: list(match(f, sig)))
    other = signature(random.Random(9).randbytes(64 * MiB), size)
    file_pass("match(file, unrelated sig) (weak keys reject)", lambda f: list(match(f, other)))
    return rows


def child(kind: str, *args: str) -> dict[str, Any]:
    """Run a measurement in a fresh process (its own /proc io counters)."""
    cmd = [sys.executable, __file__, "_" + kind, *args]
    r = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(r.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


# ---------------------------------------------------------------- part 2: driver


def compare(workdir: Path, size: int, cold: bool, cases: str) -> list[dict[str, Any]]:
    rnd = random.Random(42)
    base = workdir / "base.bin"
    src_dir, dst_dir, trash = workdir / "src", workdir / "dst", workdir / "trash"
    for d in (src_dir, dst_dir, trash):
        d.mkdir(exist_ok=True)
    jdir = workdir / "journal"
    jdir.mkdir(exist_ok=True)
    if not base.exists() or base.stat().st_size != size:
        print(f"writing {size / GiB:.0f} GiB base ...", flush=True)
        write_random(base, size, 2)
    base_digest = file_digest(base)
    work = dst_dir / "big"  # a real copy, for the in-place writers

    def fresh_work() -> None:
        if work.exists():
            os.replace(work, trash / f"work-{time.monotonic_ns()}")
        print("copying base -> dst ...", flush=True)
        copy_file(base, work)

    def linked_dst() -> Path:
        d = workdir / "dst-link"
        d.mkdir(exist_ok=True)
        p = d / "big"
        if p.exists():
            os.replace(p, trash / f"link-{time.monotonic_ns()}")
        os.link(base, p)
        return p

    results: list[dict[str, Any]] = []
    src = src_dir / "big"

    def prepare(case: str) -> Callable[[Path], None]:
        """Make src for the case; return a function restoring an in-place-written dst."""
        if src.exists():
            os.replace(src, trash / f"src-{time.monotonic_ns()}")
        if case == "a":
            copy_file(base, src)
            fd = os.open(src, os.O_RDWR)
            for _ in range(16):
                os.pwrite(fd, rnd.randbytes(4096), rnd.randrange(0, size // 4096) * 4096)
            os.fsync(fd)
            os.close(fd)
            changed = [(o, n) for o, n in _diff_blocks(base, src)]

            def restore(p: Path) -> None:
                fd = os.open(p, os.O_RDWR)
                bfd = os.open(base, os.O_RDONLY)
                for o, n in changed:
                    os.pwrite(fd, os.pread(bfd, n, o), o)
                os.close(bfd)
                os.close(fd)

            return restore
        if case == "c":
            copy_file(base, src)
            with open(src, "ab") as f:
                f.write(rnd.randbytes(64 * MiB))

            def truncate(p: Path) -> None:
                os.truncate(p, size)

            return truncate
        # b: 1 MiB inserted in the middle
        with open(base, "rb") as fi, open(src, "wb") as fo:
            half = size // 2
            left = half
            while left:
                left -= os.copy_file_range(fi.fileno(), fo.fileno(), left)
            fo.write(rnd.randbytes(MiB))
            fo.flush()
            left = size - half
            while left:
                left -= os.copy_file_range(fi.fileno(), fo.fileno(), left)
            os.fsync(fo.fileno())

        def recopy(p: Path) -> None:
            fresh_work()

        return recopy

    names = {"a": "16 x 4 KiB overwritten", "b": "1 MiB inserted mid-file", "c": "64 MiB appended"}
    fresh_work()
    for case in cases:
        print(f"case ({case}) {names[case]}: preparing ...", flush=True)
        restore = prepare(case)
        new_digest = file_digest(src).hex()

        def settle(*paths: Path) -> None:
            os.sync()  # no dirty pages left: write_bytes then counts this run's writes only
            for p in paths:
                if cold:
                    drop_cache(p)
                else:
                    warm(p)

        runs: dict[str, dict[str, Any]] = {}
        for tool in ("yeet", "yeet-join", "yeet-cached", "rsync --inplace", "rsync"):
            if tool.startswith("yeet"):
                target = work if case != "b" else linked_dst()
            elif tool == "rsync --inplace":
                target = work
            else:
                target = linked_dst()
            settle(src, target)
            print(f"  {tool} ...", flush=True)
            if tool.startswith("yeet"):
                variant = tool.partition("-")[2] or "seq"
                r = child("yeet", str(src), str(target), str(jdir), variant, new_digest)
            else:
                r = child("rsync", str(src), str(target), "1" if tool == "rsync --inplace" else "0")
            ok = file_digest(target).hex() == new_digest
            r["ok"] = ok
            if tool.startswith("yeet"):  # exact: journal + in place + appended, or staged
                r["file written"] = sum(r["receiver"].values())
            elif tool == "rsync --inplace":  # rsync writes its literal data in place
                r["file written"] = r["literal"]
            else:  # a whole new temporary file
                r["file written"] = os.path.getsize(src)
            runs[tool] = r
            if target == work:
                restore(work)
                if file_digest(work) != base_digest:
                    fresh_work()
            else:
                os.replace(target, trash / f"out-{time.monotonic_ns()}")
        results.append({"case": case, "name": names[case], "runs": runs})
    if src.exists():
        os.replace(src, trash / f"src-{time.monotonic_ns()}")
    return results


def _diff_blocks(a: Path, b: Path) -> Iterator[tuple[int, int]]:
    """4 KiB blocks that differ (used only to restore case a's working copy)."""
    fa, fb = os.open(a, os.O_RDONLY), os.open(b, os.O_RDONLY)
    pos = 0
    try:
        while True:
            x, y = os.pread(fa, BLOCK, pos), os.pread(fb, BLOCK, pos)
            if not x:
                return
            if x != y:
                for i in range(0, len(x), 4096):
                    if x[i : i + 4096] != y[i : i + 4096]:
                        yield pos + i, 4096
            pos += len(x)
    finally:
        os.close(fa)
        os.close(fb)


# ---------------------------------------------------------------- output


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def print_cpu(rows: list[tuple[str, float, str]]) -> None:
    print("\n## CPU throughput (MB/s; single-thread rows are per core)\n")
    print(f"| {'what':<58} | {'MB/s':>7} | note |")
    print(f"|{'-' * 60}|{'-' * 9}|------|")
    for name, v, note in rows:
        print(f"| {name:<58} | {v:>7.0f} | {note} |")


def print_compare(results: list[dict[str, Any]], size: int) -> None:
    print(f"\n## yeet vs rsync, {human(size)} file, local (x: ratio to rsync --inplace)\n")
    print("wire: yeet's encoded signatures + requests + ops, rsync's bytes sent + received;")
    print("file written: yeet exact (journal + in place + appended, or the staged copy),")
    print("rsync --inplace its literal data, rsync a whole temporary file; write_bytes:")
    print("the kernel's count for the receiving process, page/folio granular.\n")
    head = "| case | tool | wall s | x | wire | x | literal | file written | write_bytes | ok |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for res in results:
        ref = res["runs"]["rsync --inplace"]
        for tool, r in res["runs"].items():
            wb = r["io"]["write_bytes"]
            print(
                f"| ({res['case']}) {res['name']} | {tool} | {r['wall']:.2f} | "
                f"{r['wall'] / ref['wall']:.2f} | {human(r['wire total'])} | "
                f"{r['wire total'] / max(ref['wire total'], 1):.2f} | {human(r['literal'])} | "
                f"{human(r['file written'])} | {human(wb)} | {'yes' if r['ok'] else 'NO'} |"
            )
    print("\nyeet details:")
    for res in results:
        for tool in ("yeet", "yeet-join", "yeet-cached"):
            r = res["runs"][tool]
            ph = ", ".join(f"{k} {v:.2f}s" for k, v in r["phases"].items())
            wire = ", ".join(f"{k} {human(v)}" for k, v in r["wire"].items())
            print(
                f"  ({res['case']}) {tool}: {r['mode']}; {ph}; wire: {wire}; "
                f"regions {r['regions']} ({human(r['region bytes'])}), coarse avg "
                f"{r['coarse'] // 1024} KiB, fine avg {r['fine'] // 1024} KiB, {r['ops']} ops; "
                f"receiver {r['receiver']}"
            )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_yeet":
        print(json.dumps(delta_runners.yeet_run(*sys.argv[2:7])))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "_rsync":
        print(json.dumps(delta_runners.rsync_run(sys.argv[2], sys.argv[3], sys.argv[4] == "1")))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--dir", default="/var/tmp/yeet-delta-bench")
    ap.add_argument("--cpu", action="store_true")
    ap.add_argument("--compare", action="store_true")
    ap.add_argument("--cpu-gib", type=float, default=1)
    ap.add_argument("--size-gib", type=float, default=4)
    ap.add_argument("--cases", default="acb")
    ap.add_argument("--cold", action="store_true")
    ap.add_argument("--json", help="also write results here")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    a = ap.parse_args()
    if not (a.cpu or a.compare):
        a.cpu = a.compare = True
    workdir = Path(a.dir)
    workdir.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {"load": os.getloadavg()}
    if a.cpu:
        rows = cpu_bench(workdir, int(a.cpu_gib * GiB))
        out["cpu"] = rows
        print_cpu(rows)
    if a.compare:
        res = compare(workdir, int(a.size_gib * GiB), a.cold, a.cases)
        out["compare"] = res
        print_compare(res, int(a.size_gib * GiB))
    print(f"\nload average at the end: {os.getloadavg()}")
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))
    if not a.keep:  # move aside first, delete last (fresh deletes slow file creation)
        aside = workdir.with_name(workdir.name + f".old-{os.getpid()}")
        os.replace(workdir, aside)
        shutil.rmtree(aside)


if __name__ == "__main__":
    main()
