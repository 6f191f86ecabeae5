"""The per-root inode index and handle lookups the journal places written files with."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from yeet.tracer.inodes import InodeIndex
from yeet.tracer.paths import HandleResolver, generation, superblock_dev

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="open_by_handle_at needs root")


def _id(p: Path) -> tuple[int, int]:
    return superblock_dev(str(p)), p.stat().st_ino


def test_the_index_holds_every_file_below_the_root_and_nothing_else(tmp_path: Path) -> None:
    root, elsewhere = tmp_path / "root", tmp_path / "elsewhere"
    (root / "a" / "b").mkdir(parents=True)
    elsewhere.mkdir()
    inside = [root / "top", root / "a" / "x", root / "a" / "b" / "y"]
    for p in inside:
        p.write_text("x")
    other = elsewhere / "z"
    other.write_text("z")
    idx = InodeIndex([str(root)])
    idx.build()
    assert not idx.problem and idx.files == 3
    assert all(idx.may_hold(*_id(p)) for p in inside)
    assert not idx.may_hold(*_id(other))

    # names bound later: a file linked in, a tree moved in
    os.link(other, root / "linked")
    idx.add_path(str(root / "linked"))
    assert idx.may_hold(*_id(other))
    (elsewhere / "t" / "u").mkdir(parents=True)
    deep = elsewhere / "t" / "u" / "w"
    deep.write_text("w")
    os.rename(elsewhere / "t", root / "t")
    dirs = idx.add_tree(str(root / "t"))
    assert dirs == [str(root / "t"), str(root / "t" / "u")]
    assert idx.may_hold(*_id(root / "t" / "u" / "w"))


def test_paths_longer_than_path_max_are_walked(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(25):  # 25 * 201 bytes: deeper than PATH_MAX
            os.mkdir("d" * 200, dir_fd=fd)
            nfd = os.open("d" * 200, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nfd
        os.close(os.open("deepest", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=fd))
        ino = os.stat("deepest", dir_fd=fd).st_ino
    finally:
        os.close(fd)
    idx = InodeIndex([str(root)])
    idx.build()
    assert not idx.problem
    assert idx.may_hold(superblock_dev(str(root)), ino)
    subprocess.run(["rm", "-rf", str(root)], check=True)


def test_a_walk_that_fails_holds_everything(tmp_path: Path) -> None:
    idx = InodeIndex([str(tmp_path / "missing")])
    idx.build()
    assert idx.problem and idx.may_hold(1, 2)


def test_handles_name_the_inode_of_their_generation_only(tmp_path: Path) -> None:
    f = tmp_path / "one" / "f"
    f.parent.mkdir()
    f.write_bytes(b"x")
    st = f.stat()
    gen = generation(str(f))
    assert gen is not None
    r = HandleResolver()
    assert r.learn(str(f.parent), st.st_dev)
    found = r.lookup(st.st_dev, st.st_ino, gen)
    assert found.path == str(f) and found.known and found.nlink == 1
    os.link(f, tmp_path / "other-name")
    assert r.lookup(st.st_dev, st.st_ino, gen).nlink == 2
    stale = r.lookup(st.st_dev, st.st_ino, gen ^ 1)  # another incarnation of the number
    assert stale.path is None and stale.known


def test_a_filesystem_back_under_the_same_device_number_is_resolved(tmp_path: Path) -> None:
    """Mounted again elsewhere: handles are resolved through an anchor still on it."""
    img = tmp_path / "fs.img"
    with open(img, "wb") as fh:
        fh.truncate(64 << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(img)], check=True)
    dev = subprocess.run(
        ["losetup", "--find", "--show", str(img)], check=True, capture_output=True, text=True
    ).stdout.strip()
    r = HandleResolver()
    try:
        for i in range(2):
            point = tmp_path / f"mnt{i}"
            point.mkdir()
            subprocess.run(["mount", dev, str(point)], check=True)
            try:
                f = point / f"f{i}"
                f.write_text("x")
                st = f.stat()
                assert r.learn(str(point), st.st_dev)
                gen = generation(str(f))
                assert gen is not None
                assert r.lookup(st.st_dev, st.st_ino, gen).path == str(f)
            finally:
                subprocess.run(["umount", str(point)], check=True)
    finally:
        subprocess.run(["losetup", "-d", dev], check=True)
