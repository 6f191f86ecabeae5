"""Moving what the kernel reported into the change journal, failing closed.

Invariant owned here: after ``Drain.run()`` every change the kernel reported
before it began is in the journal (``ChangeLog``) for every root it may
concern - a changed directory, a bound name, a written file with its ranges -
or a loss is recorded for those roots (for every root when it cannot tell
which). Nothing is dropped silently: an exception in any stage, an event that
cannot be placed, a limit reached, each records a loss; a sync then scans.

What "may concern" means for a written file: a root concerns it when the
root's ``InodeIndex`` may hold the inode (every inode with a name below the
root is held, see ``inodes``). A file no root holds - a build elsewhere, a
download, a package store - is dropped at once, however it was named. One a
root holds is placed by path: below the root, its ranges are journalled; with
several links, the roots holding it also lose the interval (the other names
are unknown); if no path can be confirmed yet it is tried again at every
drain and holds its roots' answers back meanwhile (lost after
``UNRESOLVED_FOR``).

Name events (fanotify): a directory below a root whose listing changed is
journalled. A name *bound* below a root - created, linked, or renamed in from
outside that root - is journalled as bound (what lies there now was never
seen under that name: whole files) and held in the index; a directory renamed
in is walked, and every directory below it is journalled changed.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field

from yeet.tracer import fanotify
from yeet.tracer.inodes import InodeIndex
from yeet.tracer.journal import ChangeLog, within
from yeet.tracer.loader import FileId, Tracer
from yeet.tracer.paths import name_of_handle, open_anchor, open_handle
from yeet.tracer.ranges import Ranges
from yeet.tracer.roots import Layout

UNRESOLVED_FOR = 30.0  # a written file whose path cannot be found for this long: lost
MAX_UNRESOLVED = 100_000  # more unplaced files than this: everything is lost, start over


@dataclass
class Root:
    """A watched root: what it is, since when it is journalled, what it holds."""

    path: str
    layout: Layout
    since: int  # cursors issued before this are void
    reset: str  # why
    index: InodeIndex
    problem: str = ""  # non-empty: this root can never be answered in full
    points: list[str] = field(default_factory=list)  # the root and mounts inside it
    marks: list[tuple[int, str]] = field(default_factory=list)  # (fsid, point) marked for it


@dataclass
class _Unplaced:
    first: float
    ranges: list[Ranges]


class Drain:
    """The drain of one service: ``run()`` at each question, ``names()`` as events come."""

    def __init__(self, tracer: Tracer, names: fanotify.NameWatcher, log: ChangeLog) -> None:
        self.tracer = tracer
        self.names_watcher = names
        self.log = log
        self.roots: dict[str, Root] = {}
        self.anchors: dict[int, list[str]] = {}  # fsid -> paths that resolve its handles
        self.unplaced: dict[FileId, _Unplaced] = {}
        self.failures = 0  # stages that raised (a test and the log read it)

    # ---- failing closed -----------------------------------------------------------

    @contextlib.contextmanager
    def stage(self, what: str) -> Iterator[None]:
        """Run one stage; whatever it raises becomes a loss for every root."""
        try:
            yield
        except Exception as e:  # that is the point: nothing escapes
            self.failures += 1
            print(f"yeet tracer: {what} failed:", file=sys.stderr)
            traceback.print_exc(file=sys.stderr)
            self.log.lost(f"the change journal failed while {what} ({type(e).__name__}: {e})")

    # ---- the drain ----------------------------------------------------------------

    def run(self) -> None:
        """Everything the kernel has reported so far, into the journal."""
        written: dict[FileId, list[Ranges]] = {}
        with self.stage("reading name events"):
            self._names()
        with self.stage("reading written files"):
            d = self.tracer.dirty_files()
            if d.rescan:
                self.log.lost("the write tracer lost changes: " + "; ".join(d.reasons))
            for fid, r in d.items():
                written.setdefault(fid, []).append(r)
        # names bound while the writes were drained: placed before the writes, so a
        # file linked or moved into a root is held when its writes are placed
        with self.stage("reading name events"):
            self._names()
        with self.stage("placing written files"):
            self._place(written)

    def names(self) -> None:
        """Only the name events (fanotify's fd is readable)."""
        with self.stage("reading name events"):
            self._names()

    # ---- written files --------------------------------------------------------------

    def holders(self, fid: FileId) -> list[Root]:
        return [r for r in self.roots.values() if r.index.may_hold(fid.dev, fid.ino)]

    def _place(self, written: dict[FileId, list[Ranges]]) -> None:
        for fid, ranges in written.items():
            u = self.unplaced.setdefault(fid, _Unplaced(time.monotonic(), []))
            u.ranges.extend(ranges)
        if len(self.unplaced) > MAX_UNRESOLVED:
            self.unplaced.clear()
            self.log.lost(f"more than {MAX_UNRESOLVED} written files could not be placed yet")
            return
        for fid in list(self.unplaced):
            try:
                self._place_one(fid)
            except Exception as e:  # one file's failure: its roots lose
                self.failures += 1
                traceback.print_exc(file=sys.stderr)
                self.unplaced.pop(fid, None)
                for r in self.holders(fid) or list(self.roots.values()):
                    self.log.lost(f"a written file could not be placed ({e})", r.path)

    def _place_one(self, fid: FileId) -> None:
        u = self.unplaced[fid]
        holders = self.holders(fid)
        if not holders:
            del self.unplaced[fid]  # no root holds it: someone else's file
            return
        found = self.tracer.locate(fid)
        if found.path is None and not found.known:
            if time.monotonic() - u.first > UNRESOLVED_FOR:
                del self.unplaced[fid]
                why = f"cannot find the path of a written file (inode {fid.ino})"
                for r in holders:
                    self.log.lost(why, r.path)
            return  # again at the next drain (a temporary file being renamed, ...)
        del self.unplaced[fid]
        if found.path is None:
            return  # deleted: its directory's listing changed, fanotify says so
        inside = self.roots_of(found.path)
        if inside:
            for rs in u.ranges:
                self.log.file_changed(fid, found.path, rs)
        if found.nlink > 1:
            for r in holders:
                if r not in inside:  # (inside: the answer sees the links itself)
                    self.log.lost(
                        "a file with several hard links changed (its other names are unknown)",
                        r.path,
                    )

    def unplaced_for(self, root: Root) -> list[FileId]:
        """The written files that may lie below ``root`` and still wait for a path."""
        return [f for f in self.unplaced if root.index.may_hold(f.dev, f.ino)]

    # ---- name events ------------------------------------------------------------------

    def roots_of(self, path: str) -> list[Root]:
        """The roots ``path`` lies in (roots may nest)."""
        return [r for r in self.roots.values() if within(path, r.path)]

    def _names(self) -> None:
        events, lost = self.names_watcher.read()
        if lost:
            self.log.lost(lost)
        if not events:
            return
        cache: dict[str, int] = {}  # anchor path -> fd
        resolved: dict[tuple[int, int, bytes], str | None] = {}
        try:
            for ev in events:
                try:
                    self._name_event(ev, cache, resolved)
                except Exception as e:  # one event: the roots it may concern
                    self.failures += 1
                    traceback.print_exc(file=sys.stderr)
                    self.log.lost(f"a name event could not be placed ({type(e).__name__}: {e})")
        finally:
            for fd in cache.values():
                if fd >= 0:
                    os.close(fd)

    def _dir_path(
        self,
        dn: fanotify.DirName,
        cache: dict[str, int],
        resolved: dict[tuple[int, int, bytes], str | None],
    ) -> str | None:
        """The directory a handle names now; ``None`` when it is no root's business
        or gone (a loss is recorded when it may be a root's and cannot be named)."""
        if dn.key in resolved:
            return resolved[dn.key]
        path: str | None = None
        anchors = self.anchors.get(dn.fsid, [])
        fds = [fd for p in anchors if (fd := self._anchor_fd(p, dn.fsid, cache)) >= 0]
        named = False
        for fd in fds:
            found = name_of_handle(fd, dn.handle_type, dn.handle)
            if found.path is not None or found.known:
                path, named = found.path, True
                break
        if not named and anchors:
            root = self._containing_root(fds, dn.handle_type, dn.handle)
            if root is not None:
                self.log.lost("a changed directory could not be named", root)
        resolved[dn.key] = path
        return path

    def _name_event(
        self,
        ev: fanotify.NameEvent,
        cache: dict[str, int],
        resolved: dict[tuple[int, int, bytes], str | None],
    ) -> None:
        where = self._dir_path(ev.where, cache, resolved)
        old_dir = self._dir_path(ev.old, cache, resolved) if ev.old is not None else None
        if old_dir is not None and self.roots_of(old_dir):
            self.log.dir_changed(old_dir)
        if where is None:
            return
        roots = self.roots_of(where)
        if not roots:
            return
        self.log.dir_changed(where)
        name = ev.where.name
        if not name or name == ".":
            return
        child = os.path.join(where, name)
        if ev.mask & fanotify.FAN_ATTRIB and ev.is_dir:
            self.log.dir_changed(child)  # a directory's own mode: whether it can be listed
        if not ev.mask & (fanotify.FAN_CREATE | fanotify.FAN_RENAME):
            return
        renamed = bool(ev.mask & fanotify.FAN_RENAME)
        # created here, linked here, or moved in from outside a root: new to that root
        new_to = [r for r in roots if not (renamed and old_dir and within(old_dir, r.path))]
        if not new_to:
            return  # moved within every root it is in: they held it all along
        self.log.bound(child)
        if ev.is_dir and renamed:  # a tree the journal never saw (or saw elsewhere)
            # the kernel's cached answers for the files below it learn of it now
            # (a file's own rename or new link the kernel notices by itself)
            self.tracer.names_changed()
            for i, r in enumerate(new_to):
                dirs = r.index.add_tree(child)
                if i == 0:
                    for d in dirs:
                        self.log.dir_changed(d)
        else:
            for r in new_to:
                r.index.add_path(child)

    def _anchor_fd(self, path: str, fsid: int, cache: dict[str, int]) -> int:
        if path not in cache:
            try:
                fd = open_anchor(path)
            except OSError:
                fd = -1
            if fd >= 0 and fanotify.fsid_of(f"/proc/self/fd/{fd}") != fsid:
                os.close(fd)  # unmounted: another filesystem there now
                fd = -1
            cache[path] = fd
        return cache[path]

    def _containing_root(self, fds: list[int], htype: int, handle: bytes) -> str | None:
        """The watched root an unnameable directory lies in ("/" if unknown), by ``..``."""
        inodes: dict[tuple[int, int], str] = {}
        for w in self.roots.values():
            for p in w.points:
                with contextlib.suppress(OSError):
                    st = os.stat(p)
                    inodes[(st.st_dev, st.st_ino)] = w.path
        if not fds:
            return "/"
        try:
            fd = open_handle(fds[0], htype, handle, os.O_PATH | os.O_CLOEXEC)
        except OSError:
            return "/"
        try:
            for _ in range(1 << 16):
                st = os.fstat(fd)
                if (st.st_dev, st.st_ino) in inodes:
                    return inodes[(st.st_dev, st.st_ino)]
                up = os.open("..", os.O_PATH | os.O_CLOEXEC, dir_fd=fd)
                os.close(fd)
                fd = up
                top = os.fstat(fd)
                if (top.st_dev, top.st_ino) == (st.st_dev, st.st_ino):
                    return None  # reached the top without passing a root
            return "/"
        except OSError:
            return "/"
        finally:
            os.close(fd)

    def rebuild_anchors(self) -> None:
        """Where to resolve each marked filesystem's handles: through the roots on it."""
        self.anchors = {}
        for r in self.roots.values():
            for fsid, p in r.marks:
                if p not in self.anchors.setdefault(fsid, []):
                    self.anchors[fsid].append(p)
