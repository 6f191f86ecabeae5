"""Who is asking the tracer service, and what that user may know about.

Invariant owned here: a verdict is the kernel's own answer for the asking
user (``SO_PEERCRED`` uid, gid and the user's supplementary groups), computed
in a child process that has taken on exactly those credentials: ``SEE`` -
``lstat`` succeeds (every directory above is searchable, so the user could
watch its mtime anyway); ``READ`` - ``access(R_OK)`` succeeds. Any failure
in the child counts as "no".
"""

from __future__ import annotations

import os
import pwd
import socket
import struct
from collections.abc import Sequence
from dataclasses import dataclass

SEE, READ = "see", "read"


@dataclass(frozen=True)
class Peer:
    pid: int
    uid: int
    gid: int


def peer_of(sock: socket.socket) -> Peer:
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    return Peer(pid, uid, gid)


def _allowed(path: str, how: str) -> bool:
    try:
        if how == READ:
            return os.access(path, os.R_OK)
        os.lstat(path)
        return True
    except OSError:
        return False


def allowed_as(peer: Peer, checks: Sequence[tuple[str, str]]) -> list[bool]:
    """For each ``(path, SEE or READ)``: may ``peer`` do that? (see the module invariant)."""
    if not checks:
        return []
    if peer.uid == 0:
        return [_allowed(p, how) for p, how in checks]
    try:  # in the parent: the child only makes system calls
        groups = os.getgrouplist(pwd.getpwuid(peer.uid).pw_name, peer.gid)
    except KeyError:
        groups = [peer.gid]
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns
        code = 0
        try:
            os.close(r)
            os.setgroups(groups)
            os.setgid(peer.gid)
            os.setuid(peer.uid)
            verdict = b"".join(b"1" if _allowed(p, how) else b"0" for p, how in checks)
            view = memoryview(verdict)
            while view:
                view = view[os.write(w, view) :]
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(w)
    chunks = []
    while chunk := os.read(r, 65536):
        chunks.append(chunk)
    os.close(r)
    os.waitpid(pid, 0)
    data = b"".join(chunks)
    if len(data) != len(checks):
        return [False] * len(checks)
    return [c == ord("1") for c in data]
