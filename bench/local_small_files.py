"""Initial copy and no-op re-sync of 100,000 small files: yeet vs rsync -a vs cp -a.

Same data, same run, tools alternated, page cache dropped before each initial
copy. rsync and cp do not make their writes durable; yeet does (a crash never
leaves a torn file), so the table also shows "rsync -a; sync" for a like-for-
like durable copy.

    python3 bench/local_small_files.py [--files 100000] [--work /var/tmp/yeet-bench]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import bury, clear_graveyard, drop_caches, median, run, table, yeet_cmd
from datagen import small_files

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.journal_service import journal_service


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--work", type=Path, default=Path("/var/tmp/yeet-bench"))
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--noop-rounds", type=int, default=5)
    args = ap.parse_args()
    work: Path = args.work
    work.mkdir(parents=True, exist_ok=True)
    src = work / f"src-{args.files}"
    if not src.exists():
        print(f"generating {args.files} files in {src} ...", flush=True)
        small_files(str(src) + ".tmp", args.files)
        os.rename(str(src) + ".tmp", src)
    env = dict(os.environ, XDG_STATE_HOME=str(work / "state"))
    times: dict[str, list[float]] = {k: [] for k in ("yeet", "rsync", "rsync+sync", "cp")}
    for _ in range(args.rounds):
        for tool in ("yeet", "rsync", "rsync+sync", "cp"):
            dst = work / f"dst-{tool}"
            bury(dst, work)
            bury(work / "state", work)
            drop_caches()
            if tool == "yeet":
                t = run([*yeet_cmd(), "sync", "-q", str(src), str(dst), "--name", "bench"], env)
            elif tool == "rsync":
                t = run(["rsync", "-a", f"{src}/", f"{dst}/"])
            elif tool == "rsync+sync":
                t = run(["sh", "-c", f"rsync -a '{src}/' '{dst}/' && sync"])
            else:
                t = run(["cp", "-a", str(src), str(dst)])
            times[tool].append(t)
            print(f"  initial {tool:10s} {t:7.2f} s", flush=True)
    # No-op re-sync: both destinations are complete now; warm cache, alternated.
    # "yeet (journal)": the change journal (`yeet tracer`, root only) vouches that
    # nothing changed, so the sync lists no directory at all.
    noop: dict[str, list[float]] = {"yeet": [], "rsync": []}
    yeet_sync = [*yeet_cmd(), "sync", "-q", str(src), str(work / "dst-yeet"), "--name", "bench"]
    with contextlib.ExitStack() as stack:
        jenv = None
        if os.geteuid() == 0:
            sock = work / "journal.sock"
            stack.enter_context(journal_service(sock))
            jenv = dict(env, YEET_TRACER_SOCKET=str(sock))
            run(yeet_sync, jenv)  # leaves the first cursor
            run(yeet_sync, jenv)
            noop["yeet (journal)"] = []
        for _ in range(args.noop_rounds):
            noop["yeet"].append(run(yeet_sync, dict(env, YEET_TRACER_SOCKET=str(work / "none"))))
            if jenv is not None:
                noop["yeet (journal)"].append(run(yeet_sync, jenv))
            noop["rsync"].append(run(["rsync", "-a", f"{src}/", f"{work / 'dst-rsync'}/"]))
    r = median(times["rsync"])
    rows = [[tool, f"{median(ts):.2f}", f"{median(ts) / r:.2f}x"] for tool, ts in times.items()]
    print()
    print(
        table(
            f"Initial copy of {args.files} small files (median of {args.rounds})",
            ["tool", "seconds", "vs rsync -a"],
            rows,
        )
    )
    rn = median(noop["rsync"])
    print()
    print(
        table(
            f"No-op re-sync (median of {args.noop_rounds})",
            ["tool", "seconds", "vs rsync -a"],
            [[t, f"{median(v):.3f}", f"{median(v) / rn:.2f}x"] for t, v in noop.items()],
        )
    )
    clear_graveyard(work)


if __name__ == "__main__":
    main()
