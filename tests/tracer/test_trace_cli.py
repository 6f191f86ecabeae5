"""``yeet trace`` through the real CLI: a write by a child process shows up, live."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="yeet trace needs root")


def _start(*args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "yeet", "trace", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stderr is not None
    line = proc.stderr.readline()  # "yeet trace: tracing ... under ..." once attached
    assert "tracing" in line, line + proc.stderr.read()
    return proc


def test_live_line_for_a_grandchild_write(tmp_path: Path) -> None:
    proc = _start("--duration", "20", str(tmp_path))
    try:
        # a shell (child) whose dd (grandchild) writes 1000 bytes at offset 3000
        subprocess.run(
            ["sh", "-c", f"dd if=/dev/zero of={tmp_path}/out bs=1000 count=1 seek=3 "
             "conv=notrunc status=none"],
            check=True,
        )  # fmt: skip
        assert proc.stdout is not None
        deadline = time.monotonic() + 15
        line = ""
        while time.monotonic() < deadline:  # live: before the tracer stops
            line = proc.stdout.readline()
            if f"{tmp_path}/out" in line:
                break
        fields = line.split()
        # time pid command path offset length operation
        assert fields[2] == "dd" and fields[3] == f"{tmp_path}/out", line
        assert fields[4:6] == ["3000", "1000"], line
        assert int(fields[1]) > 0
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert proc.returncode == 0


def test_ranges_per_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"\0" * 100_000)
    proc = _start("--ranges", str(tmp_path))
    subprocess.run(
        [sys.executable, "-c",
         f"import os; fd = os.open('{tmp_path}/f', os.O_WRONLY); "
         "os.pwrite(fd, b'x' * 10, 500); os.pwrite(fd, b'y' * 10, 510); "
         "os.pwrite(fd, b'z' * 5, 90000)"],
        check=True,
    )  # fmt: skip
    proc.terminate()  # like Ctrl-C: print what was collected, exit 0
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert f"{tmp_path}/f: 2 ranges (25 bytes): 500-520, 90000-90005" in out, out


def test_not_root_says_why(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-c",
         "import os, sys; from yeet.cli.main import main; import yeet.tracer.trace_cmd; "
         "os.setgroups([]); os.setgid(65534); os.setuid(65534); "
         "sys.argv = ['yeet', 'trace', '--duration', '1', '/tmp']; main()"],
        capture_output=True, text=True, cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    assert r.returncode == 8, r
    assert "root" in r.stderr
