"""Where sessions live, what they are called, and who may run them.

Invariant owned here: one session directory per name under the XDG state
directory (``$XDG_STATE_HOME/yeet/sessions/<name>``, default
``~/.local/state/yeet/...``), and at most one process works on a session at a
time (an ``flock`` on its ``lock`` file, released by the kernel if we die).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import time
from pathlib import Path

from yeet.model.errors import SessionBusy, SessionNotFound, UsageError
from yeet.model.settings import environment

IDENTITY_FILE = "session.json"  # yeet.state.identity
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def state_home() -> Path:
    return environment().state_home


def sessions_dir() -> Path:
    return state_home() / "sessions"


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise UsageError(
            f"invalid session name {name!r}",
            hint="use letters, digits, '.', '_' and '-' (at most 100, not starting with . or -)",
        )
    return name


def default_name(alpha: str, beta: str) -> str:
    """A stable name derived from the pair: ``<alpha>-<beta>-<hash>``."""

    def slug(url: str) -> str:
        base = url.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1] or "root"
        return re.sub(r"[^A-Za-z0-9._-]", "_", base).lstrip(".-")[:30] or "root"

    digest = hashlib.blake2b(f"{alpha}\0{beta}".encode(), digest_size=3).hexdigest()
    return f"{slug(alpha)}-{slug(beta)}-{digest}"


def session_dir(name: str) -> Path:
    return sessions_dir() / check_name(name)


def is_session(directory: Path) -> bool:
    """A directory that holds a session's state (or what is left of it)."""
    return (directory / "state.db").exists() or (directory / IDENTITY_FILE).exists()


def existing_session_dir(name: str) -> Path:
    d = session_dir(name)
    if not is_session(d):
        known = ", ".join(list_sessions()) or "none"
        raise SessionNotFound(
            f"no session named {name!r}", hint=f"known sessions: {known}; `yeet status` lists them"
        )
    return d


def list_sessions() -> list[str]:
    d = sessions_dir()
    if not d.is_dir():
        return []
    return sorted(p.name for p in d.iterdir() if is_session(p))


class DirectoryLock:
    """An exclusive ``flock`` on ``DIR/lock`` (``with DirectoryLock(...):``), waited for
    up to ``wait`` seconds (an old holder may be exiting), else ``SessionBusy`` with
    ``busy`` and ``hint``; the holder writes its pid into the file (``lock_holder``)."""

    def __init__(
        self, directory: Path, busy: str, hint: str, *, wait: float = 0.0, mode: int = 0o777
    ) -> None:
        self.directory = directory
        self.busy, self.hint, self.wait, self.mode = busy, hint, wait, mode
        self.fd = -1

    def __enter__(self) -> DirectoryLock:
        self.directory.mkdir(parents=True, exist_ok=True, mode=self.mode)
        fd = os.open(self.directory / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        deadline = time.monotonic() + self.wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise SessionBusy(self.busy, hint=self.hint) from None
                time.sleep(0.1)
        self.fd = fd
        try:  # who holds it, for people reading the file (a full disk may refuse it)
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError:
            pass
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def SessionLock(directory: Path) -> DirectoryLock:
    """Exclusive lock on a session directory (``with SessionLock(dir):``), not waited for."""
    return DirectoryLock(
        directory,
        f"session {directory.name!r} is being synchronised by another yeet process",
        "wait for it to finish (`yeet status` shows it) or stop it",
    )


def is_locked(directory: Path) -> bool:
    """True when some process holds the session's lock right now."""
    return lock_holder(directory) is not None


def lock_holder(directory: Path) -> int | None:
    """The process holding the session's lock right now (its pid as the lock file
    says, 0 if it has not written it yet), or None when nobody holds it."""
    try:
        fd = os.open(directory / "lock", os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            return int(text) if text.isdigit() else 0
        return None
    finally:
        os.close(fd)


def pick_sessions(names: list[str] | tuple[str, ...]) -> list[str]:
    """The sessions named (each must exist), or all of them."""
    if names:
        for n in names:
            existing_session_dir(n)
        return list(names)
    return list_sessions()
