"""Streaming scan of a root: directory listings with digests, parents first.

Invariant owned here: a listing says exactly what the directory held when it
was read (minus ignored names); a directory that cannot be read is reported as
``None`` (unknown), never as empty, so nothing is ever taken for deleted
because it could not be read. Listings are emitted in depth-first order, each
directory before its descendants, as soon as its files are hashed.

Files are hashed only when the stat cache cannot vouch for them; hashing runs
on a small thread pool (the digest libraries release the GIL).

yeet's own temporary files in the tree are left out, and only those it recorded
as its own (``ScanOptions.temps``, see ``yeet.replica.write.tempnames``); a user's file
with a name like theirs is listed like any other.
"""

from __future__ import annotations

import os
import posixpath
import stat
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

from yeet.contract.values import ScanBatch
from yeet.model import digest
from yeet.model import settings as defaults
from yeet.model.entries import (
    Entry,
    Problem,
    dir_entry,
    file_entry,
    special_entry,
    symlink_entry,
)
from yeet.model.paths import join, name_of, parent_of
from yeet.replica.fs.meta import MetaOptions, dir_meta, file_meta
from yeet.replica.fs.rootdir import DIR_FLAGS, RootDir
from yeet.replica.scan.blockcache import MIN_SIZE
from yeet.replica.scan.ignore import IgnoreRules
from yeet.replica.scan.statcache import StatCache, sig_of

BATCH_LISTINGS = 256
BATCH_SECONDS = 0.05
CLOCK_SLACK_NS = 20_000_000
"""A write's ctime may lag the real clock by a tick (coarse timestamps, 1-10 ms): this much."""

Ranges = tuple[tuple[int, int], ...]


class OwnTemps(Protocol):
    """yeet's own temporary names in the tree (``yeet.replica.write.tempnames.TempNames``)."""

    def claim(self, dir_fd: int, name: str, path: str) -> bool:
        """True: ``name`` is ours, leave it out (a crashed run's goes to the trash)."""
        ...


@dataclass
class ScanOptions:
    rules: IgnoreRules = field(default_factory=IgnoreRules)
    symlinks: str = defaults.SYMLINKS
    digest: str = defaults.DIGEST
    side: str = ""
    skip: frozenset[str] = frozenset()  # relpaths never listed (our own storage)
    # From this host's change journal: every write since the cursor, up to the
    # moment ``ranges_until_ns`` (taken before the journal was asked).
    ranges: Mapping[str, Ranges] = field(default_factory=dict)
    ranges_until_ns: int = 0
    meta: MetaOptions = field(default_factory=MetaOptions)
    temps: OwnTemps | None = None  # the endpoint's own temporary names in the tree


def symlink_escapes(path: str, target: str) -> bool:
    """True when ``target`` (of a link at ``path``) points outside the root, lexically."""
    if target.startswith("/") or target == "":
        return True
    resolved = posixpath.normpath(posixpath.join(parent_of(path), target))
    return resolved == ".." or resolved.startswith("../")


def _special_reason(mode: int) -> str:
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISFIFO(mode):
        return "fifo"
    if stat.S_ISCHR(mode):
        return "character device"
    if stat.S_ISBLK(mode):
        return "block device"
    return "unsupported file type"


@dataclass
class _Pending:
    path: str
    entries: dict[str, Entry] | None
    hashing: dict[str, Future[Entry]] = field(default_factory=dict)


