"""yeet's temporary names in the tree are its own only if it recorded them (issue 18, item 7).

beta is on a filesystem of its own (``disk``), another than yeet's state: new
content is then written next to its target under a temporary name and renamed
into place. A user's files named like that (``.yeet-tmp-`` and 16 hex digits,
or even with yeet's current suffix) are ordinary files, synced both ways and
never deleted; the temporary file a kill -9 leaves behind is yeet's own, and the
next sync moves it to the trash (where ``yeet trash`` shows it), not into alpha.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.cli_harness import Yeet, tree, write

MiB = 1 << 20
USERS = ".yeet-tmp-0123456789abcdef"  # a user's file


def _ours(name: str) -> bool:
    """A temporary name yeet made (whatever its format: not the user's)."""
    return name.startswith(".yeet-tmp-") and name != USERS


def test_user_files_named_like_temp_files_are_synced(
    yeet: Yeet, on_disk: tuple[Path, Path]
) -> None:
    a, b = on_disk
    write(a, ".yeet-tmp-0123456789abcdef", "alpha's own file\n")
    write(a, "sub/.yeet-tmp-fedcba9876543210", "another\n")
    write(a, "sub/.yeet-tmp-0123456789abcdef.1", "with our suffix, but never made by us\n")
    write(a, "large.bin", os.urandom(3 * MiB))  # staged in beta's tree
    os.symlink("large.bin", a / "link")  # and so is a new symlink
    write(b, "from-beta/.yeet-tmp-00000000000000ff", "beta's own file\n")
    yeet.sync(a, b, rc=0)
    assert tree(b) == tree(a)
    assert (a / "from-beta/.yeet-tmp-00000000000000ff").read_text() == "beta's own file\n"
    assert (b / ".yeet-tmp-0123456789abcdef").read_text() == "alpha's own file\n"
    yeet.sync(a, b, rc=0)  # every scan used to delete them
    assert tree(b) == tree(a)
    assert (b / "sub/.yeet-tmp-0123456789abcdef.1").exists()
    assert "yeet-tmp" not in yeet("trash", "s", rc=0).out  # nothing of theirs was trashed


def _agents(home: Path) -> list[int]:
    """Pids of the yeet agents the sshd started (their zipapp is cached under ``home``)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"agent" in cmd and any(str(home).encode() in part for part in cmd):
            pids.append(int(proc.name))
    return pids


def _temp_with_data(b: Path) -> bool:
    try:
        for p in b.iterdir():
            if _ours(p.name) and p.lstat().st_blocks > 0:
                return True
    except OSError:
        pass
    return False


def _kill_mid_upload(yeet: Yeet, a: Path, b: Path, agent_home: Path | None) -> None:
    """Start a sync of a large file and SIGKILL yeet (and the agents behind the sshd)
    while the file is being written into beta's tree."""
    for attempt in range(5):
        write(a, f"big{attempt}.bin", os.urandom(24 * MiB))
        proc = yeet.start("sync", "-q", str(a), str(b), "--name", "s", output=False)
        deadline = time.monotonic() + 60
        while proc.poll() is None and not _temp_with_data(b) and time.monotonic() < deadline:
            time.sleep(0.001)
        if proc.poll() is None and _temp_with_data(b):
            for pid in _agents(agent_home) if agent_home is not None else []:
                os.kill(pid, signal.SIGKILL)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return
        proc.wait()
    pytest.fail("the sync always finished before it could be killed")


def test_a_killed_syncs_temp_file_goes_to_the_trash(
    yeet: Yeet, on_disk: tuple[Path, Path], tmp_path: Path, roots_at: str
) -> None:
    a, b = on_disk
    write(a, USERS, "a user's file\n")
    yeet.sync(a, b, rc=0)
    agent_home = tmp_path / "ssh" / "sshd-box" / "home" if roots_at != "local" else None
    _kill_mid_upload(yeet, a, b, agent_home)
    left = [p.name for p in b.iterdir() if _ours(p.name)]
    assert left, f"no temporary file left in beta: {sorted(p.name for p in b.iterdir())}"

    yeet.sync(a, b, rc=0)
    assert tree(b) == tree(a)  # the leftover is gone, and never reached alpha
    assert not [p for p in a.iterdir() if _ours(p.name)]
    assert (b / USERS).read_text() == "a user's file\n"
    trashed = [line.split("\t") for line in yeet("trash", "s", rc=0).out.splitlines()]
    assert {row[5] for row in trashed} >= set(left), trashed  # in the trash, not unlinked
    assert all(row[0] == "beta" for row in trashed if row[5] in left)
