"""A one-shot re-sync after a small change: change journal (`yeet tracer`) vs full scan.

Same tree, same run, alternated: each round edits 3 files and creates one
directory on alpha, then syncs either with the journal (scoped pass) or
without (the journal socket pointed elsewhere: a full scan). Reports wall
time and directory listings read per side. Needs root (the journal service).

    python3 bench/journal_scan.py [--dirs 2000] [--files-per-dir 10]
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.journal_service import journal_service  # noqa: E402


def sync(a: Path, b: Path, env: dict[str, str]) -> tuple[float, dict[str, object]]:
    t = time.monotonic()
    r = subprocess.run(
        [sys.executable, "-m", "yeet", "sync", "--json", str(a), str(b), "--name", "bench"],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return time.monotonic() - t, json.loads(r.stdout)


def main() -> None:
    # byte-compile yeet as an install does (PYTHONDONTWRITEBYTECODE would make
    # every command compile every module again)
    compileall.compile_dir(str(Path(__file__).resolve().parent.parent / "yeet"), quiet=1)
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dirs", type=int, default=2000)
    ap.add_argument("--files-per-dir", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="yeet-journal-bench-", dir="/var/tmp"))
    try:
        a, b, sock = work / "alpha", work / "beta", work / "journal.sock"
        for d in range(args.dirs):
            p = a / f"d{d // 100:02}" / f"d{d:04}"
            p.mkdir(parents=True)
            for f in range(args.files_per_dir):
                (p / f"f{f}").write_bytes(b"%d %d\n" % (d, f) * 20)
        base = dict(os.environ, XDG_STATE_HOME=str(work / "state"), PYTHONPATH=str(REPO))
        with_j = dict(base, YEET_TRACER_SOCKET=str(sock))
        without = dict(base, YEET_TRACER_SOCKET=str(work / "none.sock"))
        results: dict[str, list[tuple[float, dict[str, object]]]] = {"journal": [], "scan": []}
        with journal_service(sock):
            sync(a, b, with_j)
            sync(a, b, with_j)  # our own writes to beta
            for r in range(args.rounds):
                for label, env in (("journal", with_j), ("scan", without)):
                    for k in range(3):
                        f = a / "d05" / f"d{500 + k:04}" / "f0"
                        f.write_bytes(f"{label} round {r}\n".encode())
                    (a / f"new-{label}-{r}").mkdir()
                    results[label].append(sync(a, b, env))
                    sync(a, b, with_j)  # absorb our own writes to beta, both ways alike
        files = args.dirs * args.files_per_dir
        print(f"\n{files} files in {args.dirs + args.dirs // 100 + 1} directories; "
              "each sync: 3 edited files + 1 new directory on alpha")  # fmt: skip
        print(f"{'how':<10} {'median s':>9} {'listed alpha':>13} {'listed beta':>12}")
        for label, runs in results.items():
            secs = statistics.median(t for t, _ in runs)
            scan = runs[-1][1]["scan"]
            assert isinstance(scan, dict)
            assert scan["journal"] == (label == "journal"), scan
            listed = scan["listed"]
            print(f"{label:<10} {secs:>9.2f} {listed['alpha']:>13} {listed['beta']:>12}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
