"""O(change) updates of large files by a reflink clone (btrfs, XFS): never a torn file.

Invariant owned here: the file being updated is never written. Its content is cloned
(``FICLONE``: shared extents, no data copied) into a staging file on the same
filesystem, the changed ranges are written into the clone, the clone's digest is
checked (reading only the blocks that changed when the old content's block leaves
are known) and made durable, and only then may the caller rename it over the
original. A reader of the path sees the old content or the new, at every instant and
after any crash; a crash leaves at most the staging file, which the caller's
staging cleanup removes.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Iterable

from yeet.delta.ops import DeltaOp, narrow
from yeet.replica.write.inplace import (
    HasherFactory,
    InplaceAborted,
    Stats,
    TreeUpdate,
    default_hasher,
    fsync_dir,
    new_content,
    pread_exact,
)

FICLONE = 0x40049409
NOT_SUPPORTED = (errno.EOPNOTSUPP, errno.ENOTTY, errno.EXDEV, errno.EINVAL, errno.ENOSYS)


class CloneUnsupported(InplaceAborted):
    """This filesystem cannot clone files (use the redo log instead)."""


def reflink_supported(directory: str) -> bool:
    """Whether files in ``directory`` can be cloned with ``FICLONE`` (probes there)."""
    a = os.path.join(directory, f".yeet-reflink-probe-{os.getpid()}")
    b = a + ".clone"
    try:
        fa = os.open(a, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        fb = os.open(b, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fa, b"x" * 4096)
            fcntl.ioctl(fb, FICLONE, fa)
            return True
        except OSError:
            return False
        finally:
            os.close(fa)
            os.close(fb)
    finally:
        for p in (a, b):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(p)


def patch_clone(
    src: int,
    dst: int,
    ops: Iterable[DeltaOp],
    new_size: int,
    expected_digest: bytes,
    *,
    hasher: HasherFactory = default_hasher,
    tree: TreeUpdate | None = None,
) -> Stats:
    """Make the empty file ``dst`` a clone of ``src`` turned into the delta's target,
    verified and durable. ``CloneUnsupported`` if the filesystem cannot clone;
    ``InplaceAborted`` if the result would not have ``expected_digest``."""
    stats = Stats()
    old_size = os.fstat(src).st_size
    try:
        fcntl.ioctl(dst, FICLONE, src)
    except OSError as err:
        why = os.strerror(err.errno or errno.EIO)
        if err.errno in NOT_SUPPORTED:
            raise CloneUnsupported(f"cannot clone: {why}") from err
        raise InplaceAborted(f"cannot clone: {why}") from err
    h = hasher() if tree is None else None
    total = 0
    for off, data, n in new_content(src, ops, old_size, h, stats):
        total = off + n
        if data is None:
            continue
        if tree is not None:
            tree.changed(off, off + n)
        inside = max(0, min(len(data), old_size - off))
        pieces = []
        if inside:
            pieces = narrow(off, pread_exact(src, inside, off), data[:inside])
        if inside < len(data):
            pieces.append((off + inside, len(data) - inside))
        for o, m in pieces:
            view = memoryview(data)[o - off : o - off + m]
            done = 0
            while done < m:
                done += os.pwrite(dst, view[done:], o + done)
            stats.inplace_bytes += m
    if total != new_size:
        raise InplaceAborted(f"delta makes {total} bytes, expected {new_size}")
    os.ftruncate(dst, new_size)
    if h is not None:
        value = h.digest()
        stats.leaves = getattr(h, "leaves", lambda: None)()
    else:
        assert tree is not None
        value, stats.leaves, nread = tree.finish(lambda at, n: pread_exact(dst, n, at))
        stats.read_bytes += nread
    if value != expected_digest:
        raise InplaceAborted("delta result does not have the expected digest")
    os.fsync(dst)
    return stats


def apply_reflinked(
    path: str,
    ops: Iterable[DeltaOp],
    new_size: int,
    expected_digest: bytes,
    stage_path: str,
    *,
    hasher: HasherFactory = default_hasher,
) -> Stats:
    """Clone ``path`` to ``stage_path``, write the changes into the clone, verify, rename.

    ``stage_path`` must be on the same filesystem (and a name nobody else uses).
    Raises ``InplaceAborted`` (nothing renamed) if cloning is not supported or
    the result does not have ``expected_digest``.
    """
    src = os.open(path, os.O_RDONLY)
    try:
        dst = os.open(stage_path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            stats = patch_clone(src, dst, ops, new_size, expected_digest, hasher=hasher)
            os.fchmod(dst, os.fstat(src).st_mode & 0o7777)
        except BaseException:
            os.unlink(stage_path)
            raise
        finally:
            os.close(dst)
        os.replace(stage_path, path)
        fsync_dir(os.path.dirname(os.path.abspath(path)))
        return stats
    finally:
        os.close(src)
