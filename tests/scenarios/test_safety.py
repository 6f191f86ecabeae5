"""Never lose data on bad input: vanished roots, corrupt state, odd files, races."""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
from pathlib import Path

import pytest

from tests.cli_harness import Yeet, snapshot, write


def test_vanished_root_halts(yeet: Yeet, roots: tuple[Path, Path], tmp_path: Path) -> None:
    a, b = roots
    write(a, "x", "1")
    yeet.sync(a, b)
    b.rename(tmp_path / "unmounted")
    r = yeet.sync(a, b, rc=1)
    assert "halted" in r.out and "vanished" in r.out
    assert (a / "x").exists()
    assert yeet("status").lines()[0][0] == "halted"


def test_emptied_root_halts_until_allowed(yeet: Yeet, roots: tuple[Path, Path]) -> None:
    a, b = roots
    write(a, "x", "1")
    write(a, "d/y", "2")
    yeet.sync(a, b)
    for p in b.iterdir():
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    r = yeet.sync(a, b, rc=1)
    assert "halted" in r.out and "empty" in r.out
    assert snapshot(a) == {"x": "file:1", "d": "dir", "d/y": "file:2"}
    yeet.sync(a, b, "--allow-empty", rc=0)
    assert snapshot(a) == {}


def test_corrupt_state_is_rebuilt_without_deleting(yeet: Yeet, roots: tuple[Path, Path]) -> None:
    a, b = roots
    write(a, "keep", "1")
    write(a, "deleted-on-alpha", "2")
    yeet.sync(a, b)
    (a / "deleted-on-alpha").unlink()
    db = yeet.session_dir() / "state.db"
    for suffix in ("-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    db.write_bytes(b"this is not a database" * 100)
    r = yeet.sync(a, b, rc=0)
    assert "was damaged" in r.err
    # with no ancestor nothing can be deleted: the file comes back instead
    assert (a / "deleted-on-alpha").read_text() == "2"
    assert list(db.parent.glob("state.db.damaged-*"))


def test_missing_state_is_a_fresh_start(yeet: Yeet, roots: tuple[Path, Path]) -> None:
    a, b = roots
    write(a, "x", "1")
    yeet.sync(a, b)
    (a / "x").unlink()
    shutil.rmtree(yeet.session_dir())
    yeet.sync(a, b, rc=0)
    assert (a / "x").read_text() == "1"


def test_special_files_are_problems_not_silence(yeet: Yeet, roots: tuple[Path, Path]) -> None:
    a, b = roots
    write(a, "normal", "n")
    os.mkfifo(a / "fifo")
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(a / "sock"))
    try:
        r = yeet.sync(a, b, rc=1)
    finally:
        s.close()
    assert "problem\talpha\tfifo\tfifo" in r.out
    assert "problem\talpha\tsock\tsocket" in r.out
    assert (b / "normal").read_text() == "n"
    assert not (b / "fifo").exists()
    p = yeet("problems", "s", rc=1).lines()
    assert {row[2] for row in p} == {"fifo", "sock"}
    assert yeet("status").lines()[0][0] == "problems"


def test_special_file_blocks_deletion_of_its_directory(
    yeet: Yeet, roots: tuple[Path, Path]
) -> None:
    a, b = roots
    write(a, "d/f", "1")
    yeet.sync(a, b)
    os.mkfifo(b / "d/fifo")
    shutil.rmtree(a / "d")
    r = yeet.sync(a, b, rc=1)
    assert "conflict\td" in r.out
    assert (b / "d/f").exists() and (b / "d/fifo").exists()


def test_symlinks_leaving_the_root(yeet: Yeet, roots: tuple[Path, Path]) -> None:
    a, b = roots
    os.symlink("/etc/passwd", a / "abs")
    os.symlink("../../outside", a / "up")
    os.symlink("inside", a / "ok")
    r = yeet.sync(a, b, rc=1)
    assert "problem\talpha\tabs\tsymlink points outside the root" in r.out
    assert "problem\talpha\tup\tsymlink points outside the root" in r.out
    assert os.readlink(b / "ok") == "inside"
    assert not os.path.lexists(b / "abs")
    yeet.sync(a, b, "--symlinks", "raw", rc=0)
    assert os.readlink(b / "abs") == "/etc/passwd"


