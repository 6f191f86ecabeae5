"""A large file modified while it was being sent: its unchanged chunks are not sent again.

The first sync is killed (-9) in the middle of a large upload, leaving a
partial upload on the receiving side; then the source file changes at one
place. The next sync takes the partial over: the chunks it holds whose bytes
still match are kept (``applied.<side>.kept`` in ``--json``), only the rest is
sent, and the result is exactly the new content.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.cli_harness import Yeet

MiB = 1 << 20


def _chunks_recorded(session: Path) -> int:
    """Chunks the partial upload(s) on beta's side hold (16-byte journal records)."""
    return sum(p.stat().st_size // 16 for p in session.rglob("partial-*.chunks"))


def test_file_changed_mid_transfer_keeps_unchanged_chunks(
    yeet: Yeet, roots: tuple[Path, Path]
) -> None:
    a, b = roots
    size = 192 * MiB
    block = os.urandom(MiB)
    with open(a / "big.img", "wb") as f:
        for i in range(size // MiB):
            f.write(i.to_bytes(8, "little") + block[8:])
    proc = subprocess.Popen(
        [sys.executable, "-m", "yeet", "sync", "-q", str(a), str(b), "--name", "s"],
        env=yeet.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while _chunks_recorded(yeet.session_dir()) < 4:
        assert proc.poll() is None, "the sync finished before it could be interrupted"
        assert time.monotonic() < deadline, "no partial upload appeared"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    held = _chunks_recorded(yeet.session_dir())
    assert not (b / "big.img").exists()

    # The source changes at its very start: the first chunk differs, the rest not.
    with open(a / "big.img", "r+b") as f:
        f.write(b"changed!")

    r = yeet("sync", "--json", str(a), str(b), "--name", "s", rc=0)
    applied = json.loads(r.out)["applied"]["beta"]
    assert (b / "big.img").read_bytes() == (a / "big.img").read_bytes()
    # Every chunk the partial held except the changed first one was kept, not sent.
    assert applied["kept"] >= (held - 1) * MiB, (held, applied)
    assert applied["kept"] < size
    assert not list(yeet.session_dir().rglob("partial-*")), "the partial was not consumed"
