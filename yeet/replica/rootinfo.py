"""Where a root is on its host, and whether two roots overlap.

Invariants owned here:

* Probing a root creates nothing and reports facts only (``RootInfo``): the
  caller decides what a missing or unusable root means.
* A relative root means one in the home directory (as ssh and scp read it),
  whatever the process's working directory.
* Two roots overlap (they are one directory, or one lies inside the other) when
  they are on the same machine (the same kernel boot id) and the
  ``(st_dev, st_ino)`` of one of them is the other's or one of its real
  ancestors', or one real path lies inside the other, or, on the same filesystem
  of the mount table, one's path inside that filesystem lies inside the other's.
  Symlinks, bind mounts and different addresses of one host (``box:`` being
  127.0.0.1) cannot hide an overlap; a root that does not exist yet is placed by
  its nearest existing ancestor.
"""

from __future__ import annotations

import os
import re
import socket

from yeet.contract.values import RootInfo

BOOT_ID = "/proc/sys/kernel/random/boot_id"
MOUNTINFO = "/proc/self/mountinfo"
_OCTAL = re.compile(r"\\([0-7]{3})")


def resolve(root: str) -> str:
    """``root`` made absolute on this host: ``~`` expanded, a relative root joined to
    the home directory; ``.`` components and repeated slashes dropped (``..`` is kept:
    the kernel resolves it, through symlinks)."""
    path = os.path.join(os.path.expanduser("~"), os.path.expanduser(root))
    parts = [p for p in path.split("/") if p not in ("", ".")]
    return "/" + "/".join(parts)


def machine_id() -> str:
    """The identity of the running kernel: device and inode numbers mean the same
    file for every process that reports the same one."""
    try:
        with open(BOOT_ID, encoding="ascii") as f:
            boot = f.read().strip()
        if boot:
            return "boot:" + boot
    except OSError:
        pass
    return "host:" + socket.gethostname()  # no boot id (macOS): the best there is


def _nearest_existing(path: str) -> str:
    while not os.path.lexists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def _chain(real: str) -> tuple[tuple[int, int], ...]:
    out: list[tuple[int, int]] = []
    path = real
    while True:
        try:
            st = os.stat(path)
            out.append((st.st_dev, st.st_ino))
        except OSError:
            pass  # not there (yet): a root to be created, or a vanished one
        parent = os.path.dirname(path)
        if parent == path:
            return tuple(out)
        path = parent


def _unescape(field: str) -> str:
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), field)


def fs_location(real: str) -> tuple[str, str]:
    """``(device, path inside its filesystem)`` of the real path ``real``, from the
    mount table (the mount with the longest mount point above it; of two on one
    point, the later, which is on top); ``("", "")`` without a mount table."""
    try:
        with open(MOUNTINFO, encoding="utf-8", errors="surrogateescape") as f:
            lines = f.read().splitlines()
    except OSError:
        return "", ""
    best: tuple[str, str, str] | None = None
    for line in lines:
        fields = line.split(" ")
        if len(fields) < 5:
            continue
        device, root, point = fields[2], _unescape(fields[3]), _unescape(fields[4])
        if _within(real, point) and (best is None or len(point) >= len(best[2])):
            best = (device, root, point)
    if best is None:
        return "", ""
    device, root, point = best
    rest = real[len(point) :].strip("/") if point != "/" else real.strip("/")
    return device, (root.rstrip("/") + "/" + rest if rest else root) or "/"


def probe_root(root: str) -> RootInfo:
    """What this host says of ``root`` (see ``RootInfo``)."""
    path = resolve(root)
    real = os.path.realpath(path)
    exists = os.path.lexists(path)
    is_dir = os.path.isdir(path)
    problem = ""
    if exists and not is_dir:
        problem = "is not a directory"
    elif not exists:
        ancestor = _nearest_existing(os.path.dirname(path))
        if not os.path.isdir(ancestor):
            problem = f"cannot be created: {ancestor} is not a directory"
        elif not os.access(ancestor, os.W_OK | os.X_OK):
            problem = f"cannot be created: {ancestor} is not writable"
    return RootInfo(
        path,
        real,
        exists,
        is_dir,
        machine_id(),
        socket.gethostname(),
        _chain(real),
        fs_location(real),
        problem,
    )


def _within(path: str, top: str) -> bool:
    return path == top or top == "/" or path.startswith(top.rstrip("/") + "/")


def overlap(a: RootInfo, b: RootInfo) -> bool:
    """True when ``a`` and ``b`` are one directory or one lies inside the other."""
    if not a.machine or a.machine != b.machine:
        return False
    if _within(a.real, b.real) or _within(b.real, a.real):
        return True
    (a_dev, a_path), (b_dev, b_path) = a.fs, b.fs
    if a_dev and a_dev == b_dev and (_within(a_path, b_path) or _within(b_path, a_path)):
        return True
    a_self = a.chain[0] if a.exists and a.is_dir and a.chain else None
    b_self = b.chain[0] if b.exists and b.is_dir and b.chain else None
    return (a_self is not None and a_self in b.chain) or (b_self is not None and b_self in a.chain)
