"""O(change) updates of large files: a crash-safe redo log, or a reflink clone.

Invariant owned here: **at every instant, after ``recover`` has run, the file
holds either its old content or its new content, never a mix** — and the new
content is only committed after its digest was checked against the expected
one. A file of gigabytes that changed in a few blocks is updated by writing
about those blocks twice (redo log + in place), not by rewriting the file.

The redo log protocol (``apply_inplace``), for a file of ``old_size`` bytes
becoming ``new_size`` bytes:

1. Write the redo log header (path, device/inode, both sizes, expected digest)
   to ``redo_dir/<hash of path>.yjournal``; fsync it and the directory.
2. One pass over the ops, in target order: bytes that change *inside* the old
   size (narrowed to the bytes that really differ) are appended to the redo log
   as ``(offset, length, data)`` records; bytes past the old size (an append)
   are written straight into the file — nothing there was part of the old
   content. Meanwhile the whole new content is hashed (unchanged ranges are
   read from the file).
3. If the digest is not the expected one, or the redo log outgrew its budget:
   roll back (truncate to the old size, drop the redo log) and raise
   ``InplaceAborted``; the file never changed.
4. fsync the file (the appended tail), append the trailer (record count and a
   blake3 of the redo log) and fsync the redo log: **this is the commit point**.
5. Copy the records into the file, truncate to the new size, fsync the file.
6. Delete the redo log, fsync the directory.

``recover`` (run at start-up, before anything else touches those files) looks
at each leftover redo log: a valid trailer means "committed": replay 5-6
(idempotent: records hold absolute data) and check the digest; no valid
trailer means "not committed": truncate back to the old size (the old bytes
were never touched) and drop the redo log. A redo log whose file was replaced
(other device/inode) is dropped.

Where the filesystem can share extents (btrfs, XFS: ``FICLONE``), the redo log is
not used: ``yeet.replica.write.clone`` clones the file, writes the changed ranges into
the clone and renames it over the original (the ordinary stage-and-rename, at
O(change) cost), so no reader ever sees a mix. ext4 cannot, so the redo log is
the path used there; between a crash after the commit point and the next
``recover`` a reader can see a mix of old and new ranges.

A redo log being written or replayed is ``flock``-ed by its process:
``recover`` leaves a locked redo log alone (another yeet is applying it).

Costs (redo log path): writes ~= 2 x changed bytes (+ appended bytes once);
reads = the whole new file once (for the digest) + the changed base ranges;
memory = one ``PIECE`` (1 MiB) of data at a time.
"""

from __future__ import annotations

import bisect
import contextlib
import fcntl
import hashlib
import os
import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO, Protocol

import msgspec

try:
    from blake3 import blake3
except ImportError:  # a bare remote: recovery of an empty redo log directory still runs
    blake3 = None  # type: ignore[assignment,misc]

from yeet.delta.ops import PIECE, Copy, DeltaOp, narrow
from yeet.model.errors import YeetError

INPLACE_MIN_SIZE = 64 << 20
"""Files at least this large are updated in place (configurable by callers)."""

SUFFIX = ".yjournal"
_MAGIC = b"YEETJNL1"  # checksummed with blake3
_MAGIC_B2 = b"YEETJNL2"  # checksummed with blake2b-256 (a python3 without blake3)
_END = b"YEETJEND"
_REC = struct.Struct("<QI")
_TRAILER = struct.Struct("<8sQQ32s")
_HDRLEN = struct.Struct("<I")
FICLONE = 0x40049409


class InplaceAborted(YeetError):
    """The in-place update did not happen; the file still holds its old content."""


class _Hasher(Protocol):
    def update(self, data: bytes, /) -> object: ...

    def digest(self) -> bytes: ...


HasherFactory = Callable[[], _Hasher]


class TreeUpdate(Protocol):
    """``yeet.model.digest.TreeUpdate``: the new digest from the old leaves and the changes."""

    def changed(self, start: int, end: int) -> None: ...

    def finish(self, read: Callable[[int, int], bytes]) -> tuple[bytes, list[bytes], int]: ...


def default_hasher() -> _Hasher:
    return blake3(max_threads=blake3.AUTO)


