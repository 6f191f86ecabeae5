"""A halt sticks until acknowledged, and a pass that would delete most of a side halts.

Seen before: after "beta root is empty -> halted", one new file on beta made the next
sync delete all 20 of alpha's files; ``rm -rf alpha/*`` with a dotfile left propagated
60 deletions with exit 0."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from tests.cli_harness import Yeet, snapshot, write


def populate(root: Path, n: int) -> None:
    for i in range(n):
        write(root, f"d{i % 4}/f{i}.txt", f"content {i}")


def empty(root: Path) -> None:
    for p in root.iterdir():
        shutil.rmtree(p) if p.is_dir() else p.unlink()


def test_emptied_root_stays_halted_whatever_appears(yeet: Yeet, roots: tuple[Path, Path]) -> None:
    a, b = roots
    populate(a, 20)
    yeet.sync(a, b)
    before = snapshot(a)
    empty(b)
    r = yeet.sync(a, b, rc=1)
    assert "halted" in r.out and "--allow-empty" in r.err
    write(b, "new-on-beta.txt", "hello")  # the root is no longer empty
    r = yeet.sync(a, b, rc=1)
    assert "halted" in r.out and "empty" in r.out
    assert snapshot(a) == before  # nothing of alpha's was deleted
    assert yeet("status", "s").lines()[0][0] == "halted"
    yeet.sync(a, b, "--allow-empty", rc=0)
    assert snapshot(a) == snapshot(b) == {"new-on-beta.txt": "file:hello"}
    # acknowledged once: the next sync is an ordinary one again
    write(a, "later", "l")
    yeet.sync(a, b, rc=0)
    assert (b / "later").exists()


def test_mass_deletion_with_a_dotfile_left_halts(yeet: Yeet, roots: tuple[Path, Path]) -> None:
    a, b = roots
    populate(a, 60)
    write(a, ".gitignore", "*.o\n")
    yeet.sync(a, b)
    for p in a.iterdir():  # rm -rf alpha/*
        if p.name != ".gitignore":
            shutil.rmtree(p)
    write(a, "new.txt", "created meanwhile")
    r = yeet.sync(a, b, rc=1)
    assert "halted" in r.out and "60" in r.out and "--allow-deletions" in r.err
    assert len([p for p in b.rglob("*.txt")]) == 61  # nothing deleted; the creation arrived
    r = yeet.sync(a, b, rc=1)  # it sticks
    assert "halted" in r.out
    yeet.sync(a, b, "--allow-deletions", rc=0)
    assert snapshot(b) == snapshot(a)
    assert len(yeet("trash", "s").lines()) == 60  # all of it recoverable


def test_resume_acknowledges_once(yeet: Yeet, roots: tuple[Path, Path]) -> None:
    a, b = roots
    populate(a, 30)
    yeet.sync(a, b)
    shutil.rmtree(a / "d0")
    shutil.rmtree(a / "d1")
    shutil.rmtree(a / "d2")
    yeet.sync(a, b, rc=1)
    assert yeet("resume", "s", rc=0).out.startswith("resumed\ts")
    yeet.sync(a, b, rc=0)
    assert snapshot(b) == snapshot(a)
    assert yeet("resume", "s", rc=0).out.startswith("not halted")


def test_max_delete_limit(yeet: Yeet, roots: tuple[Path, Path]) -> None:
    a, b = roots
    populate(a, 40)
    yeet.sync(a, b, "--max-delete", "5")
    for i in range(6):
        (a / f"d{i % 4}/f{i}.txt").unlink()
    r = yeet.sync(a, b, rc=1)
    assert "would delete 6 of 40 files on beta" in r.out
    yeet("resume", "s", rc=0)
    yeet.sync(a, b, "--max-delete", "none", rc=0)
    shutil.rmtree(a / "d0")
    shutil.rmtree(a / "d1")
    yeet.sync(a, b, rc=0)  # no limit now (stored)
    assert snapshot(b) == snapshot(a)
    assert yeet.sync(a, b, "--max-delete", "-3", rc=2).rc == 2
    assert yeet.sync(a, b, "--max-delete", "150%", rc=2).rc == 2


def test_vanished_root_stays_halted_until_resumed(
    yeet: Yeet, roots: tuple[Path, Path], tmp_path: Path
) -> None:
    a, b = roots
    populate(a, 12)
    yeet.sync(a, b)
    b.rename(tmp_path / "unmounted")
    yeet.sync(a, b, rc=1)
    (tmp_path / "unmounted").rename(b)
    write(b, "d0/f0.txt", "edited while away")
    r = yeet.sync(a, b, rc=1)  # back, but still halted until acknowledged
    assert "vanished" in r.out and "yeet resume s" in r.err
    yeet("resume", "s", rc=0)
    yeet.sync(a, b, rc=0)
    assert (a / "d0/f0.txt").read_text() == "edited while away"


def test_watch_halts_on_a_mass_deletion(yeet: Yeet, roots: tuple[Path, Path]) -> None:
    a, b = roots
    populate(a, 40)
    yeet.sync(a, b)
    proc = yeet.start("sync", "--watch", "-q", str(a), str(b), "--name", "s")
    try:
        deadline = time.monotonic() + 60
        while yeet("status", "s").lines()[0][0] != "synced":
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.1)
        for d in ("d0", "d1", "d2"):
            shutil.rmtree(a / d)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, err
    assert "halted" in out
    assert len(list(b.rglob("*.txt"))) == 40


def test_moving_most_files_is_no_mass_deletion(yeet: Yeet, roots: tuple[Path, Path]) -> None:
    """A rename of the directory holding nearly everything (``git mv src lib``) deletes
    nothing: the content arrives at its new names, so the guard lets it go."""
    a, b = roots
    for i in range(40):
        write(a, f"src/m{i % 5}/f{i}.py", f"module {i}")
    write(a, "README", "r")
    yeet.sync(a, b)
    (a / "src").rename(a / "lib")
    yeet.sync(a, b, rc=0)
    assert snapshot(b) == snapshot(a)
