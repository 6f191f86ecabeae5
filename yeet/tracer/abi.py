"""The kernel/userspace ABI of the tracer: a ctypes mirror of ``bpf/yeet_trace.h``.

Invariant owned here: every struct and constant below has exactly the layout and
value of its C twin in ``bpf/yeet_trace.h`` (``tests/tracer/test_abi.py``
checks the struct layouts against the BTF of the shipped object). Nothing
else in ``yeet.tracer`` hard-codes offsets or numbers of the kernel side.
"""

from __future__ import annotations

import ctypes
import os
from ctypes import c_char, c_int32, c_uint32, c_uint64

ABI_VERSION = 3

MAX_RANGES = 32
OFF_END = 0xFFFF_FFFF_FFFF_FFFF
PATH_DEPTH = 8
NAME_LEN = 40

# enum yeet_op
OP_NAMES = {
    0: "none",
    1: "write",
    2: "writev",
    3: "pwrite64",
    4: "pwritev",
    5: "pwritev2",
    6: "truncate",
    7: "ftruncate",
    8: "fallocate",
    9: "copy_file_range",
    10: "sendfile",
    11: "splice",
    12: "mmap",
    13: "open_trunc",
    14: "ioctl",
    15: "io_submit",
    16: "io_uring",
    17: "direct_io",
    18: "page_dirty",
    19: "fallback",
    20: "inode",
    21: "write",  # ext4: any writer, where the bytes landed
    22: "size",
    23: "fallocate",
    24: "mmap_fault",
}

F_WHOLE = 0x1
F_MMAP = 0x2
F_OVERFLOW = 0x4
F_APPEND = 0x8
F_RACE = 0x10
F_TRUNC = 0x20
F_FLUX = 0x40
F_KWRITE = 0x80

EV_DIRTY = 1
EV_WRITE = 2
EV_PATH_TRUNC = 3

# enum yeet_stat (index into the `stats` map)
STAT_DROPS = 0
STAT_OVERFLOWS = 1
STAT_NOTICE_LOST = 2
STAT_VERBOSE_LOST = 3
STAT_TRUNC_SEQ = 4
STAT_MARKS = 5
STAT_UNPLACEABLE = 6
STAT_RACES = 7
STAT_FALLBACKS = 8
STAT_MAP_FULL = 9
STAT_MAX = 10
STAT_NAMES = (
    "drops",
    "overflows",
    "notice_lost",
    "verbose_lost",
    "trunc_seq",
    "marks",
    "unplaceable",
    "races",
    "fallbacks",
    "map_full",
)

WATCH_SUBTREES = 0x1
WATCH_ALL = 0x2
WATCH_FS = 0x4


class FileIdC(ctypes.Structure):
    _fields_ = [("ino", c_uint64), ("dev", c_uint32), ("gen", c_uint32)]


class KeyC(ctypes.Structure):
    _fields_ = [("id", FileIdC), ("epoch", c_uint64)]


class DirKeyC(ctypes.Structure):
    _fields_ = [("ino", c_uint64), ("dev", c_uint32), ("pad", c_uint32)]


class RangeC(ctypes.Structure):
    _fields_ = [("start", c_uint64), ("end", c_uint64)]


class DirtyC(ctypes.Structure):
    _fields_ = [
        ("lock", c_uint32),
        ("nr", c_uint32),
        ("flags", c_uint32),
        ("ops", c_uint32),
        ("r", RangeC * MAX_RANGES),
    ]


FS_DEVS = 8


class FsDevsC(ctypes.Structure):
    """The object's .bss: filesystems the filesystem hooks watch."""

    _fields_ = [("n", c_uint32), ("dev", c_uint32 * FS_DEVS)]


class ConfigC(ctypes.Structure):
    _fields_ = [
        ("verbose", c_uint32),
        ("self_tgid", c_uint32),
        ("abi", c_uint32),
        ("pad", c_uint32),
        ("setattr_lo", c_uint64),
        ("setattr_hi", c_uint64),
    ]


class EventC(ctypes.Structure):
    _fields_ = [
        ("type", c_uint32),
        ("op", c_uint32),
        ("pid", c_uint32),
        ("tid", c_uint32),
        ("id", FileIdC),
        ("ts_ns", c_uint64),
        ("start", c_uint64),
        ("end", c_uint64),
        ("op_start", c_uint64),
        ("op_end", c_uint64),
        ("flags", c_uint32),
        ("ret", c_int32),
        ("comm", c_char * 16),
        ("root_ino", c_uint64),
        ("depth", c_uint32),
        ("complete", c_uint32),
        ("names", (c_char * NAME_LEN) * PATH_DEPTH),
        ("cwd", FileIdC),
        ("root", FileIdC),
    ]


def kernel_dev(user_dev: int) -> int:
    """A userspace ``st_dev`` as the kernel's internal dev_t (major << 20 | minor)."""
    return (os.major(user_dev) << 20) | os.minor(user_dev)


def user_dev(kdev: int) -> int:
    """The kernel's internal dev_t as a userspace ``st_dev``."""
    return os.makedev(kdev >> 20, kdev & 0xFFFFF)