class Header(msgspec.Struct, frozen=True, array_like=True):
    path: str
    dev: int
    ino: int
    old_size: int
    new_size: int
    digest: bytes


@dataclass
class Stats:
    """What an update cost (for benchmarks and logs)."""

    journal_bytes: int = 0
    inplace_bytes: int = 0
    appended_bytes: int = 0
    records: int = 0
    read_bytes: int = 0
    phases: list[str] = field(default_factory=list)
    leaves: list[bytes] | None = None  # the new content's tree leaves, when a tree was given


def should_apply_inplace(
    old_size: int,
    new_size: int,
    changed: Iterable[tuple[int, int]],
    *,
    min_size: int = INPLACE_MIN_SIZE,
) -> bool:
    """Whether updating in place beats staging a full copy.

    ``changed`` are target ranges (``yeet.delta.changed_ranges``, which also
    accepts a refinement plan, before any literal bytes arrive). In place costs
    ~2x the bytes changed inside the old size plus the appended bytes; staging
    costs ``new_size``. In place wins when it writes at most half as much.
    """
    if min(old_size, new_size) < min_size:
        return False
    keep = min(old_size, new_size)
    inside = sum(max(0, min(o + n, keep) - o) for o, n in changed)
    return 2 * inside + max(0, new_size - old_size) <= new_size // 2


def redo_log_path(redo_dir: str, path: str) -> str:
    key = os.fsencode(os.path.abspath(path))
    name = (
        blake3(key) if blake3 is not None else hashlib.blake2b(key, digest_size=32)
    ).hexdigest()[:32]
    return os.path.join(redo_dir, name + SUFFIX)


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def pread_exact(fd: int, length: int, offset: int) -> bytes:
    out = os.pread(fd, length, offset)
    while len(out) < length:
        more = os.pread(fd, length - len(out), offset + len(out))
        if not more:
            raise InplaceAborted(f"file shorter than expected at {offset + len(out)}")
        out += more
    return out


def _checksum(magic: bytes | None) -> tuple[bytes, _Hasher]:
    """The redo log's checksum: blake3 where it is installed, else blake2b (stdlib);
    a redo log says which in its magic."""
    if magic == _MAGIC_B2 or (magic is None and blake3 is None):
        return _MAGIC_B2, hashlib.blake2b(digest_size=32)
    if blake3 is None:
        raise InplaceAborted("this redo log was written with blake3, which is not installed here")
    return _MAGIC, blake3()


class _RedoWriter:
    """Appends records to the redo log and keeps the running checksum."""

    def __init__(self, f: BinaryIO) -> None:
        self.f = f
        self.magic, self.sum = _checksum(None)
        self.records = 0
        self.bytes = 0
        self.pos = 0
        self.index: list[tuple[int, int, int]] = []  # (target offset, length, redo log pos)
        self.offsets: list[int] = []  # the same target offsets (sorted: one pass in order)

    def raw(self, data: bytes) -> None:
        self.f.write(data)
        self.sum.update(data)
        self.pos += len(data)

    def record(self, offset: int, data: bytes) -> None:
        self.raw(_REC.pack(offset, len(data)))
        self.index.append((offset, len(data), self.pos))
        self.offsets.append(offset)
        self.raw(data)
        self.records += 1
        self.bytes += len(data)

    def overlay(self, start: int, buf: bytearray) -> None:
        """Put the journaled bytes that fall in ``[start, start + len(buf))`` into ``buf``."""
        self.f.flush()
        end = start + len(buf)
        i = max(0, bisect.bisect_right(self.offsets, start) - 1)
        for off, n, jpos in self.index[i:]:
            if off >= end:
                break
            lo, hi = max(off, start), min(off + n, end)
            if lo < hi:
                data = pread_exact(self.f.fileno(), hi - lo, jpos + lo - off)
                buf[lo - start : hi - start] = data

    def commit(self) -> None:
        self.f.write(_TRAILER.pack(_END, self.records, self.bytes, self.sum.digest()))
        self.f.flush()
        os.fsync(self.f.fileno())


