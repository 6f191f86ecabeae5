"""The per-session trash: where replaced and deleted content goes.

Invariant owned here: content that the engine overwrites or deletes on a side
is first preserved in that side's trash (outside the synchronised tree), with
its path and time, before the tree changes; nothing the engine removes is ever
just unlinked. On the same filesystem that costs a hard link or a rename; across
filesystems the content is copied first. Items expire after ``days`` (a value
that is not a finite number of days, or is negative, expires nothing). Each item
records the pass that trashed it (``pass_id``: the number the client gave the
call that trashes, see ``Endpoint.apply``), so a whole pass can be put back.
"""

from __future__ import annotations

import errno
import math
import os
import secrets
import sqlite3
import stat
import threading
import time
from collections.abc import Iterable, Sequence

from yeet.contract.values import TrashItem
from yeet.model.entries import Entry
from yeet.replica.fs.space import explain
from yeet.state import replica_tables as sql
from yeet.state.db import transaction


def _kind(entry: Entry) -> str:
    return "dir" if entry.is_dir else "symlink" if entry.is_symlink else "file"


def _size_digest(entry: Entry | None) -> tuple[int, bytes | None]:
    if entry is None:
        return 0, None
    return entry.size, entry.digest if entry.is_file else None


def copy_into(src_fd: int, dst_fd: int) -> None:
    """Copy all of ``src_fd`` into ``dst_fd`` (in kernel where possible)."""
    size = os.fstat(src_fd).st_size
    offset = 0
    try:
        while offset < size:
            n = os.copy_file_range(src_fd, dst_fd, size - offset, offset, offset)
            if n == 0:
                break
            offset += n
        return
    except OSError as err:
        if err.errno not in (errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
            raise
    os.lseek(src_fd, offset, os.SEEK_SET)
    os.lseek(dst_fd, offset, os.SEEK_SET)
    while chunk := os.read(src_fd, 1 << 20):
        os.write(dst_fd, chunk)


def place_new(src_dir: int, src: str, dst_dir: int, dst: str) -> None:
    """Move ``src`` to ``dst`` without ever replacing what is at ``dst``
    (``FileExistsError`` then): a hard link and an unlink (a crash in between
    leaves both names, never neither). A directory, or a filesystem without hard
    links, is renamed after a last check that ``dst`` is free."""
    try:
        os.link(src, dst, src_dir_fd=src_dir, dst_dir_fd=dst_dir, follow_symlinks=False)
    except OSError as err:
        if err.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK):
            raise
        try:
            os.stat(dst, dir_fd=dst_dir, follow_symlinks=False)
        except FileNotFoundError:
            os.rename(src, dst, src_dir_fd=src_dir, dst_dir_fd=dst_dir)
            return
        raise FileExistsError(errno.EEXIST, "something appeared at that path") from None
    os.unlink(src, dir_fd=src_dir)


