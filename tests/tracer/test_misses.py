"""Writes the change journal once missed (issue 15): each one through the real CLI,
real BPF, fanotify and the real kernel paths (hard links, ``open_by_handle_at``,
overlayfs, loop devices, process accounting, inode reuse, deep paths).

Every test syncs, changes alpha in the way that was missed, syncs again and
requires beta to equal alpha - whether the journal vouched for the interval (then
it must have named the change) or said "incomplete" (then the sync scanned).
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from synced import journalled, same, sync

from tests.cli_harness import Yeet, write

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the change journal needs root")


def test_hard_link_written_through_a_name_outside_every_root(tmp_path: Path, y: Yeet) -> None:
    a, b, outside = tmp_path / "alpha", tmp_path / "beta", tmp_path / "outside"
    write(a, "f", b"0" * 10_000)
    outside.mkdir()
    os.link(a / "f", outside / "other-name")
    journalled(y, a, b)
    with open(outside / "other-name", "r+b") as f:
        f.seek(5000)
        f.write(b"changed through the other name")
    sync(y, a, b)
    same(a, b)


# ---- inode numbers reused ---------------------------------------------------------------


def test_inode_number_reused_by_a_file_renamed_in(
    tmp_path: Path, y: Yeet, private_ext4: Path
) -> None:
    """A large file (its block digests cached) written and deleted; a file made
    outside gets its inode number and is renamed onto the old name. (On a
    filesystem of its own: nobody else takes the freed number first.)"""
    a, b, outside = private_ext4 / "alpha", tmp_path / "beta", private_ext4 / "outside"
    outside.mkdir()
    big = write(a, "big.bin", os.urandom(9 << 20))
    journalled(y, a, b)
    with open(big, "r+b") as f:
        f.seek(1 << 20)
        f.write(b"x" * 4096)
    time.sleep(0.5)  # the service has placed the write (under the old inode's name)
    ino = big.stat().st_ino
    big.unlink()
    made = []
    for i in range(20000):
        p = outside / f"n{i}"
        p.write_bytes(b"")
        made.append(p)
        if p.stat().st_ino == ino:
            break
    else:
        raise AssertionError("the inode number was not reused")
    reused = made.pop()
    for p in made:
        p.unlink()
    reused.write_bytes(os.urandom(9 << 20))
    os.rename(reused, big)
    sync(y, a, b)
    same(a, b)
    sync(y, a, b)  # and again: nothing wrong was cached
    same(a, b)


# ---- a path longer than PATH_MAX elsewhere on the filesystem ----------------------------


def _deep_dir(base: Path) -> int:
    """A descriptor of a directory whose path is longer than PATH_MAX (made by
    walking down with descriptors: no path that long is ever spelt)."""
    fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY)
    name = "d" * 200
    for _ in range(25):  # 25 * 201 > 4096
        os.mkdir(name, dir_fd=fd)
        nfd = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = nfd
    return fd


def test_a_path_longer_than_path_max_elsewhere(tmp_path: Path, y: Yeet) -> None:
    """Name events in a directory too deep to spell, mixed with changes in the root:
    the deep ones belong to no root, and the root's must all be answered."""
    a, b, elsewhere = tmp_path / "alpha", tmp_path / "beta", tmp_path / "elsewhere"
    for i in range(50):
        write(a, f"d{i}/f", "0")
    elsewhere.mkdir()
    journalled(y, a, b)
    deep = _deep_dir(elsewhere)
    try:
        for i in range(50):  # each a name change only, in a directory of its own
            os.close(os.open(f"x{i}", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=deep))
            os.rename(a / f"d{i}" / "f", a / f"d{i}" / "renamed")
        time.sleep(0.5)  # the service reads the events as they come
        sync(y, a, b)
        same(a, b)
    finally:
        os.close(deep)
        subprocess.run(["rm", "-rf", str(elsewhere)], check=False)


# ---- the scan path: hard links truncated to 0 -------------------------------------------


def test_hard_links_truncated_to_zero(tmp_path: Path, y: Yeet) -> None:
    a, b = tmp_path / "alpha", tmp_path / "beta"
    for i in range(8):
        p = write(a, f"d{i}/x", os.urandom(100_000))
        os.link(p, a / f"d{i}" / "y")
    journalled(y, a, b)
    for i in range(8):
        os.truncate(a / f"d{i}" / "x", 0)
    sync(y, a, b)
    same(a, b)


def test_directory_moved_out_changed_and_moved_back(tmp_path: Path, y: Yeet) -> None:
    a, b, outside = tmp_path / "alpha", tmp_path / "beta", tmp_path / "outside"
    write(a, "d/sub/f", "old")
    outside.mkdir()
    journalled(y, a, b)
    os.rename(a / "d", outside / "d")
    (outside / "d/sub/f").write_text("changed while outside the root")
    time.sleep(0.3)
    os.rename(outside / "d", a / "d")
    sync(y, a, b)
    same(a, b)
