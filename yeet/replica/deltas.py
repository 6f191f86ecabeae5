"""The delta calls of a local endpoint (both roles: source and receiver).

Invariants owned here:

* Source calls read only a file that still is the entry the plan expects (its
  stat signature is the one the scan recorded for that digest); receiver calls
  sign only an old file that still is the expected old entry.
* ``patch_commit`` re-checks, under the endpoint's write lock and just before
  touching the file, that the path still holds the old entry (stat signature,
  else digest), exactly like every other mutation (``Writer._check``).
* A large file is patched in a reflink clone renamed over it where the
  filesystem can clone (``yeet.replica.write.clone``: no reader ever sees a mix; the
  old version goes to the trash when that costs a hard link), else in place
  through the redo log (``yeet.replica.write.inplace``; old blocks are
  overwritten, nothing goes to the trash). Staged patches go through the
  ``Writer`` and so trash the old file like any replacement.
* In-place redo logs live per root, not per session (``root_redo_dir``): a
  redo log left by a crash is rolled forward or back by the next yeet process
  that opens that root (any session, the agent included), at ``open``, before
  anything else touches the tree.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from yeet.contract.values import Op, OpResult, PlanReply, SigReply
from yeet.delta.ops import DeltaOp
from yeet.delta.signature import Signature
from yeet.model import digest
from yeet.model.entries import Entry
from yeet.model.paths import join, parent_of
from yeet.replica.fs import durable, meta
from yeet.replica.fs.inuse import Dropped
from yeet.replica.fs.rootdir import NotADirectoryInRoot, RootDir
from yeet.replica.fs.space import explain, is_full
from yeet.replica.scan.signed import FileChangedError
from yeet.replica.scan.statcache import sig_of
from yeet.replica.write import deltafile
from yeet.replica.write.writer import DIGEST_MISMATCH, Mismatch
from yeet.state.sessions import state_home

if TYPE_CHECKING:
    import threading
    from collections.abc import Sequence

    from yeet.contract.values import EndpointConfig
    from yeet.replica.fs.meta import MetaOptions
    from yeet.replica.scan.statcache import StatCache
    from yeet.replica.watch.own import OwnWrites
    from yeet.replica.write.inplace import Stats
    from yeet.replica.write.writer import Writer

UNSUPPORTED = "delta chunking is not available here (no pyfastcdc/blake3): whole files are sent"


def journal_dir(storage: Path) -> str:
    """The session side's own directory: delta spools (and redo logs of older yeets)."""
    path = storage / "journal"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return str(path)


def root_redo_dir(root: str) -> str:
    """Where the in-place redo logs of files under ``root`` live on this host, whichever
    session writes them: every yeet process that opens the root recovers them."""
    key = hashlib.blake2b(os.fsencode(os.path.realpath(root)), digest_size=12).hexdigest()
    path = state_home() / "inplace" / key
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return str(path)


def recover_redo_logs(storage: Path, root: str) -> list[str]:
    """Finish or undo in-place patches a crash interrupted; drop stale spools."""
    from yeet.replica.write.inplace import recover

    done = recover(root_redo_dir(root), verify=False)
    own = journal_dir(storage)
    done += recover(own, verify=False)
    for name in os.listdir(own):
        if name.endswith(".spool"):
            os.unlink(os.path.join(own, name))
    return [f"{r.path}: interrupted in-place update {r.action}" for r in done if r.path]


class _Open:
    def __init__(
        self, patch: deltafile.Patch, path: str, old: Entry, new: Entry, stage: int | None
    ) -> None:
        self.patch, self.path, self.old, self.new, self.stage = patch, path, old, new, stage
        self.wrote = False  # the in-place commit changed the file (told ``own_writes``)


class DeltaHost(Protocol):
    """What the delta calls use of the endpoint they serve (``LocalEndpoint``)."""

    config: EndpointConfig | None
    storage: Path
    cache: StatCache | None
    writer: Writer | None
    write_lock: threading.Lock
    own_writes: OwnWrites
    reflinks: bool

    def meta(self) -> MetaOptions: ...
    def root_path(self) -> str: ...
    async def stage_abort(self, handle: int, keep: bool = False) -> None: ...
    async def apply(self, ops: Sequence[Op], trash_pass: int = 0) -> list[OpResult]: ...


