"""A kill during an in-place update of a large file: never torn for long, never a
conflict (seen before: after 3 of 8 kills beta's 80 MiB file was neither version until
yeet ran again; an interrupted in-place patch became a modified/modified conflict once
alpha edited the file again).

On ext4 the update goes through a redo journal: a kill after its commit point may leave
a mix of old and new blocks until the next yeet process opens that root, which finishes
the update before anything else (the session's `diff`, another session, the agent).
Where the filesystem can clone (btrfs), the clone is patched and renamed over the
file: a reader sees the old or the new version at every instant."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from blake3 import blake3

from tests.cli_harness import Yeet

MIB = 1 << 20
SIZE = 48 * MIB
ENV = {
    "YEET_INPLACE_MIN": str(8 * MIB),
    "YEET_DELTA_MIN": str(MIB),
    "YEET_REMOTE_PYTHON": sys.executable,  # an agent with the compiled chunker: deltas
}
TRAILER = b"YEETJEND"


@pytest.fixture
def box_env(tmp_path: Path) -> dict[str, str]:
    return {"XDG_STATE_HOME": str(tmp_path / "agent-state")}  # where the agent's journals go


def _digest(path: Path) -> bytes:
    return blake3(path.read_bytes()).digest()


def _scatter(path: Path, seed: int) -> None:
    """Rewrite 12 scattered runs of 512 KiB (12% of the file): an in-place update
    whose journal holds 6 MiB to replay."""
    rnd = random.Random(seed)
    run = 512 << 10
    with open(path, "r+b") as f:
        for slot in rnd.sample(range(SIZE // run), 12):
            f.seek(slot * run)
            f.write(rnd.randbytes(run))


def _journals(state: Path, root: Path) -> Path:
    key = hashlib.blake2b(os.fsencode(os.path.realpath(root)), digest_size=12).hexdigest()
    return state / "yeet" / "inplace" / key


def _committed(jdir: Path) -> bool:
    """A journal there has its trailer: the update passed its commit point."""
    for j in jdir.glob("*.yjournal") if jdir.is_dir() else ():
        try:
            with open(j, "rb") as f:
                f.seek(-56, os.SEEK_END)
                if f.read(8) == TRAILER:
                    return True
        except OSError:
            pass
    return False


def _agents(state: Path) -> Iterator[int]:
    """Agent processes whose state lives under ``state``."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"agent" in cmd and f"XDG_STATE_HOME={state}".encode() in environ:
            yield int(pid)


def test_kill_after_the_commit_point_is_finished_by_the_next_open(
    yeet: Yeet, roots: tuple[Path, Path], roots_at: str, tmp_path: Path
) -> None:
    a, b = roots
    yeet.extra_env = {**(yeet.extra_env or {}), **ENV}
    (a / "big.bin").write_bytes(random.Random(1).randbytes(SIZE))
    yeet.sync(a, b)
    state = tmp_path / "agent-state" if roots_at != "local" else yeet.home / "state"
    jdir = _journals(state, b)
    finished = 0
    for trial in range(6):
        old = _digest(b / "big.bin")
        _scatter(a / "big.bin", trial)
        new = _digest(a / "big.bin")
        proc = yeet.start(
            "sync", "-q", str(a), str(b), "--name", "s", output=False, new_session=True
        )
        deadline = time.monotonic() + 120
        while proc.poll() is None and not _committed(jdir) and time.monotonic() < deadline:
            time.sleep(0.0005)
        for pid in list(_agents(state)):
            os.kill(pid, signal.SIGKILL)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        committed = _committed(jdir)  # killed between the commit point and the end
        # any yeet process that opens the root finishes the update first
        yeet("diff", "s", "big.bin", rc=None)
        assert _digest(b / "big.bin") == new if committed else _digest(b / "big.bin") in (old, new)
        assert not list(jdir.glob("*.yjournal"))
        finished += committed
        # alpha edits again: one-sided, so no conflict (the intent log)
        _scatter(a / "big.bin", 100 + trial)
        r = yeet.sync(a, b, rc=None)
        assert r.rc == 0 and "conflict" not in r.out, r.out + r.err
        assert _digest(b / "big.bin") == _digest(a / "big.bin")
        if finished >= 2:
            break
    assert finished, "no kill landed after the commit point: the window was not tested"


@pytest.fixture
def btrfs(tmp_path: Path) -> Iterator[Path]:
    """A btrfs loop mount (clones files: FICLONE)."""
    img, mnt = tmp_path / "btrfs.img", tmp_path / "btrfs"
    with open(img, "wb") as f:
        f.truncate(400 * MIB)
    mnt.mkdir()
    subprocess.run(["mkfs.btrfs", "-q", str(img)], check=True, capture_output=True)
    subprocess.run(["mount", "-o", "loop", str(img), str(mnt)], check=True, capture_output=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False, capture_output=True)


@pytest.mark.local_only
def test_a_cloned_update_is_never_torn(yeet: Yeet, tmp_path: Path, btrfs: Path) -> None:
    """Beta on btrfs, its state too (so the clone is staged outside the tree): a kill
    at any moment of the update leaves the old or the new version, never a mix, and
    the replaced version is in the trash."""
    a, b = tmp_path / "alpha", btrfs / "beta"
    a.mkdir()
    yeet.home = btrfs / "home"
    yeet.extra_env = ENV
    (a / "big.bin").write_bytes(random.Random(2).randbytes(SIZE))
    yeet.sync(a, b)
    rnd = random.Random(3)
    for trial in range(8):
        old = _digest(b / "big.bin")
        _scatter(a / "big.bin", 10 + trial)
        new = _digest(a / "big.bin")
        proc = yeet.start(
            "sync", "-q", str(a), str(b), "--name", "s", output=False, new_session=True
        )
        time.sleep(rnd.uniform(0.2, 2.5))
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        assert _digest(b / "big.bin") in (old, new)  # right after the kill, no recovery
        assert not list(_journals(yeet.home / "state", b).glob("*.yjournal"))
        yeet.sync(a, b)
        assert _digest(b / "big.bin") == new
    kinds = [line.split("\t") for line in yeet("trash", "s").out.splitlines()]
    assert any(k[5] == "big.bin" for k in kinds), kinds  # the old versions, kept cheaply
