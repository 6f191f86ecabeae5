"""A changed 4 GiB file over the real sshd: yeet vs ``rsync --inplace`` vs ``rsync``.

Cases, applied one after another to the same source file (each tool keeps its
own destination copy, in sync before every case):

  (a) 16 random 4 KiB blocks overwritten in place
  (b) 1 MiB inserted in the middle
  (c) 64 MiB appended

Measured per tool and case, tools run alternately (the order rotates):

* wall time of the whole command (connect, scan, delta, apply, durability);
* bytes on the wire: rsync's ``--stats`` (sent + received); yeet's protocol
  bytes over its link (``sync --json`` "wire": frames after compression). Both
  exclude SSH's own framing and encryption;
* bytes written by the receiving process: the remote command runs under a
  wrapper that reports its children's ``ru_oublock`` (the kernel's per-process
  write accounting, what ``/proc/<pid>/io`` calls ``write_bytes``), which
  includes yeet's journal, spool, state database and rsync's temp file.

Page cache is left warm (the machine is shared: no drop_caches); every tool
sees the same cache state because they alternate.

Usage: python bench/delta_ssh.py [--mib 4096] [--work DIR] [--out bench/results/delta_ssh.md]
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.sshd import SshWorld  # noqa: E402

MIB = 1 << 20
TOOLS = ("yeet", "rsync --inplace", "rsync")

WRAPPER = """#!{python}
import resource, subprocess, sys
proc = subprocess.run([{real!r}, *sys.argv[1:]])
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
with open({log!r}, "a") as f:
    f.write("%d %d %s\\n" % (ru.ru_oublock * 512, ru.ru_inblock * 512, " ".join(sys.argv[1:])[:60]))
