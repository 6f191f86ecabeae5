"""A large file rewritten while its chunks are in flight (issue 18, item 5).

Several large files and many small ones are being sent when one large file starts
being rewritten: its chunks fail one after the other, on several workers at once
(whole uploads, and deltas of a file beta already holds). That file is a problem
of the side it is read from (alpha), everything else arrives, the sync ends with
one summary line and exit 1, never a traceback; once the file is quiet the next
sync converges.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

from tests.cli_harness import Yeet, tree, write

MiB = 1 << 20
BIG = 40 * MiB  # the file being rewritten
OTHER = 12 * MiB
STATES = ("synced", "problems", "conflicts", "halted", "pending")


def _uploading(tmp_path: Path, size: int) -> bool:
    """Has an upload to beta of a file of ``size`` bytes delivered a first chunk (a
    partial upload with a chunk recorded, or a staged delta with bytes in it)?"""
    stages = [
        *tmp_path.glob("home/state/yeet/sessions/s/beta/stage"),  # local beta
        *tmp_path.glob("ssh/*/home/.local/state/yeet/agent/s-beta-*/stage"),  # the agent's
    ]
    for stage in stages:
        try:
            for p in stage.glob(f"partial-*-{size}*"):
                st = p.stat()
                if st.st_size > 0 if p.name.endswith(".chunks") else st.st_blocks > 0:
                    return True
        except OSError:  # (it went away while we looked)
            pass
    return False


def _sync_while_rewriting(
    yeet: Yeet, a: Path, b: Path, tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    """``yeet sync``; once the upload of ``big.bin`` is under way, ``big.bin`` is
    rewritten in place (a few bytes every few ms) until the sync ends."""
    proc = yeet.start("sync", "-q", str(a), str(b), "--name", "s")
    started = threading.Event()

    def rewrite() -> None:
        deadline = time.monotonic() + 60
        while proc.poll() is None and not _uploading(tmp_path, BIG) and time.monotonic() < deadline:
            time.sleep(0.002)
        started.set()
        n = 0
        with open(a / "big.bin", "r+b") as f:
            while proc.poll() is None:
                f.seek((n * 7919 * 4096) % BIG)
                f.write(os.urandom(512))
                f.flush()
                n += 1
                time.sleep(0.003)

    writer = threading.Thread(target=rewrite)
    writer.start()
    try:
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
        writer.join()
    assert started.is_set()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _check_failed_run(r: subprocess.CompletedProcess[str], a: Path, b: Path) -> None:
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    lines = [line.split("\t") for line in r.stdout.splitlines() if line]
    summaries = [line for line in lines if line[0] in STATES]
    assert len(summaries) == 1 and summaries[0][0] == "problems", r.stdout
    problems = [line for line in lines if line[0] == "problem"]
    assert [(p[1], p[2]) for p in problems] == [("alpha", "big.bin")], r.stdout
    assert "modified since the scan" in problems[0][3], r.stdout
    want, got = tree(a), tree(b)
    for rel, what in want.items():
        if rel != "big.bin":
            assert got.get(rel) == what, rel


def _fill(a: Path) -> None:
    write(a, "big.bin", os.urandom(BIG))
    for i in range(3):
        write(a, f"other{i}.bin", os.urandom(OTHER))
    for i in range(40):
        write(a, f"src/d{i % 4}/f{i}.txt", f"file {i}\n" * (i + 1))


def test_large_file_rewritten_while_uploading(
    yeet: Yeet, roots: tuple[Path, Path], tmp_path: Path
) -> None:
    a, b = roots
    _fill(a)
    _check_failed_run(_sync_while_rewriting(yeet, a, b, tmp_path), a, b)
    assert not (b / "big.bin").exists()
    yeet.sync(a, b, rc=0)  # quiet now
    assert tree(b) == tree(a)


def test_large_file_rewritten_while_its_delta_is_sent(
    yeet: Yeet, roots: tuple[Path, Path], tmp_path: Path
) -> None:
    a, b = roots
    _fill(a)
    yeet.sync(a, b, rc=0)
    old_big = (b / "big.bin").read_bytes()
    for name in ("big.bin", "other0.bin", "other1.bin"):  # changed: sent as deltas
        with open(a / name, "r+b") as f:
            for at in range(0, (a / name).stat().st_size, 3 * MiB):
                f.seek(at)
                f.write(os.urandom(64 << 10))
    write(a, "src/new.txt", "new\n")
    _check_failed_run(_sync_while_rewriting(yeet, a, b, tmp_path), a, b)
    assert (b / "big.bin").read_bytes() == old_big  # the old version, whole
    yeet.sync(a, b, rc=0)
    assert tree(b) == tree(a)
