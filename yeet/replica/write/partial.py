"""Large uploads that survive a lost connection or a killed agent.

Invariant owned here: a partial upload lives in the staging directory under a
name derived from (target path, expected digest, size), next to a chunk record of
the chunks written into it; a chunk is recorded only after its bytes were
made durable, so after any crash the recorded chunks are really there and the
upload resumes from them. Nothing here is trusted blindly: the whole file's
digest is checked before it is committed (``yeet.replica.write.writer``), and a
partial that fails that check is thrown away.

A partial whose source changed before it was finished is kept: the next upload
of the same path (with the new digest) takes it over, and the chunks it held
become *maybe* ranges — each is kept only after the sender showed that its new
content at that range has the same hash (``keep``), so unchanged chunks of a
file modified mid-transfer are not sent again.
"""

from __future__ import annotations

import hashlib
import os
import struct
import time

from yeet.model.entries import Entry
from yeet.replica.fs.inuse import InUse
from yeet.replica.fs.space import allocated, explain

RECORD = struct.Struct("<QQ")
MAX_AGE = 2 * 86400  # a partial nobody resumed for two days is dropped
PREFIX = "partial-"


def _key(path: str) -> str:
    return hashlib.blake2b(path.encode("utf-8", "surrogateescape"), digest_size=8).hexdigest()


def partial_name(path: str, new: Entry) -> str:
    return f"{PREFIX}{_key(path)}-{new.digest.hex()[:32]}-{new.size}"


def range_hash(data: bytes | memoryview) -> bytes:
    """What ``keep`` compares: both ends compute it the same way (stdlib only)."""
    return hashlib.blake2b(data, digest_size=16).digest()


def previous(dir_fd: int, path: str, name: str) -> str | None:
    """The newest other partial of ``path`` (an upload whose source changed)."""
    prefix = f"{PREFIX}{_key(path)}-"
    best: tuple[float, str] | None = None
    for other in os.listdir(dir_fd):
        if other.startswith(prefix) and other != name and not other.endswith(".chunks"):
            try:
                mtime = os.stat(other, dir_fd=dir_fd, follow_symlinks=False).st_mtime
            except OSError:
                continue
            if best is None or mtime > best[0]:
                best = (mtime, other)
    return None if best is None else best[1]


