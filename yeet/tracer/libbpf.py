"""ctypes bindings to the system ``libbpf.so.1`` - only the calls the tracer uses.

Invariant owned here: every libbpf call goes through a typed wrapper that turns
libbpf's error convention (NULL + errno, or a negative errno) into an
``OSError`` carrying the errno and whatever libbpf logged while it failed, so
callers never see a raw C error code or a NULL pointer.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno as errno_mod
import os
import threading
from collections.abc import Callable, Iterator
from ctypes import (
    CFUNCTYPE,
    POINTER,
    c_bool,
    c_char_p,
    c_int,
    c_size_t,
    c_uint32,
    c_uint64,
    c_void_p,
)
from typing import Any

# enum libbpf_print_level
LIBBPF_WARN = 0
LIBBPF_INFO = 1
LIBBPF_DEBUG = 2

BPF_ANY = 0
BPF_NOEXIST = 1
BPF_EXIST = 2

BTF_KIND_TYPEDEF = 8
BTF_KIND_FUNC = 12

PRINT_FN = CFUNCTYPE(c_int, c_int, c_char_p, c_void_p)
RING_SAMPLE_FN = CFUNCTYPE(c_int, c_void_p, c_void_p, c_size_t)


class LibbpfError(OSError):
    """A libbpf call failed; ``log`` holds what libbpf printed meanwhile."""

    def __init__(self, err: int, what: str, log: list[str]) -> None:
        super().__init__(err, f"{what}: {os.strerror(err)}")
        self.what = what
        self.log = list(log)


_lib: ctypes.CDLL | None = None
_libc: ctypes.CDLL | None = None
_lock = threading.Lock()
_log: list[str] = []
_print_cb: Any = None  # keeps the C callback alive


def _declare(lib: ctypes.CDLL) -> None:
    sigs: dict[str, tuple[Any, list[Any]]] = {
        "libbpf_set_print": (c_void_p, [PRINT_FN]),
        "bpf_object__open_file": (c_void_p, [c_char_p, c_void_p]),
        "bpf_object__load": (c_int, [c_void_p]),
        "bpf_object__close": (None, [c_void_p]),
        "bpf_object__find_program_by_name": (c_void_p, [c_void_p, c_char_p]),
        "bpf_object__next_program": (c_void_p, [c_void_p, c_void_p]),
        "bpf_object__find_map_by_name": (c_void_p, [c_void_p, c_char_p]),
        "bpf_object__next_map": (c_void_p, [c_void_p, c_void_p]),
        "bpf_program__name": (c_char_p, [c_void_p]),
        "bpf_program__section_name": (c_char_p, [c_void_p]),
        "bpf_program__set_autoload": (c_int, [c_void_p, c_bool]),
        "bpf_program__autoload": (c_bool, [c_void_p]),
        "bpf_program__attach": (c_void_p, [c_void_p]),
        "bpf_program__fd": (c_int, [c_void_p]),
        "bpf_obj_get_info_by_fd": (c_int, [c_int, c_void_p, POINTER(c_uint32)]),
        "bpf_link__destroy": (c_int, [c_void_p]),
        "bpf_map__name": (c_char_p, [c_void_p]),
        "bpf_map__fd": (c_int, [c_void_p]),
        "bpf_map__set_max_entries": (c_int, [c_void_p, c_uint32]),
        "bpf_map__max_entries": (c_uint32, [c_void_p]),
        "bpf_map__inner_map": (c_void_p, [c_void_p]),
        "bpf_map__initial_value": (c_void_p, [c_void_p, POINTER(c_size_t)]),
        "bpf_map__set_initial_value": (c_int, [c_void_p, c_void_p, c_size_t]),
        "bpf_map_update_elem": (c_int, [c_int, c_void_p, c_void_p, c_uint64]),
        "bpf_map_lookup_elem": (c_int, [c_int, c_void_p, c_void_p]),
        "bpf_map_delete_elem": (c_int, [c_int, c_void_p]),
        "bpf_map_get_next_key": (c_int, [c_int, c_void_p, c_void_p]),
        "ring_buffer__new": (c_void_p, [c_int, RING_SAMPLE_FN, c_void_p, c_void_p]),
        "ring_buffer__add": (c_int, [c_void_p, c_int, RING_SAMPLE_FN, c_void_p]),
        "ring_buffer__epoll_fd": (c_int, [c_void_p]),
        "ring_buffer__consume": (c_int, [c_void_p]),
        "ring_buffer__poll": (c_int, [c_void_p, c_int]),
        "ring_buffer__free": (None, [c_void_p]),
        "btf__load_vmlinux_btf": (c_void_p, []),
        "btf__find_by_name_kind": (c_int, [c_void_p, c_char_p, c_uint32]),
        "btf__free": (None, [c_void_p]),
    }
    for name, (restype, argtypes) in sigs.items():
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes


def _on_print(level: int, fmt: bytes | None, args: int | None) -> int:
    if _libc is None or fmt is None or level > LIBBPF_INFO:
        return 0
    buf = ctypes.create_string_buffer(1 << 21)
    _libc.vsnprintf(buf, ctypes.sizeof(buf), fmt, c_void_p(args))
    text = buf.value.decode("utf-8", "replace").rstrip("\n")
    if text:
        _log.append(text)
        del _log[:-64]
    return 0


def lib() -> ctypes.CDLL:
    """The loaded library; raises ``OSError`` if ``libbpf.so.1`` is missing."""
    global _lib, _libc, _print_cb
    with _lock:
        if _lib is None:
            name = "libbpf.so.1"
            try:
                loaded = ctypes.CDLL(name, use_errno=True)
            except OSError:
                found = ctypes.util.find_library("bpf")
                if not found:
                    raise
                loaded = ctypes.CDLL(found, use_errno=True)
            _declare(loaded)
            _libc = ctypes.CDLL(None, use_errno=True)
            _libc.vsnprintf.argtypes = [c_char_p, c_size_t, c_char_p, c_void_p]
            _libc.vsnprintf.restype = c_int
            _print_cb = PRINT_FN(_on_print)
            loaded.libbpf_set_print(_print_cb)
            _lib = loaded
        return _lib


def take_log() -> list[str]:
    """What libbpf printed (warnings and info) since the last call."""
    with _lock:
        out = list(_log)
        _log.clear()
        return out


def _fail(err: int, what: str) -> LibbpfError:
    return LibbpfError(err or errno_mod.EINVAL, what, take_log())


def _ptr(value: int | None, what: str) -> int:
    if not value:
        raise _fail(ctypes.get_errno(), what)
    return value


def _check(rc: int, what: str) -> int:
    if rc < 0:
        raise _fail(-rc, what)
    return rc


# ---- objects and programs ---------------------------------------------------


def object_open(path: str) -> int:
    return _ptr(lib().bpf_object__open_file(os.fsencode(path), None), f"open {path}")


def object_load(obj: int) -> None:
    _check(int(lib().bpf_object__load(c_void_p(obj))), "load BPF object")


def object_close(obj: int) -> None:
    lib().bpf_object__close(c_void_p(obj))


def programs(obj: int) -> Iterator[int]:
    prog: int | None = None
    while True:
        prog = lib().bpf_object__next_program(c_void_p(obj), c_void_p(prog))
        if not prog:
            return
        yield int(prog)


def program_name(prog: int) -> str:
    raw: bytes = lib().bpf_program__name(c_void_p(prog))
    return raw.decode()


def program_section(prog: int) -> str:
    raw: bytes = lib().bpf_program__section_name(c_void_p(prog))
    return raw.decode()


def program_set_autoload(prog: int, autoload: bool) -> None:
    _check(int(lib().bpf_program__set_autoload(c_void_p(prog), autoload)), "set autoload")


def program_autoload(prog: int) -> bool:
    return bool(lib().bpf_program__autoload(c_void_p(prog)))


def program_attach(prog: int) -> int:
    return _ptr(lib().bpf_program__attach(c_void_p(prog)), f"attach {program_name(prog)}")


def link_destroy(link: int) -> None:
    lib().bpf_link__destroy(c_void_p(link))


def program_fd(prog: int) -> int:
    return _check(int(lib().bpf_program__fd(c_void_p(prog))), "program fd")


# struct bpf_prog_info (uapi/linux/bpf.h): the counters that follow run_time_ns
_PROG_INFO_SIZE = 232
_RUN_TIME_NS, _RUN_CNT, _RECURSION_MISSES = 192, 200, 208


def program_runs(fd: int) -> tuple[int, int, int]:
    """``(runs, ns spent, runs the kernel skipped)`` of a loaded program; the first
    two count only while ``kernel.bpf_stats_enabled`` is 1. A skipped run - the
    program was already running on that CPU (recursion) - saw nothing."""
    buf = ctypes.create_string_buffer(_PROG_INFO_SIZE)
    size = c_uint32(_PROG_INFO_SIZE)
    _check(int(lib().bpf_obj_get_info_by_fd(fd, buf, ctypes.byref(size))), "program info")
    raw = buf.raw
    if size.value < _RECURSION_MISSES + 8:  # a kernel without the counter
        return 0, 0, 0
    return (
        int.from_bytes(raw[_RUN_CNT : _RUN_CNT + 8], "little"),
        int.from_bytes(raw[_RUN_TIME_NS : _RUN_TIME_NS + 8], "little"),
        int.from_bytes(raw[_RECURSION_MISSES : _RECURSION_MISSES + 8], "little"),
    )


# ---- maps -------------------------------------------------------------------


def find_map(obj: int, name: str) -> int:
    found = lib().bpf_object__find_map_by_name(c_void_p(obj), name.encode())
    return _ptr(found, f"find map {name}")


def maps(obj: int) -> Iterator[int]:
    m: int | None = None
    while True:
        m = lib().bpf_object__next_map(c_void_p(obj), c_void_p(m))
        if not m:
            return
        yield int(m)


def map_name(m: int) -> str:
    raw: bytes = lib().bpf_map__name(c_void_p(m))
    return raw.decode()


def map_fd(m: int) -> int:
    return _check(int(lib().bpf_map__fd(c_void_p(m))), "map fd")


def map_set_max_entries(m: int, n: int) -> None:
    _check(int(lib().bpf_map__set_max_entries(c_void_p(m), n)), "set max_entries")


def map_inner(m: int) -> int | None:
    inner = lib().bpf_map__inner_map(c_void_p(m))
    return int(inner) if inner else None


def map_initial_size(m: int) -> int:
    size = c_size_t(0)
    lib().bpf_map__initial_value(c_void_p(m), ctypes.byref(size))
    return int(size.value)


def map_set_initial_value(m: int, data: bytes) -> None:
    buf = ctypes.create_string_buffer(data, len(data))
    _check(int(lib().bpf_map__set_initial_value(c_void_p(m), buf, len(data))), "set initial value")


def update(fd: int, key: Any, value: Any, flags: int = BPF_ANY) -> None:
    rc = int(lib().bpf_map_update_elem(fd, ctypes.byref(key), ctypes.byref(value), flags))
    _check(rc, "map update")


def lookup(fd: int, key: Any, value: Any) -> bool:
    """Fill ``value``; False if the key is absent."""
    rc = int(lib().bpf_map_lookup_elem(fd, ctypes.byref(key), ctypes.byref(value)))
    if rc == -errno_mod.ENOENT:
        return False
    _check(rc, "map lookup")
    return True


def delete(fd: int, key: Any) -> bool:
    rc = int(lib().bpf_map_delete_elem(fd, ctypes.byref(key)))
    if rc == -errno_mod.ENOENT:
        return False
    _check(rc, "map delete")
    return True


def keys(fd: int, key_type: type[Any]) -> Iterator[Any]:
    """Every key of a map (snapshot semantics are the kernel's)."""
    prev: Any = None
    while True:
        nxt = key_type()
        rc = int(
            lib().bpf_map_get_next_key(
                fd, ctypes.byref(prev) if prev is not None else None, ctypes.byref(nxt)
            )
        )
        if rc == -errno_mod.ENOENT:
            return
        _check(rc, "map get_next_key")
        yield nxt
        prev = nxt


# ---- ring buffers -------------------------------------------------------------


class RingBuffer:
    """One libbpf ``ring_buffer`` manager over one or more BPF ring buffer maps.

    ``consume()`` runs the Python callbacks synchronously, in the calling thread.
    """

    def __init__(self) -> None:
        self._rb: int | None = None
        self._callbacks: list[Any] = []

    def add(self, map_fd_: int, callback: Callable[[bytes], None]) -> None:
        def sample(_ctx: int | None, data: int | None, size: int) -> int:
            if data:
                callback(ctypes.string_at(data, size))
            return 0

        cfn = RING_SAMPLE_FN(sample)
        self._callbacks.append(cfn)
        if self._rb is None:
            self._rb = _ptr(lib().ring_buffer__new(map_fd_, cfn, None, None), "ring_buffer__new")
        else:
            _check(int(lib().ring_buffer__add(c_void_p(self._rb), map_fd_, cfn, None)), "rb add")

    def epoll_fd(self) -> int:
        assert self._rb is not None
        return int(lib().ring_buffer__epoll_fd(c_void_p(self._rb)))

    def consume(self) -> int:
        if self._rb is None:
            return 0
        return _check(int(lib().ring_buffer__consume(c_void_p(self._rb))), "ring consume")

    def poll(self, timeout_ms: int) -> int:
        if self._rb is None:
            return 0
        rc = int(lib().ring_buffer__poll(c_void_p(self._rb), timeout_ms))
        if rc == -errno_mod.EINTR:
            return 0
        return _check(rc, "ring poll")

    def free(self) -> None:
        if self._rb is not None:
            lib().ring_buffer__free(c_void_p(self._rb))
            self._rb = None
        self._callbacks.clear()


def possible_cpus() -> int:
    """Values per key in per-CPU maps (what libbpf_num_possible_cpus() says)."""
    with open("/sys/devices/system/cpu/possible", "rb") as f:
        text = f.read().decode().strip()
    last = 0
    for part in text.split(","):
        last = max(last, int(part.split("-")[-1]))
    return last + 1


# ---- kernel BTF -------------------------------------------------------------


def kernel_has_types(names: list[tuple[str, int]]) -> dict[str, bool]:
    """Which (name, BTF kind) exist in the running kernel's BTF."""
    btf = lib().btf__load_vmlinux_btf()
    if not btf:
        raise _fail(ctypes.get_errno(), "load kernel BTF")
    try:
        return {
            name: int(lib().btf__find_by_name_kind(c_void_p(btf), name.encode(), kind)) > 0
            for name, kind in names
        }
    finally:
        lib().btf__free(c_void_p(btf))
