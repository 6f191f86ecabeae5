#!/usr/bin/env python3
"""Tracer overhead on write-heavy workloads, traced vs untraced, in the same run.

    sudo python3 bench/tracer_overhead.py [--dir /var/tmp/yeet-bench] [--seconds 8]

Runs (untraced and traced in alternating order, after a `sync`, several rounds;
medians reported):
  * CPU time per pwrite() of 1 byte in a tight loop (the most stable figure on a
    busy machine): untraced, traced file, and an untraced file on the traced
    filesystem (what the in-kernel subtree filter costs everyone else); and per
    getppid() (a system call that writes nothing: what tracing costs every other
    call of every process - nothing, when the tree is on ext4);
  * fio 4 KiB buffered random writes (psync) into one page-cache-resident file;
  * dd bs=4k sequential writes (1 GiB);
  * fio writes to a file outside the traced tree on the same filesystem
    (what the in-kernel subtree filter costs everyone else);
  * a drop check: unthrottled fio over 2 x 256 files with a session-like
    drainer, reporting the achieved rate and the kernel's drop counters.
Prints the ratios (traced / untraced throughput; 1.00 = no overhead) and, for
fio, the CPU time per write (less sensitive to other load on the machine).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from yeet.tracer import Tracer


def fio(path: Path, seconds: float, size: str) -> tuple[float, float]:
    """(write IOPS, CPU microseconds per write) of a fio run."""
    os.sync()
    cmd = [
        "fio", "--name=w", f"--filename={path}", f"--size={size}", "--bs=4k",
        "--rw=randwrite", "--ioengine=psync", "--direct=0", "--time_based",
        f"--runtime={seconds}", "--output-format=json", "--randrepeat=0",
    ]  # fmt: skip
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    job = json.loads(out)["jobs"][0]
    ios = job["write"]["total_ios"]
    cpu_us = (job["usr_cpu"] + job["sys_cpu"]) / 100 * job["job_runtime"] * 1000
    return float(job["write"]["iops"]), cpu_us / max(1, ios)


def pwrite_loop(path: Path, n: int = 200_000) -> float:
    """CPU nanoseconds per 1-byte pwrite (to pages already dirty: no I/O)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        for i in range(4096):  # dirty every page first
            os.pwrite(fd, b"x", i * 4096)
        t0 = time.process_time_ns()
        for i in range(n):
            os.pwrite(fd, b"x", (i & 4095) * 4096)
        return (time.process_time_ns() - t0) / n
    finally:
        os.close(fd)


def syscall_loop(n: int = 400_000) -> float:
    """CPU nanoseconds per getppid() (plus the loop): a call that writes nothing."""
    getppid = os.getppid
    t0 = time.process_time_ns()
    for _ in range(n):
        getppid()
    return (time.process_time_ns() - t0) / n


def dd(path: Path, mib: int) -> float:
    """MiB/s of dd bs=4k writing ``mib`` MiB."""
    os.sync()
    t0 = time.perf_counter()
    subprocess.run(
        ["dd", "if=/dev/zero", f"of={path}", "bs=4k", f"count={mib * 256}", "conv=notrunc"],
        check=True, capture_output=True,
    )  # fmt: skip
    return mib / (time.perf_counter() - t0)


class Session:
    """What a busy sync session does: sleep until the kernel says something
    changed, drain, sync (here: 100 ms of pretend work), repeat."""

    def __init__(self, roots: list[Path]) -> None:
        self.tracer = Tracer.open([str(r) for r in roots])
        self.drains = 0
        self.rescans = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.tracer.poll(100)
            d = self.tracer.dirty_files()
            self.drains += 1
            self.rescans += d.rescan
            self._stop.wait(0.1)

    def close(self) -> dict[str, int]:
        self._stop.set()
        self._thread.join()
        stats = self.tracer.stats()
        self.tracer.close()
        return stats


