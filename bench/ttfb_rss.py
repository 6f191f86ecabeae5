"""Time to first file and peak memory on big trees: yeet vs ``rsync -a``, same data, same run.

For each tree size (default 100,000 and 1,000,000 small files from
``bench/datagen.py``) each tool copies the tree into an empty destination
while a watcher looks for the first regular file with content in it: that
moment is the time to first byte. The run then goes to completion; GNU time's
peak RSS (the largest of the tool's processes, agents included) is recorded.
Tools alternate; destinations are moved aside and deleted only at the end.

    python3 bench/ttfb_rss.py [--files 100000,1000000] [--work /var/tmp/yeet-ttfb]
"""

from __future__ import annotations

import argparse
import compileall
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from datagen import small_files


def first_file(dst: Path, start: float, done: threading.Event) -> float:
    """Seconds from ``start`` until ``dst`` holds a non-empty regular file."""
    while not done.is_set():
        stack = [str(dst)]
        while stack:
            try:
                with os.scandir(stack.pop()) as it:
                    for de in it:
                        if de.is_dir(follow_symlinks=False):
                            stack.append(de.path)
                        elif (
                            de.is_file(follow_symlinks=False)
                            and not de.name.startswith(".")
                            and de.stat(follow_symlinks=False).st_size > 0
                        ):
                            return time.monotonic() - start
            except OSError:
                pass
        time.sleep(0.02)
    return time.monotonic() - start


def measure(cmd: list[str], dst: Path, env: dict[str, str]) -> tuple[float, float, int]:
    """(time to first file, total time, peak RSS in KiB)."""
    rss_file = dst.parent / f"rss-{dst.name}"
    done = threading.Event()
    result: list[float] = []
    start = time.monotonic()
    proc = subprocess.Popen(
        ["/usr/bin/time", "-o", str(rss_file), "-f", "%M", *cmd],
        env=env,
        stdout=subprocess.DEVNULL,
    )
    watcher = threading.Thread(target=lambda: result.append(first_file(dst, start, done)))
    watcher.start()
    rc = proc.wait()
    total = time.monotonic() - start
    watcher.join(timeout=1)
    done.set()
    watcher.join()
    if rc != 0:
        raise SystemExit(f"{cmd[0]} failed ({rc})")
    return result[0], total, int(rss_file.read_text().split()[-1])


def main() -> None:
    # byte-compile yeet as an install does (PYTHONDONTWRITEBYTECODE would make
    # every command compile every module again)
    compileall.compile_dir(str(Path(__file__).resolve().parent.parent / "yeet"), quiet=1)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", default="100000,1000000")
    ap.add_argument("--max-size", type=int, default=4096)
    ap.add_argument("--work", type=Path, default=Path("/var/tmp/yeet-ttfb"))
    ap.add_argument("--tools", default="rsync,yeet", help="comma-separated: rsync, yeet")
    args = ap.parse_args()
    work: Path = args.work
    aside = work / "aside"
    aside.mkdir(parents=True, exist_ok=True)
    rows = []
    for n in (int(x) for x in args.files.split(",")):
        src = work / f"src-{n}"
        if not src.exists():
            print(f"generating {n} files ...", flush=True)
            small_files(str(src) + ".tmp", n, max_size=args.max_size)
            os.rename(str(src) + ".tmp", src)
        res = {}
        for tool in args.tools.split(","):
            dst = work / f"dst-{n}-{tool}"
            env = dict(os.environ, XDG_STATE_HOME=str(work / f"state-{n}-{time.time_ns()}"))
            if tool == "rsync":
                cmd = ["rsync", "-a", f"{src}/", f"{dst}/"]
            else:
                cmd = [sys.executable, "-m", "yeet", "sync", "-q", str(src), str(dst), "-n", "ttfb"]
            subprocess.run(["sync"], check=True)
            res[tool] = measure(cmd, dst, env)
            ttfb, total, rss = res[tool]
            print(
                f"  {n:>9} {tool:<6} first file {ttfb:6.2f} s  all {total:7.1f} s  "
                f"peak RSS {rss / 1024:7.1f} MiB",
                flush=True,
            )
            dst.rename(aside / f"{dst.name}-{time.time_ns()}")
        rows.append((n, res))
    print()
    print(f"{'files':>9} {'tool':<6} {'first file':>11} {'all':>9} {'peak RSS':>10}")
    for n, res in rows:
        for tool, (ttfb, total, rss) in res.items():
            print(f"{n:>9} {tool:<6} {ttfb:10.2f}s {total:8.1f}s {rss / 1024:8.1f}MiB")
        if "yeet" in res and "rsync" in res:
            (yt, ya, yr), (rt, ra, rr) = res["yeet"], res["rsync"]
            print(f"{n:>9} {'ratio':<6} {yt / rt:10.2f}x {ya / ra:8.2f}x {yr / rr:9.2f}x")
    shutil.rmtree(aside, ignore_errors=True)


if __name__ == "__main__":
    main()
