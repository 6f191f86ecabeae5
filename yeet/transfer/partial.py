"""Large uploads that survive a lost connection or a killed agent.

Invariant owned here: a partial upload lives in the staging directory under a
name derived from (target path, expected digest, size), next to a journal of
the chunks written into it; a chunk is recorded only after its bytes were
made durable, so after any crash the recorded chunks are really there and the
upload resumes from them. Nothing here is trusted blindly: the whole file's
digest is checked before it is committed (``yeet.transfer.writer``), and a
partial that fails that check is thrown away.
"""

from __future__ import annotations

import hashlib
import os
import struct
import time

from yeet.engine.entries import Entry

RECORD = struct.Struct("<QQ")
MAX_AGE = 2 * 86400  # a partial nobody resumed for two days is dropped
PREFIX = "partial-"


def partial_name(path: str, new: Entry) -> str:
    key = hashlib.blake2b(path.encode("utf-8", "surrogateescape"), digest_size=8).hexdigest()
    return f"{PREFIX}{key}-{new.digest.hex()[:32]}-{new.size}"


class Partial:
    """One resumable upload: the data file and its chunk journal, both open."""

    def __init__(self, dir_fd: int, name: str, size: int, mode: int) -> None:
        self.dir_fd = dir_fd
        self.name = name
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

    def _read_log(self, size: int) -> list[tuple[int, int]]:
        data = b""
        while chunk := os.pread(self.log, 1 << 20, len(data)):
            data += chunk
        have = []
        for i in range(0, len(data) - len(data) % RECORD.size, RECORD.size):
            offset, length = RECORD.unpack_from(data, i)
            if offset + length <= size:
                have.append((offset, length))
        return sorted(set(have))

    def write(self, offset: int, data: bytes) -> None:
        view = memoryview(data)
        at = offset
        while view:
            n = os.pwrite(self.fd, view, at)
            view = view[n:]
            at += n
        os.fdatasync(self.fd)  # the bytes first, then the record that vouches for them
        os.write(self.log, RECORD.pack(offset, len(data)))
        self.have.append((offset, len(data)))

    def close(self) -> None:
        for fd in (self.fd, self.log):
            try:
                os.close(fd)
            except OSError:
                pass
        self.fd = self.log = -1

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
