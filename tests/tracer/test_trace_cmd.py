"""``yeet trace``: live lines and coalesced ranges, on the real kernel."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from yeet.tracer.trace_cmd import run_trace

WRITER = textwrap.dedent("""
    import os, sys
    root = sys.argv[1]
    fd = os.open(os.path.join(root, "out.bin"), os.O_RDWR | os.O_CREAT, 0o644)
    os.pwrite(fd, b"x" * 100, 4096)
    os.lseek(fd, 10, 0)
    os.write(fd, b"hello")
    os.pwrite(fd, b"y" * 10, 4196)
    os.ftruncate(fd, 50000)
    os.close(fd)
    with open("/dev/null", "wb") as f:
        f.write(b"not traced")
""")


def _trace(tmp_path: Path, ranges: bool) -> tuple[str, str]:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    out, err = io.StringIO(), io.StringIO()
    started = threading.Event()
    rc: list[int] = []

    def run() -> None:
        rc.append(run_trace([str(tmp_path)], ranges, out, duration=4.0, ready=started.set, err=err))

    th = threading.Thread(target=run)
    th.start()
    assert started.wait(30)
    subprocess.run([sys.executable, "-c", WRITER, str(tmp_path)], check=True)
    th.join()
    assert rc == [0], err.getvalue()
    return out.getvalue(), err.getvalue()


def test_live_lines(tmp_path: Path) -> None:
    out, err = _trace(tmp_path, ranges=False)
    assert "tracing writes under" in err
    lines = [ln.split() for ln in out.splitlines() if "out.bin" in ln]
    # time pid command path offset length operation
    got = [(ln[3], ln[4], ln[5], ln[6]) for ln in lines]
    path = str(tmp_path / "out.bin")
    assert got == [
        (path, "4096", "100", "pwrite64"),
        (path, "10", "5", "write"),
        (path, "4196", "10", "pwrite64"),
        (path, "50000", "to-eof", "ftruncate"),  # the new length
    ], out
    assert all(ln[2] == "python3" or ln[2].startswith("python") for ln in lines)
    assert "/dev/null" not in out


def test_ranges(tmp_path: Path) -> None:
    out, _ = _trace(tmp_path, ranges=True)
    path = str(tmp_path / "out.bin")
    assert f"{path}: 1 range: 0-EOF" in out, out


def test_missing_path(tmp_path: Path) -> None:
    err = io.StringIO()
    assert run_trace([str(tmp_path / "nope")], False, io.StringIO(), err=err) == 2
    assert "no such file" in err.getvalue()
