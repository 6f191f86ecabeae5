"""What the running kernel allows: environment checks before loading, the
fentry probe, and the explanations users see when the tracer cannot run.

Invariant owned here: every reason the tracer cannot run reaches the user as
a ``TracerUnavailable`` whose message says *why* (not Linux, wrong
architecture, no privileges, no BTF, lockdown, the kernel refused a
program) - never as a bare errno.
"""

from __future__ import annotations

import errno
import os
import platform
import sys
from importlib import resources

from yeet.model.errors import TracerUnavailable
from yeet.tracer import libbpf

OBJECT_NAME = "yeet_trace.bpf.o"


def object_path() -> str:
    """The kernel object shipped in the package (rebuilt by ``make -C bpf install``)."""
    return str(resources.files("yeet.tracer").joinpath(OBJECT_NAME))


def check_environment() -> None:
    if sys.platform != "linux":
        raise TracerUnavailable("the write tracer needs Linux (eBPF)")
    if platform.machine() != "x86_64":
        raise TracerUnavailable(
            f"the tracer's kernel object is built for x86_64, this is {platform.machine()}"
        )
    if not has_bpf_caps():
        raise TracerUnavailable(
            "the write tracer needs root (CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN)",
            hint="run as root, or run the `yeet tracer` service (as root) for all users",
        )
    if not os.path.exists("/sys/kernel/btf/vmlinux"):
        raise TracerUnavailable(
            "the kernel has no BTF (/sys/kernel/btf/vmlinux; CONFIG_DEBUG_INFO_BTF=y)"
        )
    try:
        with open("/sys/kernel/security/lockdown", "rb") as f:
            if b"[confidentiality]" in f.read():
                raise TracerUnavailable(
                    "kernel lockdown=confidentiality forbids BPF tracing of kernel memory"
                )
    except OSError:
        pass


def has_bpf_caps() -> bool:
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"CapEff:"):
                    caps = int(line.split()[1], 16)
                    return bool(caps & (1 << 21)) or (
                        bool(caps & (1 << 39)) and bool(caps & (1 << 38))
                    )
    except OSError:
        pass
    return os.geteuid() == 0


_fentry_status: str | None = None


def probe_fentry(object_path: str | None = None) -> str:
    """Whether fentry/fexit programs load here ("available" or "refused: why").

    The tracer's hooks are tracepoints; fentry could only ever be a faster
    path, so this is informational. Loads a do-nothing program once.
    """
    global _fentry_status
    if _fentry_status is not None:
        return _fentry_status
    try:
        obj = libbpf.object_open(object_path or _object_path())
    except (OSError, libbpf.LibbpfError) as e:
        return f"unknown: {e}"
    try:
        for prog in libbpf.programs(obj):
            libbpf.program_set_autoload(prog, libbpf.program_name(prog) == "yeet_fentry_probe")
        for m in libbpf.maps(obj):  # every map is created: keep them tiny
            name = libbpf.map_name(m)
            if name in ("notices", "verbose_rb"):
                libbpf.map_set_max_entries(m, 4096)
            elif name in ("dirty", "fcache", "truncs", "dio_writes"):
                libbpf.map_set_max_entries(m, 1)
        try:
            libbpf.object_load(obj)
            _fentry_status = "available"
        except libbpf.LibbpfError as e:
            _fentry_status = f"refused: {e.strerror} ({errno.errorcode.get(e.errno or 0, '?')})"
    finally:
        libbpf.object_close(obj)
    return _fentry_status


def _object_path() -> str:
    return str(resources.files("yeet.tracer").joinpath(OBJECT_NAME))


def text_range(function: str) -> tuple[int, int] | None:
    """``[start, end)`` of a kernel function's code (``/proc/kallsyms``: root sees
    the addresses), or None when the kernel will not say."""
    starts: list[int] = []
    want = 0
    try:
        with open("/proc/kallsyms", encoding="ascii", errors="replace") as f:
            for line in f:
                parts = line.split()
                if len(parts) < 3 or parts[1] not in ("t", "T"):
                    continue
                addr = int(parts[0], 16)
                starts.append(addr)
                if parts[2] == function and len(parts) == 3:
                    want = addr
    except (OSError, ValueError):
        return None
    if not want:
        return None  # absent, or addresses hidden (kptr_restrict)
    later = [a for a in starts if a > want]
    return (want, min(later)) if later else None


def explain_load_failure(e: libbpf.LibbpfError) -> str:
    if e.errno == errno.EPERM:
        return (
            "the kernel refused to load the tracer (EPERM): lockdown, a BPF LSM "
            "policy or missing capabilities"
        )
    detail = [line for line in e.log if line and not line.startswith(";")][-6:]
    return f"the kernel refused the tracer program ({e.strerror}): " + " | ".join(detail)
