"""yeet over SSH vs ``rsync -a`` over the same sshd: same data, same run, alternating.

Cases: the initial copy of 100,000 small files (0-8 KiB, nested, from
``bench/datagen.py``), a no-op re-sync of them, and one large incompressible
file (4 GiB by default). Both tools talk to one OpenSSH sshd on 127.0.0.1 (a
generated host key and client key, its own config; nothing of the machine's
~/.ssh is used): rsync through ``ssh -F <that config>``, yeet through asyncssh
with HOME pointing at the same config.

Destination trees are moved aside after each measurement and deleted only at
the end (on these machines, creating files right after deleting a large tree
is many times slower for minutes).

Usage: python bench/ssh_bench.py [--files N] [--large-mib N] [--rounds N]
       [--remote-python PATH] [--cipher NAME] [--keep DIR]
"""

from __future__ import annotations

import argparse
import compileall
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.datagen import small_files  # noqa: E402
from tests.sshd import SshWorld  # noqa: E402


def large_file(path: Path, size: int) -> None:
    chunk = 16 << 20
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(chunk, left)
            f.write(os.urandom(n))
            left -= n


class Bench:
    def __init__(self, work: Path, remote_python: str, cipher: str | None) -> None:
        self.work = work
        self.world = SshWorld(work / "ssh")
        self.srv = self.world.server("bench")
        self.world.trust(self.srv)
        extra = {"Ciphers": cipher} if cipher else {}
        self.world.alias("bench", self.srv, **extra)
        self.remote_python = remote_python
        self.aside = work / "aside"
        self.aside.mkdir(exist_ok=True)
        self.results: dict[str, dict[str, list[float]]] = {}

    def env(self) -> dict[str, str]:
        return self.world.env(YEET_REMOTE_PYTHON=self.remote_python)

    def record(self, case: str, tool: str, seconds: float) -> None:
        self.results.setdefault(case, {}).setdefault(tool, []).append(seconds)
        print(f"  {case:<22} {tool:<6} {seconds:8.2f} s", flush=True)

    def timed(self, cmd: list[str]) -> float:
        start = time.monotonic()
        r = subprocess.run(cmd, env=self.env(), capture_output=True, text=True)
        took = time.monotonic() - start
        if r.returncode != 0:
            raise SystemExit(f"failed: {' '.join(cmd)}\n{r.stdout}\n{r.stderr}")
        return took

    def rsync(self, src: Path, dst: Path) -> float:
        ssh = f"ssh -F {self.world.config_file} -o UserKnownHostsFile={self.world.known_hosts}"
        return self.timed(["rsync", "-a", "-e", ssh, f"{src}/", f"bench:{dst}/"])

    def yeet(self, src: Path, dst: Path, name: str) -> float:
        return self.timed(
            [sys.executable, "-m", "yeet", "sync", str(src), f"bench:{dst}", "-n", name, "-q"]
        )

    def put_aside(self, path: Path) -> None:
        if path.exists():
            path.rename(self.aside / f"{path.name}-{time.monotonic_ns()}")

    def forget(self, name: str) -> None:
        subprocess.run(
            [sys.executable, "-m", "yeet", "forget", name, "--force"],
            env=self.env(),
            capture_output=True,
        )

    def case(self, label: str, src: Path, rounds: int) -> None:
        for r in range(rounds):
            order = ("rsync", "yeet") if r % 2 == 0 else ("yeet", "rsync")
            for tool in order:
                dst = self.work / f"dst-{label.replace(' ', '-')}-{tool}"
                self.put_aside(dst)
                name = f"bench-{label.replace(' ', '-')}-{r}"
                if tool == "rsync":
                    first = self.rsync(src, dst)
                    again = self.rsync(src, dst)
                else:
                    self.forget(name)
                    first = self.yeet(src, dst, name)
                    again = self.yeet(src, dst, name)
                    self.forget(name)
                self.record(f"{label}: initial copy", tool, first)
                self.record(f"{label}: no-op re-sync", tool, again)
                self.put_aside(dst)

    def table(self, sizes: dict[str, int]) -> str:
        lines = [
            f"{'case':<30} {'rsync -a':>10} {'yeet':>10} {'yeet/rsync':>11} {'yeet MB/s':>10}",
            "-" * 75,
        ]
        for case, tools in self.results.items():
            r = min(tools.get("rsync", [float("nan")]))
            y = min(tools.get("yeet", [float("nan")]))
            size = sizes.get(case.split(":")[0], 0)
            rate = f"{size / y / 1e6:10.0f}" if "initial" in case and y > 0 else f"{'':>10}"
            lines.append(f"{case:<30} {r:9.2f}s {y:9.2f}s {y / r:10.2f}x {rate}")
        return "\n".join(lines)

    def cleanup(self) -> None:
        self.world.stop()
        shutil.rmtree(self.aside, ignore_errors=True)


def main() -> None:
    # byte-compile yeet as an install does (PYTHONDONTWRITEBYTECODE would make
    # every command compile every module again)
    compileall.compile_dir(str(Path(__file__).resolve().parent.parent / "yeet"), quiet=1)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--large-mib", type=int, default=4096)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--remote-python", default=sys.executable)
    ap.add_argument("--cipher", default=None, help="force an SSH cipher for both tools")
    ap.add_argument("--work", default=None, help="directory for the data (default: a temp dir)")
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="yeet-ssh-bench-", dir="/var/tmp"))
    work.mkdir(parents=True, exist_ok=True)
    b = Bench(work, args.remote_python, args.cipher)
    sizes: dict[str, int] = {}
    try:
        small = work / "small"
        if args.files:
            print(f"generating {args.files} small files ...", flush=True)
            sizes["small files"] = small_files(str(small), args.files)
        large = work / "large"
        if args.large_mib:
            large.mkdir(exist_ok=True)
            print(f"generating a {args.large_mib} MiB incompressible file ...", flush=True)
            large_file(large / "blob.bin", args.large_mib << 20)
            sizes["large file"] = args.large_mib << 20
        if args.files:
            b.case("small files", small, args.rounds)
        if args.large_mib:
            b.case("large file", large, args.rounds)
        print()
        print(
            f"yeet {sys.version.split()[0]} client, remote python {args.remote_python}, "
            f"sshd on 127.0.0.1, {os.cpu_count()} cores"
        )
        print(b.table(sizes))
    finally:
        b.cleanup()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
