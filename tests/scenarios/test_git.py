"""A git checkout synced while branches are switched and commits are made."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.cli_harness import Yeet, write


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def test_git_checkout_survives_branch_switches_and_commits(
    yeet: Yeet, roots: tuple[Path, Path]
) -> None:
    a, b = roots
    git(a, "init", "-q", "-b", "main")
    for i in range(30):
        write(a, f"src/mod{i}.py", f"# module {i}\n" * (i + 1))
    git(a, "add", "-A")
    git(a, "commit", "-qm", "initial")
    yeet.sync(a, b)
    git(a, "checkout", "-qb", "feature")
    write(a, "src/mod3.py", "changed on feature\n")
    (a / "src/mod4.py").unlink()
    write(a, "src/new.py", "new\n")
    git(a, "add", "-A")
    git(a, "commit", "-qm", "feature work")
    yeet.sync(a, b)
    git(a, "checkout", "-q", "main")
    git(a, "merge", "-q", "--no-ff", "-m", "merge", "feature")
    git(a, "gc", "-q")
    write(a, "src/uncommitted.py", "wip\n")
    yeet.sync(a, b)
    # beta is a working checkout: same HEAD, clean apart from the same WIP, fsck OK
    assert git(b, "rev-parse", "HEAD") == git(a, "rev-parse", "HEAD")
    assert (
        git(b, "status", "--porcelain")
        == git(a, "status", "--porcelain")
        == "?? src/uncommitted.py\n"
    )
    git(b, "fsck", "--full", "--strict")
    # and work done on beta flows back
    write(b, "src/from-beta.py", "b\n")
    git(b, "add", "-A")
    git(b, "commit", "-qm", "from beta")
    yeet.sync(a, b)
    assert git(a, "log", "-1", "--format=%s").strip() == "from beta"
    git(a, "fsck", "--full", "--strict")
    assert git(a, "status", "--porcelain") == ""
