"""Putting trashed content back in bulk: everything under a directory, everything
one pass removed; never over something that is there now without --force."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli_harness import Yeet, snapshot, write

MANY = 2500


def _accepted(tmp_path: Path) -> int:
    """SSH connections the test's sshd accepted so far."""
    log = tmp_path / "ssh" / "sshd-box" / "sshd.log"
    return log.read_text(errors="replace").count("Accepted publickey") if log.exists() else 0


def test_restore_everything_under_a_directory_in_one_round(
    yeet: Yeet, roots: tuple[Path, Path], tmp_path: Path, roots_at: str
) -> None:
    a, b = roots
    write(a, "keep", "k")
    for i in range(MANY):
        write(a, f"d/sub{i % 10}/f{i}", str(i))
    yeet.sync(a, b)
    subprocess.run(["rm", "-rf", str(a / "d")], check=True)
    yeet.sync(a, b, "--allow-deletions")  # (most of the tree: the deletion guard halts)
    assert not (b / "d").exists()
    trashed = [line for line in yeet("trash", "s", rc=0).lines() if line[0] == "beta"]
    assert len(trashed) == MANY

    before = _accepted(tmp_path)
    r = yeet("trash", "s", "--restore", "d/", rc=0)
    if roots_at != "local":
        # one connection per remote side (and perhaps its bulk channel), never per item
        assert _accepted(tmp_path) - before <= 4
    restored = [line for line in r.lines() if line[0] == "restored"]
    assert len(restored) == MANY and all(line[1] == "beta" for line in restored)
    assert len(list((b / "d").rglob("f*"))) == MANY
    assert (b / "d/sub3/f1233").read_text() == "1233"
    assert [line for line in yeet("trash", "s", rc=0).lines() if line[0] == "beta"] == []
    yeet.sync(a, b)  # beta "created" them again: they flow back to alpha
    assert len(list((a / "d").rglob("f*"))) == MANY


def test_restore_what_one_pass_removed(yeet: Yeet, roots: tuple[Path, Path]) -> None:
    a, b = roots
    for n in ("keep", "x", "y", "z/deep"):
        write(a, n, n)
    yeet.sync(a, b)
    (a / "x").unlink()
    yeet.sync(a, b)  # one pass removes x from beta
    (a / "y").unlink()
    (a / "z/deep").unlink()
    yeet.sync(a, b)  # the next removes y and z/deep
    listing = yeet("trash", "s", rc=0).lines()
    passes = {line[5]: int(line[6]) for line in listing}  # PASS is appended after PATH
    assert set(passes) == {"x", "y", "z/deep"}
    assert passes["y"] == passes["z/deep"] > passes["x"]
    only = yeet("trash", "s", "--pass", str(passes["x"]), rc=0).lines()
    assert [line[5] for line in only] == ["x"]

    r = yeet("trash", "s", "--pass", "last", "--restore", ".", rc=0)
    assert sorted(line[2] for line in r.lines()) == ["y", "z/deep"]
    assert snapshot(b) == {"keep": "file:keep", "y": "file:y", "z": "dir", "z/deep": "file:z/deep"}
    r = yeet("trash", "s", "--pass", str(passes["x"]), "--restore", ".", rc=0)
    assert [line[2] for line in r.lines()] == ["x"]
    assert (b / "x").read_text() == "x"
    yeet("trash", "s", "--pass", "last", "--restore", ".", rc=3)  # nothing left from it


def test_a_bulk_restore_leaves_what_is_there_now_alone_without_force(
    yeet: Yeet, roots: tuple[Path, Path]
) -> None:
    a, b = roots
    write(a, "keep", "k")
    for n in ("d/1", "d/2", "d/3"):
        write(a, n, f"old {n}")
    yeet.sync(a, b)
    subprocess.run(["rm", "-rf", str(a / "d")], check=True)
    yeet.sync(a, b)
    write(b, "d/2", "new content")  # someone wrote there since
    r = yeet("trash", "s", "--restore", "d", rc=1)
    assert sorted((line[0], line[2]) for line in r.lines()) == [
        ("problem", "d/2"),
        ("restored", "d/1"),
        ("restored", "d/3"),
    ]
    assert "--force" in r.err
    assert (b / "d/2").read_text() == "new content"
    assert (b / "d/1").read_text() == "old d/1"
    yeet("trash", "s", "--restore", "d/", "--force", rc=0)
    assert (b / "d/2").read_text() == "old d/2"
    # what --force displaced is in the trash, from a pass of its own
    (line,) = yeet("trash", "s", rc=0).lines()
    assert line[0] == "beta" and line[5] == "d/2"
    yeet("trash", "s", "--restore", "d/2", "--force", rc=0)
    assert (b / "d/2").read_text() == "new content"


@pytest.mark.local_only  # which side: decided before any restore
def test_restoring_one_path_on_both_sides_asks_which(yeet: Yeet, roots: tuple[Path, Path]) -> None:
    a, b = roots
    write(a, "keep", "k")
    write(a, "f", "one")
    yeet.sync(a, b)
    (b / "f").unlink()
    yeet.sync(a, b)  # alpha's f is trashed
    write(a, "f", "two")
    yeet.sync(a, b)
    (a / "f").unlink()
    yeet.sync(a, b)  # beta's f is trashed
    assert "--side" in yeet("trash", "s", "--restore", "f", rc=2).err
    yeet("trash", "s", "--restore", "f", "--side", "alpha", rc=0)
    assert (a / "f").read_text() == "one"


@pytest.fixture
def other_fs(tmp_path: Path) -> Iterator[Path]:
    """A directory on another filesystem than the session's state (a tmpfs; root)."""
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.mark.local_only  # the roots on a mount of their own
def test_restore_across_filesystems(yeet: Yeet, other_fs: Path) -> None:
    a, b = other_fs / "alpha", other_fs / "beta"
    write(a, "keep", "k")
    write(a, "solo", "one file")
    write(a, "d/f", "content")
    (a / "d/l").symlink_to("f")
    (a / "d/f").chmod(0o640)
    yeet.sync(a, b)
    subprocess.run(["rm", "-rf", str(a / "d"), str(a / "solo")], check=True)
    yeet.sync(a, b)
    r = yeet("trash", "s", "--restore", "solo", rc=0)
    assert (b / "solo").read_text() == "one file"
    r = yeet("trash", "s", "--restore", "d/", rc=0)
    assert sorted(line[2] for line in r.lines()) == ["d/f", "d/l"]
    assert (b / "d/f").read_text() == "content"
    assert (b / "d/f").stat().st_mode & 0o777 == 0o640
    assert (b / "d/l").readlink() == Path("f")
    assert not [p for p in (b / "d").iterdir() if p.name.startswith(".yeet")]