class Scanner:
    """Scans one root; ``run`` blocks (call it from a worker thread)."""

    def __init__(self, root: RootDir, options: ScanOptions, cache: StatCache) -> None:
        self.root = root
        self.opts = options
        self.cache = cache
        self.files = 0
        self.bytes_hashed = 0
        self.seen: set[str] = set()  # directories listed completely
        self.unlisted = 0  # directories that could not be listed
        self.root_names = -1
        self._pool = ThreadPoolExecutor(max_workers=3, thread_name_prefix="yeet-hash")

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    # -- hashing ----------------------------------------------------------------------

    def _hash(self, dir_fd: int, name: str, path: str, st: os.stat_result) -> Entry:
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        except OSError as err:
            return special_entry(f"unreadable: {err.strerror}")
        return self._hash_open(fd, path, st)

    def _hash_open(self, fd: int, path: str, st: os.stat_result) -> Entry:
        """Hash an open file (closing it); cache the digest if the file held still."""
        try:
            now = time.time_ns()
            value, size, leaves = self._digest(fd, path, st)
            after = os.fstat(fd)
        except OSError as err:
            self.cache.drop(path)  # whatever was cached may be older than a change
            return special_entry(f"unreadable: {err.strerror}")
        finally:
            os.close(fd)
        sig = sig_of(after)
        if sig_of(st) == sig and size == st.st_size:
            self.cache.store(path, sig, value, now, leaves)
        else:
            self.cache.drop(path)
        return file_entry(value, size, **file_meta(st, self.opts.meta))

    def _digest(
        self, fd: int, path: str, st: os.stat_result
    ) -> tuple[bytes, int, list[bytes] | None]:
        """The file's digest and size, and its leaves (tree algorithms, large files).

        A large file whose leaves are cached and whose writes since then the
        journal vouches for is read only in the blocks those writes touched.
        """
        alg = self.opts.digest
        if not digest.is_tree(alg) or st.st_size < MIN_SIZE:
            value, size = digest.of_fd(alg, fd, st.st_size)
            self.bytes_hashed += size
            return value, size, None
        base = self._vouched_base(path, st)
        if base is not None:
            old_leaves, old_size, ranges = base
            update = digest.TreeUpdate(alg, old_leaves, old_size, st.st_size)
            for start, end in ranges:
                update.changed(start, end)
            try:
                value, leaves, nread = update.finish_fd(fd)
            except OSError:
                os.lseek(fd, 0, os.SEEK_SET)  # it shrank meanwhile: read it all
            else:
                self.bytes_hashed += nread
                return value, st.st_size, leaves
        value, size, tree = digest.tree_of_fd(alg, fd, st.st_size)
        self.bytes_hashed += size
        return value, size, tree

    def _vouched_base(
        self, path: str, st: os.stat_result
    ) -> tuple[list[bytes], int, Ranges] | None:
        ranges = self.opts.ranges.get(path)
        if ranges is None or st.st_ctime_ns >= self.opts.ranges_until_ns - CLOCK_SLACK_NS:
            return None  # not journalled, or changed after the journal was asked
        hit = self.cache.blocks.get(path)
        if hit is None or hit[0][0] != st.st_ino:
            return None
        return hit[1], hit[0][1], ranges

    # -- one directory ----------------------------------------------------------------

    def _entry(
        self, dir_fd: int, name: str, child: str, st: os.stat_result, defer: bool
    ) -> Entry | Future[Entry] | None:
        """The entry for one non-directory name (``None``: skip it)."""
        mode = st.st_mode
        if self.opts.rules and self.opts.rules.ignored(child, False):
            return None
        if (stat.S_ISREG(mode) or stat.S_ISLNK(mode)) and self._ours(dir_fd, name, child):
            return None
        if stat.S_ISREG(mode):
            self.files += 1
            sig = sig_of(st)
            cached = self.cache.lookup(child, sig)
            if cached is not None:
                return file_entry(cached, st.st_size, **file_meta(st, self.opts.meta))
            if defer and st.st_size > 64 << 10:
                # Open here, hash there: the directory fd may be closed before the job runs.
                try:
                    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
                except OSError as err:
                    return special_entry(f"unreadable: {err.strerror}")
                return self._pool.submit(self._hash_open, fd, child, st)
            return self._hash(dir_fd, name, child, st)
        if stat.S_ISLNK(mode):
            if self.opts.symlinks == "ignore":
                return None
            try:
                target = os.readlink(name, dir_fd=dir_fd)
            except OSError as err:
                return special_entry(f"cannot read link: {err.strerror}")
            if self.opts.symlinks == "portable" and symlink_escapes(child, target):
                return special_entry(
                    f"symlink points outside the root ({target}); "
                    "use --symlinks raw to sync it as it is"
                )
            return symlink_entry(target)
        return special_entry(_special_reason(mode))

    def _ours(self, dir_fd: int, name: str, child: str) -> bool:
        """One of yeet's own temporary files (left out; an earlier run's is trashed)."""
        temps = self.opts.temps
        return temps is not None and temps.claim(dir_fd, name, child)

    def _list(
        self, path: str, dir_fd: int, subdirs: list[str], problems: list[Problem]
    ) -> _Pending:
        pending = _Pending(path, {})
        assert pending.entries is not None
        rules = self.opts.rules
        files: set[str] = set()
        try:
            it = os.scandir(dir_fd)
        except OSError as err:
            problems.append(Problem(path, f"cannot list directory: {err.strerror}", self.opts.side))
            self.unlisted += 1
            pending.entries = None
            return pending
        with it:
            for de in it:
                if path == "":
                    self.root_names += 1
                name = de.name
                child = join(path, name)
                if child in self.opts.skip:
                    continue
                try:
                    st = de.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue  # gone already: it is absent
                except OSError as err:
                    pending.entries[name] = special_entry(f"cannot stat: {err.strerror}")
                    continue
                if stat.S_ISDIR(st.st_mode):
                    if not (rules and rules.ignored(child, True)):
                        pending.entries[name] = dir_entry(**dir_meta(st, self.opts.meta))
                        subdirs.append(child)
                    continue
                entry = self._entry(dir_fd, name, child, st, defer=True)
                if isinstance(entry, Future):
                    pending.hashing[name] = entry
                    files.add(name)
                elif entry is not None:
                    pending.entries[name] = entry
                    if entry.is_file:
                        files.add(name)
        self.seen.add(path)
        self.cache.listed(path, files)
        return pending

    # -- the walk ---------------------------------------------------------------------

    def run(
        self,
        under: Sequence[str],
        emit: Callable[[ScanBatch], None],
        stop: threading.Event | None = None,
        *,
        recursive: bool = True,
        partial_parent: bool = False,
    ) -> None:
        """Scan the subtrees ``under`` (or just those directories, if not
        ``recursive``) and ``emit`` batches until done. A top that is missing or
        not a directory yields nothing (not a problem: it is simply not there).

        With ``partial_parent``, a listing of each top's parent holding just that
        top comes first (so the caller learns what the path itself is).
        """
        listings: list[tuple[str, dict[str, Entry] | None]] = []
        problems: list[Problem] = []
        last = time.monotonic()
        queue: deque[_Pending] = deque()

        def flush(force: bool) -> None:
            nonlocal last, listings, problems
            while queue and (force or all(f.done() for f in queue[0].hashing.values())):
                p = queue.popleft()
                if p.entries is not None:
                    for name, fut in p.hashing.items():
                        p.entries[name] = fut.result()
                    for name, entry in p.entries.items():
                        if entry.is_special:
                            problems.append(
                                Problem(join(p.path, name), entry.reason, self.opts.side)
                            )
                listings.append((p.path, p.entries))
            now = time.monotonic()
            if listings and (
                force or len(listings) >= BATCH_LISTINGS or now - last > BATCH_SECONDS
            ):
                emit(
                    ScanBatch(
                        tuple(listings),
                        tuple(problems),
                        self.files,
                        self.bytes_hashed,
                        self.root_names,
                    )
                )
                listings, problems = [], []
                last = now

        for top in under:
            if top == "":
                self.root_names = 0
            elif partial_parent:
                self._emit_partial_parent(top, listings, problems)
            stack = [top]
            while stack:
                if stop is not None and stop.is_set():
                    return
                path = stack.pop()
                subdirs: list[str] = []
                try:
                    fd = self._open_dir(path)
                except OSError as err:
                    if path != top or top == "":
                        problems.append(
                            Problem(path, f"cannot open directory: {err.strerror}", self.opts.side)
                        )
                        self.unlisted += 1
                        queue.append(_Pending(path, None))
                    flush(False)
                    continue
                try:
                    queue.append(self._list(path, fd, subdirs, problems))
                    flush(False)
                finally:
                    if fd != self.root.fd:
                        os.close(fd)
                if recursive:
                    stack.extend(reversed(subdirs))
        flush(True)
        if problems:
            emit(ScanBatch((), tuple(problems), self.files, self.bytes_hashed))

    def _open_dir(self, path: str) -> int:
        if path == "":
            return self.root.fd
        parent = self.root.dir_fd(parent_of(path))
        return os.open(name_of(path), DIR_FLAGS, dir_fd=parent)

    def _emit_partial_parent(
        self, top: str, listings: list[tuple[str, dict[str, Entry] | None]], problems: list[Problem]
    ) -> None:
        st = self.root.lstat(top)
        entries: dict[str, Entry] = {}
        if st is not None and stat.S_ISDIR(st.st_mode):
            if not self.opts.rules.ignored(top, True):
                entries[name_of(top)] = dir_entry(**dir_meta(st, self.opts.meta))
        elif st is not None:
            parent, name = self.root.locate(top)
            entry = self._entry(parent, name, top, st, defer=False)
            assert not isinstance(entry, Future)
            if entry is not None:
                entries[name] = entry
                if entry.is_special:
                    problems.append(Problem(top, entry.reason, self.opts.side))
        listings.append((parent_of(top), entries))
