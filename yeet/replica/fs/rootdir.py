"""Reaching paths inside a root without ever leaving it.

Invariant owned here: every filesystem call on a relpath goes through a
directory file descriptor obtained by walking the path's components from the
root with ``O_NOFOLLOW``, so a symlink (or a directory swapped for one) can
never redirect a read, write, rename or delete outside the root.
"""

from __future__ import annotations

import errno
import os
import stat

from yeet.model.paths import check_relpath, name_of, parent_of

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class NotADirectoryInRoot(OSError):
    pass


class RootDir:
    """A root directory and a short-lived cache of directory fds below it.

    The cache must be dropped (``forget``) at the end of every batch of work, so
    that a directory the user moves away is not written through for long.
    """

    def __init__(self, root: str) -> None:
        self.root = root
        self.fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        st = os.fstat(self.fd)
        self.dev = st.st_dev
        self._cache: dict[str, int] = {}

    def close(self) -> None:
        self.forget()
        os.close(self.fd)

    def forget(self, under: str | None = None) -> None:
        """Close cached directory fds (all, or those at/below ``under``)."""
        for path in list(self._cache):
            if under is None or under == "" or path == under or path.startswith(under + "/"):
                os.close(self._cache.pop(path))

    def dir_fd(self, path: str) -> int:
        """An fd for directory ``path`` (``""`` is the root); raises OSError."""
        if path == "":
            return self.fd
        fd = self._cache.get(path)
        if fd is not None:
            return fd
        check_relpath(path)
        if len(self._cache) >= 512:
            self.forget()
        parent = self.dir_fd(parent_of(path))
        try:
            fd = os.open(name_of(path), DIR_FLAGS, dir_fd=parent)
        except OSError as err:
            if err.errno in (errno.ELOOP, errno.ENOTDIR):
                raise NotADirectoryInRoot(
                    errno.ENOTDIR, f"not a directory (or a symlink) inside the root: {path}"
                ) from None
            raise
        self._cache[path] = fd
        return fd

    def locate(self, path: str) -> tuple[int, str]:
        """``(fd of the parent directory, name)`` for a non-root relpath."""
        check_relpath(path)
        if path == "":
            raise ValueError("the root has no parent inside the root")
        return self.dir_fd(parent_of(path)), name_of(path)

    def lstat(self, path: str) -> os.stat_result | None:
        """``lstat`` of ``path``, or None if it (or a parent directory) does not exist."""
        if path == "":
            return os.fstat(self.fd)
        try:
            parent, name = self.locate(path)
            return os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return None
        except NotADirectoryInRoot:
            return None

    def open_file(self, path: str, flags: int = os.O_RDONLY) -> int:
        parent, name = self.locate(path)
        fd = os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise OSError(errno.EINVAL, f"not a regular file: {path}")
        return fd

    def readlink(self, path: str) -> str:
        parent, name = self.locate(path)
        return os.readlink(name, dir_fd=parent)