def new_content(
    fd: int, ops: Iterable[DeltaOp], old_size: int, hasher: _Hasher | None, stats: Stats
) -> Iterator[tuple[int, bytes | None, int]]:
    """``(target_offset, bytes or None if unchanged, length)``, in target order.

    Hashes the new content as it goes (unchanged ranges are read from ``fd``);
    without a ``hasher``, bytes that stay where they are are not read at all.
    """
    pos = 0
    for op in ops:
        if isinstance(op, Copy):
            if op.base_offset < 0 or op.base_offset + op.length > old_size:
                raise InplaceAborted(f"copy outside the old file: {op}")
            same = op.base_offset == pos
            if same and hasher is None:
                yield pos, None, op.length
                pos += op.length
                continue
            done = 0
            while done < op.length:
                n = min(PIECE * 4, op.length - done)
                data = pread_exact(fd, n, op.base_offset + done)
                stats.read_bytes += n
                if hasher is not None:
                    hasher.update(data)
                yield pos + done, None if same else data, n
                done += n
            pos += op.length
        elif op.data:
            if hasher is not None:
                hasher.update(op.data)
            yield pos, op.data, len(op.data)
            pos += len(op.data)


def apply_inplace(
    path: str | os.PathLike[str],
    ops: Iterable[DeltaOp],
    new_size: int,
    expected_digest: bytes,
    redo_dir: str | os.PathLike[str],
    *,
    max_journal: int | None = None,
    hasher: HasherFactory = default_hasher,
    on_phase: Callable[[str], None] | None = None,
    tree: TreeUpdate | None = None,
) -> Stats:
    """Turn the file at ``path`` (the delta's base) into the delta's target, in place.

    Raises ``InplaceAborted`` (file unchanged) if the result would not have
    ``expected_digest`` or ``new_size``, or if more than ``max_journal`` bytes
    would have to be journaled (then stage a full copy instead).
    ``on_phase`` is called with "journaled", "committed", "applied", "done".

    With a ``tree`` (built from the old content's cached leaves) the digest is
    checked by re-reading only the blocks that change: bytes that stay in
    place are never read, and ``Stats.leaves`` are the new content's.
    """
    path = os.fspath(path)
    redo_dir = os.fspath(redo_dir)
    stats = Stats()

    def phase(name: str) -> None:
        stats.phases.append(name)
        if on_phase is not None:
            on_phase(name)

    jpath = redo_log_path(redo_dir, path)
    if os.path.exists(jpath):
        raise InplaceAborted(f"a redo log for {path} is pending: run recover() first")
    fd = os.open(path, os.O_RDWR)
    try:
        st = os.fstat(fd)
        old_size = st.st_size
        if tree is not None and hasattr(os, "posix_fadvise"):
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)  # a few blocks, no read-ahead
        header = msgspec.msgpack.encode(
            Header(os.path.abspath(path), st.st_dev, st.st_ino, old_size, new_size, expected_digest)
        )
        with open(jpath, "w+b", buffering=PIECE) as jf:
            fcntl.flock(jf.fileno(), fcntl.LOCK_EX)  # ours until it is gone (``recover``)
            redo = _RedoWriter(jf)
            redo.raw(redo.magic + _HDRLEN.pack(len(header)) + header)
            jf.flush()
            os.fsync(jf.fileno())
            fsync_dir(redo_dir)
            try:
                h = hasher() if tree is None else None
                total = 0
                for off, data, n in new_content(fd, ops, old_size, h, stats):
                    total = off + n
                    if data is None:
                        continue
                    if tree is not None:
                        tree.changed(off, off + n)
                    _stage(fd, redo, off, data, old_size, stats)
                    if max_journal is not None and redo.bytes > max_journal:
                        raise InplaceAborted(f"redo log would exceed {max_journal} bytes")
                if total != new_size:
                    raise InplaceAborted(f"delta makes {total} bytes, expected {new_size}")
                if h is not None:
                    value = h.digest()
                    stats.leaves = getattr(h, "leaves", lambda: None)()
                else:
                    assert tree is not None
                    value, stats.leaves, nread = tree.finish(
                        lambda at, n: _new_bytes(fd, redo, at, n)
                    )
                    stats.read_bytes += nread
                if value != expected_digest:
                    raise InplaceAborted("delta result does not have the expected digest")
            except BaseException:
                _rollback(fd, old_size, jf, jpath, redo_dir)
                raise
            phase("journaled")
            os.fsync(fd)
            redo.commit()
            stats.journal_bytes = redo.bytes
            stats.records = redo.records
            phase("committed")
            _replay(fd, jf, len(_MAGIC) + _HDRLEN.size + len(header), new_size)
            phase("applied")
            os.unlink(jpath)  # (still locked: no ``recover`` replays it meanwhile)
        fsync_dir(redo_dir)
        phase("done")
        return stats
    finally:
        os.close(fd)


