"""16 random 4 KiB writes in a 4 GiB file, over the real sshd: what each tool reads.

Tools, run alternately (the order rotates each round), each with its own
destination copy kept in sync:

* ``yeet (tracer)``: the change journal (``yeet tracer``) runs on this host and
  both ends ask it; the written ranges drive the scan and the delta;
* ``yeet (fallback)``: no journal (the same sync as on a host without BPF):
  full scan, signatures, delta;
* ``rsync --inplace``.

Measured per tool and round: wall time of the whole command; bytes on the wire
(yeet's protocol bytes from ``sync --json``, rsync's ``--stats``; neither counts
SSH framing); bytes read from disk on each side: both copies' cached pages are
dropped before the command (``posix_fadvise DONTNEED``), then the kernel's
per-process block-input count (``ru_inblock``) of the local command and of the
remote one (through a wrapper, as in ``delta_ssh.py``) says what was read
(read-ahead included). Both ends run the full python (blake3, pyfastcdc).

Usage: python bench/o_change_ssh.py [--mib 4096] [--rounds 3] [--work DIR]
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import random
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.delta_ssh import RemoteIo, make_file  # noqa: E402
from tests.journal_service import journal_service  # noqa: E402
from tests.pagecache import evict  # noqa: E402
from tests.sshd import SshWorld  # noqa: E402

MIB = 1 << 20
TOOLS = ("yeet (tracer)", "yeet (fallback)", "rsync --inplace")
WRITES, WRITE = 16, 4096


class Bench:
    def __init__(self, work: Path, sock: Path) -> None:
        self.work = work
        self.world = SshWorld(work / "ssh")
        for name, socket in (("traced", str(sock)), ("plain", "/nonexistent/yeet.sock")):
            srv = self.world.server(name, env={"YEET_TRACER_SOCKET": socket})
            self.world.trust(srv)
            self.world.alias(name, srv)
        self.sock = sock
        self.io = RemoteIo(work)
        self.src = work / "src"
        self.dst = {t: work / re.sub(r"\W+", "-", t).strip("-") for t in TOOLS}
        self.rows: list[dict[str, object]] = []

    def _remote_reads(self) -> int:
        """Bytes the remote processes read from disk since the last call."""
        return self.io.take()[1]

    def run(self, tool: str) -> dict[str, float]:
        dst = self.dst[tool]
        env = self.world.env(YEET_REMOTE_PYTHON=self.io.python)
        if tool.startswith("yeet"):
            traced = tool == "yeet (tracer)"
            host = "traced" if traced else "plain"
            env["YEET_TRACER_SOCKET"] = str(self.sock) if traced else "/nonexistent/yeet.sock"
            cmd = [sys.executable, "-m", "yeet", "sync", "--json", str(self.src)]
            cmd += [f"{host}:{dst}", "--name", host]
        else:
            ssh = f"ssh -F {self.world.config_file} -o UserKnownHostsFile={self.world.known_hosts}"
            cmd = ["rsync", "-a", "--inplace", "--no-whole-file", "--stats", "-e", ssh]
            cmd.append(f"--rsync-path={self.io.rsync}")
            cmd += [f"{self.src}/", f"plain:{dst}/"]
        for f in (self.src / "big.img", dst / "big.img"):
            if f.exists():
                evict(f)
        self._remote_reads()
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_inblock
        t = time.perf_counter()
        r = subprocess.run(cmd, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t
        local_read = (resource.getrusage(resource.RUSAGE_CHILDREN).ru_inblock - before) * 512
        if r.returncode != 0:
            raise SystemExit(f"{tool} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
        if tool.startswith("yeet"):
            doc = json.loads(r.stdout)
            wire = doc["wire"]["beta"]
            on_wire = int(wire["sent"]) + int(wire["received"])
            journal = bool(doc["scan"]["journal"])
        else:
            sent = re.search(r"Total bytes sent: ([\d,]+)", r.stdout)
            got = re.search(r"Total bytes received: ([\d,]+)", r.stdout)
            assert sent and got, r.stdout
            on_wire = int(sent.group(1).replace(",", "")) + int(got.group(1).replace(",", ""))
            journal = False
        return {
            "wall": wall,
            "wire": on_wire,
            "sender read": local_read,
            "receiver read": self._remote_reads(),
            "journal": journal,
        }

    def setup(self, size: int) -> None:
        self.src.mkdir()
        make_file(self.src / "big.img", size)
        for tool in TOOLS:
            self.dst[tool].mkdir()
            subprocess.run(
                ["cp", "-p", str(self.src / "big.img"), str(self.dst[tool] / "big.img")],
                check=True,
            )
        time.sleep(2.1)  # past the stat cache's racy window
        for tool in TOOLS:  # first contact; yeet's second run takes its own writes in
            for _ in range(2 if tool.startswith("yeet") else 1):
                print(f"setup {tool}: {self.run(tool)}", flush=True)
        doc = self.run("yeet (tracer)")
        if not doc["journal"]:
            raise SystemExit("the change journal did not vouch for the interval: no tracer?")

    def round(self, i: int, rng: random.Random) -> None:
        size = (self.src / "big.img").stat().st_size
        with open(self.src / "big.img", "r+b") as f:
            for _ in range(WRITES):
                f.seek(rng.randrange(0, size - WRITE))
                f.write(os.urandom(WRITE))
            os.fsync(f.fileno())
        order = TOOLS[i % 3 :] + TOOLS[: i % 3]
        for tool in order:
            row = self.run(tool)
            if tool == "yeet (tracer)" and not row["journal"]:
                raise SystemExit("the change journal did not vouch: the row would be a fallback")
            self.rows.append({"tool": tool, **row})
            print(
                f"  round {i + 1} {tool:<16} {row['wall']:7.2f} s  wire {row['wire'] / 1024:8.0f}"
                f" KiB  read: sender {row['sender read'] / MIB:8.2f} MiB, receiver "
                f"{row['receiver read'] / MIB:8.2f} MiB",
                flush=True,
            )

    def table(self) -> str:
        def med(tool: str, key: str) -> float:
            return statistics.median(float(r[key]) for r in self.rows if r["tool"] == tool)  # type: ignore[arg-type]

        base = med("rsync --inplace", "wall")
        out = [
            "| tool | wall s | wire KiB | sender read MiB | receiver read MiB "
            "| wall / rsync --inplace | rsync --inplace / wall |",
            "|---|---|---|---|---|---|---|",
        ]
        for tool in TOOLS:
            wall = med(tool, "wall")
            out.append(
                f"| {tool} | {wall:.2f} | {med(tool, 'wire') / 1024:.0f} "
                f"| {med(tool, 'sender read') / MIB:.2f} | {med(tool, 'receiver read') / MIB:.2f} "
                f"| {wall / base:.3f} | {base / wall:.1f}x |"
            )
        return "\n".join(out)


def main() -> None:
    compileall.compile_dir(str(REPO / "yeet"), quiet=1)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mib", type=int, default=4096)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--work", default=None)
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "o_change_ssh.md"))
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="yeet-ochange-", dir="/var/tmp"))
    work.mkdir(parents=True, exist_ok=True)
    sock = Path(f"/tmp/yeet-bench-journal-{uuid.uuid4().hex[:8]}.sock")
    rng = random.Random(16)
    started = time.time()
    bench = None
    try:
        with journal_service(sock):
            bench = Bench(work, sock)
            bench.setup(args.mib * MIB)
            for i in range(args.rounds):
                bench.round(i, rng)
        table = bench.table()
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started))
        load = os.getloadavg()[0]
        head = (
            f"# {WRITES} x {WRITE // 1024} KiB written in a {args.mib} MiB file, over sshd "
            f"({when})\n\npython {sys.version.split()[0]}, {os.cpu_count()} cores, load "
            f"{load:.1f} at the end, sshd on 127.0.0.1; median of {args.rounds} rounds, tools "
            "alternating. Changed bytes per round: "
            f"{WRITES * WRITE // 1024} KiB. Reads: ru_inblock of each side's process, the big "
            "file's cache dropped before (read-ahead included).\n\n"
        )
        print()
        print(table)
        Path(args.out).write_text(head + table + "\n")
        print(f"\nwritten to {args.out}")
    finally:
        if bench is not None:
            bench.world.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
