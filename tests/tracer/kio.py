"""Raw io_uring and Linux AIO through ctypes, for driving the tracer in tests.

Minimal on purpose: one ring / one context, synchronous submit-and-wait.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import struct

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long

NR_IO_SETUP = 206
NR_IO_DESTROY = 207
NR_IO_GETEVENTS = 208
NR_IO_SUBMIT = 209
NR_IO_URING_SETUP = 425
NR_IO_URING_ENTER = 426

IORING_OP_WRITEV = 2
IORING_OP_FALLOCATE = 17
IORING_OP_WRITE = 23
IORING_OFF_SQ_RING = 0
IORING_OFF_CQ_RING = 0x8000000
IORING_OFF_SQES = 0x10000000
IORING_ENTER_GETEVENTS = 1

IOCB_CMD_PWRITE = 1
IOCB_CMD_PWRITEV = 8


def _check(rc: int) -> int:
    if rc < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return rc


class _SqOff(ctypes.Structure):
    _fields_ = [
        (n, ctypes.c_uint32)
        for n in ("head", "tail", "ring_mask", "ring_entries", "flags", "dropped", "array", "resv1")
    ] + [("user_addr", ctypes.c_uint64)]


class _CqOff(ctypes.Structure):
    _fields_ = [
        (n, ctypes.c_uint32)
        for n in ("head", "tail", "ring_mask", "ring_entries", "overflow", "cqes", "flags", "resv1")
    ] + [("user_addr", ctypes.c_uint64)]


class _Params(ctypes.Structure):
    _fields_ = [
        ("sq_entries", ctypes.c_uint32),
        ("cq_entries", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("sq_thread_cpu", ctypes.c_uint32),
        ("sq_thread_idle", ctypes.c_uint32),
        ("features", ctypes.c_uint32),
        ("wq_fd", ctypes.c_uint32),
        ("resv", ctypes.c_uint32 * 3),
        ("sq_off", _SqOff),
        ("cq_off", _CqOff),
    ]


class Uring:
    """A tiny io_uring: submit one request, wait for its completion."""

    def __init__(self, entries: int = 8) -> None:
        p = _Params()
        self.fd = _check(_syscall(NR_IO_URING_SETUP, entries, ctypes.byref(p)))
        self.p = p
        sq_size = p.sq_off.array + p.sq_entries * 4
        cq_size = p.cq_off.cqes + p.cq_entries * 16
        flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
        prot = mmap.PROT_READ | mmap.PROT_WRITE
        self.sq = mmap.mmap(self.fd, sq_size, flags, prot, offset=IORING_OFF_SQ_RING)
        self.cq = mmap.mmap(self.fd, cq_size, flags, prot, offset=IORING_OFF_CQ_RING)
        self.sqes = mmap.mmap(self.fd, p.sq_entries * 64, flags, prot, offset=IORING_OFF_SQES)

    def _u32(self, m: mmap.mmap, off: int) -> int:
        return int(struct.unpack_from("<I", m, off)[0])

    def submit(self, opcode: int, fd: int, off: int, addr: int, length: int) -> int:
        p = self.p
        tail = self._u32(self.sq, p.sq_off.tail)
        mask = self._u32(self.sq, p.sq_off.ring_mask)
        idx = tail & mask
        sqe = struct.pack(
            "<BBHiQQIIQHHiQQ", opcode, 0, 0, fd, off, addr, length, 0, 7, 0, 0, 0, 0, 0
        )
        self.sqes[idx * 64 : idx * 64 + 64] = sqe
        struct.pack_into("<I", self.sq, p.sq_off.array + idx * 4, idx)
        struct.pack_into("<I", self.sq, p.sq_off.tail, tail + 1)
        _check(_syscall(NR_IO_URING_ENTER, self.fd, 1, 1, IORING_ENTER_GETEVENTS, None, 0))
        head = self._u32(self.cq, p.cq_off.head)
        cmask = self._u32(self.cq, p.cq_off.ring_mask)
        cqe = p.cq_off.cqes + (head & cmask) * 16
        _data, res, _flags = struct.unpack_from("<QiI", self.cq, cqe)
        struct.pack_into("<I", self.cq, p.cq_off.head, head + 1)
        return int(res)

    def write(self, fd: int, data: bytes, off: int) -> int:
        buf = ctypes.create_string_buffer(data, len(data))
        return self.submit(IORING_OP_WRITE, fd, off, ctypes.addressof(buf), len(data))

    def fallocate(self, fd: int, mode: int, off: int, length: int) -> int:
        # io_uring fallocate: len in addr, mode in len
        return self.submit(IORING_OP_FALLOCATE, fd, off, length, mode)

    def close(self) -> None:
        self.sq.close()
        self.cq.close()
        self.sqes.close()
        os.close(self.fd)


class _Iocb(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_uint64),
        ("key", ctypes.c_uint32),
        ("rw_flags", ctypes.c_uint32),
        ("opcode", ctypes.c_uint16),
        ("reqprio", ctypes.c_int16),
        ("fildes", ctypes.c_uint32),
        ("buf", ctypes.c_uint64),
        ("nbytes", ctypes.c_uint64),
        ("offset", ctypes.c_int64),
        ("reserved2", ctypes.c_uint64),
        ("flags", ctypes.c_uint32),
        ("resfd", ctypes.c_uint32),
    ]


class _IoEvent(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_uint64),
        ("obj", ctypes.c_uint64),
        ("res", ctypes.c_int64),
        ("res2", ctypes.c_int64),
    ]


class Aio:
    """Linux native AIO (io_submit) with a synchronous wait."""

    def __init__(self) -> None:
        self.ctx = ctypes.c_ulong(0)
        _check(_syscall(NR_IO_SETUP, 32, ctypes.byref(self.ctx)))

    def pwrite(self, fd: int, data: bytes | memoryview, off: int) -> int:
        buf = (ctypes.c_char * len(data)).from_buffer_copy(data)
        cb = _Iocb(
            opcode=IOCB_CMD_PWRITE,
            fildes=fd,
            buf=ctypes.addressof(buf),
            nbytes=len(data),
            offset=off,
        )
        return self._run(cb, buf)

    def pwritev(self, fd: int, parts: list[bytes], off: int) -> int:
        bufs = [ctypes.create_string_buffer(b, len(b)) for b in parts]
        iov = (ctypes.c_uint64 * (2 * len(parts)))()
        for i, b in enumerate(bufs):
            iov[2 * i] = ctypes.addressof(b)
            iov[2 * i + 1] = len(parts[i])
        cb = _Iocb(
            opcode=IOCB_CMD_PWRITEV,
            fildes=fd,
            buf=ctypes.addressof(iov),
            nbytes=len(parts),
            offset=off,
        )
        return self._run(cb, (bufs, iov))

    def _run(self, cb: _Iocb, keep: object) -> int:
        ptrs = (ctypes.c_void_p * 1)(ctypes.addressof(cb))
        _check(_syscall(NR_IO_SUBMIT, self.ctx, 1, ptrs))
        ev = _IoEvent()
        _check(_syscall(NR_IO_GETEVENTS, self.ctx, 1, 1, ctypes.byref(ev), None))
        del keep
        return int(ev.res)

    def close(self) -> None:
        _syscall(NR_IO_DESTROY, self.ctx)