def _new_bytes(fd: int, redo: _RedoWriter, start: int, length: int) -> bytes:
    """Bytes of the new content before the redo log is replayed: the file (old bytes,
    and the appended tail already written) overlaid with the journaled changes."""
    buf = bytearray(pread_exact(fd, length, start))
    redo.overlay(start, buf)
    return bytes(buf)


def _stage(fd: int, redo: _RedoWriter, off: int, data: bytes, old_size: int, st: Stats) -> None:
    """Redo log the really-changed bytes below ``old_size``; write the rest directly."""
    inside = max(0, min(len(data), old_size - off))
    if inside:
        old = pread_exact(fd, inside, off)
        st.read_bytes += inside
        for o, n in narrow(off, old, data[:inside]):
            redo.record(o, data[o - off : o - off + n])
            st.inplace_bytes += n
    if inside < len(data):
        tail = memoryview(data)[inside:]
        done = 0
        while done < len(tail):
            done += os.pwrite(fd, tail[done:], off + inside + done)
        st.appended_bytes += len(tail)


def _rollback(fd: int, old_size: int, jf: BinaryIO, jpath: str, redo_dir: str) -> None:
    if os.fstat(fd).st_size != old_size:
        os.ftruncate(fd, old_size)
        os.fsync(fd)
    os.unlink(jpath)  # (before the lock goes with the file)
    jf.close()
    fsync_dir(redo_dir)


def _records(jf: BinaryIO, start: int, end: int) -> Iterator[tuple[int, bytes]]:
    jf.seek(start)
    pos = start
    while pos < end:
        head = jf.read(_REC.size)
        off, n = _REC.unpack(head)
        data = jf.read(n)
        if len(data) != n:
            raise InplaceAborted("redo log record truncated")
        yield off, data
        pos += _REC.size + n


def _replay(fd: int, jf: BinaryIO, start: int, new_size: int) -> None:
    """Copy the committed records into the file; set its size; fsync. Idempotent."""
    jf.flush()
    end = os.fstat(jf.fileno()).st_size - _TRAILER.size
    for off, data in _records(jf, start, end):
        _uncache(fd, off, len(data))
        done = 0
        while done < len(data):
            done += os.pwrite(fd, memoryview(data)[done:], off + done)
    if os.fstat(fd).st_size != new_size:
        os.ftruncate(fd, new_size)
    os.fsync(fd)


_FOLIO_SPAN = 4 << 20


