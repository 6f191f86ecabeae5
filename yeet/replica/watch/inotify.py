"""Which directories changed, from Linux inotify, without polling.

Invariant owned here: every directory of the root (ignored ones excepted) is
watched from before the scan that the caller compares against, so any change
after that scan marks its directory dirty; a lost event (queue overflow, a
watch that could not be added) is reported as ``overflow``, which means
"rescan everything", never as silence. An event that yeet's own writer
explains (``yeet.replica.watch.own``: the path holds exactly what the writer left) marks
nothing; a directory yeet created is dirty only if something else is in it by
the time it is watched.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
import time
from dataclasses import dataclass, field

from inotify_simple import INotify, flags

from yeet.model.paths import join, parent_of
from yeet.replica.fs.rootdir import DIR_FLAGS
from yeet.replica.scan.ignore import IgnoreRules
from yeet.replica.watch.own import FOREIGN, OWN, PENDING, PENDING_SECONDS, OwnWrites

MASK = (
    flags.CREATE
    | flags.DELETE
    | flags.MODIFY
    | flags.CLOSE_WRITE
    | flags.ATTRIB
    | flags.MOVED_FROM
    | flags.MOVED_TO
    | flags.DELETE_SELF
    | flags.MOVE_SELF
    | flags.ONLYDIR
    | flags.DONT_FOLLOW
    | flags.EXCL_UNLINK
)


@dataclass
class Dirty:
    """Directories whose listing or files may have changed (relpaths)."""

    dirs: set[str] = field(default_factory=set)
    overflow: bool = False

    def merge(self, other: Dirty) -> None:
        self.dirs |= other.dirs
        self.overflow |= other.overflow

    def __bool__(self) -> bool:
        return bool(self.dirs) or self.overflow


class InotifyWatcher:
    def __init__(
        self,
        root: str,
        rules: IgnoreRules,
        skip: frozenset[str] = frozenset(),
        own: OwnWrites | None = None,
    ) -> None:
        self.root = root
        self.rules = rules
        self.skip = skip
        self.own = own
        self.inotify = INotify()
        self.paths: dict[int, str] = {}
        self.pending = Dirty()
        self.created: set[str] = set()  # new directories that yeet made (see watch_tree)
        self.held: list[tuple[float, str, str, bool]] = []  # events on paths being written
        self._lock = threading.Lock()  # watch_tree runs on a worker thread

    def fileno(self) -> int:
        return int(self.inotify.fileno())

    def close(self) -> None:
        self.inotify.close()

    def _state(self, rel: str) -> str:
        if self.own is None:
            return FOREIGN
        return self.own.state(rel, os.path.join(self.root, rel))

    def _own(self, rel: str) -> bool:
        return self._state(rel) == OWN

    def watch_tree(self, top: str = "", created: bool = False) -> None:
        """Watch ``top`` and every directory below it (blocking: call off the loop).
        ``created``: yeet made ``top``; it is dirty if it holds anything yeet did not
        write (what arrived before its watch did)."""
        stack = [top]
        while stack:
            rel = stack.pop()
            full = os.path.join(self.root, rel) if rel else self.root
            try:
                wd = self.inotify.add_watch(full, MASK)
            except OSError as err:
                if err.errno in (errno.ENOENT, errno.ENOTDIR):
                    continue  # gone meanwhile: its parent reports it
                with self._lock:
                    self.pending.overflow = True  # e.g. ENOSPC: out of watches
                continue
            with self._lock:
                self.paths[wd] = rel
            try:
                fd = os.open(full, DIR_FLAGS)
            except OSError:
                continue
            try:
                with os.scandir(fd) as it:
                    for de in it:
                        child = join(rel, de.name)
                        if child in self.skip:
                            continue
                        if created and not self._own(child):
                            with self._lock:
                                self.pending.dirs.add(rel)
                        try:
                            is_dir = stat.S_ISDIR(de.stat(follow_symlinks=False).st_mode)
                        except OSError:
                            continue
                        if is_dir and not (self.rules and self.rules.ignored(child, True)):
                            stack.append(child)
            finally:
                os.close(fd)

    def read(self) -> tuple[Dirty, list[str]]:
        """Drain pending events (non-blocking). Returns the dirty set and the new
        directories that need watches (the caller adds them with ``watch_tree``)."""
        with self._lock:
            dirty, self.pending = self.pending, Dirty()
            return self._events(dirty)

    def _events(self, dirty: Dirty) -> tuple[Dirty, list[str]]:
        new_dirs: list[str] = []
        for ev in self.inotify.read(timeout=0):
            if ev.mask & flags.Q_OVERFLOW:
                dirty.overflow = True
                continue
            rel = self.paths.get(ev.wd)
            if rel is None:
                continue
            if ev.mask & flags.IGNORED:
                self.paths.pop(ev.wd, None)
                continue
            if ev.mask & (flags.DELETE_SELF | flags.MOVE_SELF):
                if rel:
                    dirty.dirs.add(parent_of(rel))
                continue
            child = join(rel, ev.name) if ev.name else rel
            if ev.name and self.rules and self.rules.ignored(child, bool(ev.mask & flags.ISDIR)):
                continue
            new_dir = bool(ev.mask & flags.ISDIR and ev.mask & (flags.CREATE | flags.MOVED_TO))
            if ev.name:
                self._judge(rel, child, new_dir, dirty, new_dirs, time.monotonic())
                continue
            dirty.dirs.add(rel)
        return dirty, new_dirs

    def _judge(
        self,
        rel: str,
        child: str,
        new_dir: bool,
        dirty: Dirty,
        new_dirs: list[str],
        since: float,
    ) -> None:
        """An event on ``child`` (in directory ``rel``): ours, foreign, or held."""
        state = self._state(child)
        if state == PENDING and time.monotonic() - since < PENDING_SECONDS:
            self.held.append((since, rel, child, new_dir))
            return
        if state == OWN:
            if new_dir:
                new_dirs.append(child)
                self.created.add(child)
            return
        dirty.dirs.add(rel)
        if new_dir:
            new_dirs.append(child)
            dirty.dirs.add(child)

    def recheck(self) -> tuple[Dirty, list[str]]:
        """Judge the held events again (the writer finished some paths, or time passed)."""
        with self._lock:
            held, self.held = self.held, []
            dirty, new_dirs = Dirty(), list[str]()
            for since, rel, child, new_dir in held:
                self._judge(rel, child, new_dir, dirty, new_dirs, since)
            return dirty, new_dirs