def test_writes_never_follow_a_symlinked_directory(
    yeet: Yeet, roots: tuple[Path, Path], tmp_path: Path
) -> None:
    a, b = roots
    write(a, "d/x", "1")
    yeet.sync(a, b)
    outside = tmp_path / "outside"
    outside.mkdir()
    # beta's user replaces the directory by a symlink to somewhere else
    shutil.rmtree(b / "d")
    os.symlink(outside, b / "d")
    write(a, "d/new", "must not land outside")
    yeet.sync(a, b, "--symlinks", "raw", rc=1)
    assert list(outside.iterdir()) == []


def test_ignores(yeet: Yeet, roots: tuple[Path, Path]) -> None:
    a, b = roots
    write(a, "src/main.c", "code")
    write(a, "build/main.o", "obj")
    write(a, "notes.log", "log")
    write(a, ".git/HEAD", "ref")
    yeet.sync(a, b, "--ignore", "build/", "--ignore", "*.log", "--ignore-vcs")
    assert snapshot(b) == {"src": "dir", "src/main.c": "file:code"}
    # ignored content inside a directory deleted on the other side goes to the trash
    write(b, "src/cache.log", "ignored on beta")
    shutil.rmtree(a / "src")
    yeet.sync(a, b)  # stored ignores apply
    assert not (b / "src").exists()


def test_git_directories_are_synced_by_default(yeet: Yeet, roots: tuple[Path, Path]) -> None:
    a, b = roots
    write(a, ".git/HEAD", "ref")
    yeet.sync(a, b)
    assert (b / ".git/HEAD").read_text() == "ref"


def test_busy_session_exit_code(yeet: Yeet, roots: tuple[Path, Path]) -> None:
    import fcntl

    a, b = roots
    write(a, "x", "1")
    yeet.sync(a, b)
    fd = os.open(yeet.session_dir() / "lock", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        r = yeet.sync(a, b, rc=6)
        assert "being synchronised by another" in r.err
        assert yeet("status", "s").lines()[0][0] == "pending"
    finally:
        os.close(fd)


@pytest.mark.local_only  # nested roots are a local notion
def test_usage_and_endpoint_errors(yeet: Yeet, roots: tuple[Path, Path], tmp_path: Path) -> None:
    a, b = roots
    assert yeet("sync", str(tmp_path / "missing"), str(b)).rc == 5
    assert yeet("sync", str(a), str(a)).rc == 2
    assert yeet("sync", str(a), str(a / "inside")).rc == 2
    assert yeet("status", "nosuch").rc == 4
    assert yeet("sync", "--mode", "sideways", str(a), str(b)).rc == 2
    write(tmp_path / "plainfile", "", "x")
    r = yeet("sync", str(tmp_path / "plainfile"), str(b))
    assert r.rc == 5 and "not a directory" in r.err
    write(a, "x", "1")
    yeet.sync(a, b)
    r = yeet("sync", str(a), str(tmp_path / "elsewhere"), "--name", "s")
    assert r.rc == 2 and "synchronises" in r.err


@pytest.mark.local_only  # ages the local trash index
def test_trash_expiry(yeet: Yeet, roots: tuple[Path, Path]) -> None:
    a, b = roots
    write(a, "stays", "0")
    write(a, "x", "1")
    yeet.sync(a, b)
    (a / "x").unlink()
    yeet.sync(a, b)
    assert len(yeet("trash", "s").lines()) == 1
    db = sqlite3.connect(yeet.session_dir() / "state.db")
    db.execute("UPDATE trash SET trashed = trashed - 40 * 86400")
    db.commit()
    db.close()
    yeet.sync(a, b)
    assert yeet("trash", "s").lines() == []