def bpf_prog_costs() -> dict[str, tuple[int, int]]:
    """name -> (run count, total ns) of the loaded yeet programs (needs bpf_stats)."""
    out = subprocess.run(["bpftool", "prog", "show", "-j"], capture_output=True, text=True)
    if out.returncode != 0:
        return {}
    return {
        p["name"]: (int(p.get("run_cnt", 0)), int(p.get("run_time_ns", 0)))
        for p in json.loads(out.stdout)
        if p.get("name", "").startswith("yeet_")
    }


def ratio(a: list[float], b: list[float]) -> float:
    return statistics.median(a) / statistics.median(b)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dir", default="/var/tmp/yeet-bench")
    ap.add_argument("--seconds", type=float, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--size", default="256M", help="fio file size (page cache resident)")
    ap.add_argument("--dd-mib", type=int, default=1024, help="MiB dd writes per run")
    ap.add_argument(
        "--tmpfs",
        action="store_true",
        help="put the trees on a tmpfs mounted under --dir: the system-call hooks' cost "
        "(filesystems other than ext4)",
    )
    ap.add_argument(
        "--prog-stats",
        action="store_true",
        help="also report ns per BPF program run (kernel.bpf_stats_enabled; that "
        "accounting slows the traced runs, so ratios are best measured without it)",
    )
    args = ap.parse_args()
    if shutil.which("fio") is None:
        print("fio is not installed", file=sys.stderr)
        return 2
    base = Path(args.dir)
    if args.tmpfs:
        base = base / "tmpfs"
        base.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3g", "tmpfs", str(base)], check=True)
    try:
        return _bench(args, base)
    finally:
        if args.tmpfs:
            subprocess.run(["umount", "-l", str(base)], check=False)


def _bench(args: argparse.Namespace, base: Path) -> int:
    tree, elsewhere = base / "tree", base / "elsewhere"
    for d in (tree, elsewhere):
        d.mkdir(parents=True, exist_ok=True)
    target, outside = tree / "big.img", elsewhere / "big.img"
    for f in (target, outside):
        subprocess.run(
            ["dd", "if=/dev/zero", f"of={f}", "bs=1M", f"count={args.dd_mib}", "conv=notrunc"],
            check=True, capture_output=True,
        )  # fmt: skip

    stats_sysctl = Path("/proc/sys/kernel/bpf_stats_enabled")
    old_stats = stats_sysctl.read_text().strip()
    if args.prog_stats:
        stats_sysctl.write_text("1\n")
    costs: dict[str, tuple[int, int]] = {}
    names = ("fio", "fio_traced", "fio_out", "fio_out_traced", "dd", "dd_traced")
    res: dict[str, list[float]] = {k: [] for k in names}
    cpu: dict[str, list[float]] = {"fio": [], "fio_traced": []}
    loop: dict[str, list[float]] = {"none": [], "traced": [], "outside": []}
    calls: dict[str, list[float]] = {"none": [], "traced": []}
    loop_file, loop_out = tree / "loop.bin", elsewhere / "loop.bin"
    hooks = ""
    for _ in range(args.rounds):
        loop["none"].append(pwrite_loop(loop_file))
        calls["none"].append(syscall_loop())
        t = Tracer.open([str(tree)])
        hooks = "system-call hooks" if t.by_syscall else "filesystem hooks"
        loop["traced"].append(pwrite_loop(loop_file))
        loop["outside"].append(pwrite_loop(loop_out))
        calls["traced"].append(syscall_loop())
        t.close()
    lp = {k: statistics.median(v) for k, v in loop.items()}
    cp = {k: statistics.median(v) for k, v in calls.items()}
    print(f"tree on {base} ({hooks})")
    print(
        f"pwrite loop: {lp['none']:.0f} ns/call untraced, {lp['traced']:.0f} traced "
        f"(+{lp['traced'] - lp['none']:.0f} ns), {lp['outside']:.0f} for a file outside "
        f"the traced tree (+{lp['outside'] - lp['none']:.0f} ns)",
        flush=True,
    )
    print(
        f"getppid loop: {cp['none']:.0f} ns/call untraced, {cp['traced']:.0f} traced "
        f"({cp['traced'] - cp['none']:+.0f} ns)",
        flush=True,
    )

    def untraced() -> None:
        iops, us = fio(target, args.seconds, args.size)
        res["fio"].append(iops)
        cpu["fio"].append(us)
        res["fio_out"].append(fio(outside, args.seconds, args.size)[0])
        res["dd"].append(dd(target, args.dd_mib))

    def traced() -> dict[str, int]:
        s = Session([tree])
        iops, us = fio(target, args.seconds, args.size)
        res["fio_traced"].append(iops)
        cpu["fio_traced"].append(us)
        res["fio_out_traced"].append(fio(outside, args.seconds, args.size)[0])
        res["dd_traced"].append(dd(target, args.dd_mib))
        for name, (cnt, ns) in bpf_prog_costs().items():
            c0, n0 = costs.get(name, (0, 0))
            costs[name] = (c0 + cnt, n0 + ns)
        st = s.close()
        st["drains"] = s.drains
        return st

    try:
        for r in range(args.rounds):
            if r % 2 == 0:
                untraced()
                st = traced()
            else:
                st = traced()
                untraced()
            print(
                f"round {r + 1}: fio {res['fio'][-1]:,.0f} vs traced "
                f"{res['fio_traced'][-1]:,.0f} IOPS; outside the tree {res['fio_out'][-1]:,.0f}"
                f" vs {res['fio_out_traced'][-1]:,.0f}; dd {res['dd'][-1]:,.0f} vs "
                f"{res['dd_traced'][-1]:,.0f} MiB/s; drops {st['drops']}, drains {st['drains']}",
                flush=True,
            )

        # drops: unthrottled random writes over 2 x 256 files, session draining
        many = tree / "many"
        many.mkdir(exist_ok=True)
        s = Session([tree])
        t0 = time.perf_counter()
        out = subprocess.run(
            ["fio", "--name=m", f"--directory={many}", "--nrfiles=256", "--filesize=4M",
             "--bs=4k", "--rw=randwrite", "--ioengine=psync", "--time_based",
             f"--runtime={args.seconds}", "--numjobs=2", "--group_reporting",
             "--file_service_type=random", "--output-format=json"],
            check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
        elapsed = time.perf_counter() - t0
        st = s.close()
    finally:
        stats_sysctl.write_text(old_stats + "\n")
    storm_iops = json.loads(out)["jobs"][0]["write"]["iops"]

    med = {k: statistics.median(v) for k, v in res.items()}
    print()
    print(
        f"fio 4k random buffered writes, traced file: {med['fio_traced']:>10,.0f} IOPS vs "
        f"{med['fio']:,.0f} untraced, ratio {ratio(res['fio_traced'], res['fio']):.3f}"
    )
    print(
        f"fio, file outside the traced tree:          {med['fio_out_traced']:>10,.0f} IOPS vs "
        f"{med['fio_out']:,.0f} untraced, ratio {ratio(res['fio_out_traced'], res['fio_out']):.3f}"
    )
    c0, c1 = statistics.median(cpu["fio"]), statistics.median(cpu["fio_traced"])
    print(
        f"fio CPU time per write:                     {c1:>10.2f} us vs {c0:.2f} untraced, "
        f"+{c1 - c0:.2f} us ({(c1 - c0) / c0:+.1%})"
    )
    print(
        f"dd bs=4k {args.dd_mib} MiB, traced file:         {med['dd_traced']:>10,.0f} MiB/s vs "
        f"{med['dd']:,.0f} untraced, ratio {ratio(res['dd_traced'], res['dd']):.3f}"
    )
    for name, (cnt, ns) in sorted(costs.items()):
        if cnt:
            print(f"  {name:<28} {cnt:>12,} runs  {ns / cnt:8.0f} ns/run")
    print(
        f"storm: {storm_iops:,.0f} writes/s over 512 files for {elapsed:.0f}s: "
        f"drops={st['drops']} map_full={st['map_full']} unplaceable={st['unplaceable']} "
        f"notice_lost={st['notice_lost']} overflows={st['overflows']} "
        f"marks={st['marks']:,} drains={s.drains} rescans={s.rescans}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
