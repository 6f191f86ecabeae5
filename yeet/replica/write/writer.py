"""Applying operations to a local root: staged, verified, trashed, durable.

Invariants owned here:

* New content is written to a staging file, its digest verified, made durable,
  and only then renamed into place; so at any instant the path holds either the
  old or the new content, never a torn mix.
* Before anything at a path is replaced or removed, the path is checked to
  still hold exactly what the plan saw (stat signature from the scan, else the
  digest); if not, nothing happens there and the result says "modified since
  scan" so the caller rescans instead of guessing.
* Replaced or removed content goes to the trash first (``yeet.replica.write.trash``).
* New content is never more open than its entry (``yeet.replica.fs.meta``): it is staged
  with its final permission bits, owner and time before it is renamed into place.
* When a batch returns, its renames are durable too, so the caller may record
  the new state as agreed.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import sqlite3
import stat
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import msgspec

from yeet.contract.values import Op, OpResult
from yeet.model import digest
from yeet.model.entries import Entry
from yeet.model.paths import join, parent_of
from yeet.replica.fs import durable as durability
from yeet.replica.fs import meta
from yeet.replica.fs.inuse import Dropped
from yeet.replica.fs.meta import MetaOptions
from yeet.replica.fs.rootdir import NotADirectoryInRoot, RootDir
from yeet.replica.fs.space import explain, is_full
from yeet.replica.scan.ignore import IgnoreRules
from yeet.replica.scan.statcache import StatCache, StatSig, sig_of
from yeet.replica.watch.own import OwnWrites
from yeet.replica.write import partial
from yeet.replica.write.staging import Staged, Staging
from yeet.replica.write.tempnames import TempNames
from yeet.replica.write.trash import Trash, copy_into

DIGEST_MISMATCH = "content does not match its digest (source modified during transfer?)"


class Mismatch(Exception):
    """The path no longer holds what the plan saw."""


@dataclass
class Prepared:
    """A staged batch: results already known (by op index), staged contents, and
    whether its durability is per file (``yeet.replica.fs.durable``) or one ``syncfs``."""

    results: list[OpResult | None]
    staged: dict[int, Staged]
    each: bool


class Writer(Staging):
    """Applies ``Op`` batches to one root. Not thread-safe: one batch at a time."""

    def __init__(
        self,
        root: str,
        stage_dir: str,
        trash: Trash,
        cache: StatCache,
        rules: IgnoreRules,
        alg: str,
        dirty: Callable[[], int | None] = durability.dirty_bytes,
        meta: MetaOptions | None = None,
        own: OwnWrites | None = None,
    ) -> None:
        self.meta = meta or MetaOptions()
        self.own = own  # what this writer left where (the watcher's "not an edit")
        self.dirty = dirty  # bytes others have waiting for writeback (durability choice)
        self.root = RootDir(root)  # used by commit (one batch at a time)
        self.stage_root = RootDir(root)  # used by staging, under _stage_lock
        self._stage_lock = threading.RLock()
        os.makedirs(stage_dir, mode=0o700, exist_ok=True)
        self.stage_dir = os.path.abspath(stage_dir)
        self.stage_fd = os.open(stage_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self.same_device = os.fstat(self.stage_fd).st_dev == self.root.dev
        self.trash = trash
        self.cache = cache
        self.rules = rules
        self.alg = alg
        self._handles: dict[int, tuple[str, Staged, Entry]] = {}
        self._reserved: dict[str, int] = {}  # trash rows of the batch being committed
        self._partials: dict[int, partial.Partial] = {}
        self._next_handle = 1
        self._made: dict[str, Entry] = {}  # what a path holds when it is not its op's entry
        self.temps = TempNames(trash.conn, trash.lock, trash.side, self._trash_leftover)
        self._temps_left = False  # an in-tree temporary file could not be removed
        self._clean_stage_dir()

    def close(self) -> None:
        for handle in list(self._handles):  # partial uploads stay, to be resumed
            item = self._handles.pop(handle)
            upload = self._partials.pop(handle, None)
            if upload is not None:
                upload.close()
            else:
                self._discard(item[0], item[1])
        self.temps.close(clean=not self._temps_left)
        os.close(self.stage_fd)
        self.root.close()
        self.stage_root.close()

    def _trash_leftover(self, dir_fd: int, name: str, path: str) -> None:
        """A temporary file an earlier (crashed) run left in the tree goes to the trash."""
        self.trash.preserve(dir_fd, name, path, None, move=True)

    def _clean_stage_dir(self) -> None:
        """Leftovers of a crashed run are never content anybody relies on; young
        partial uploads are kept, to be resumed."""
        partial.clean(self.stage_fd)

    def _prepare(self, op: Op, each: bool) -> Staged:
        """Stage the new content of a file op and verify its digest."""
        assert op.new is not None
        if op.stage is not None:
            item = self._handles.pop(op.stage, None)
            upload = self._partials.pop(op.stage, None)
            if item is None:
                raise Dropped("its upload")
            staged = item[1]
            if upload is not None:
                # A good partial becomes an ordinary staged file; a bad one is dropped.
                staged.fd = os.dup(upload.fd)
                upload.close()  # (after its last chunk writes)
                upload.forget_log()
            else:
                staged.use.retire()  # its last chunk writes finish first
            os.lseek(staged.fd, 0, os.SEEK_SET)
            value, size, staged.leaves = digest.tree_of_fd(self.alg, staged.fd, op.new.size)
        else:
            st = self.stage_root.lstat(op.path) if op.old is not None and op.old.is_file else None
            staged = self._stage_create(op.path, meta.file_mode(op.new, st, self.meta))
            if op.data is not None:
                view = memoryview(op.data)
                while view:
                    view = view[os.write(staged.fd, view) :]
                value, size = digest.of_bytes(self.alg, op.data), len(op.data)
            elif op.copy_from is not None:
                src = self.stage_root.open_file(op.copy_from)
                try:
                    copy_into(src, staged.fd)
                finally:
                    os.close(src)
                os.lseek(staged.fd, 0, os.SEEK_SET)
                value, size, staged.leaves = digest.tree_of_fd(self.alg, staged.fd, op.new.size)
            else:
                self._discard(op.path, staged)
                raise Mismatch("no content given for a file")
        if value != op.new.digest or size != op.new.size:
            self._discard(op.path, staged)
            raise Mismatch(DIGEST_MISMATCH)
        if self.meta.owner or self.meta.times:
            old = self.stage_root.lstat(op.path) if op.old is not None else None
            try:
                meta.apply_fd(staged.fd, op.new, meta.file_mode(op.new, old, self.meta), self.meta)
            except OSError:
                self._discard(op.path, staged)
                raise
        durability.sync_file(staged.fd, each)
        os.close(staged.fd)
        staged.fd = -1
        return staged

    # -- checking what is there -------------------------------------------------------

    def _check(self, parent: int, name: str, path: str, old: Entry | None) -> os.stat_result | None:
        """Raise ``Mismatch`` unless ``path`` holds ``old``; return its lstat."""
        try:
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            st = None
        if old is None:
            if st is not None:
                raise Mismatch("something appeared at this path since the scan")
            return None
        if st is None:
            raise Mismatch("it disappeared since the scan")
        mode = st.st_mode
        if old.is_dir:
            if not stat.S_ISDIR(mode):
                raise Mismatch("no longer a directory")
            changed = meta.differs(st, old, self.meta)
            if changed:
                raise Mismatch(changed)
        elif old.is_symlink:
            if not stat.S_ISLNK(mode) or os.readlink(name, dir_fd=parent) != old.target:
                raise Mismatch("symlink changed since the scan")
        elif old.is_file:
            if not stat.S_ISREG(mode):
                raise Mismatch("file changed since the scan")
            changed = meta.differs(st, old, self.meta)
            if changed:
                raise Mismatch(changed)
            sig = sig_of(st)
            known = self.cache.get(path)
            if known is None or known[0] != sig or known[1] != old.digest:
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
                try:
                    value, size = digest.of_fd(self.alg, fd, st.st_size)
                finally:
                    os.close(fd)
                if value != old.digest or size != old.size:
                    raise Mismatch("file modified since the scan")
        else:
            raise Mismatch("cannot replace unsupported content")
        return st

    # -- applying ---------------------------------------------------------------------

    def apply(self, ops: Sequence[Op]) -> list[OpResult]:
        """Stage, make durable, commit, make durable: a whole batch, single-threaded."""
        prepared = self.stage(ops)
        if not prepared.each:
            durability.barrier(self.stage_fd)
        return self.commit(ops, prepared, lambda: durability.barrier(self.root.fd))

    def stage(self, ops: Sequence[Op]) -> Prepared:
        """Phase 1 (may run while another batch commits): write new contents aside.

        Unless ``each``, needs a durability barrier before ``commit``.
        """
        results: list[OpResult | None] = [None] * len(ops)
        staged: dict[int, Staged] = {}
        files = sum(1 for op in ops if op.new is not None and op.new.is_file)
        dirs = len({parent_of(op.path) for op in ops}) + 2  # + trash, staging
        each = durability.each_file(files, dirs, self.dirty())
        with self._stage_lock:
            try:
                for i, op in enumerate(ops):
                    if op.new is not None and op.new.is_file and not self._meta_only(op):
                        if not self.same_device and op.stage is None:
                            continue  # staged next to its target, at commit time
                        try:
                            staged[i] = self._prepare(op, each)
                        except Mismatch as err:
                            results[i] = OpResult(op.path, False, str(err), transient=True)
                        except OSError as err:
                            results[i] = self._failed(op, err)
            finally:
                self.stage_root.forget()
        return Prepared(results, staged, each)

    def commit(
        self,
        ops: Sequence[Op],
        prepared: Prepared,
        durable: Callable[[], None],
    ) -> list[OpResult]:
        """Phase 2 (one batch at a time, in order): check, trash, rename into place;
        then make it durable (``durable``: the barrier, unless per file)."""
        results, staged = prepared.results, prepared.staged
        try:
            self._reserved = self.trash.reserve(
                [
                    (op.path, op.old)
                    for i, op in enumerate(ops)
                    if results[i] is None
                    and op.old is not None
                    and not op.old.is_dir
                    and not self._meta_only(op)
                ]
            )
        except sqlite3.Error:  # (e.g. a full disk) each op then tries on its own
            self._reserved = {}
        unsettled = {op.path for i, op in enumerate(ops) if results[i] is None}
        if self.own is not None:
            self.own.begin(unsettled)  # (the watcher holds their events until we are done)
        try:
            for i, op in enumerate(ops):
                if results[i] is not None:
                    continue
                s = staged.pop(i, None)
                needs_content = op.new is not None and op.new.is_file and not self._meta_only(op)
                if s is None and not self.same_device and needs_content:
                    try:
                        with self._stage_lock:
                            s = self._prepare(op, True)
                    except Mismatch as err:
                        results[i] = OpResult(op.path, False, str(err), transient=True)
                        continue
                    except OSError as err:
                        results[i] = self._failed(op, err)
                        continue
                unsettled.discard(op.path)  # (``_apply_one`` tells ``own``)
                results[i] = self._apply_one(op, s)
            if prepared.each:
                self._sync_dirs(ops)
            else:
                durable()
        finally:
            if self.own is not None and unsettled:
                self.own.end(unsettled)
            for i, left in staged.items():
                self._discard(ops[i].path, left)
            self.root.forget()
            with contextlib.suppress(sqlite3.Error):  # unused rows: they list nothing stored
                self.trash.release(self._reserved.values())
            self._reserved = {}
        return [r for r in results if r is not None]

    def _sync_dirs(self, ops: Sequence[Op]) -> None:
        """Per-file durability, last step: the directories this batch changed."""
        durability.sync_dirs((self.trash.fd, self.stage_fd))
        for parent in sorted({parent_of(op.path) for op in ops}):
            try:
                fd = self.root.dir_fd(parent)  # (may close other cached fds: one at a time)
            except (FileNotFoundError, NotADirectoryInRoot):
                continue  # removed by this batch: its parent is synced
            durability.sync_dirs((fd,))

    @staticmethod
    def _meta_only(op: Op) -> bool:
        """The same file with other metadata (permission bits, owner, time)."""
        return (
            op.old is not None
            and op.new is not None
            and op.old.is_file
            and op.new.is_file
            and op.old.digest == op.new.digest
            and op.stage is None
        )

    def _apply_one(self, op: Op, staged: Staged | None) -> OpResult:
        try:
            parent, name = self.root.locate(op.path)
        except (FileNotFoundError, NotADirectoryInRoot):
            if staged is not None:
                self._discard(op.path, staged)
            if self.own is not None:
                self.own.end([op.path])
            return OpResult(op.path, False, "its parent directory is missing", transient=True)
        told = False
        try:
            if self._made_already(parent, name, op):
                return OpResult(op.path, True)
            st = self._check(parent, name, op.path, op.old)
            self._change(parent, name, op, st, staged)
            if self.own is not None:
                try:
                    after = os.stat(name, dir_fd=parent, follow_symlinks=False)
                except FileNotFoundError:
                    after = None
                self.own.wrote(op.path, after)
                told = True
        except Mismatch as err:
            if staged is not None:
                self._discard(op.path, staged)
            return OpResult(op.path, False, str(err), transient=True)
        except OSError as err:
            if staged is not None:
                self._discard(op.path, staged)
            return self._failed(op, err)
        except sqlite3.Error as err:  # the trash could not record what it would hold
            if staged is not None:
                self._discard(op.path, staged)
            return OpResult(op.path, False, f"yeet's state cannot be updated: {err}")
        finally:
            if self.own is not None and not told:
                self.own.end([op.path])  # it wrote nothing there
        return OpResult(op.path, True, applied=self._made.pop(op.path, None))

    def _failed(self, op: Op, err: OSError) -> OpResult:
        """An op that failed with ``err`` (a full filesystem says how much it needs)."""
        if is_full(err):
            needs = op.new.size if op.new is not None and op.new.is_file else None
            err = explain(err, self.root.fd, needs)
        return OpResult(op.path, False, _oserror(err))

    def _change(
        self, parent: int, name: str, op: Op, st: os.stat_result | None, staged: Staged | None
    ) -> None:
        old, new = op.old, op.new
        if new is None:
            self._remove(parent, name, op.path, old)
            return
        if new.is_dir:
            if old is not None and old.is_dir:  # the same directory, other metadata
                if not self.meta.portable:
                    meta.apply_at(parent, name, new, new.mode & 0o777, self.meta)
                return
            if old is not None:
                self._preserve(parent, name, op.path, old, move=True)
            self._mkdir(parent, name, op.path, new)
            return
        if new.is_file and staged is None:  # metadata only
            assert st is not None
            meta.apply_at(parent, name, new, meta.file_mode(new, st, self.meta), self.meta)
            after = os.stat(name, dir_fd=parent, follow_symlinks=False)
            leaves = self.cache.blocks.of_content(op.path, self.alg, new.size, new.digest)
            self._remember(op.path, sig_of(after), new.digest, leaves)
            return
        if old is not None and old.is_dir:
            self._remove(parent, name, op.path, old)
        elif old is not None:
            self._preserve(parent, name, op.path, old, move=False)
        if new.is_symlink:
            if self.same_device:
                tmp, tmp_fd = f".yeet-tmp-{secrets.token_hex(8)}", self.stage_fd
            else:  # next to its target: a name recorded as ours (``tempnames``)
                tmp, tmp_fd = self.temps.new(), parent
                if self.own is not None:
                    self.own.temp(join(parent_of(op.path), tmp))
            os.symlink(new.target, tmp, dir_fd=tmp_fd)
            try:
                os.rename(tmp, name, src_dir_fd=tmp_fd, dst_dir_fd=parent)
            except OSError:
                with contextlib.suppress(OSError):
                    os.unlink(tmp, dir_fd=tmp_fd)
                raise
            with contextlib.suppress(sqlite3.Error):  # (made: see ``_remember``)
                self.cache.drop(op.path)
            return
        assert staged is not None
        src_fd = parent if staged.in_target_dir else self.stage_fd
        os.rename(staged.name, name, src_dir_fd=src_fd, dst_dir_fd=parent)
        after = os.stat(name, dir_fd=parent, follow_symlinks=False)
        self._remember(op.path, sig_of(after), new.digest, staged.leaves)

    def _remember(self, path: str, sig: StatSig, value: bytes, leaves: list[bytes] | None) -> None:
        """Cache the digest of content just put in place. The change is made: a cache
        that cannot be written (a full disk under yeet's state) only costs a hash."""
        try:
            self.cache.store(path, sig, value, leaves=leaves)
        except sqlite3.Error:
            with contextlib.suppress(sqlite3.Error):
                self.cache.drop(path)

    def _made_already(self, parent: int, name: str, op: Op) -> bool:
        """A directory to create is there already with its entry's metadata (the same
        change decided twice, by passes that overlapped): that is done, not
        "something appeared"."""
        if op.old is not None or op.new is None or not op.new.is_dir:
            return False
        try:
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return False
        if not stat.S_ISDIR(st.st_mode):
            return False
        return not op.new.mode or not meta.differs(st, op.new, self.meta)

    def _mkdir(self, parent: int, name: str, path: str, new: Entry) -> None:
        """Create a directory with (at most) its entry's bits, plus what its owner
        needs to fill it: if those differ, the result says what the disk holds, so
        the next sync narrows it to the entry's bits once its children are there."""
        mode = meta.dir_mode(new, self.meta)
        os.mkdir(name, mode, dir_fd=parent)
        if new.mode and not self.meta.portable:
            meta.apply_at(parent, name, new, mode, self.meta)
            if mode != new.mode & 0o777:
                self._made[path] = msgspec.structs.replace(new, mode=new.mode | 0o700)

    def _preserve(self, parent: int, name: str, path: str, old: Entry | None, move: bool) -> None:
        reserved = self._reserved.pop(path, None)
        self.trash.preserve(parent, name, path, old, move=move, reserved=reserved)

    def _remove(self, parent: int, name: str, path: str, old: Entry | None) -> None:
        self.cache.drop(path)
        if old is None or not old.is_dir:
            self._preserve(parent, name, path, old, move=True)
            return
        try:
            os.rmdir(name, dir_fd=parent)
        except OSError as err:
            if err.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            self._remove_ignored_then_rmdir(parent, name, path)
        self.root.forget(path)

    def _remove_ignored_then_rmdir(self, parent: int, name: str, path: str) -> None:
        """A directory to delete still holds ignored content: trash it, then rmdir."""
        fd = os.open(
            name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent
        )
        try:
            leftovers = []
            for de in os.scandir(fd):
                child = f"{path}/{de.name}"
                is_dir = de.is_dir(follow_symlinks=False)
                if not self.rules.ignored(child, is_dir):
                    raise Mismatch("directory is not empty: new content appeared since the scan")
                leftovers.append(de.name)
            for leftover in leftovers:
                self.trash.preserve(fd, leftover, f"{path}/{leftover}", None, move=True)
        finally:
            os.close(fd)
        os.rmdir(name, dir_fd=parent)


def _oserror(err: OSError) -> str:
    where = f" ({err.filename})" if err.filename else ""
    return f"{err.strerror or err}{where}"
