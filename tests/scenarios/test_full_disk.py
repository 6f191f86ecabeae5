"""Beta's disk fills up in the middle of several large uploads (issue 18, items 5 and 14).

Each upload that no longer fits is a problem of that path, on the side whose disk
is full (beta, not the sender), saying how much the file needs and how much is
free; the other uploads and every small file still arrive, the sync ends with
one summary line and exit 1, never a traceback; nothing yeet staged is left
filling the disk; and once space is freed the next sync converges.

beta lives on a small tmpfs of its own. With local roots yeet's state is on
another filesystem, so large files are staged in beta's tree (``.yeet-tmp-``
names); behind the sshd the agent's state is on beta's disk too (a remote home
on the same disk as the root: resumable partial uploads in its staging
directory, written by the bulk channel).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.cli_harness import Yeet, tree, write

MiB = 1 << 20
LARGE = 12 * MiB
STATES = ("synced", "problems", "conflicts", "halted", "pending")


@pytest.fixture
def box_env(disk: Path) -> dict[str, str]:
    return {"XDG_STATE_HOME": str(disk / "agent-state")}


def _free(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def _staged_leftovers(disk: Path) -> list[Path]:
    return [p for p in disk.rglob("*") if p.name.startswith((".yeet-tmp-", "partial-"))]


def test_full_disk_fails_the_files_that_do_not_fit(
    yeet: Yeet, on_disk: tuple[Path, Path], disk: Path
) -> None:
    a, b = on_disk
    large = [f"big{i}.bin" for i in range(4)]
    for name in large:
        write(a, name, os.urandom(LARGE))
    for i in range(30):
        write(a, f"src/d{i % 3}/small{i}.txt", f"small file {i}\n" * (i + 1))
    # Room for two of the four large files, not for all of them.
    ballast = disk / "ballast"
    ballast.write_bytes(b"\0" * (_free(disk) - int(2.6 * LARGE)))

    r = yeet.sync(a, b, rc=None)
    assert r.rc == 1, (r.out, r.err)
    assert "Traceback" not in r.err, r.err
    lines = r.lines()
    summaries = [line for line in lines if line[0] in STATES]
    assert len(summaries) == 1 and summaries[0][0] == "problems", r.out
    problems = [line for line in lines if line[0] == "problem"]
    failed = {line[2] for line in problems}
    assert failed and failed <= set(large), r.out
    assert len(problems) == len(failed), r.out  # one line per path
    for _problem, side, _path, reason in problems:
        assert side == "beta", r.out  # where the disk is full, not the sender
        assert reason.startswith("no space left on device: the file needs 12.6 MB, "), reason
        assert reason.endswith(" free"), reason
    got, want = tree(b), tree(a)
    for rel, what in want.items():
        if rel not in failed:
            assert got.get(rel) == what, rel  # everything else arrived
    assert not (failed & set(got)), "a file that failed is in beta's tree"
    assert not _staged_leftovers(disk), "staged content left on the full disk"

    ballast.unlink()
    r = yeet.sync(a, b, rc=0)
    assert tree(b) == tree(a)
    assert not _staged_leftovers(disk)


def _upload_started(disk: Path) -> bool:
    """Has a large upload written into its staging file on ``disk``?"""
    try:
        return any(
            p.lstat().st_blocks > 0
            for p in disk.rglob("*")
            if p.name.startswith((".yeet-tmp-", "partial-")) and not p.name.endswith(".chunks")
        )
    except OSError:  # (it went away while we looked)
        return False


def test_disk_filled_by_another_program_during_the_uploads(
    yeet: Yeet, on_disk: tuple[Path, Path], disk: Path
) -> None:
    """yeet let the uploads start (they fitted); then another program fills the
    disk: the chunks in flight fail on several workers at once."""
    a, b = on_disk
    large = [f"big{i}.bin" for i in range(3)]
    for name in large:
        write(a, name, os.urandom(LARGE))
    for i in range(10):
        write(a, f"small{i}.txt", f"small file {i}\n")
    ballast = disk / "ballast"
    proc = yeet.start("sync", "-q", str(a), str(b), "--name", "s")
    try:
        deadline = time.monotonic() + 60
        while proc.poll() is None and not _upload_started(disk) and time.monotonic() < deadline:
            time.sleep(0.001)
        with open(ballast, "wb") as f:  # everything that is left, and whatever is freed
            block = b"\0" * (256 << 10)
            while proc.poll() is None:
                try:
                    f.write(block)
                    f.flush()
                except OSError:
                    time.sleep(0.001)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 1, (out, err)
    assert "Traceback" not in err, err
    lines = [line.split("\t") for line in out.splitlines() if line]
    assert len([line for line in lines if line[0] in STATES]) == 1, out
    problems = [line for line in lines if line[0] == "problem"]
    failed = {line[2] for line in problems}
    assert failed & set(large) and len(problems) == len(failed), out
    for _problem, side, _path, reason in problems:
        assert side == "beta", out
        assert reason.startswith("no space left on device"), reason
    got, want = tree(b), tree(a)
    for rel, what in want.items():
        if rel not in failed:
            assert got.get(rel) == what, rel
    assert not _staged_leftovers(disk), "staged content left on the full disk"

    ballast.unlink()
    yeet.sync(a, b, rc=0)
    assert tree(b) == tree(a)


def test_full_disk_fails_the_deltas_that_do_not_fit(
    yeet: Yeet, on_disk: tuple[Path, Path], disk: Path
) -> None:
    """Changed large files go as deltas into a staged copy next to the old file:
    those copies that no longer fit fail the same way. (Smaller files: the old
    versions of those that do fit stay in the trash, on the same disk for a remote
    beta.)"""
    a, b = on_disk
    large = [f"big{i}.bin" for i in range(3)]
    size = 8 * MiB
    for name in large:
        write(a, name, os.urandom(size))
    write(a, "notes.txt", "v1\n")
    yeet.sync(a, b, rc=0)
    for name in large:  # a few changed blocks: sent as deltas
        with open(a / name, "r+b") as f:
            for at in range(0, size, 2 * MiB):
                f.seek(at)
                f.write(os.urandom(4096))
    write(a, "notes.txt", "v2\n")
    ballast = disk / "ballast"
    ballast.write_bytes(b"\0" * (_free(disk) - int(1.5 * size)))  # room for one copy

    r = yeet.sync(a, b, rc=None)
    assert r.rc == 1 and "Traceback" not in r.err, (r.out, r.err)
    lines = r.lines()
    assert len([line for line in lines if line[0] in STATES]) == 1, r.out
    problems = [line for line in lines if line[0] == "problem"]
    failed = {line[2] for line in problems}
    assert failed and failed <= set(large) and len(problems) == len(failed), r.out
    for _problem, side, _path, reason in problems:
        assert side == "beta", r.out
        assert reason.startswith("no space left on device: the file needs 8.4 MB, "), reason
    got, want = tree(b), tree(a)
    for rel, what in want.items():
        if rel not in failed:
            assert got.get(rel) == what, rel
    assert not _staged_leftovers(disk), "staged content left on the full disk"

    ballast.unlink()
    yeet.sync(a, b, rc=0)
    assert tree(b) == tree(a)
