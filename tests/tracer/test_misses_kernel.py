"""Writes the kernel side of the change journal once missed (issue 15), through the
real CLI and real kernel paths: a file opened by handle after its dentry was
evicted, overlayfs with its upper directory in a root, writers inside the kernel
(a loop device, process accounting) landing in pages that are still dirty, and
``pwritev2(RWF_NOAPPEND)`` on an appending descriptor.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from dirtypage import page_dirty
from oracle import file_id
from synced import journalled, same, settled, sync

from tests.cli_harness import Yeet, write
from yeet.tracer import Tracer

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the change journal needs root")


# ---- open_by_handle_at on a file whose dentry was evicted ----------------------------

_libc = ctypes.CDLL(None, use_errno=True)


class _Handle(ctypes.Structure):
    _fields_ = [("bytes", ctypes.c_uint), ("type", ctypes.c_int), ("f", ctypes.c_ubyte * 128)]


def _handle_of(path: Path) -> _Handle:
    h = _Handle(bytes=128)
    mount_id = ctypes.c_int()
    if _libc.name_to_handle_at(-100, os.fsencode(path), ctypes.byref(h), ctypes.byref(mount_id), 0):
        raise OSError(ctypes.get_errno(), "name_to_handle_at")
    return h


def _open_disconnected(mount_path: Path, h: _Handle) -> int:
    """Open a file by handle once its dentry is gone from the cache: the kernel then
    hands out a disconnected dentry (the fd's path reads "/")."""
    mount_fd = os.open(mount_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(20):
            os.sync()
            Path("/proc/sys/vm/drop_caches").write_text("2\n")  # dentries and inodes
            fd = int(_libc.open_by_handle_at(mount_fd, ctypes.byref(h), os.O_RDWR))
            if fd < 0:
                raise OSError(ctypes.get_errno(), "open_by_handle_at")
            if os.readlink(f"/proc/self/fd/{fd}") == "/":
                return fd
            os.close(fd)
            time.sleep(0.1)
    finally:
        os.close(mount_fd)
    raise AssertionError("the dentry stayed cached: could not get a disconnected one")


def test_open_by_handle_after_the_dentry_was_evicted(tmp_path: Path, y: Yeet) -> None:
    a, b = tmp_path / "alpha", tmp_path / "beta"
    write(a, "deep/f", b"0" * 10_000)
    journalled(y, a, b)
    h = _handle_of(a / "deep/f")
    fd = _open_disconnected(Path("/"), h)
    try:
        os.pwrite(fd, b"written through a disconnected dentry", 4000)
    finally:
        os.close(fd)
    sync(y, a, b)
    same(a, b)


# ---- overlayfs with its upper directory inside a root -----------------------------------


def test_overlayfs_upper_directory_inside_a_root(tmp_path: Path, y: Yeet) -> None:
    a, b = tmp_path / "alpha", tmp_path / "beta"
    lower, work, merged = tmp_path / "lower", tmp_path / "work", tmp_path / "merged"
    for d in (lower, work, merged):
        d.mkdir()
    write(a, "upper/f", b"0" * 10_000)
    write(lower, "g", b"1" * 10_000)
    opts = f"lowerdir={lower},upperdir={a / 'upper'},workdir={work}"
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, str(merged)], check=True)
    try:
        journalled(y, a, b)
        with open(merged / "f", "r+b") as f:  # the upper file, through the merged mount
            f.seek(3000)
            f.write(b"through overlayfs")
        sync(y, a, b)
        same(a, b)
        with open(merged / "f", "r+b") as f:  # again: the page is dirty already
            f.seek(3010)
            f.write(b"once more")
        with open(merged / "g", "r+b") as f:  # a lower file: copied up into the root
            f.seek(100)
            f.write(b"copied up")
        sync(y, a, b)
        same(a, b)
    finally:
        subprocess.run(["umount", str(merged)], check=True)


# ---- writers inside the kernel: a loop device, process accounting ------------------------


