"""Head-of-line blocking over SSH: 100 small edits made while a 4 GiB file is in flight.

Both tools talk to one OpenSSH sshd on 127.0.0.1 (``tests/sshd.py``). The
destination starts in sync with 100 small files; then a 4 GiB incompressible
file appears in the source, and once its transfer is under way the 100 small
files are edited. The clock starts at the edits; each file's arrival is the
moment the destination holds its new content.

* yeet: one ``yeet sync --watch`` (continuous), as a user runs it.
* rsync: run again and again (what lsyncd does): the run that is sending the
  big file already listed the small files, so the edits go with the next run.

``--download`` turns the direction around: the source is the remote side
(``bench:`` path, alpha), the destination local (artifacts flowing back from a
build host), so the big file's bytes come back on the link.

Printed: p50 / p99 / max arrival time per tool and the ratio. Target: yeet's
p99 <= 1 s.

    python3 bench/hol_ssh.py [--big-mib 4096] [--files 100] [--download] [--work DIR]
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.sshd import SshWorld  # noqa: E402

BLOCK = 64 << 20


def big_file(path: Path, size: int) -> None:
    block = os.urandom(BLOCK)
    with open(path, "wb") as f:
        for i in range(max(1, size // BLOCK)):
            f.write(i.to_bytes(8, "little") + block[8:])


def percentile(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


class Lab:
    def yeet(self, *args: str, **kw: object) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "yeet", *args],
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
            **kw,  # type: ignore[arg-type]
        )

    def __init__(self, work: Path, download: bool) -> None:
        self.work = work
        self.download = download
        self.world = SshWorld(work / "ssh")
        self.srv = self.world.server("bench")
        self.world.trust(self.srv)
        self.world.alias("bench", self.srv)
        self.env = self.world.env()
        self.ssh = f"ssh -F {self.world.config_file} -o UserKnownHostsFile={self.world.known_hosts}"

    def pair(self, src: Path, dst: Path) -> tuple[str, str]:
        """(source, destination) as the tools name them: the remote one is ``bench:``."""
        return (f"bench:{src}", str(dst)) if self.download else (str(src), f"bench:{dst}")

    def rsync(self, src: Path, dst: Path) -> subprocess.Popen[bytes]:
        a, b = self.pair(src, dst)
        return subprocess.Popen(
            ["rsync", "-a", "-e", self.ssh, f"{a}/", f"{b}/"],
            env=self.env,
            stdout=subprocess.DEVNULL,
        )


def prepare(root: Path, files: int) -> None:
    (root / "small").mkdir(parents=True)
    for i in range(files):
        (root / "small" / f"f{i:03d}.txt").write_text(f"old {i}\n")


def edit(root: Path, files: int) -> dict[Path, bytes]:
    want = {}
    for i in range(files):
        p = root / "small" / f"f{i:03d}.txt"
        data = f"new content {i} {time.time_ns()}\n".encode()
        p.write_bytes(data)
        want[Path("small") / p.name] = data
    return want


def arrivals(dst: Path, want: dict[Path, bytes], start: float, limit: float) -> list[float]:
    left = dict(want)
    seen: list[float] = []
    while left and time.monotonic() - start < limit:
        for rel in list(left):
            try:
                if (dst / rel).read_bytes() == left[rel]:
                    seen.append(time.monotonic() - start)
                    del left[rel]
            except OSError:
                pass
        time.sleep(0.01)
    return seen + [float("inf")] * len(left)


def yeet_case(lab: Lab, base: Path, big: int, files: int) -> list[float]:
    src, dst = base / "y-src", base / "y-dst"
    prepare(src, files)
    r = lab.yeet("sync", "-q", *lab.pair(src, dst), "--name", "hol")
    assert r.returncode == 0, r.stderr
    big_file(src / "huge.img", big)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "yeet",
            "sync",
            "--watch",
            "-q",
            *lab.pair(src, dst),
            "--name",
            "hol",
        ],
        env=lab.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 300
        while sent(lab, "huge.img") < 64 << 20:
            assert proc.poll() is None and time.monotonic() < deadline, "big transfer never started"
            time.sleep(0.1)
        start = time.monotonic()
        want = edit(src, files)
        got = arrivals(dst, want, start, 600)
        big_done = (dst / "huge.img").exists()
        print(f"  yeet: last edit arrived after {max(got):.2f} s; big file done then: {big_done}")
        return got
    finally:
        proc.send_signal(signal.SIGINT)
        t = time.monotonic()
        try:
            proc.wait(timeout=120)
            print(f"  yeet: exited {time.monotonic() - t:.1f} s after Ctrl-C")
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            print("  yeet: still running 120 s after Ctrl-C: killed")


def sent(lab: Lab, path: str) -> int:
    r = lab.yeet("status", "hol", "--json")
    if not r.stdout.strip():
        return 0
    progress = json.loads(r.stdout)[0].get("progress") or {}
    return sum(n for p, n, _size in progress.get("uploads", []) if p == path)


def rsync_case(lab: Lab, base: Path, big: int, files: int) -> list[float]:
    src, dst = base / "r-src", base / "r-dst"
    prepare(src, files)
    assert lab.rsync(src, dst).wait() == 0
    big_file(src / "huge.img", big)
    proc = lab.rsync(src, dst)
    deadline = time.monotonic() + 300
    while not any(p.stat().st_size >= 64 << 20 for p in dst.glob(".huge.img.*")):
        assert proc.poll() is None and time.monotonic() < deadline, "big transfer never started"
        time.sleep(0.05)
    start = time.monotonic()
    want = edit(src, files)
    result: list[list[float]] = []
    watcher = threading.Thread(target=lambda: result.append(arrivals(dst, want, start, 600)))
    watcher.start()
    while watcher.is_alive():  # lsyncd-style: run again until the edits are there
        assert proc.wait() == 0
        if watcher.is_alive():
            proc = lab.rsync(src, dst)
    watcher.join()
    print(f"  rsync: last edit arrived after {max(result[0]):.2f} s")
    return result[0]


def main() -> None:
    # byte-compile yeet as an install does (PYTHONDONTWRITEBYTECODE would make
    # every command compile every module again)
    compileall.compile_dir(str(Path(__file__).resolve().parent.parent / "yeet"), quiet=1)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--big-mib", type=int, default=4096)
    ap.add_argument("--files", type=int, default=100)
    ap.add_argument("--download", action="store_true", help="the big file comes back")
    ap.add_argument("--work", default=None)
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="yeet-hol-", dir="/var/tmp"))
    lab = Lab(work, args.download)
    try:
        results = {}
        for tool in ("rsync", "yeet"):
            base = work / tool
            base.mkdir()
            case = rsync_case if tool == "rsync" else yeet_case
            results[tool] = case(lab, base, args.big_mib << 20, args.files)
        print()
        print(
            f"{args.files} small files edited while a {args.big_mib} MiB file is in flight "
            f"({'from' if args.download else 'to'} sshd on 127.0.0.1, {os.cpu_count()} cores): "
            "seconds until they arrived"
        )
        print(f"{'tool':<8} {'p50':>8} {'p99':>8} {'max':>8}")
        for tool, xs in results.items():
            print(
                f"{tool:<8} {percentile(xs, 0.5):8.2f} {percentile(xs, 0.99):8.2f} {max(xs):8.2f}"
            )
        y, r = percentile(results["yeet"], 0.99), percentile(results["rsync"], 0.99)
        print(f"yeet/rsync p99: {y / r:.3f}x")
    finally:
        lab.world.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
