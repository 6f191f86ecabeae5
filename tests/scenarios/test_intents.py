"""A kill -9 never turns yeet's own writes into conflicts (seen before: 58 to 176 of 300
files became modified/modified once alpha edited them again): what is about to be
written is recorded first, and the next run counts a path holding exactly that as
agreed."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from tests.cli_harness import Yeet, snapshot, write

FILES = 300


def arrived(b: Path, since: int) -> int:
    """Files of ``b`` written since ``since`` (ns)."""
    n = 0
    for d, _dirs, names in os.walk(b):
        for name in names:
            try:
                n += os.stat(os.path.join(d, name)).st_mtime_ns >= since
            except FileNotFoundError:
                pass
    return n


def kill_midway(yeet: Yeet, a: Path, b: Path, at: int) -> None:
    """Start a sync and SIGKILL it once ``at`` files have arrived on ``b``."""
    since = time.time_ns()
    proc = yeet.start("sync", "-q", str(a), str(b), "--name", "s", output=False, new_session=True)
    deadline = time.monotonic() + 120
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            if arrived(b, since) >= at:
                break
            time.sleep(0.002)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_killed_sync_makes_no_conflicts(yeet: Yeet, roots: tuple[Path, Path]) -> None:
    a, b = roots
    for i in range(FILES):
        write(a, f"d{i % 10}/f{i}.txt", f"version 1 of {i}\n" * 20)
    yeet.sync(a, b)
    for trial, at in enumerate((FILES // 10, FILES // 3, FILES * 2 // 3)):
        # alpha has new content; the sync that carries it dies midway
        for i in range(FILES):
            write(a, f"d{i % 10}/f{i}.txt", f"version {trial + 2} of {i}\n" * 20)
        kill_midway(yeet, a, b, at)
        # alpha edits everything again before the next sync
        for i in range(FILES):
            write(a, f"d{i % 10}/f{i}.txt", f"version {trial + 2}b of {i}\n" * 20)
        r = yeet.sync(a, b, rc=None)
        assert r.rc == 0, r.out + r.err
        assert "conflict" not in r.out
        assert snapshot(b) == snapshot(a)
