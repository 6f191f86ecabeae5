"""yeet sync --watch: keeps both trees in sync as they change, without polling."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.cli_harness import Yeet, snapshot, write


def wait_for(cond: Callable[[], bool], timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.05)


def state(yeet: Yeet) -> str:
    lines = yeet("status", "s").lines()
    return lines[0][0] if lines else ""


def test_watch_follows_edits_on_both_sides(yeet: Yeet, roots: tuple[Path, Path]) -> None:
    a, b = roots
    write(a, "start", "0")
    proc = subprocess.Popen(
        [sys.executable, "-m", "yeet", "sync", "--watch", str(a), str(b), "--name", "s"],
        env=yeet.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: (b / "start").exists())
        wait_for(lambda: state(yeet) == "synced")
        # edits on alpha: a new file, a new directory with content, a rename
        write(a, "new.txt", "fresh")
        write(a, "dir/sub/deep.txt", "deep")
        (a / "start").rename(a / "renamed")
        wait_for(lambda: snapshot(b) == snapshot(a))
        # edits on beta flow back; a deletion too
        write(b, "from-beta", "b")
        (b / "new.txt").unlink()
        wait_for(lambda: snapshot(a) == snapshot(b) and (a / "from-beta").exists())
        assert not (a / "new.txt").exists()
        # a conflict is reported, everything else keeps flowing
        write(a, "dir/sub/deep.txt", "alpha's")
        write(b, "dir/sub/deep.txt", "beta's")
        write(a, "after-conflict", "still flows")
        wait_for(lambda: (b / "after-conflict").exists())
        wait_for(lambda: state(yeet) == "conflicts")
        assert yeet("conflicts", "s").lines() == [["s", "dir/sub/deep.txt", "modified", "modified"]]
        # resolving while the watch runs is refused (the session is busy), not garbled
        assert yeet("resolve", "s", "dir/sub/deep.txt", "--keep", "alpha").rc == 6
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "synced\ts" in out
    # while idle it sleeps in the kernel: no periodic wake-ups (checked via CPU time)


def test_watch_is_idle_when_nothing_changes(yeet: Yeet, roots: tuple[Path, Path]) -> None:
    a, b = roots
    for i in range(200):
        write(a, f"d{i % 10}/f{i}", str(i))
    proc = subprocess.Popen(
        [sys.executable, "-m", "yeet", "sync", "--watch", "-q", str(a), str(b), "--name", "s"],
        env=yeet.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: state(yeet) == "synced")
        time.sleep(0.5)
        before = _cpu(proc.pid)
        time.sleep(3)
        used = _cpu(proc.pid) - before
        assert used < 0.05, f"used {used:.3f} s of CPU while nothing changed"
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.local_only  # watches the local partial upload
def test_ctrl_c_stops_at_once_even_with_a_big_transfer_queued(
    yeet: Yeet, roots: tuple[Path, Path]
) -> None:
    """Ctrl-C does not wait for the queue (a huge upload could take an hour); the
    upload cut off resumes on the next run."""
    a, b = roots
    block = os.urandom(16 << 20)
    with open(a / "big.img", "wb") as f:
        for i in range(64):  # 1 GiB
            f.write(i.to_bytes(8, "little") + block[8:])
    proc = subprocess.Popen(
        [sys.executable, "-m", "yeet", "sync", "--watch", "-q", str(a), str(b), "--name", "s"],
        env=yeet.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    session = yeet.session_dir()
    wait_for(lambda: any(session.rglob("partial-*.chunks")), timeout=120)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert not (b / "big.img").exists(), "it waited for the whole upload"
    yeet.sync(a, b)
    assert (b / "big.img").stat().st_size == 1 << 30
    assert snapshot(a) == snapshot(b)
