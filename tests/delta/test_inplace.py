"""The in-place journal path: results, aborts, and recovery from each phase."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from blake3 import blake3

from yeet.delta import DeltaOp, changed_ranges, delta, signature
from yeet.replica.write import inplace
from yeet.replica.write.clone import apply_reflinked, reflink_supported
from yeet.replica.write.inplace import (
    InplaceAborted,
    apply_inplace,
    recover,
    should_apply_inplace,
)

MiB = 1 << 20


def digest(b: bytes) -> bytes:
    return blake3(b).digest()


def edits(base: bytes, kind: str, rnd: random.Random) -> bytes:
    new = bytearray(base)
    if kind in ("blocks", "blocks+append", "blocks+truncate"):
        for _ in range(16):
            p = rnd.randrange(0, len(base) // 4096) * 4096
            new[p : p + 4096] = rnd.randbytes(4096)
    if kind.endswith("append"):
        new += rnd.randbytes(300_000)
    if kind.endswith("truncate"):
        del new[len(new) - 500_000 :]
    if kind == "insert":
        p = len(new) // 2
        new[p:p] = rnd.randbytes(100_000)
    if kind == "delete":
        del new[1000:51000]
    return bytes(new)


def setup(tmp_path: Path, kind: str, seed: int = 0) -> tuple[str, str, bytes, bytes, list[DeltaOp]]:
    rnd = random.Random(seed)
    base = rnd.randbytes(4 * MiB)
    new = edits(base, kind, rnd)
    path = tmp_path / "file"
    path.write_bytes(base)
    jdir = tmp_path / "journal"
    jdir.mkdir(exist_ok=True)
    return str(path), str(jdir), base, new, list(delta(new, signature(base, len(base))))


@pytest.mark.parametrize(
    "kind", ["blocks", "blocks+append", "blocks+truncate", "insert", "delete", "same"]
)
def test_apply(tmp_path: Path, kind: str) -> None:
    path, jdir, base, new, ops = setup(tmp_path, kind)
    ino = os.stat(path).st_ino
    stats = apply_inplace(path, ops, len(new), digest(new), jdir)
    assert Path(path).read_bytes() == new
    assert os.stat(path).st_ino == ino  # really in place
    assert os.listdir(jdir) == []
    assert stats.phases == ["journaled", "committed", "applied", "done"]
    if kind.startswith("blocks"):
        assert stats.journal_bytes <= 16 * 4096  # narrowed to the changed bytes
        assert stats.appended_bytes == max(0, len(new) - len(base))
        # unchanged ranges are read once (for the digest), changed ones twice at most
        assert stats.read_bytes <= len(base) + 16 * 4096 * 4


def test_abort_on_wrong_digest(tmp_path: Path) -> None:
    path, jdir, base, new, ops = setup(tmp_path, "blocks+append")
    with pytest.raises(InplaceAborted):
        apply_inplace(path, ops, len(new), digest(b"something else"), jdir)
    assert Path(path).read_bytes() == base
    assert os.listdir(jdir) == []
    with pytest.raises(InplaceAborted):
        apply_inplace(path, ops, len(new) + 1, digest(new), jdir)
    assert Path(path).read_bytes() == base


def test_abort_on_journal_budget(tmp_path: Path) -> None:
    path, jdir, base, new, ops = setup(tmp_path, "insert")
    with pytest.raises(InplaceAborted):
        apply_inplace(path, ops, len(new), digest(new), jdir, max_journal=64 << 10)
    assert Path(path).read_bytes() == base


def test_should_apply_inplace() -> None:
    big = 1 << 30
    assert should_apply_inplace(big, big, [(5, 4096)] * 16)
    assert should_apply_inplace(big, big + (64 << 20), [(big, 64 << 20)])
    assert not should_apply_inplace(big, big + MiB, [(big // 2, big // 2 + MiB)])
    assert not should_apply_inplace(MiB, MiB, [(0, 1)])


class Crash(BaseException):
    pass


@pytest.mark.parametrize("at", ["journaled", "committed", "applied"])
@pytest.mark.parametrize("kind", ["blocks+append", "blocks+truncate"])
def test_recover_after_each_phase(tmp_path: Path, at: str, kind: str) -> None:
    path, jdir, base, new, ops = setup(tmp_path, kind)

    def crash(phase: str) -> None:
        if phase == at:
            raise Crash

    with pytest.raises(Crash):
        apply_inplace(path, ops, len(new), digest(new), jdir, on_phase=crash)
    assert len(os.listdir(jdir)) == 1
    with pytest.raises(InplaceAborted):  # refuses to start over a pending journal
        apply_inplace(path, ops, len(new), digest(new), jdir)
    [rec] = recover(jdir)
    assert os.listdir(jdir) == []
    content = Path(path).read_bytes()
    if at == "journaled":  # not committed yet: rolled back
        assert rec.action == "rolled-back" and content == base
    else:
        assert rec.action == "rolled-forward" and rec.digest_ok and content == new
    assert recover(jdir) == []


def test_recover_torn_journal_and_replaced_file(tmp_path: Path) -> None:
    path, jdir, base, new, ops = setup(tmp_path, "blocks+append")

    def crash(phase: str) -> None:
        if phase == "committed":
            raise Crash

    with pytest.raises(Crash):
        apply_inplace(path, ops, len(new), digest(new), jdir, on_phase=crash)
    [j] = os.listdir(jdir)
    jpath = os.path.join(jdir, j)
    # a torn trailer (crash while committing) means "not committed"
    with open(jpath, "r+b") as f:
        f.truncate(os.path.getsize(jpath) - 1)
    # the appended tail was written before commit; rollback removes it
    [rec] = recover(jdir)
    assert rec.action == "rolled-back"
    assert Path(path).read_bytes() == base
    # a journal for a file that was since replaced is dropped, not replayed
    with pytest.raises(Crash):
        apply_inplace(path, ops, len(new), digest(new), jdir, on_phase=crash)
    os.rename(path, path + ".old")
    Path(path).write_bytes(b"replaced")
    [rec] = recover(jdir)
    assert rec.action == "dropped"
    assert Path(path).read_bytes() == b"replaced"
    # garbage in the journal directory (crash while writing the header)
    Path(jdir, "x" + inplace.SUFFIX).write_bytes(b"YEETJN")
    assert [r.action for r in recover(jdir)] == ["dropped"]


def test_changed_ranges_drive_the_decision(tmp_path: Path) -> None:
    _path, _jdir, base, new, ops = setup(tmp_path, "blocks")
    assert should_apply_inplace(len(base), len(new), changed_ranges(ops), min_size=MiB)


@pytest.fixture
def reflink_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory that supports FICLONE: a small btrfs loop mount (root + btrfs-progs)."""
    if reflink_supported(str(tmp_path)):
        yield tmp_path
        return
    if os.geteuid() != 0 or not shutil.which("mkfs.btrfs"):
        pytest.skip("no reflink-capable filesystem (need root and mkfs.btrfs)")
    img, mnt = tmp_path / "btrfs.img", tmp_path / "mnt"
    with open(img, "wb") as f:
        f.truncate(160 << 20)
    mnt.mkdir()
    try:
        subprocess.run(["mkfs.btrfs", "-q", str(img)], check=True, capture_output=True)
        subprocess.run(["mount", "-o", "loop", str(img), str(mnt)], check=True, capture_output=True)
    except (subprocess.CalledProcessError, OSError) as err:
        pytest.skip(f"cannot mount a btrfs loop image: {err}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False, capture_output=True)


@pytest.mark.parametrize("kind", ["blocks", "blocks+append", "blocks+truncate", "insert"])
def test_reflinked(reflink_dir: Path, kind: str) -> None:
    path, _jdir, base, new, ops = setup(reflink_dir, kind)
    os.chmod(path, 0o640)
    stats = apply_reflinked(path, ops, len(new), digest(new), path + ".stage")
    assert Path(path).read_bytes() == new
    assert os.stat(path).st_mode & 0o777 == 0o640
    assert not os.path.exists(path + ".stage")
    if kind == "blocks":
        assert stats.inplace_bytes <= 16 * 4096
    # a wrong digest leaves the file alone and no stage behind
    before = Path(path).read_bytes()
    ops2 = list(delta(base, signature(before, len(before))))
    with pytest.raises(InplaceAborted):
        apply_reflinked(path, ops2, len(base), digest(b"nope"), path + ".stage")
    assert Path(path).read_bytes() == before
    assert not os.path.exists(path + ".stage")


def test_reflink_unsupported_is_an_abort(tmp_path: Path) -> None:
    path, _jdir, base, new, ops = setup(tmp_path, "blocks")
    if reflink_supported(str(tmp_path)):
        pytest.skip("this filesystem can clone")
    with pytest.raises(InplaceAborted):
        apply_reflinked(path, ops, len(new), digest(new), path + ".stage")
    assert Path(path).read_bytes() == base
    assert not os.path.exists(path + ".stage")


def test_recover_leaves_a_journal_in_use_alone(tmp_path: Path) -> None:
    """Journals are per root, shared by every session: a second yeet opening the root
    while the first is mid-update must not roll that update back or forward."""
    import threading

    path, jdir, _base, new, ops = setup(tmp_path, "blocks")
    phases: list[str] = []
    started, release = threading.Event(), threading.Event()

    def on_phase(name: str) -> None:
        phases.append(name)
        if name == "journaled":  # before its commit point, journal written and locked
            started.set()
            release.wait(10)

    worker = threading.Thread(
        target=apply_inplace,
        args=(path, ops, len(new), digest(new), jdir),
        kwargs={"on_phase": on_phase},
    )
    worker.start()
    assert started.wait(10)
    assert recover(jdir) == []  # locked: another process's update in progress
    assert len(os.listdir(jdir)) == 1
    release.set()
    worker.join(10)
    assert Path(path).read_bytes() == new and os.listdir(jdir) == []
    assert phases == ["journaled", "committed", "applied", "done"]