def test_loop_device_over_a_file_in_a_root(tmp_path: Path, y: Yeet, private_ext4: Path) -> None:
    """A disk image attached to a loop device: the loop worker writes it from inside
    the kernel; the second write lands in a page that is still dirty."""
    a, b = private_ext4 / "alpha", tmp_path / "beta"
    write(a, "disk.img", b"\0" * (4 << 20))
    dev = subprocess.run(
        ["losetup", "--find", "--show", str(a / "disk.img")],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    # kept open: closing the device flushes it, which writes the image back
    fd = os.open(dev, os.O_WRONLY | os.O_DIRECT)
    buf = mmap.mmap(-1, 4096)  # page aligned, as O_DIRECT wants

    def block(offset: int, data: bytes) -> None:
        buf.seek(0)
        buf.write(data.ljust(4096, b"\0"))
        os.pwrite(fd, buf, offset)

    try:
        journalled(y, a, b)
        for attempt in range(10):
            block(1 << 20, b"first %d" % attempt)
            settled(y, a, b)
            if page_dirty(a / "disk.img", 1 << 20):  # not written back meanwhile
                block(1 << 20, b"second, into the same (still dirty) page")
                break
        else:
            raise AssertionError("the image's page was always written back before the test")
        sync(y, a, b)
        same(a, b)
    finally:
        os.close(fd)
        buf.close()
        subprocess.run(["losetup", "-d", dev], check=True)


def test_process_accounting_file_in_a_root(tmp_path: Path, y: Yeet, private_ext4: Path) -> None:
    """The kernel appends a record to the accounting file whenever a process exits."""
    a, b = private_ext4 / "alpha", tmp_path / "beta"
    write(a, "acct.log", b"")
    libc = ctypes.CDLL(None, use_errno=True)

    def account(on: bool) -> None:
        if libc.acct(os.fsencode(a / "acct.log") if on else None) != 0:
            raise OSError(ctypes.get_errno(), "acct")

    journalled(y, a, b)
    try:
        for _ in range(10):
            account(True)
            subprocess.run(["true"], check=True)  # appended when it exits
            account(False)
            settled(y, a, b)
            size = (a / "acct.log").stat().st_size
            if size % 4096 and page_dirty(a / "acct.log", size):  # room left, still dirty
                account(True)
                subprocess.run(["true"], check=True)  # appended to that page
                break
        else:
            raise AssertionError("the accounting file's page was always written back")
    finally:
        account(False)
    sync(y, a, b)
    same(a, b)


# ---- pwritev2(RWF_NOAPPEND) on an O_APPEND descriptor, racing appends -------------------

RWF_NOAPPEND = 0x20


def test_noappend_write_racing_appends_on_the_same_descriptor(
    base: Path, open_tracer: Callable[..., Tracer]
) -> None:
    """``RWF_NOAPPEND`` writes at its offset although the descriptor appends; the
    file grows meanwhile (another thread appends), which must not pass for proof
    that this write appended."""
    root = base / "tree"
    root.mkdir()
    p = root / "log"
    t = open_tracer([root])
    for trial in range(20):
        p.write_bytes(b"." * 4096)
        fd = os.open(p, os.O_WRONLY | os.O_APPEND)
        t.dirty_files()
        stop = threading.Event()

        def appender(fd: int, stop: threading.Event) -> None:
            while not stop.is_set():
                os.write(fd, b"a" * 64)

        th = threading.Thread(target=appender, args=(fd, stop))
        th.start()
        try:
            time.sleep(0.002)
            os.pwritev(fd, [b"X" * 10], 100, RWF_NOAPPEND)
        finally:
            stop.set()
            th.join()
            os.close(fd)
        assert p.read_bytes()[100:110] == b"X" * 10
        d = t.dirty_files()
        assert not d.rescan, d.reasons
        got = d.get(file_id(str(p)))
        assert got is not None and got.covers(100, 110), f"trial {trial}: {got!r}"