class Trash:
    def __init__(
        self, directory: str, conn: sqlite3.Connection, lock: threading.RLock, side: str
    ) -> None:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        self.directory = directory
        self.fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self.dev = os.fstat(self.fd).st_dev
        self.conn = conn
        self.lock = lock
        self.side = side
        self.pass_id = 0  # the pass whose writes trash things now (0: none said)

    def close(self) -> None:
        os.close(self.fd)

    def _new_id(self, path: str, entry: Entry | None, kind: str) -> int:
        with self.lock, transaction(self.conn):
            return self._insert(path, entry, kind, time.time())

    def _insert(self, path: str, entry: Entry | None, kind: str, when: float) -> int:
        """A row for an item (inside the caller's transaction); stored under its id."""
        cur = self.conn.execute(
            sql.TRASH_INSERT,
            (self.side, os.fsencode(path), kind, *_size_digest(entry), when, self.pass_id),
        )
        item = int(cur.lastrowid or 0)
        self.conn.execute(sql.TRASH_SET_STORED, (str(item), item))
        return item

    def reserve(self, wanted: Sequence[tuple[str, Entry]]) -> dict[str, int]:
        """Rows for what a batch may trash, written in one transaction: one WAL
        fsync for the batch instead of one per item. ``preserve(item=...)`` fills a
        row; ``release`` drops the rows nothing filled; a row left unfilled by a
        crash is dropped by ``expire`` (its stored name does not exist)."""
        if not wanted:
            return {}
        now = time.time()
        out: dict[str, int] = {}
        with self.lock, transaction(self.conn):
            for path, entry in wanted:
                out[path] = self._insert(path, entry, _kind(entry), now)
        return out

    def release(self, items: Iterable[int]) -> None:
        """Drop reserved rows that were not used."""
        items = list(items)
        if items:
            with self.lock, transaction(self.conn):
                self.conn.executemany(sql.TRASH_DROP, [(i,) for i in items])

    def _forget(self, item: int) -> None:
        with self.lock, transaction(self.conn):
            self.conn.execute(sql.TRASH_DROP, (item,))

    def preserve(
        self,
        parent_fd: int,
        name: str,
        path: str,
        entry: Entry | None,
        *,
        move: bool,
        reserved: int | None = None,
    ) -> int:
        """Put what is at ``name`` into the trash.

        ``move=True`` takes it out of the tree (a deletion); ``move=False`` keeps it
        in place and adds a second link (it is about to be replaced by a rename).
        ``reserved``: a row from ``reserve`` for ``entry``, used if the kind matches.
        """
        st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
        kind = (
            "dir" if stat.S_ISDIR(st.st_mode) else "symlink" if stat.S_ISLNK(st.st_mode) else "file"
        )
        if reserved is not None and entry is not None and _kind(entry) == kind:
            item = reserved
        else:
            item = self._new_id(path, entry, kind)
        stored = str(item)
        try:
            if move:
                os.rename(name, stored, src_dir_fd=parent_fd, dst_dir_fd=self.fd)
            elif kind == "file" and st.st_dev == self.dev:
                os.link(
                    name, stored, src_dir_fd=parent_fd, dst_dir_fd=self.fd, follow_symlinks=False
                )
            elif kind == "symlink":
                os.symlink(os.readlink(name, dir_fd=parent_fd), stored, dir_fd=self.fd)
            else:
                self._copy(parent_fd, name, stored)
        except OSError as err:
            if move and err.errno == errno.EXDEV and kind != "dir":
                self._copy_and_unlink(parent_fd, name, stored, kind)
            else:
                self._forget(item)
                raise
        return item

    def _copy(self, parent_fd: int, name: str, stored: str) -> None:
        src = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent_fd)
        try:
            dst = os.open(
                stored, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600, dir_fd=self.fd
            )
            try:
                copy_into(src, dst)
                # its permission bits come back with it (the trash itself is 0700)
                os.fchmod(dst, stat.S_IMODE(os.fstat(src).st_mode) & 0o777)
                os.fsync(dst)
            except OSError as err:
                raise explain(err, dst, os.fstat(src).st_size, f"in {self.directory}") from None
            finally:
                os.close(dst)
        finally:
            os.close(src)

    def _copy_and_unlink(self, parent_fd: int, name: str, stored: str, kind: str) -> None:
        if kind == "symlink":
            os.symlink(os.readlink(name, dir_fd=parent_fd), stored, dir_fd=self.fd)
        else:
            self._copy(parent_fd, name, stored)
        os.unlink(name, dir_fd=parent_fd)

    def copy_back(self, stored: str, parent_fd: int, name: str) -> None:
        """Put item ``stored`` at ``name`` in ``parent_fd`` when the tree is on another
        filesystem (a rename cannot): a file is copied under a temporary name, made
        durable and renamed into place (a crash never leaves a torn file at ``name``),
        a symlink is recreated; then the item leaves the trash. A directory item is
        always on the tree's filesystem (it was renamed into the trash)."""
        st = os.stat(stored, dir_fd=self.fd, follow_symlinks=False)
        tmp = f".yeet-tmp-{secrets.token_hex(8)}"
        if stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(stored, dir_fd=self.fd), tmp, dir_fd=parent_fd)
        elif stat.S_ISREG(st.st_mode):
            src = os.open(stored, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=self.fd)
            try:
                dst = os.open(
                    tmp,
                    os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                    0o600,
                    dir_fd=parent_fd,
                )
                try:
                    copy_into(src, dst)
                    os.fchmod(dst, stat.S_IMODE(st.st_mode) & 0o777)
                    os.fsync(dst)
                except BaseException:
                    os.unlink(tmp, dir_fd=parent_fd)
                    raise
                finally:
                    os.close(dst)
            finally:
                os.close(src)
        else:
            raise OSError(errno.EXDEV, "a directory cannot be moved across filesystems")
        try:
            place_new(parent_fd, tmp, parent_fd, name)
        except BaseException:
            os.unlink(tmp, dir_fd=parent_fd)
            raise
        os.unlink(stored, dir_fd=self.fd)

    def items(self) -> list[TrashItem]:
        with self.lock:
            rows = self.conn.execute(sql.TRASH_ITEMS, (self.side,)).fetchall()
        return [
            TrashItem(i, s, os.fsdecode(p), k, z, t, os.path.join(self.directory, st), n)
            for i, s, p, k, z, t, st, n in rows
        ]

    def take(self, item: int) -> tuple[str, str]:
        """``(original path, stored name)`` of an item, for restoring."""
        with self.lock:
            row = self.conn.execute(sql.TRASH_ITEM, (item, self.side)).fetchone()
        if row is None:
            raise KeyError(item)
        return os.fsdecode(row[0]), row[1]

    def restored(self, items: Iterable[int]) -> None:
        """Drop the rows of items put back (one transaction for a whole batch)."""
        self.release(items)

    def expire(self, days: float) -> int:
        """Delete items older than ``days``; returns how many. Also drops rows whose
        content never arrived (reserved by a batch a crash interrupted)."""
        if not (math.isfinite(days) and days >= 0):
            days = math.inf  # nonsense from a stored setting: keep everything
        cutoff = time.time() - days * 86400 if math.isfinite(days) else -math.inf
        with self.lock:
            rows = self.conn.execute(sql.TRASH_AGES, (self.side,)).fetchall()
        old = [(item, stored) for item, stored, trashed in rows if trashed < cutoff]
        for item, stored in old:
            self._remove_stored(stored)
            self._forget(item)
        self.release(i for i, name, when in rows if when >= cutoff and not self._has(name))
        return len(old)

    def _has(self, stored: str) -> bool:
        try:
            os.stat(stored, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        return True

    def _remove_stored(self, stored: str) -> None:
        try:
            st = os.stat(stored, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            import shutil

            shutil.rmtree(os.path.join(self.directory, stored), ignore_errors=True)
        else:
            os.unlink(stored, dir_fd=self.fd)
