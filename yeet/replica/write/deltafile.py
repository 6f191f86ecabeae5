"""The disk side of deltas: signing, matching and patching real files, bounded memory.

Invariants owned here:

* A ``Patch`` never changes the target before ``commit``, and ``commit``
  publishes the new content only if it has exactly the new entry's size and
  digest: in place through ``yeet.replica.write.inplace``'s redo log (a crash leaves
  the old or the new content), or through a staged copy that the ``Writer``
  verifies and renames like any other upload.
* Memory is bounded whatever the file size: files are read in windows (see
  ``yeet.delta.chunking``); data ops of an in-place patch beyond ``MEMORY``
  bytes are spooled to a file next to the redo log; Copy ops of a staged patch are copied in the
  kernel (``copy_file_range``).
* Ops may arrive in any order of ``write`` calls (workers deliver pieces
  concurrently); ``commit`` checks they cover the new file exactly once.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Sequence

from yeet.delta.chunking import available
from yeet.delta.ops import Copy, Data, DeltaOp, Literal, PlanOp, op_length
from yeet.delta.refine import finish, read_range, region_signature
from yeet.delta.signature import Signature, signature
from yeet.replica.fs.inuse import InUse

__all__ = ["Patch", "available", "ops_for", "plan_file", "sign_file", "sign_regions"]

WINDOW = 4 << 20
MEMORY = 16 << 20
"""Data of an in-place patch kept in memory before it spills to the spool file
(small deltas then cost no extra disk writes)."""


def reader(fd: int) -> Callable[[int, int], bytes]:
    def read(offset: int, length: int) -> bytes:
        return os.pread(fd, length, offset)

    return read


def _stream(fd: int, size: int) -> Iterator[bytes]:
    pos = 0
    while pos < size:
        data = os.pread(fd, min(WINDOW, size - pos), pos)
        if not data:
            return
        yield data
        pos += len(data)


def sign_file(fd: int, size: int, *, digest: bool, size_hint: int = 0) -> Signature:
    """The coarse signature of the whole file (and its blake3, if asked), chunked
    with the parameters for ``size_hint`` (default: ``size``)."""
    from yeet.delta.chunking import params_for

    with os.fdopen(os.dup(fd), "rb", buffering=0) as f:
        return signature(f, size, params=params_for(size_hint or size), digest=digest)


def sign_regions(fd: int, regions: Sequence[tuple[int, int]], size: int) -> list[Signature]:
    """Fine signatures of old-file regions (the file's coarse parameters come from
    ``size``, like ``sign_file``'s)."""
    from yeet.delta.chunking import params_for
    from yeet.delta.refine import Region, fine_params

    params = fine_params(params_for(size))
    return [region_signature(reader(fd), Region(o, n), params) for o, n in regions if n > 0]


def plan_file(fd: int, size: int, sig: Signature) -> list[PlanOp]:
    """First round: ``Copy`` runs and ``Literal`` gaps of the new file against ``sig``."""
    from yeet.delta.diff import match

    return list(match(_stream(fd, size), sig, size_hint=size))


def ops_for(fd: int, offset: int, length: int, fine: Sequence[Signature]) -> list[DeltaOp]:
    """Final ops for the new bytes ``[offset, offset + length)``: fine matches and data."""
    if fine:
        return list(finish([Literal(offset, length)], list(fine), reader(fd)))
    return [Data(piece) for piece in read_range(reader(fd), offset, length)]


class PatchError(Exception):
    """The ops received do not describe the new file (gaps, overlaps, bad copies)."""


class Patch:
    """Ops for one file, collected until ``commit``.

    ``inplace``: data is spooled to ``spool`` (a file), copies kept as triples;
    the ops are replayed in target order at commit. Otherwise ops are written
    straight into ``stage_fd`` (a staged copy of the new file), copies read
    from ``old_fd``.
    """

    def __init__(
        self,
        path: str,
        new_size: int,
        old_fd: int,
        old_size: int,
        *,
        stage_fd: int | None = None,
        spool: str | None = None,
    ) -> None:
        self.path = path
        self.new_size = new_size
        self.old_fd = old_fd
        self.old_size = old_size
        self.stage_fd = stage_fd
        self.spool = spool
        self._spool_fd = -1
        self._spool_end = 0
        self._memory: dict[int, bytes] = {}  # spool position -> data, while under MEMORY
        self._held = 0
        self._lock = threading.Lock()
        self.use = InUse("the delta")  # writes in flight: ``close`` waits for them
        # (target offset, length, base offset or -1, spool position or -1)
        self._pieces: list[tuple[int, int, int, int]] = []

    def write(self, offset: int, ops: Sequence[DeltaOp]) -> int:
        """Take ops producing the new bytes from ``offset`` on; the data bytes taken
        (``Dropped`` once the patch is closed)."""
        with self.use.use():
            return self._write(offset, ops)

    def _write(self, offset: int, ops: Sequence[DeltaOp]) -> int:
        pos = offset
        taken = 0
        for op in ops:
            if isinstance(op, Copy):
                n = op.length
                if op.base_offset < 0 or n < 0 or op.base_offset + n > self.old_size:
                    raise PatchError(f"copy outside the old file: {op.base_offset}+{n}")
            elif isinstance(op, Data):
                n = len(op.data)
                taken += n
            else:
                raise PatchError("only copy and data ops can be applied")
            if pos < 0 or pos + n > self.new_size:
                raise PatchError(f"op beyond the new size at {pos}+{n}")
            if n:
                self._put(pos, op)
            pos += n
        return taken

    def _put(self, pos: int, op: DeltaOp) -> None:
        n = op_length(op)
        if self.stage_fd is not None:
            if isinstance(op, Copy):
                _copy_range(self.old_fd, op.base_offset, self.stage_fd, pos, n)
            else:
                _pwrite_all(self.stage_fd, op.data, pos)
            with self._lock:
                self._pieces.append((pos, n, -1, -1))
            return
        if isinstance(op, Copy):
            with self._lock:
                self._pieces.append((pos, n, op.base_offset, -1))
            return
        with self._lock:
            at = self._spool_end
            self._spool_end += n
            self._pieces.append((pos, n, -1, at))
            if self._held + n <= MEMORY:
                self._held += n
                self._memory[at] = op.data
                return
            if self._spool_fd < 0:
                assert self.spool is not None
                flags = os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
                self._spool_fd = os.open(self.spool, flags, 0o600)
        _pwrite_all(self._spool_fd, op.data, at)

    def check_complete(self) -> None:
        """Raise ``PatchError`` unless the pieces cover ``[0, new_size)`` exactly once."""
        pos = 0
        for off, n, _base, _at in sorted(self._pieces):
            if off != pos:
                what = "overlap" if off < pos else "leave a gap"
                raise PatchError(f"delta pieces {what} at {pos}")
            pos += n
        if pos != self.new_size:
            raise PatchError(f"delta pieces end at {pos}, the new file has {self.new_size} bytes")

    def ops(self) -> Iterator[DeltaOp]:
        """The in-place ops in target order (data read back from the spool)."""
        for _off, n, base, at in sorted(self._pieces):
            if base >= 0:
                yield Copy(base, n)
            elif at in self._memory:
                yield Data(self._memory[at])
            else:
                yield Data(pread_exact(self._spool_fd, n, at))

    def close(self) -> None:
        """Close the files once the writes in flight are done (later ones fail)."""
        if not self.use.retire():
            return
        for fd in (self._spool_fd, self.old_fd):
            if fd >= 0:
                os.close(fd)
        self._spool_fd = self.old_fd = -1
        self._memory.clear()
        if self.spool is not None:
            try:
                os.unlink(self.spool)
            except FileNotFoundError:
                pass


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view = view[n:]
        offset += n


def pread_exact(fd: int, length: int, offset: int) -> bytes:
    out = os.pread(fd, length, offset)
    while len(out) < length:
        more = os.pread(fd, length - len(out), offset + len(out))
        if not more:
            raise PatchError("spool or old file ended early")
        out += more
    return out


def _copy_range(src: int, src_off: int, dst: int, dst_off: int, length: int) -> None:
    """Copy in the kernel where possible (``copy_file_range``), else through a buffer."""
    while length > 0:
        try:
            n = os.copy_file_range(src, dst, min(length, 1 << 30), src_off, dst_off)
        except OSError:
            n = -1
        if n <= 0:
            data = os.pread(src, min(length, WINDOW), src_off)
            if not data:
                raise PatchError("old file ended early")
            _pwrite_all(dst, data, dst_off)
            n = len(data)
        src_off += n
        dst_off += n
        length -= n
