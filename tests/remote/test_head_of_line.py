"""A huge file in flight never holds back small edits (over a real sshd).

Start a 4 GiB transfer with ``yeet sync --watch``, then edit 100 small files:
all 100 must arrive on the remote side before the big file does.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.sshd import SshServer, SshWorld

GiB = 1 << 30
BLOCK = 64 << 20


def _big_file(path: Path, size: int) -> None:
    """Incompressible (zstd's window is far smaller than the block that repeats)."""
    block = os.urandom(BLOCK)
    with open(path, "wb") as f:
        for i in range(size // BLOCK):
            f.write(i.to_bytes(8, "little") + block[8:])


def test_small_edits_overtake_a_4_gib_transfer(
    world: SshWorld, box: SshServer, tmp_path: Path
) -> None:
    a = tmp_path / "alpha"
    a.mkdir()
    _big_file(a / "huge.img", 4 * GiB)
    remote = world.root / "remote-beta"  # on this machine, reached through box's sshd
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "yeet",
            "sync",
            "--watch",
            "-q",
            str(a),
            f"box:{remote}",
            "--name",
            "hol",
        ],
        env=world.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=world.root,
    )
    try:
        # wait until the big file is on its way (its partial upload grows remotely)
        deadline = time.monotonic() + 120
        while _sent(world, "huge.img") < 64 << 20:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the big transfer never started"
            time.sleep(0.1)
        edited = time.monotonic()
        for i in range(100):
            (a / "edits").mkdir(exist_ok=True)
            (a / "edits" / f"e{i}.txt").write_text(f"edit {i}\n")
        while not all((remote / "edits" / f"e{i}.txt").exists() for i in range(100)):
            assert not (remote / "huge.img").exists(), "the big file arrived before the edits"
            assert time.monotonic() - edited < 60, "the edits did not arrive"
            time.sleep(0.05)
        arrived = time.monotonic() - edited
        big_done = (remote / "huge.img").exists()
        print(f"100 edits arrived {arrived:.2f} s after they were made; big file done: {big_done}")
        assert not big_done
        for i in range(100):
            assert (remote / "edits" / f"e{i}.txt").read_text() == f"edit {i}\n"
        deadline = time.monotonic() + 600
        while not (remote / "huge.img").exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.5)
        assert (remote / "huge.img").stat().st_size == 4 * GiB
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)


def _sent(world: SshWorld, path: str) -> int:
    """Bytes of ``path`` already sent, from the live progress ``yeet status`` shows."""
    r = subprocess.run(
        [sys.executable, "-m", "yeet", "status", "hol", "--json"],
        env=world.env(),
        capture_output=True,
        text=True,
        cwd=world.root,
    )
    if not r.stdout.strip():
        return 0
    progress = json.loads(r.stdout)[0].get("progress") or {}
    return sum(sent for p, sent, _size in progress.get("uploads", []) if p == path)