def _uncache(fd: int, offset: int, length: int) -> None:
    """Drop the (clean) cached pages around a small in-place write first.

    With large page-cache folios (ext4 on recent kernels; reading the whole file
    to sign and verify it creates 2 MiB folios), writing 4 KiB into a cached
    folio dirties and writes back the whole folio: 16 scattered 4 KiB writes
    into a 4 GiB file then cost ~32 MiB of disk writes instead of 64 KiB.
    Uncached, the write gets a small folio of its own. Only windows around the
    write are dropped, and only clean pages (``POSIX_FADV_DONTNEED``).
    """
    if length >= _FOLIO_SPAN or not hasattr(os, "posix_fadvise"):
        return
    lo = offset - offset % _FOLIO_SPAN
    hi = -(-(offset + length) // _FOLIO_SPAN) * _FOLIO_SPAN
    with contextlib.suppress(OSError):
        os.posix_fadvise(fd, lo, hi - lo, os.POSIX_FADV_DONTNEED)


@dataclass
class Recovered:
    """What ``recover`` did with one redo log: "rolled-forward", "rolled-back", "dropped"."""

    path: str
    action: str
    digest_ok: bool | None = None


def _read_redo_log(jf: BinaryIO) -> tuple[Header | None, int, bool]:
    """``(header or None if unreadable, records start, committed)``."""
    size = os.fstat(jf.fileno()).st_size
    head = jf.read(len(_MAGIC) + _HDRLEN.size)
    if len(head) < len(_MAGIC) + _HDRLEN.size or head[: len(_MAGIC)] not in (_MAGIC, _MAGIC_B2):
        return None, 0, False
    _magic, check = _checksum(head[: len(_MAGIC)])
    (hlen,) = _HDRLEN.unpack(head[len(_MAGIC) :])
    raw = jf.read(hlen)
    try:
        header = msgspec.msgpack.decode(raw, type=Header)
    except msgspec.DecodeError:
        return None, 0, False
    start = len(head) + hlen
    if size < start + _TRAILER.size:
        return header, start, False
    jf.seek(size - _TRAILER.size)
    end, _nrec, _nbytes, digest = _TRAILER.unpack(jf.read(_TRAILER.size))
    if end != _END:
        return header, start, False
    jf.seek(0)
    left = size - _TRAILER.size
    while left:
        piece = jf.read(min(PIECE, left))
        check.update(piece)
        left -= len(piece)
    return header, start, check.digest() == digest


def recover(
    redo_dir: str | os.PathLike[str],
    *,
    verify: bool = True,
    hasher: HasherFactory = default_hasher,
) -> list[Recovered]:
    """Finish or undo every interrupted update that left a redo log in ``redo_dir``.

    Run it before anything else touches the files concerned (at start-up). A
    rolled-forward file whose digest is not the expected one
    (``digest_ok is False``) was modified behind our back: rescan it.
    """
    redo_dir = os.fspath(redo_dir)
    out: list[Recovered] = []
    for name in sorted(os.listdir(redo_dir)):
        if not name.endswith(SUFFIX):
            continue
        done = _recover_redo_log(os.path.join(redo_dir, name), verify, hasher)
        if done is not None:
            out.append(done)
            fsync_dir(redo_dir)
    return out


def _recover_redo_log(jpath: str, verify: bool, hasher: HasherFactory) -> Recovered | None:
    """Finish or undo the update of one redo log; None if another yeet is applying it
    (it holds the redo log's lock) or it finished meanwhile."""
    try:
        jf = open(jpath, "rb")  # noqa: SIM115 (closed below, after the lock is known)
    except FileNotFoundError:
        return None
    with jf:
        try:
            fcntl.flock(jf.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None  # another yeet is applying it right now
        if os.fstat(jf.fileno()).st_nlink == 0:
            return None  # it finished (and removed it) while we took the lock
        header, start, committed = _read_redo_log(jf)
        if header is None:
            done = Recovered("", "dropped")  # crashed while writing the header
        else:
            done = _recover_one(header, jf, start, committed, verify, hasher)
        os.unlink(jpath)
    return done


def _recover_one(
    header: Header, jf: BinaryIO, start: int, committed: bool, verify: bool, hasher: HasherFactory
) -> Recovered:
    try:
        fd = os.open(header.path, os.O_RDWR)
    except FileNotFoundError:
        return Recovered(header.path, "dropped")
    try:
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != (header.dev, header.ino):
            return Recovered(header.path, "dropped")
        if committed:
            _replay(fd, jf, start, header.new_size)
            ok = _digest_of(fd, hasher) == header.digest if verify else None
            return Recovered(header.path, "rolled-forward", ok)
        if st.st_size > header.old_size:  # drop the appended tail; never extend
            os.ftruncate(fd, header.old_size)
        os.fsync(fd)
        return Recovered(header.path, "rolled-back")
    finally:
        os.close(fd)


def _digest_of(fd: int, hasher: HasherFactory) -> bytes:
    h = hasher()
    pos = 0
    while data := os.pread(fd, PIECE * 4, pos):
        h.update(data)
        pos += len(data)
    return h.digest()
