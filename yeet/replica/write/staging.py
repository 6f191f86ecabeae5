"""Receiving large files: staged uploads a ``Writer`` commits, resumable where they can be.

Invariants owned here:

* An upload is written into a staging file that only yeet knows (the session's
  staging directory on the root's device, else a temporary name of this run next to
  its target: ``tempnames``), created with its final permission bits; nothing in the
  tree changes until the ``Writer`` commits it.
* On the root's device an upload is a resumable partial (``partial``): its chunk
  record survives a crash, so a later attempt asks only for what is missing.
* A large upload that cannot fit is refused before it starts (``space.check_room``).
* A handle is usable until it is aborted or committed; after that a call on it is
  ``Dropped`` (an ordinary per-path failure), and chunk writes in flight finish
  before its descriptor is closed (``InUse``).
"""

from __future__ import annotations

import os
import secrets
import threading
from dataclasses import dataclass, field

from yeet.model.entries import Entry
from yeet.model.paths import join, parent_of
from yeet.replica.fs import meta
from yeet.replica.fs.inuse import Dropped, InUse
from yeet.replica.fs.meta import MetaOptions
from yeet.replica.fs.rootdir import RootDir
from yeet.replica.fs.space import allocated, check_room, explain
from yeet.replica.watch.own import OwnWrites
from yeet.replica.write import partial
from yeet.replica.write.tempnames import TempNames


@dataclass
class Staged:
    name: str  # inside the staging directory, or a temp name in the target dir
    in_target_dir: bool
    fd: int = -1
    leaves: list[bytes] | None = None  # tree leaves of the content (large files)
    use: InUse = field(default_factory=InUse)  # chunk writes in flight (large files)


class Staging:
    """Mixed into ``Writer``, which sets these up (and commits what is staged)."""

    meta: MetaOptions
    own: OwnWrites | None
    root: RootDir
    stage_root: RootDir
    stage_dir: str
    stage_fd: int
    same_device: bool
    temps: TempNames
    _stage_lock: threading.RLock
    _handles: dict[int, tuple[str, Staged, Entry]]
    _partials: dict[int, partial.Partial]
    _next_handle: int
    _temps_left: bool

    # -- staging ----------------------------------------------------------------------

    def _stage_create(self, path: str, mode: int) -> Staged:
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        if self.same_device:
            name = f".yeet-tmp-{secrets.token_hex(8)}"
            fd = os.open(name, flags, mode, dir_fd=self.stage_fd)
            staged = Staged(name, False, fd)
        else:  # next to its target: a name recorded as ours (``tempnames``)
            parent, _ = self.stage_root.locate(path)
            name = self.temps.new()
            if self.own is not None:
                self.own.temp(join(parent_of(path), name))
            fd = os.open(name, flags, mode, dir_fd=parent)
            staged = Staged(name, True, fd)
        if mode & meta.UMASK:  # bits the umask took away at creation
            os.fchmod(fd, mode)
        return staged

    def _stage_dir_fd(self, path: str, staged: Staged) -> int:
        return self.stage_root.locate(path)[0] if staged.in_target_dir else self.stage_fd

    def _discard(self, path: str, staged: Staged) -> None:
        with self._stage_lock:
            staged.use.retire()  # chunk writes in flight finish first (never a reused fd)
            if staged.fd >= 0:
                os.close(staged.fd)
                staged.fd = -1
            try:
                os.unlink(staged.name, dir_fd=self._stage_dir_fd(path, staged))
            except FileNotFoundError:
                pass
            except OSError:
                self._temps_left |= staged.in_target_dir  # its token stays recorded

    def stage_open(
        self, path: str, new: Entry
    ) -> tuple[int, list[tuple[int, int]], list[tuple[int, int]]]:
        """Start (or resume) receiving a large file: a handle, the chunks
        ``(offset, length)`` already received by an earlier attempt, and the
        *maybe* ranges taken over from an upload of an older version of the path
        (``stage_keep`` confirms them)."""
        with self._stage_lock:
            return self._stage_open(path, new)

    def _stage_open(
        self, path: str, new: Entry
    ) -> tuple[int, list[tuple[int, int]], list[tuple[int, int]]]:
        st = self.stage_root.lstat(path)
        mode = meta.file_mode(new, st, self.meta)
        handle = self._next_handle
        self._next_handle += 1
        maybe: list[tuple[int, int]] = []
        if self.same_device:
            name = partial.partial_name(path, new)
            try:
                held = os.stat(name, dir_fd=self.stage_fd).st_blocks * 512
                older = None  # resuming this very upload
            except FileNotFoundError:
                older = partial.previous(self.stage_fd, path, name)
                held = 0
            self._admit(new, held)
            upload = partial.Partial(self.stage_fd, name, new.size, mode, take_over=older)
            self._partials[handle] = upload
            staged = Staged(upload.name, False, upload.fd)
            have = list(upload.have)
            maybe = list(upload.maybe)
        else:
            self._admit(new, 0)
            staged = self._stage_create(path, mode)
            os.ftruncate(staged.fd, new.size)
            have = []
        self._handles[handle] = (path, staged, new)
        return handle, have, maybe

    def _admit(self, new: Entry, held: int) -> None:
        """Refuse a large upload that cannot fit (``space.check_room``): a doomed one
        would fill the disk for nothing and fail the small files behind it."""
        pending = sum(max(0, e.size - allocated(s.fd)) for _p, s, e in self._handles.values())
        check_room(self.stage_fd if self.same_device else self.root.fd, new.size, held, pending)

    def partial_path(self, handle: int) -> str:
        """Where a resumable upload's file is ("" if it is not one): another agent
        process may write its chunks (``partial.attach``)."""
        upload = self._partials.get(handle)
        return "" if upload is None else os.path.join(self.stage_dir, upload.name)

    def _upload(self, handle: int) -> tuple[Staged, Entry, partial.Partial | None]:
        """The upload ``handle`` while it is open; ``Dropped`` once it was aborted or
        committed (another worker's chunk of it failed: an ordinary per-path failure)."""
        with self._stage_lock:
            item = self._handles.get(handle)
            if item is None:
                raise Dropped("the upload")
            return item[1], item[2], self._partials.get(handle)

    def staged_fd(self, handle: int) -> int:
        """The open staging file of a large upload (written directly by delta patches)."""
        return self._upload(handle)[0].fd

    def stage_write(self, handle: int, offset: int, data: bytes) -> None:
        staged, new, upload = self._upload(handle)
        if upload is not None:
            upload.write(offset, data)
            return
        with staged.use.use():
            try:
                view = memoryview(data)
                while view:
                    n = os.pwrite(staged.fd, view, offset)
                    view = view[n:]
                    offset += n
            except OSError as err:
                held = allocated(staged.fd)
                raise explain(err, staged.fd, new.size, held=held) from None

    def stage_keep(self, handle: int, offset: int, length: int, expected: bytes) -> bool:
        """Keep a range taken over from an older upload if its hash is ``expected``."""
        _staged, _new, upload = self._upload(handle)
        return upload is not None and upload.keep(offset, length, expected)

    def stage_abort(self, handle: int, keep: bool = False) -> None:
        """Drop an upload; ``keep``: leave its partial for a later upload of the
        same path to take over (its source changed mid-transfer)."""
        with self._stage_lock:
            item = self._handles.pop(handle, None)
            upload = self._partials.pop(handle, None)
        if upload is not None:
            if keep:
                upload.close()
            else:
                upload.remove()
        elif item is not None:
            self._discard(item[0], item[1])
