"""``--watch`` never takes its own writes for edits (seen before: the first pass of a
30,000-file tree into an empty beta moved 568 of alpha's files to the trash and
replaced them by the copies just written to beta, and ``beta pkgNNNN/mK something
appeared at this path since the scan`` kept the session in ``problems``).

The tree is large enough that the watch sees its own writes while the first pass
still runs, and the passes that follow overlap the first pass's work."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from tests.cli_harness import Yeet, snapshot, write

PACKAGES, MODULES, FILES = 10, 2, 300  # 6,000 files, 300 to a directory


def test_first_watch_pass_does_not_echo(yeet: Yeet, roots: tuple[Path, Path]) -> None:
    a, b = roots
    n = 0
    for p in range(PACKAGES):
        for m in range(MODULES):
            for _ in range(FILES):
                write(a, f"pkg{p:04d}/m{m}/f{n}.js", "x" * (n % 300))
                n += 1
    before = snapshot(a)
    inodes = {p: p.stat().st_ino for p in a.rglob("*.js")}
    proc = yeet.start("sync", "--watch", str(a), str(b), "--name", "s")
    try:
        deadline = time.monotonic() + 240
        while True:
            assert time.monotonic() < deadline, "the watch did not settle"
            assert proc.poll() is None, proc.communicate()
            line = yeet("status", "s").lines()
            if line and line[0][0] == "synced" and snapshot(b) == before:
                break
            time.sleep(0.2)
        time.sleep(1.0)  # events of the last writes are read by now
        assert yeet("status", "s").lines()[0][0] == "synced"
        assert yeet("problems", "s", rc=0).out == ""
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert snapshot(a) == before
    # nothing of alpha's was replaced (by a round-tripped copy) or trashed
    assert {p: p.stat().st_ino for p in a.rglob("*.js")} == inodes
    assert yeet("trash", "s").out == ""
    assert "something appeared" not in out + err
    # every line the watch printed: nothing came back from beta to alpha
    assert "beta→alpha" not in out, out