class LocalDelta:
    def __init__(self, host: DeltaHost) -> None:
        self.host = host
        self._open: dict[int, _Open] = {}
        self._next = 1

    def close(self) -> None:
        """Patches never committed are dropped (their staged copies go with the Writer)."""
        for item in self._open.values():
            item.patch.close()
        self._open.clear()

    # -- helpers ----------------------------------------------------------------------

    def _file(self, path: str) -> int:
        root = RootDir(self.host.root_path())
        try:
            return root.open_file(path)
        finally:
            root.close()

    def _vouched(self, path: str, st: os.stat_result, expected: Entry) -> bool:
        cache = self.host.cache
        assert cache is not None
        known = cache.get(path)
        return known is not None and known[0] == sig_of(st) and known[1] == expected.digest

    def _shape(self, st: os.stat_result, expected: Entry) -> str | None:
        if st.st_size != expected.size:
            return "modified since the scan (size)"
        if not stat.S_ISREG(st.st_mode):
            return "no longer a file"
        changed = meta.differs(st, expected, self.host.meta())
        return f"modified since the scan ({changed})" if changed else None

    def _alg(self) -> str:
        assert self.host.config is not None
        return self.host.config.digest

    # -- receiver: signatures -----------------------------------------------------------

    async def signature(self, path: str, expect: Entry, size_hint: int = 0) -> SigReply:
        if not deltafile.available():
            return SigReply(unsupported=True, problem=UNSUPPORTED)
        return await asyncio.to_thread(self._signature, path, expect, size_hint)

    def _signature(self, path: str, expect: Entry, size_hint: int) -> SigReply:
        try:
            fd = self._file(path)
        except (OSError, NotADirectoryInRoot) as err:
            return SigReply(problem=f"cannot read: {getattr(err, 'strerror', None) or err}")
        try:
            st = os.fstat(fd)
            bad = self._shape(st, expect)
            if bad:
                return SigReply(problem=bad)
            vouched = self._vouched(path, st, expect)
            check = not vouched and self._alg() == "blake3"
            sig = deltafile.sign_file(fd, st.st_size, digest=check, size_hint=size_hint)
            if not vouched:
                if check:
                    same = sig.digest == expect.digest
                else:
                    os.lseek(fd, 0, os.SEEK_SET)
                    same = digest.of_fd(self._alg(), fd, st.st_size)[0] == expect.digest
                if not same:
                    return SigReply(problem="modified since the scan")
            return SigReply(sig)
        finally:
            os.close(fd)

    async def region_signatures(
        self, path: str, expect: Entry, regions: list[tuple[int, int]], size_hint: int = 0
    ) -> list[Signature]:
        return await asyncio.to_thread(self._region_signatures, path, expect, regions, size_hint)

    def _region_signatures(
        self, path: str, expect: Entry, regions: list[tuple[int, int]], size_hint: int
    ) -> list[Signature]:
        fd = self._file(path)
        try:
            if os.fstat(fd).st_size != expect.size:
                raise OSError(f"{path}: modified since the scan")
            ok = [(o, n) for o, n in regions if o >= 0 and n > 0 and o + n <= expect.size]
            return deltafile.sign_regions(fd, ok, size_hint or expect.size)
        finally:
            os.close(fd)

    # -- source: plans and ops ------------------------------------------------------------

    def _source(self, path: str, expected: Entry) -> int:
        fd = self._file(path)
        st = os.fstat(fd)
        if self._shape(st, expected) or not self._vouched(path, st, expected):
            os.close(fd)
            raise FileChangedError(path)
        return fd

    async def delta_plan(self, path: str, expected: Entry, sig: Signature) -> PlanReply:
        if not deltafile.available():
            return PlanReply(unsupported=True, problem=UNSUPPORTED)

        def run() -> PlanReply:
            try:
                fd = self._source(path, expected)
            except (OSError, NotADirectoryInRoot) as err:
                return PlanReply(problem=str(err))
            try:
                return PlanReply(tuple(deltafile.plan_file(fd, expected.size, sig)))
            finally:
                os.close(fd)

        return await asyncio.to_thread(run)

    async def delta_ops(
        self, path: str, expected: Entry, offset: int, length: int, fine: list[Signature]
    ) -> list[DeltaOp]:
        if offset < 0 or length < 0 or offset + length > expected.size:
            raise OSError(f"{path}: bad range {offset}+{length}")

        def run() -> list[DeltaOp]:
            fd = self._source(path, expected)
            try:
                return deltafile.ops_for(fd, offset, length, fine)
            finally:
                os.close(fd)

        return await asyncio.to_thread(run)

    # -- receiver: patching -------------------------------------------------------------

    async def patch_open(self, path: str, old: Entry, new: Entry, inplace: bool) -> int:
        return await asyncio.to_thread(self._patch_open, path, old, new, inplace)

    def _patch_open(self, path: str, old: Entry, new: Entry, inplace: bool) -> int:
        writer = self.host.writer
        assert writer is not None
        handle = self._next
        self._next += 1
        old_fd = self._file(path)
        try:
            st = os.fstat(old_fd)
            if st.st_size != old.size:
                raise OSError(f"{path}: modified since the scan")
            if inplace:
                spool_name = f"{os.getpid()}-{handle}.spool"
                spool = os.path.join(journal_dir(self.host.storage), spool_name)
                patch = deltafile.Patch(path, new.size, old_fd, st.st_size, spool=spool)
                self._open[handle] = _Open(patch, path, old, new, None)
            else:
                stage, _have, _maybe = writer.stage_open(path, new)
                patch = deltafile.Patch(
                    path, new.size, old_fd, st.st_size, stage_fd=writer.staged_fd(stage)
                )
                self._open[handle] = _Open(patch, path, old, new, stage)
        except BaseException:
            os.close(old_fd)
            raise
        return handle

    async def patch_write(self, handle: int, offset: int, ops: list[DeltaOp]) -> None:
        item = self._open.get(handle)
        if item is None:
            raise Dropped("the delta")  # aborted: another piece of it failed
        try:
            await asyncio.to_thread(item.patch.write, offset, ops)
        except deltafile.PatchError as err:
            raise OSError(f"{item.path}: {err}") from None
        except OSError as err:
            if is_full(err):
                if item.stage is None:  # spooled next to the redo log, in yeet's state
                    spool = str(self.host.storage)
                    raise explain(err, spool, item.new.size, f"in {spool}") from None
                raise explain(err, self.host.root_path(), item.new.size) from None
            raise

    async def patch_abort(self, handle: int) -> None:
        item = self._open.pop(handle, None)
        if item is not None:
            await asyncio.to_thread(item.patch.close)  # (after its writes in flight)
            if item.stage is not None:
                await self.host.stage_abort(item.stage)

    async def patch_commit(self, handle: int) -> OpResult:
        item = self._open.pop(handle, None)
        if item is None:
            return OpResult("", False, f"unknown patch handle {handle}", transient=True)
        try:
            item.patch.check_complete()
        except deltafile.PatchError as err:
            await self._drop(item)
            return OpResult(item.path, False, f"delta incomplete: {err}", whole=True)
        if item.stage is not None:
            item.patch.close()  # the staged copy is complete: the Writer takes it from here
            op = Op(item.path, item.old, item.new, stage=item.stage)
            (result,) = await self.host.apply([op])
            if not result.ok and result.problem == DIGEST_MISMATCH:
                return OpResult(item.path, False, "delta result has the wrong digest", whole=True)
            return result
        try:
            return await asyncio.to_thread(self._commit_inplace, item)
        finally:
            item.patch.close()

    def _tree(self, item: _Open, st: os.stat_result) -> digest.TreeUpdate | None:
        """An update of the old content's cached leaves, if they are the file's now
        (same signature as when cached, and their root is the old digest)."""
        cache = self.host.cache
        assert cache is not None
        alg, old = self._alg(), item.old
        leaves = cache.blocks.of_content(item.path, alg, old.size, old.digest, sig_of(st))
        return None if leaves is None else digest.TreeUpdate(alg, leaves, old.size, item.new.size)

    async def _drop(self, item: _Open) -> None:
        await asyncio.to_thread(item.patch.close)
        if item.stage is not None:
            await self.host.stage_abort(item.stage)

    def _commit_inplace(self, item: _Open) -> OpResult:
        from yeet.replica.write.inplace import InplaceAborted, apply_inplace

        host = self.host
        writer, cache = host.writer, host.cache
        assert writer is not None and cache is not None
        alg = self._alg()
        opts = host.meta()
        with host.write_lock:
            host.own_writes.begin([item.path])
            try:
                parent, name = writer.root.locate(item.path)
                st = writer._check(parent, name, item.path, item.old)
                assert st is not None
                if st.st_ino != os.fstat(item.patch.old_fd).st_ino:
                    raise Mismatch("file replaced since the delta started")
                stats = self._commit_cloned(item, parent, name, st) if host.reflinks else None
                if stats is None:  # this filesystem cannot clone: the redo log
                    stats = apply_inplace(
                        os.path.join(host.root_path(), item.path),
                        item.patch.ops(),
                        item.new.size,
                        item.new.digest,
                        root_redo_dir(host.root_path()),
                        hasher=lambda: digest.new(alg, threads=True),
                        tree=self._tree(item, st),
                    )
                    mode = meta.file_mode(item.new, st, opts)
                    meta.apply_at(parent, name, item.new, mode, opts)
                after = os.stat(name, dir_fd=parent, follow_symlinks=False)
                cache.store(item.path, sig_of(after), item.new.digest, leaves=stats.leaves)
                host.own_writes.wrote(item.path, after)
                item.wrote = True
            except (Mismatch, FileNotFoundError, NotADirectoryInRoot) as err:
                return OpResult(item.path, False, str(err), transient=True)
            except InplaceAborted as err:
                return OpResult(item.path, False, f"in-place delta: {err}", whole=True)
            except OSError as err:
                if is_full(err):
                    err = explain(err, writer.root.fd, item.new.size - item.old.size)
                return OpResult(item.path, False, f"in-place delta: {err.strerror or err}")
            finally:
                if not item.wrote:
                    host.own_writes.end([item.path])
                writer.root.forget()
        return OpResult(item.path, True)

    def _commit_cloned(
        self, item: _Open, parent: int, name: str, st: os.stat_result
    ) -> Stats | None:
        """Patch a reflink clone of the file and rename it over the file (the old
        version into the trash when that costs a link); None if this filesystem
        cannot clone (then ``host.reflinks`` is False from now on)."""
        from yeet.replica.write.clone import CloneUnsupported, patch_clone

        host, writer = self.host, self.host.writer
        assert writer is not None
        opts, alg = host.meta(), self._alg()
        if writer.same_device:  # the staging directory: nothing of ours in the tree
            dir_fd, tmp = writer.stage_fd, f".yeet-tmp-clone-{os.getpid()}-{id(item):x}"
        else:
            dir_fd, tmp = parent, writer.temps.new()
            host.own_writes.temp(join(parent_of(item.path), tmp))
        dst = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600, dir_fd=dir_fd)
        try:
            try:
                stats = patch_clone(
                    item.patch.old_fd,
                    dst,
                    item.patch.ops(),
                    item.new.size,
                    item.new.digest,
                    hasher=lambda: digest.new(alg, threads=True),
                    tree=self._tree(item, st),
                )
            except CloneUnsupported:
                host.reflinks = False
                os.unlink(tmp, dir_fd=dir_fd)
                return None
            meta.apply_fd(dst, item.new, meta.file_mode(item.new, st, opts), opts)
            os.fsync(dst)
        except BaseException:
            os.unlink(tmp, dir_fd=dir_fd)
            raise
        finally:
            os.close(dst)
        try:
            if writer.trash.dev == st.st_dev:
                writer.trash.preserve(parent, name, item.path, item.old, move=False)
            os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=parent)
        except BaseException:
            os.unlink(tmp, dir_fd=dir_fd)
            raise
        durable.sync_dirs((parent, dir_fd, writer.trash.fd))
        return stats
