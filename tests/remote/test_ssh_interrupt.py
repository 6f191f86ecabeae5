"""Ctrl-C of ``yeet sync --watch`` during a large upload over SSH exits at once,
even while edits keep arriving (on Python 3.11 ``asyncio.wait_for`` could
swallow a cancellation that landed as an event arrived: the watch went on)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.remote.conftest import tree
from tests.sshd import SshServer, SshWorld


def test_ctrl_c_during_a_large_upload_exits_at_once_and_resumes_later(
    world: SshWorld, box: SshServer, tmp_path: Path
) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    block = os.urandom(16 << 20)
    with open(a / "big.img", "wb") as f:
        for i in range(32):  # 512 MiB
            f.write(i.to_bytes(8, "little") + block[8:])
    env = world.env(YEET_REMOTE_PYTHON=sys.executable)
    cmd = [sys.executable, "-m", "yeet", "sync", "--watch", "-q", str(a), f"box:{b}"]
    proc = subprocess.Popen(
        [*cmd, "--name", "s"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 120
    while not any(box.home.rglob("partial-*")):  # the upload is under way on the remote
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the upload did not start"
        time.sleep(0.05)
    stop = threading.Event()

    def edit() -> None:  # a steady stream of change events while Ctrl-C lands
        n = 0
        while not stop.is_set():
            (a / f"note{n % 20}.txt").write_text(f"edit {n}\n")
            n += 1
            time.sleep(0.005)

    editor = threading.Thread(target=edit)
    editor.start()
    try:
        time.sleep(2.0)
        proc.send_signal(signal.SIGINT)
        start = time.monotonic()
        try:
            _out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise AssertionError("still running 30 s after Ctrl-C") from None
        took = time.monotonic() - start
    finally:
        stop.set()
        editor.join()
    assert proc.returncode == 130, err
    print(f"Ctrl-C to exit: {took:.2f} s")
    assert took < 15, f"Ctrl-C took {took:.1f} s to exit"
    r = subprocess.run(
        [sys.executable, "-m", "yeet", "sync", "-q", "--name", "s"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr
    assert tree(a) == tree(b)
