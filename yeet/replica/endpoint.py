"""An endpoint that is a directory on this machine.

Invariant owned here: blocking filesystem work runs on worker threads, never on
the event loop; the scanner, the reader and the writer each use their own
``RootDir`` (fd caches are not shared between threads). The same class serves a
local session directly and a remote session from inside ``yeet agent``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
import sqlite3
import sys
import threading
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from yeet import __version__
from yeet.contract.endpoint import Endpoint
from yeet.contract.values import (
    Changes,
    DirtySet,
    EndpointConfig,
    EndpointInfo,
    Op,
    OpResult,
    PathStat,
    PlanReply,
    ReadRequest,
    ReadResult,
    ReadSource,
    RootInfo,
    ScanBatch,
    SigReply,
    StageInfo,
    TrashItem,
)
from yeet.delta.ops import DeltaOp
from yeet.delta.signature import Signature
from yeet.model import digest
from yeet.model.entries import Entry
from yeet.model.errors import EndpointError
from yeet.model.paths import parent_of
from yeet.replica.deltas import LocalDelta, recover_redo_logs
from yeet.replica.fs.durable import barrier
from yeet.replica.fs.groupcommit import GroupCommit, Turns
from yeet.replica.fs.meta import PERMISSIONS, MetaOptions, differs
from yeet.replica.fs.rootdir import NotADirectoryInRoot, RootDir
from yeet.replica.rootinfo import probe_root
from yeet.replica.scan.ignore import IgnoreRules
from yeet.replica.scan.scanner import Scanner, ScanOptions
from yeet.replica.scan.signed import FileChangedError, open_with_sig, read_with_sig
from yeet.replica.scan.statcache import StatCache, StatSig, sig_of
from yeet.replica.watch.own import OwnWrites
from yeet.replica.write.trash import Trash, place_new
from yeet.replica.write.writer import Writer

SCAN_WINDOW = 64  # listing batches a scan runs ahead of its consumer (memory bound)
CACHE_ENTRIES = 20_000
"""Stat cache entries held in memory (beyond that: written out and forgotten)."""


class LocalEndpoint(Endpoint):
    """Every call of the contract, on a root of this machine."""

    def __init__(self, conn: sqlite3.Connection, lock: threading.RLock, storage: Path) -> None:
        self.conn = conn
        self.lock = lock
        self.storage = storage
        self.config: EndpointConfig | None = None
        self.write_lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._reader: RootDir | None = None
        self.writer: Writer | None = None
        self._trash: Trash | None = None
        self.cache: StatCache | None = None
        self._turns = Turns()
        self._durable: GroupCommit | None = None
        self._delta = LocalDelta(self)
        self._ranges: dict[str, tuple[tuple[int, int], ...]] = {}
        self._ranges_until = 0
        self.reflinks = True  # until a clone of a large file fails: the in-place redo log
        self.own_writes = OwnWrites()  # what our writer left where: not edits, for the watcher

    # -- lifecycle --------------------------------------------------------------------

    async def probe(self, root: str) -> RootInfo:
        return await asyncio.to_thread(probe_root, root)

    async def open(self, config: EndpointConfig) -> EndpointInfo:
        return await asyncio.to_thread(self._open, config)

    def _open(self, config: EndpointConfig) -> EndpointInfo:
        self.config = config
        root = config.root
        created = False
        notes: list[str] = []
        if config.permissions not in PERMISSIONS:
            raise EndpointError(f"{config.side}: unknown permissions {config.permissions!r}")
        if config.owner and os.geteuid() != 0:
            raise EndpointError(
                f"{config.side}: --owner needs root on {socket.gethostname()} "
                "(it sets the owner and group of what it writes)",
                hint="run yeet as root there, or sync with --no-owner",
            )
        if config.digest not in digest.available():
            raise EndpointError(
                f"{config.side}: digest {config.digest!r} is not available "
                f"on {socket.gethostname()}"
            )
        if not os.path.lexists(root):
            if not config.create_root:
                return EndpointInfo(root, False, host=socket.gethostname(), version=__version__)
            try:
                os.makedirs(root)
            except OSError as err:
                raise EndpointError(
                    f"cannot create {config.side} root {root}: {err.strerror}"
                ) from None
            created = True
        if not os.path.isdir(root):
            raise EndpointError(
                f"{config.side} root {root} is not a directory",
                hint="give the directory to synchronise (yeet syncs directory trees)",
            )
        try:
            self._reader = RootDir(root)
        except OSError as err:
            raise EndpointError(f"cannot open {config.side} root {root}: {err.strerror}") from None
        side = config.side
        self.cache = StatCache(self.conn, self.lock, side)
        self._trash = Trash(str(self.storage / "trash"), self.conn, self.lock, side)
        expired = self._trash.expire(config.trash_days)
        if expired:
            notes.append(
                f"{side}: {expired} trash item(s) older than {config.trash_days:g} days removed"
            )
        root_fd = self._reader.fd
        self._durable = GroupCommit(lambda: barrier(root_fd))
        self.writer = Writer(
            root,
            str(self.storage / "stage"),
            self._trash,
            self.cache,
            self._rules(),
            config.digest,
            meta=self.meta(),
            own=self.own_writes,
        )
        notes.extend(recover_redo_logs(self.storage, root))
        return EndpointInfo(
            root,
            True,
            created,
            host=socket.gethostname(),
            version=__version__,
            digest=config.digest,
            notes=tuple(notes),
        )

    def _rules(self) -> IgnoreRules:
        assert self.config is not None
        return IgnoreRules(self.config.ignores, self.config.ignore_vcs)

    def meta(self) -> MetaOptions:
        """Which metadata this session syncs (permission bits, owner, times)."""
        assert self.config is not None
        c = self.config
        return MetaOptions(c.permissions, c.owner, c.times)

    async def close(self) -> None:
        await asyncio.to_thread(self._close)

    def _close(self) -> None:
        self._delta.close()
        with self.write_lock:
            if self.writer is not None:
                self.writer.close()
                self.writer = None
            if self._trash is not None:
                self._trash.close()
                self._trash = None
        with self._read_lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None
        if self.cache is not None:
            self.cache.flush()

    # -- scanning ---------------------------------------------------------------------

    async def scan(
        self, under: Sequence[str] = ("",), recursive: bool = True, partial_parent: bool = False
    ) -> AsyncIterator[ScanBatch]:
        assert self.config is not None and self.cache is not None
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[ScanBatch | BaseException | None] = asyncio.Queue()
        stop = threading.Event()
        window = threading.Semaphore(SCAN_WINDOW)  # batches the consumer has not taken
        temps = self.writer.temps if self.writer is not None else None
        opts = ScanOptions(
            self._rules(),
            self.config.symlinks,
            self.config.digest,
            self.config.side,
            ranges=self._ranges,
            ranges_until_ns=self._ranges_until,
            meta=self.meta(),
            temps=temps,
        )
        cache = self.cache
        root = self.config.root

        def work() -> None:
            scanner = Scanner(RootDir(root), opts, cache)
            try:

                def emit(batch: ScanBatch) -> None:
                    cache.trim(CACHE_ENTRIES)  # memory stays bounded however big the tree
                    while not window.acquire(timeout=0.5):  # the consumer is behind: wait
                        if stop.is_set():
                            return
                    loop.call_soon_threadsafe(queue.put_nowait, batch)

                scanner.run(under, emit, stop, recursive=recursive, partial_parent=partial_parent)
                if not stop.is_set() and recursive:
                    for top in under:
                        cache.prune_dirs(scanner.seen, top)
                    if temps is not None and "" in under and not scanner.unlisted:
                        temps.scanned_all()  # no earlier run's temporary file is left
                cache.flush()
                loop.call_soon_threadsafe(queue.put_nowait, None)
            except BaseException as err:  # reported to the awaiting side
                loop.call_soon_threadsafe(queue.put_nowait, err)
            finally:
                scanner.close()
                scanner.root.close()

        task = loop.run_in_executor(None, work)
        try:
            while True:
                item = await queue.get()
                window.release()
                if item is None:
                    break
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            await task

    async def watch(self) -> AsyncIterator[DirtySet]:
        assert self.config is not None
        if not sys.platform.startswith("linux"):
            raise EndpointError(
                f"{self.config.side}: watching for changes is implemented for Linux only",
                hint="run `yeet sync` without --watch (e.g. from cron)",
            )
        from yeet.replica.watch.inotify import Dirty, InotifyWatcher
        from yeet.replica.watch.own import PENDING_SECONDS

        watcher = InotifyWatcher(self.config.root, self._rules(), own=self.own_writes)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Dirty] = asyncio.Queue()

        timer: list[asyncio.TimerHandle] = []

        def handle(dirty: Dirty, new_dirs: list[str]) -> None:
            if new_dirs:
                loop.run_in_executor(None, _watch_new, watcher, new_dirs)
            if dirty:
                queue.put_nowait(dirty)
            if watcher.held and not timer:  # events on paths our writer is changing
                timer.append(loop.call_later(PENDING_SECONDS, rechecked))

        def readable() -> None:
            handle(*watcher.read())

        def rechecked() -> None:
            if timer:
                timer.pop().cancel()
            handle(*watcher.recheck())

        def settled() -> None:  # (from the writer's thread) some pending paths are done
            if watcher.held:
                with contextlib.suppress(RuntimeError):  # the loop is gone
                    loop.call_soon_threadsafe(rechecked)

        await asyncio.to_thread(watcher.watch_tree, "")
        loop.add_reader(watcher.fileno(), readable)
        self.own_writes.listener = settled
        try:
            yield DirtySet((), watcher.pending.overflow)
            while True:
                dirty = await queue.get()
                while not queue.empty():
                    dirty.merge(queue.get_nowait())
                yield DirtySet(tuple(sorted(dirty.dirs)), dirty.overflow)
        finally:
            self.own_writes.listener = None
            for t in timer:
                t.cancel()
            loop.remove_reader(watcher.fileno())
            watcher.close()

    async def changes(self, since: bytes | None) -> Changes:
        """This host's change journal (the ``yeet tracer`` service), for this root."""
        assert self.config is not None
        if not self.config.tracer:
            return Changes(since or b"", False, reason="the change journal is off for this session")
        from yeet.replica.changes import ask, without_ignored  # stdlib only

        asked = time.time_ns()
        changes = await asyncio.to_thread(ask, self.config.root, since)
        rules = self._rules()
        if rules:
            changes = without_ignored(changes, rules.ignored)
        if changes.complete and since is not None:
            # the scans of this sync may update large files from these ranges
            self._ranges, self._ranges_until = dict(changes.files), asked
        else:
            self._ranges, self._ranges_until = {}, 0
        return changes

    # -- reading ----------------------------------------------------------------------

    async def read_files(self, requests: Sequence[ReadRequest]) -> list[ReadResult]:
        return await asyncio.to_thread(self._read_files, requests)

    def _read_files(self, requests: Sequence[ReadRequest]) -> list[ReadResult]:
        assert self.config is not None
        out = []
        with self._read_lock:
            assert self._reader is not None
            try:
                for req in requests:
                    out.append(self._read_one(self._reader, req))
            finally:
                self._reader.forget()
        return out

    def _read_one(self, root: RootDir, req: ReadRequest) -> ReadResult:
        """Read a whole file that must still be what the scan saw.

        The stat signature from the scan vouches for the content (the receiver
        verifies the digest of what it gets anyway); only when it differs is the
        content hashed here.
        """
        assert self.config is not None and self.cache is not None
        try:
            fd = root.open_file(req.path)
        except (OSError, NotADirectoryInRoot) as err:
            return ReadResult(req.path, problem=f"cannot read: {err.strerror or err}")
        try:
            st = os.fstat(fd)
            changed = differs(st, req.expected, self.meta())
            if changed:
                return ReadResult(req.path, problem=f"modified since the scan ({changed})")
            chunks = []
            size = st.st_size
            while True:
                chunk = os.read(fd, max(size + 1, 1 << 16))
                if not chunk:
                    break
                chunks.append(chunk)
        except OSError as err:
            return ReadResult(req.path, problem=f"cannot read: {err.strerror}")
        finally:
            os.close(fd)
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        known = self.cache.get(req.path)
        vouched = known is not None and known[0] == sig_of(st) and known[1] == req.expected.digest
        if len(data) != req.expected.size or not (
            vouched or digest.of_bytes(self.config.digest, data) == req.expected.digest
        ):
            return ReadResult(req.path, problem="modified since the scan")
        return ReadResult(req.path, data=data)

    async def read_range(self, path: str, expected: Entry, offset: int, length: int) -> bytes:
        return await asyncio.to_thread(self._read_range, path, expected, offset, length)

    def _read_range(self, path: str, expected: Entry, offset: int, length: int) -> bytes:
        sig = self._hashed_sig(path, expected)
        return read_with_sig(self.root_path(), path, sig, offset, length)

    async def read_open(self, path: str, expected: Entry) -> ReadSource:
        def check() -> ReadSource:
            sig = self._hashed_sig(path, expected)
            os.close(open_with_sig(self.root_path(), path, sig))
            return ReadSource(self.root_path(), path, sig)

        return await asyncio.to_thread(check)

    def _hashed_sig(self, path: str, expected: Entry) -> StatSig:
        """The stat signature ``path`` had when it was hashed as ``expected``'s digest
        (the stat cache's word), or ``FileChangedError``."""
        assert self.cache is not None
        known = self.cache.get(path)
        if known is None or known[1] != expected.digest:
            raise FileChangedError(path)
        return known[0]

    def root_path(self) -> str:
        assert self.config is not None
        return self.config.root

    # -- writing ----------------------------------------------------------------------

    async def apply(self, ops: Sequence[Op], trash_pass: int = 0) -> list[OpResult]:
        """Batches are staged concurrently but committed strictly in call order."""
        ticket = self._turns.ticket()
        return await asyncio.to_thread(self._apply, ops, ticket, trash_pass)

    def _apply(self, ops: Sequence[Op], ticket: int, trash_pass: int = 0) -> list[OpResult]:
        writer = self.writer
        assert writer is not None and self._durable is not None
        durable = self._durable
        try:
            prepared = writer.stage(ops)
            if prepared.staged and not prepared.each:
                durable.wait()  # new contents on disk before any rename
        finally:
            self._turns.wait_turn(ticket)
        try:
            with self.write_lock:
                if trash_pass and self._trash is not None:
                    self._trash.pass_id = trash_pass  # commits are serialised by the lock
                return writer.commit(ops, prepared, durable.wait)
        finally:
            self._turns.done(ticket)
            if self.cache is not None:
                self.cache.trim(CACHE_ENTRIES)  # what the writer recorded, too

    async def stage_open(self, path: str, new: Entry) -> StageInfo:
        def run() -> StageInfo:
            assert self.writer is not None
            handle, have, maybe = self.writer.stage_open(path, new)
            partial = self.writer.partial_path(handle)
            return StageInfo(handle, tuple(have), tuple(maybe), partial)

        return await asyncio.to_thread(run)

    async def stage_write(self, handle: int, offset: int, data: bytes) -> None:
        def run() -> None:
            assert self.writer is not None
            self.writer.stage_write(handle, offset, data)

        await asyncio.to_thread(run)

    async def stage_keep(self, handle: int, offset: int, length: int, expected: bytes) -> bool:
        def run() -> bool:
            assert self.writer is not None
            return self.writer.stage_keep(handle, offset, length, expected)

        return await asyncio.to_thread(run)

    async def stage_abort(self, handle: int, keep: bool = False) -> None:
        def run() -> None:
            with self.write_lock:
                assert self.writer is not None
                self.writer.stage_abort(handle, keep)

        await asyncio.to_thread(run)

    # -- deltas (yeet.replica.deltas) ---------------------------------------------

    async def signature(self, path: str, expect: Entry, size_hint: int = 0) -> SigReply:
        return await self._delta.signature(path, expect, size_hint)

    async def region_signatures(
        self, path: str, expect: Entry, regions: list[tuple[int, int]], size_hint: int = 0
    ) -> list[Signature]:
        return await self._delta.region_signatures(path, expect, regions, size_hint)

    async def delta_plan(self, path: str, expected: Entry, sig: Signature) -> PlanReply:
        return await self._delta.delta_plan(path, expected, sig)

    async def delta_ops(
        self, path: str, expected: Entry, offset: int, length: int, fine: list[Signature]
    ) -> list[DeltaOp]:
        return await self._delta.delta_ops(path, expected, offset, length, fine)

    async def patch_open(self, path: str, old: Entry, new: Entry, inplace: bool) -> int:
        return await self._delta.patch_open(path, old, new, inplace)

    async def patch_write(self, handle: int, offset: int, ops: list[DeltaOp]) -> None:
        await self._delta.patch_write(handle, offset, ops)

    async def patch_commit(self, handle: int) -> OpResult:
        return await self._delta.patch_commit(handle)

    async def patch_abort(self, handle: int) -> None:
        await self._delta.patch_abort(handle)

    async def stat_paths(self, paths: Sequence[str]) -> list[PathStat]:
        def run() -> list[PathStat]:
            root = RootDir(self.root_path())
            try:
                out = []
                for p in paths:
                    st = root.lstat(p)
                    out.append(
                        PathStat(p, False)
                        if st is None
                        else PathStat(p, True, st.st_mode, st.st_size, st.st_mtime)
                    )
                return out
            finally:
                root.close()

        return await asyncio.to_thread(run)

    # -- trash ------------------------------------------------------------------------

    async def trash_list(self) -> list[TrashItem]:
        assert self._trash is not None
        return await asyncio.to_thread(self._trash.items)

    async def trash_restore(
        self, items: Sequence[int], force: bool = False, trash_pass: int = 0
    ) -> list[OpResult]:
        return await asyncio.to_thread(self._trash_restore, items, force, trash_pass)

    def _trash_restore(self, items: Sequence[int], force: bool, trash_pass: int) -> list[OpResult]:
        with self.write_lock:
            assert self._trash is not None and self.writer is not None
            trash, root = self._trash, self.writer.root
            if trash_pass:
                trash.pass_id = trash_pass
            out: list[OpResult] = []
            done: list[int] = []
            try:
                for item in items:
                    result = self._restore_one(root, trash, item, force)
                    out.append(result)
                    if result.ok:
                        done.append(item)
                if done:
                    try:
                        barrier(root.fd)
                    except OSError as err:
                        # back in the tree but maybe not durable: say so (the rows
                        # stay; the next open drops them, their stored names are gone)
                        why = f"restored but not made durable: {err.strerror or err}"
                        out = [OpResult(r.path, False, why) if r.ok else r for r in out]
                        return out
            finally:
                root.forget()
            trash.restored(done)
            return out

    def _restore_one(self, root: RootDir, trash: Trash, item: int, force: bool) -> OpResult:
        try:
            path, stored = trash.take(item)
        except KeyError:
            return OpResult("", False, f"no trash item {item}")
        try:
            self._make_parents(root, parent_of(path))
            parent, name = root.locate(path)
            if root.lstat(path) is not None:
                if not force:
                    return OpResult(
                        path, False, "something is at that path now; use --force to trash it"
                    )
                trash.preserve(parent, name, path, None, move=True)
            try:
                place_new(trash.fd, stored, parent, name)
            except OSError as err:
                if err.errno != errno.EXDEV:
                    raise
                trash.copy_back(stored, parent, name)  # the trash is on another filesystem
        except FileExistsError:
            return OpResult(path, False, "something appeared at that path meanwhile; left alone")
        except OSError as err:  # NotADirectoryInRoot too: a parent is not a directory now
            return OpResult(path, False, f"cannot restore: {err.strerror or err}")
        return OpResult(path, True)

    @staticmethod
    def _make_parents(root: RootDir, path: str) -> None:
        if path == "" or root.lstat(path) is not None:
            return
        LocalEndpoint._make_parents(root, parent_of(path))
        parent, name = root.locate(path)
        os.mkdir(name, 0o777, dir_fd=parent)


def _watch_new(watcher: object, new_dirs: list[str]) -> None:
    from yeet.replica.watch.inotify import InotifyWatcher

    assert isinstance(watcher, InotifyWatcher)
    for d in new_dirs:
        created = d in watcher.created
        watcher.created.discard(d)
        watcher.watch_tree(d, created=created)