sys.exit(proc.returncode)
"""


class RemoteIo:
    """Wrapper commands that log what the remote process they run wrote and read
    from disk (its children's ``ru_oublock``/``ru_inblock``), and the totals."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.log = work / "io.log"
        self.python = self._wrapper("python-wrap", sys.executable)
        self.rsync = self._wrapper("rsync-wrap", shutil.which("rsync") or "/usr/bin/rsync")

    def _wrapper(self, name: str, real: str) -> str:
        path = self.work / name
        path.write_text(WRAPPER.format(python=sys.executable, real=real, log=str(self.log)))
        path.chmod(0o755)
        return str(path)

    def take(self) -> tuple[int, int]:
        """(bytes written, bytes read) by the remote processes since the last call."""
        if not self.log.exists():
            return 0, 0
        rows = [line.split() for line in self.log.read_text().splitlines() if line]
        self.log.unlink()
        return sum(int(r[0]) for r in rows), sum(int(r[1]) for r in rows)


def make_file(path: Path, size: int) -> None:
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(64 * MIB, left)
            f.write(os.urandom(n))
            left -= n


def copy(src: Path, dst: Path) -> None:
    subprocess.run(["cp", "--sparse=never", "-p", str(src), str(dst)], check=True)


class Bench:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.world = SshWorld(work / "ssh")
        self.srv = self.world.server("bench")
        self.world.trust(self.srv)
        self.world.alias("bench", self.srv)
        self.io = RemoteIo(work)
        self.src = work / "src"
        self.dst = {t: work / ("dst-" + t.replace(" --", "-")) for t in TOOLS}
        self.rows: list[dict[str, object]] = []

    def env(self) -> dict[str, str]:
        return self.world.env(YEET_REMOTE_PYTHON=self.io.python)

    def _writes(self) -> int:
        """Bytes written by the remote processes since the last call."""
        return self.io.take()[0]

    def run(self, tool: str) -> tuple[float, int, int]:
        self._writes()
        dst = self.dst[tool]
        if tool == "yeet":
            cmd = [sys.executable, "-m", "yeet", "sync", "--json", str(self.src)]
            cmd += [f"bench:{dst}", "--name", "bench"]
        else:
            ssh = f"ssh -F {self.world.config_file} -o UserKnownHostsFile={self.world.known_hosts}"
            cmd = ["rsync", "-a", "--stats", "-e", ssh, f"--rsync-path={self.io.rsync}"]
            if tool == "rsync --inplace":
                cmd.append("--inplace")
            cmd += [f"{self.src}/", f"bench:{dst}/"]
        t = time.perf_counter()
        r = subprocess.run(cmd, env=self.env(), capture_output=True, text=True)
        wall = time.perf_counter() - t
        if r.returncode != 0:
            raise SystemExit(f"{tool} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
        if tool == "yeet":
            wire = json.loads(r.stdout)["wire"]["beta"]
            on_wire = int(wire["sent"]) + int(wire["received"])
        else:
            sent = re.search(r"Total bytes sent: ([\d,]+)", r.stdout)
            got = re.search(r"Total bytes received: ([\d,]+)", r.stdout)
            assert sent and got, r.stdout
            on_wire = int(sent.group(1).replace(",", "")) + int(got.group(1).replace(",", ""))
        time.sleep(0.2)
        return wall, on_wire, self._writes()

    def setup(self, size: int) -> None:
        self.src.mkdir(parents=True, exist_ok=True)
        print(f"creating a {size >> 20} MiB file ...", flush=True)
        make_file(self.src / "blob.bin", size)
        for tool in ("rsync --inplace", "rsync"):
            self.dst[tool].mkdir(exist_ok=True)
            copy(self.src / "blob.bin", self.dst[tool] / "blob.bin")
        wall, wire, _ = self.run("yeet")  # the initial copy, and yeet's session
        print(f"yeet initial copy: {wall:.1f} s, {wire / MIB:.0f} MiB on the wire", flush=True)

    def case(self, label: str, order: tuple[str, ...]) -> None:
        for tool in order:
            wall, wire, writes = self.run(tool)
            row = {"case": label, "tool": tool, "wall": wall, "wire": wire, "writes": writes}
            self.rows.append(row)
            print(
                f"  {label:<28} {tool:<16} {wall:7.2f} s  wire {wire / 1024:10.0f} KiB  "
                f"receiver wrote {writes / 1024:10.0f} KiB",
                flush=True,
            )
        for tool in TOOLS:
            same = subprocess.run(
                ["cmp", str(self.src / "blob.bin"), str(self.dst[tool] / "blob.bin")]
            )
            if same.returncode != 0:
                raise SystemExit(f"{tool}: destination differs after {label}")

    def table(self) -> str:
        out = [
            "| case | tool | wall s | wire KiB | receiver writes KiB "
            "| wall / rsync --inplace | wire / rsync |",
            "|---|---|---:|---:|---:|---:|---:|",
        ]
        for label in dict.fromkeys(r["case"] for r in self.rows):
            rows = {r["tool"]: r for r in self.rows if r["case"] == label}
            base_wall = float(rows["rsync --inplace"]["wall"])  # type: ignore[arg-type]
            base_wire = int(rows["rsync"]["wire"])  # type: ignore[call-overload]
            for tool in TOOLS:
                r = rows[tool]
                wall, wire, writes = float(r["wall"]), int(r["wire"]), int(r["writes"])  # type: ignore[arg-type,call-overload]
                out.append(
                    f"| {label} | {tool} | {wall:.2f} | {wire / 1024:.0f} | {writes / 1024:.0f} "
                    f"| {wall / base_wall:.2f} | {wire / base_wire:.2f} |"
                )
        return "\n".join(out)


def edit_blocks(path: Path, rng: random.Random) -> int:
    size = path.stat().st_size
    with open(path, "r+b") as f:
        for _ in range(16):
            f.seek(rng.randrange(0, size // 4096) * 4096)
            f.write(os.urandom(4096))
    return 16 * 4096


def insert_middle(path: Path, rng: random.Random) -> int:
    size = path.stat().st_size
    mid = size // 2 // 4096 * 4096 + 1234
    tmp = path.with_suffix(".new")
    with open(path, "rb") as src, open(tmp, "wb") as dst:
        os.copy_file_range(src.fileno(), dst.fileno(), mid, 0, 0)
        dst.seek(mid)
        dst.write(os.urandom(MIB))
        done = 0
        while done < size - mid:
            done += os.copy_file_range(
                src.fileno(), dst.fileno(), size - mid - done, mid + done, mid + MIB + done
            )
    os.rename(tmp, path)
    return MIB


def append(path: Path, rng: random.Random) -> int:
    with open(path, "ab") as f:
        f.write(os.urandom(64 * MIB))
    return 64 * MIB


def main() -> None:
    # byte-compile yeet as an install does (PYTHONDONTWRITEBYTECODE would make
    # every command compile every module again)
    compileall.compile_dir(str(Path(__file__).resolve().parent.parent / "yeet"), quiet=1)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mib", type=int, default=4096)
    ap.add_argument("--work", default=None)
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "delta_ssh.md"))
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="yeet-delta-bench-", dir="/var/tmp"))
    work.mkdir(parents=True, exist_ok=True)
    bench = Bench(work)
    rng = random.Random(4)
    started = time.time()
    try:
        bench.setup(args.mib * MIB)
        cases = [
            ("(a) 16 x 4 KiB overwritten", edit_blocks),
            ("(b) 1 MiB inserted mid-file", insert_middle),
            ("(c) 64 MiB appended", append),
        ]
        for i, (label, edit) in enumerate(cases):
            changed = edit(bench.src / "blob.bin", rng)
            order = TOOLS[i % 3 :] + TOOLS[: i % 3]
            print(f"{label}: {changed} bytes changed; order {', '.join(order)}", flush=True)
            bench.case(label, order)
        table = bench.table()
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started))
        head = (
            f"# delta over sshd: {args.mib} MiB file, {when}\n\n"
            f"python {sys.version.split()[0]}, {os.cpu_count()} cores (shared), "
            "sshd on 127.0.0.1, warm page cache, yeet's remote agent on the full python "
            "(pyfastcdc, blake3, zstd).\n"
            "wire: rsync --stats sent+received; yeet protocol bytes both ways "
            "(neither counts SSH framing).\n"
            "receiver writes: ru_oublock of the remote process (journal, spool, state db, "
            "temp files included).\n\n"
        )
        print()
        print(table)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(head + table + "\n")
        print(f"\nwritten to {args.out}")
    finally:
        bench.world.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
