"""Which inodes a watched root holds, so a written file no root holds holds back no root.

Invariant owned here: once ``InodeIndex.build`` has returned, ``may_hold(dev,
ino)`` is true for every regular file that had a name below the root when the
walk passed its directory or that ``add`` was told about since ``build`` began.
Entries are never removed (a file that left the root stays "held": that only
widens), and an index whose walk failed holds everything. The service keeps the
promise complete by calling ``add``/``add_tree`` for every name bound below the
root after the walk began (created, linked, renamed in) - fanotify reports each
one - so together: every inode with a name below the root is held.

Devices are userspace numbers of the superblock (what ``loader.FileId.dev``
carries), so a btrfs subvolume's files count for the filesystem they are on.
The walk opens directories relative to their parent's descriptor: a path longer
than ``PATH_MAX`` is walked like any other. Storage is a sorted ``array`` of
inode numbers per device (8 bytes a file) plus a set of later additions.
"""

from __future__ import annotations

import bisect
import os
import stat
import threading
from array import array
from collections.abc import Iterable

from yeet.tracer.paths import mount_of

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


class InodeIndex:
    """The inodes below one root (see the module invariant)."""

    def __init__(self, points: Iterable[str]) -> None:
        self.points = list(points)  # the root and the mount points inside it
        self._walked: dict[int, array[int]] = {}
        self._added: set[tuple[int, int]] = set()
        self._lock = threading.Lock()
        self._devs = _SbDevs()
        self.everything = False  # the walk failed: every inode is "held"
        self.problem = ""
        self.files = 0

    # ---- asking ----------------------------------------------------------------

    def may_hold(self, dev: int, ino: int) -> bool:
        if self.everything or (dev, ino) in self._added:
            return True
        inos = self._walked.get(dev)
        if inos is None:
            return False
        i = bisect.bisect_left(inos, ino)
        return i < len(inos) and inos[i] == ino

    # ---- keeping it complete -------------------------------------------------------

    def add(self, dev: int, ino: int) -> None:
        with self._lock:
            self._added.add((dev, ino))

    def add_path(self, path: str) -> None:
        """A name bound below the root: hold what it names (a directory: all below)."""
        try:
            st = os.lstat(path)
        except OSError:
            return  # gone again: its removal is its own event
        if stat.S_ISREG(st.st_mode):
            self.add(self._devs.of(path, st.st_dev)[0], st.st_ino)
        elif stat.S_ISDIR(st.st_mode):
            self.add_tree(path)

    def add_tree(self, path: str) -> list[str]:
        """Hold every file below the directory ``path``; its directories, in walk order."""
        found: dict[int, array[int]] = {}
        try:
            dirs = _walk(path, found, set(self.points) - {path}, self._devs)
        except OSError as e:
            self._fail(f"cannot index {path}: {e.strerror or e}")
            return [path]
        with self._lock:
            for dev, inos in found.items():
                self._added.update((dev, i) for i in inos)
        return dirs

    def build(self) -> None:
        """Walk the root (in a worker thread: it may take seconds on a large tree)."""
        found: dict[int, array[int]] = {}
        try:
            for p in self.points:
                _walk(p, found, set(self.points) - {p}, self._devs)
        except OSError as e:
            self._fail(f"cannot index {e.filename or self.points[0]}: {e.strerror or e}")
            return
        for dev, inos in found.items():
            self._walked[dev] = array("Q", sorted(set(inos)))
            self.files += len(self._walked[dev])

    def _fail(self, why: str) -> None:
        self.everything = True
        self.problem = why


class _SbDevs:
    """``st_dev`` -> (the superblock's dev, whether directory entries' inode numbers
    can be trusted). They differ on btrfs subvolumes; overlayfs's ``d_ino`` may
    differ from ``st_ino``, so there each entry is ``lstat``ed."""

    def __init__(self) -> None:
        self._known: dict[int, tuple[int, bool]] = {}

    def of(self, path: str, st_dev: int) -> tuple[int, bool]:
        got = self._known.get(st_dev)
        if got is None:
            try:
                m = mount_of(path)
            except OSError:  # a path too long to resolve: what st_dev says
                m = None
            got = (m.dev if m is not None else st_dev, m is None or m.fstype != "overlay")
            self._known[st_dev] = got
        return got


def _walk(top: str, found: dict[int, array[int]], skip: set[str], devs: _SbDevs) -> list[str]:
    """Add the (dev, ino) of every regular file below ``top`` to ``found``; the
    directories walked. Other roots' mount points (``skip``) are walked on their own.

    Depth first, holding one descriptor per level; each directory is read whole
    before its subdirectories are opened."""
    dirs: list[str] = []
    fd = os.open(top, _DIR_FLAGS)
    stack: list[tuple[int, str, list[str]]] = []
    path = top
    while True:
        dirs.append(path)
        dev, d_ino_ok = devs.of(path, os.fstat(fd).st_dev)
        inos = found.setdefault(dev, array("Q"))
        subdirs: list[str] = []
        try:
            with os.scandir(fd) as it:
                for e in it:
                    try:
                        if e.is_dir(follow_symlinks=False):
                            subdirs.append(e.name)
                        elif e.is_file(follow_symlinks=False):
                            ino = e.inode() if d_ino_ok else e.stat(follow_symlinks=False).st_ino
                            inos.append(ino)
                    except OSError:
                        continue  # gone meanwhile
        except OSError:
            pass  # removed while we walk: its removal is its own event
        subdirs.reverse()
        stack.append((fd, path, subdirs))
        fd = -1
        while stack:
            pfd, ppath, todo = stack[-1]
            if not todo:
                os.close(pfd)
                stack.pop()
                continue
            name = todo.pop()
            child = ppath.rstrip("/") + "/" + name
            if child in skip:
                continue
            try:
                fd = os.open(name, _DIR_FLAGS, dir_fd=pfd)
            except OSError:
                continue  # gone, or replaced by a non-directory
            path = child
            break
        if fd < 0:
            return dirs
