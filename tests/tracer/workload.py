"""A randomized writer that exercises every way the tracer must see a write.

Files come in two groups: "free" files may shrink (truncate, collapse range,
O_TRUNC), "mapped" files keep their size so that shared mappings of them
never fault past the end (SIGBUS). The last "mapped" file is never mapped:
it takes the O_DIRECT writes (direct I/O on a mapped file makes the kernel
poison the file with EIO, "collision with buffered I/O").
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import mmap
import os
import random
from collections import Counter
from collections.abc import Callable

from kio import Aio, Uring

MAX_OFF = 1 << 20
MAPPED_SIZE = 256 * 1024
FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02
FALLOC_FL_COLLAPSE_RANGE = 0x08
FALLOC_FL_ZERO_RANGE = 0x10
FALLOC_FL_INSERT_RANGE = 0x20

_libc = ctypes.CDLL(None, use_errno=True)
_libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]

# errors a random operation may legitimately hit (bad ranges, unsupported modes)
_BENIGN = {errno.EINVAL, errno.EOPNOTSUPP, errno.ENOSPC, errno.EFBIG, errno.EAGAIN}


def fallocate(fd: int, mode: int, off: int, length: int) -> None:
    if _libc.fallocate(fd, mode, off, length) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


class Writer:
    """One worker's state: its own descriptors, helpers and random stream."""

    def __init__(
        self,
        seed: int,
        free: list[str],
        mapped: list[str],
        shared_fds: dict[str, int] | None = None,
        only: set[str] | None = None,
    ) -> None:
        self.rng = random.Random(seed)
        self.free = free
        self.mapped = mapped
        self.fds = {p: os.open(p, os.O_RDWR) for p in free + mapped}
        self.app = {p: os.open(p, os.O_WRONLY | os.O_APPEND) for p in free}
        self.shared = shared_fds or {}
        self.uring = Uring()
        self.aio = Aio()
        self.pipe_r, self.pipe_w = os.pipe()
        self.dio_buf = mmap.mmap(-1, 65536)
        self.counts: Counter[str] = Counter()
        self.ops: list[tuple[str, Callable[[], None], int]] = [
            ("write", self.op_write, 12),
            ("pwrite", self.op_pwrite, 12),
            ("writev", self.op_writev, 6),
            ("pwritev", self.op_pwritev, 6),
            ("pwritev2_pos", self.op_pwritev2_pos, 2),
            ("pwritev2_append", self.op_pwritev2_append, 2),
            ("append", self.op_append, 6),
            ("ftruncate", self.op_ftruncate, 3),
            ("truncate_path", self.op_truncate_path, 2),
            ("truncate_write", self.op_truncate_write, 2),
            ("fallocate", self.op_fallocate, 4),
            ("punch_hole", self.op_punch, 3),
            ("zero_range", self.op_zero_range, 2),
            ("collapse_insert", self.op_collapse_insert, 2),
            ("copy_file_range", self.op_copy_file_range, 4),
            ("sendfile", self.op_sendfile, 3),
            ("splice", self.op_splice, 3),
            ("mmap", self.op_mmap, 4),
            ("open_trunc", self.op_open_trunc, 1),
            ("io_uring", self.op_uring, 3),
            ("aio", self.op_aio, 3),
            ("odirect", self.op_odirect, 1),
            ("shared_fd", self.op_shared_fd, 4),
        ]
        if only is not None:
            self.ops = [o for o in self.ops if o[0] in only]
        self.weights = [w for _, _, w in self.ops]

    # ---- picking ---------------------------------------------------------------

    def any_file(self) -> str:
        return self.rng.choice(self.free + self.mapped)

    def off_len(self, limit: int = MAX_OFF) -> tuple[int, int]:
        r = self.rng.random()
        length = self.rng.randint(1, 64) if r < 0.4 else self.rng.randint(1, 8192)
        if r > 0.95:
            length = self.rng.randint(8192, 65536)
        off = self.rng.randrange(0, max(1, limit - length))
        return off, length

    def data(self, n: int) -> bytes:
        return self.rng.randbytes(n)

    def limit(self, path: str) -> int:
        return MAPPED_SIZE if path in self.mapped else MAX_OFF

    # ---- operations --------------------------------------------------------------

    def op_write(self) -> None:
        p = self.any_file()
        off, n = self.off_len(self.limit(p))
        os.lseek(self.fds[p], off, os.SEEK_SET)
        os.write(self.fds[p], self.data(n))

    def op_pwrite(self) -> None:
        p = self.any_file()
        off, n = self.off_len(self.limit(p))
        os.pwrite(self.fds[p], self.data(n), off)

    def _parts(self, n: int) -> list[bytes]:
        k = self.rng.randint(1, 4)
        return [self.data(max(1, n // k)) for _ in range(k)]

    def op_writev(self) -> None:
        p = self.any_file()
        off, n = self.off_len(self.limit(p) - 65536)
        os.lseek(self.fds[p], off, os.SEEK_SET)
        os.writev(self.fds[p], self._parts(n))

    def op_pwritev(self) -> None:
        p = self.any_file()
        off, n = self.off_len(self.limit(p) - 65536)
        os.pwritev(self.fds[p], self._parts(n), off)

    def op_pwritev2_pos(self) -> None:
        p = self.any_file()
        off, n = self.off_len(self.limit(p) - 65536)
        os.lseek(self.fds[p], off, os.SEEK_SET)
        os.pwritev(self.fds[p], self._parts(n), -1, os.RWF_DSYNC)

    def op_pwritev2_append(self) -> None:
        p = self.rng.choice(self.free)
        os.pwritev(self.fds[p], self._parts(self.rng.randint(1, 300)), 0, os.RWF_APPEND)

    def op_append(self) -> None:
        p = self.rng.choice(self.free)
        os.write(self.app[p], self.data(self.rng.randint(1, 500)))

    def op_ftruncate(self) -> None:
        p = self.rng.choice(self.free)
        os.ftruncate(self.fds[p], self.rng.randrange(0, MAX_OFF))

    def op_truncate_path(self) -> None:
        p = self.rng.choice(self.free)
        os.truncate(p, self.rng.randrange(0, MAX_OFF))

    def op_truncate_write(self) -> None:
        p = self.rng.choice(self.free)
        fd = self.fds[p]
        os.ftruncate(fd, self.rng.randrange(0, 4096))
        off, n = self.off_len()
        os.pwrite(fd, self.data(n), off)

    def op_fallocate(self) -> None:
        p = self.any_file()
        off, n = self.off_len(self.limit(p))
        mode = 0 if p in self.free and self.rng.random() < 0.5 else FALLOC_FL_KEEP_SIZE
        fallocate(self.fds[p], mode, off, n)

    def op_punch(self) -> None:
        p = self.any_file()
        off, n = self.off_len(self.limit(p))
        fallocate(self.fds[p], FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, n)

    def op_zero_range(self) -> None:
        p = self.any_file()
        off, n = self.off_len(self.limit(p))
        mode = FALLOC_FL_ZERO_RANGE | (FALLOC_FL_KEEP_SIZE if p in self.mapped else 0)
        fallocate(self.fds[p], mode, off, n)

    def op_collapse_insert(self) -> None:
        p = self.rng.choice(self.free)
        size = os.fstat(self.fds[p]).st_size
        if size < 3 * 4096:
            return
        off = self.rng.randrange(0, size // 4096 - 2) * 4096
        mode = self.rng.choice([FALLOC_FL_COLLAPSE_RANGE, FALLOC_FL_INSERT_RANGE])
        fallocate(self.fds[p], mode, off, 4096)

    def op_copy_file_range(self) -> None:
        src, dst = self.any_file(), self.any_file()
        off, n = self.off_len(self.limit(dst))
        if self.rng.random() < 0.5:
            os.copy_file_range(self.fds[src], self.fds[dst], n, self.rng.randrange(0, 65536), off)
        else:
            os.lseek(self.fds[dst], off, os.SEEK_SET)
            os.copy_file_range(self.fds[src], self.fds[dst], n, self.rng.randrange(0, 65536))

    def op_sendfile(self) -> None:
        src, dst = self.any_file(), self.any_file()
        off, n = self.off_len(self.limit(dst))
        os.lseek(self.fds[dst], off, os.SEEK_SET)
        os.sendfile(self.fds[dst], self.fds[src], self.rng.randrange(0, 65536), n)

    def op_splice(self) -> None:
        p = self.any_file()
        off, n = self.off_len(self.limit(p))
        n = min(n, 60000)
        os.write(self.pipe_w, self.data(n))
        if self.rng.random() < 0.5:
            os.splice(self.pipe_r, self.fds[p], n, offset_dst=off)
        else:
            os.lseek(self.fds[p], off, os.SEEK_SET)
            os.splice(self.pipe_r, self.fds[p], n)
        # drain anything left (short splice)
        os.set_blocking(self.pipe_r, False)
        with contextlib.suppress(BlockingIOError):
            while os.read(self.pipe_r, 65536):
                pass
        os.set_blocking(self.pipe_r, True)

    def op_mmap(self) -> None:
        p = self.rng.choice(self.mapped[:-1])
        with mmap.mmap(self.fds[p], MAPPED_SIZE) as m:
            for _ in range(self.rng.randint(1, 5)):
                off, n = self.off_len(MAPPED_SIZE)
                m[off : off + n] = self.data(n)

    def op_open_trunc(self) -> None:
        p = self.rng.choice(self.free)
        fd = os.open(p, os.O_WRONLY | os.O_TRUNC)
        try:
            off, n = self.off_len()
            os.pwrite(fd, self.data(n), off)
        finally:
            os.close(fd)

    def op_uring(self) -> None:
        p = self.any_file()
        off, n = self.off_len(self.limit(p))
        self.uring.write(self.fds[p], self.data(n), off)

    def op_aio(self) -> None:
        p = self.any_file()
        off, n = self.off_len(self.limit(p) - 65536)
        if self.rng.random() < 0.7:
            self.aio.pwrite(self.fds[p], self.data(n), off)
        else:
            self.aio.pwritev(self.fds[p], self._parts(n), off)

    def op_odirect(self) -> None:
        p = self.mapped[-1]
        fd = os.open(p, os.O_RDWR | os.O_DIRECT)
        try:
            n = 4096 * self.rng.randint(1, 4)
            off = 4096 * self.rng.randrange(0, (MAPPED_SIZE - n) // 4096)
            self.dio_buf[:n] = self.data(n)
            os.pwrite(fd, memoryview(self.dio_buf)[:n], off)
        finally:
            os.close(fd)

    def op_shared_fd(self) -> None:
        """write()/lseek() on a descriptor other threads use at the same time."""
        if not self.shared:
            return self.op_write()
        p = self.rng.choice(sorted(self.shared))
        fd = self.shared[p]
        off, n = self.off_len(self.limit(p))
        if self.rng.random() < 0.3:
            os.lseek(fd, off, os.SEEK_SET)
        os.write(fd, self.data(n))
        return None

    # ---- driving -------------------------------------------------------------------

    def run(self, n: int) -> Counter[str]:
        for _ in range(n):
            name, fn, _w = self.rng.choices(self.ops, self.weights)[0]
            try:
                fn()
                self.counts[name] += 1
            except OSError as e:
                if e.errno not in _BENIGN:
                    raise
                self.counts[name + "!"] += 1
        return self.counts

    def close(self) -> None:
        for fd in [*self.fds.values(), *self.app.values(), self.pipe_r, self.pipe_w]:
            os.close(fd)
        self.uring.close()
        self.aio.close()
        self.dio_buf.close()


ALL_OPS = [
    "write",
    "pwrite",
    "writev",
    "pwritev",
    "pwritev2_pos",
    "pwritev2_append",
    "append",
    "ftruncate",
    "truncate_path",
    "truncate_write",
    "fallocate",
    "punch_hole",
    "zero_range",
    "collapse_insert",
    "copy_file_range",
    "sendfile",
    "splice",
    "mmap",
    "open_trunc",
    "io_uring",
    "aio",
    "odirect",
    "shared_fd",
]
# operations the tracer places exactly (no whole-file mark expected)
EXACT_OPS = [
    "write",
    "pwrite",
    "writev",
    "pwritev",
    "pwritev2_pos",
    "pwritev2_append",
    "append",
    "ftruncate",
    "truncate_write",
    "fallocate",
    "punch_hole",
    "zero_range",
    "collapse_insert",
    "copy_file_range",
    "sendfile",
    "splice",
    "odirect",
    "shared_fd",
]