class Partial:
    """One resumable upload: the data file and its chunk record, both open."""

    def __init__(
        self, dir_fd: int, name: str, size: int, mode: int, take_over: str | None = None
    ) -> None:
        self.dir_fd = dir_fd
        self.name = name
        self.own_dir = False  # close dir_fd too (``attach``)
        self.use = InUse()  # writes in flight hold it: ``close`` waits for them
        self.size = size
        self.maybe: list[tuple[int, int]] = []
        if take_over is not None:
            self.maybe = self._take_over(take_over, size)
        flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC
        self.fd = os.open(name, flags, mode, dir_fd=dir_fd)
        try:
            self.log = os.open(name + ".chunks", flags | os.O_APPEND, 0o600, dir_fd=dir_fd)
        except OSError:
            os.close(self.fd)
            raise
        os.fchmod(self.fd, mode)
        if os.fstat(self.fd).st_size != size:
            os.ftruncate(self.fd, size)
        self.have = self._read_log(size)

    def _take_over(self, old: str, size: int) -> list[tuple[int, int]]:
        """Adopt an abandoned partial of the same path: its chunks become *maybe*."""
        try:
            log = os.open(old + ".chunks", os.O_RDONLY | os.O_CLOEXEC, dir_fd=self.dir_fd)
        except OSError:
            return []
        try:
            ranges = _parse(_read_all(log), size)
            os.rename(old, self.name, src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd)
        except OSError:
            return []
        finally:
            os.close(log)
        try:
            os.unlink(old + ".chunks", dir_fd=self.dir_fd)
        except OSError:
            pass
        merged: list[tuple[int, int]] = []
        for offset, length in ranges:  # sorted: join touching chunks into runs
            if merged and merged[-1][0] + merged[-1][1] >= offset:
                start = merged[-1][0]
                merged[-1] = (start, max(merged[-1][1], offset + length - start))
            else:
                merged.append((offset, length))
        return merged

    def keep(self, offset: int, length: int, expected: bytes) -> bool:
        """Record ``[offset, offset+length)`` as received if it lies in a *maybe*
        range and its bytes hash to ``expected`` (they were made durable by the
        upload that wrote them)."""
        if not any(o <= offset and offset + length <= o + n for o, n in self.maybe):
            return False
        with self.use.use():
            data = os.pread(self.fd, length, offset)
            if len(data) != length or range_hash(data) != expected:
                return False
            os.write(self.log, RECORD.pack(offset, length))
        self.have.append((offset, length))
        return True

    def _read_log(self, size: int) -> list[tuple[int, int]]:
        return _parse(_read_all(self.log), size)

    def write(self, offset: int, data: bytes) -> None:
        """Write a chunk durably and record it (``Dropped`` once the upload is closed)."""
        with self.use.use():
            try:
                view = memoryview(data)
                at = offset
                while view:
                    n = os.pwrite(self.fd, view, at)
                    view = view[n:]
                    at += n
                os.fdatasync(self.fd)  # the bytes first, then the record that vouches for them
                os.write(self.log, RECORD.pack(offset, len(data)))
            except OSError as err:
                raise explain(err, self.fd, self.size, held=allocated(self.fd)) from None
        self.have.append((offset, len(data)))

    def close(self) -> None:
        """Close the files once the writes in flight are done (later ones fail)."""
        if not self.use.retire():
            return
        for fd in (self.fd, self.log, self.dir_fd if self.own_dir else -1):
            try:
                os.close(fd)
            except OSError:
                pass
        self.fd = self.log = -1
        self.own_dir = False

    def forget_log(self) -> None:
        try:
            os.unlink(self.name + ".chunks", dir_fd=self.dir_fd)
        except OSError:
            pass

    def remove(self) -> None:
        self.close()
        self.forget_log()
        try:
            os.unlink(self.name, dir_fd=self.dir_fd)
        except OSError:
            pass


def attach(path: str, size: int) -> Partial:
    """Write chunks into the existing partial at ``path``: the one ``stage_open`` made
    in another agent process of the same session (a bulk channel, which must not
    create, take over or truncate anything). Raises ``ValueError`` for a path that is
    no partial upload of a staging directory, ``OSError`` if it is gone."""
    directory, name = os.path.split(path)
    if (
        not os.path.isabs(path)
        or not name.startswith(PREFIX)
        or name.endswith(".chunks")
        or os.path.basename(directory) != "stage"
    ):
        raise ValueError(f"not a partial upload: {path}")
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    upload = Partial.__new__(Partial)
    upload.dir_fd, upload.name, upload.own_dir = dir_fd, name, True
    upload.use, upload.size = InUse(), size
    upload.maybe, upload.have = [], []
    upload.fd = upload.log = -1
    try:
        upload.fd = os.open(name, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW, dir_fd=dir_fd)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC | os.O_NOFOLLOW
        upload.log = os.open(name + ".chunks", flags, dir_fd=dir_fd)
        if os.fstat(upload.fd).st_size != size:
            raise ValueError(f"partial upload {path} is not {size} bytes")
    except BaseException:
        upload.close()
        raise
    return upload


def _read_all(fd: int) -> bytes:
    data = b""
    while chunk := os.pread(fd, 1 << 20, len(data)):
        data += chunk
    return data


def _parse(data: bytes, size: int) -> list[tuple[int, int]]:
    have = []
    for i in range(0, len(data) - len(data) % RECORD.size, RECORD.size):
        offset, length = RECORD.unpack_from(data, i)
        if offset + length <= size:
            have.append((offset, length))
    return sorted(set(have))


def clean(dir_fd: int, now: float | None = None) -> None:
    """Delete leftovers in a staging directory, except partials young enough to resume."""
    now = time.time() if now is None else now
    for name in os.listdir(dir_fd):
        try:
            if name.startswith(PREFIX):
                st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                if now - st.st_mtime < MAX_AGE:
                    continue
            os.unlink(name, dir_fd=dir_fd)
        except OSError:
            pass
