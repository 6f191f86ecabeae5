"""The change journal's memory: what changed, in order, so that any cursor can be answered.

Invariant owned here: for a cursor ``c``, ``since(c, root)`` returns every
directory and every file recorded below ``root`` with a sequence number
greater than ``c`` (a file's ranges are the union of what was recorded after
``c``, possibly wider, never narrower; the whole file if it lies at or below a
name *bound* after ``c`` - created, linked or moved in, so its content may be
another inode's or unseen) and the reason of every loss recorded after ``c``
that touches ``root``; when the journal was trimmed past ``c`` it says so
among the reasons. Bounded memory: trimming only ever raises ``floor``, it
never drops an entry silently. Pure: no I/O.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field

from yeet.tracer.ranges import WHOLE, Ranges, merge

TRIMMED = "the journal no longer reaches back to this cursor (too many changes since)"


def within(path: str, root: str) -> bool:
    """``path`` is ``root`` or lies below it (absolute, normalised paths)."""
    if root == "/":
        return path.startswith("/")
    return path == root or path.startswith(root + "/")


def relative(path: str, root: str) -> str:
    """``path`` relative to ``root`` (``""`` for the root itself); ``path`` is within it."""
    if path == root:
        return ""
    return path[1:] if root == "/" else path[len(root) + 1 :]


@dataclass
class _File:
    path: str
    history: list[tuple[int, Ranges]] = field(default_factory=list)  # ascending seq


@dataclass
class Since:
    """What changed below a root after a cursor (absolute paths)."""

    dirs: list[str] = field(default_factory=list)
    files: list[tuple[Hashable, str, Ranges]] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    bound: list[str] = field(default_factory=list)  # names bound: what lies below is new


class ChangeLog:
    """Changed directories, changed files and losses, each stamped with a sequence number."""

    def __init__(
        self,
        *,
        max_dirs: int = 500_000,
        max_files: int = 200_000,
        max_history: int = 8,
        max_losses: int = 4096,
        max_bound: int = 100_000,
    ) -> None:
        self.seq = 0
        self.floor = 0  # cursors below it cannot be answered in full
        self._max_dirs = max_dirs
        self._max_files = max_files
        self._max_history = max(2, max_history)
        self._max_losses = max_losses
        self._max_bound = max_bound
        self._dirs: OrderedDict[str, int] = OrderedDict()  # ordered by seq
        self._bound: OrderedDict[str, int] = OrderedDict()  # names bound, ordered by seq
        self._files: OrderedDict[Hashable, _File] = OrderedDict()  # ordered by last seq
        self._losses: list[tuple[int, str | None, str]] = []  # (seq, under or None: all, why)

    def tick(self) -> int:
        """A new sequence number: cursors issued before it are older than anything after."""
        self.seq += 1
        return self.seq

    def dir_changed(self, path: str) -> None:
        self._dirs[path] = self.tick()
        self._dirs.move_to_end(path)
        while len(self._dirs) > self._max_dirs:
            _p, seq = self._dirs.popitem(last=False)
            self.floor = max(self.floor, seq)

    def file_changed(self, key: Hashable, path: str, ranges: Ranges) -> None:
        seq = self.tick()
        rec = self._files.get(key)
        if rec is None:
            rec = self._files[key] = _File(path)
        rec.path = path
        rec.history.append((seq, ranges))
        if len(rec.history) > self._max_history:  # the oldest two become one: wider, not lost
            (_s1, r1), (s2, r2) = rec.history[0], rec.history[1]
            rec.history[0:2] = [(s2, merge(r1, r2))]
        self._files.move_to_end(key)
        while len(self._files) > self._max_files:
            _k, old = self._files.popitem(last=False)
            self.floor = max(self.floor, old.history[-1][0])

    def bound(self, path: str) -> None:
        """A name was bound at ``path`` (created, linked, moved in): what lies there
        now is not what was recorded under that name before."""
        self._bound[path] = self.tick()
        self._bound.move_to_end(path)
        while len(self._bound) > self._max_bound:
            _p, seq = self._bound.popitem(last=False)
            self.floor = max(self.floor, seq)

    def lost(self, reason: str, under: str | None = None) -> None:
        """Something below ``under`` (everywhere: ``None``) may have changed unrecorded."""
        self._losses.append((self.tick(), under, reason))
        if len(self._losses) > self._max_losses:
            seq, _u, _r = self._losses.pop(0)
            self.floor = max(self.floor, seq)

    def since(self, cursor: int, root: str) -> Since:
        out = Since()
        if cursor < self.floor:
            out.reasons.append(TRIMMED)
        for path, seq in reversed(self._dirs.items()):
            if seq <= cursor:
                break
            if within(path, root):
                out.dirs.append(path)
        bound = []
        for path, seq in reversed(self._bound.items()):
            if seq <= cursor:
                break
            if within(path, root) or within(root, path):
                bound.append(path)
        out.bound = bound
        for key, rec in reversed(self._files.items()):
            if rec.history[-1][0] <= cursor:
                break
            if not within(rec.path, root):
                continue
            acc: Ranges | None = None
            for seq, r in rec.history:
                if seq > cursor:
                    acc = r if acc is None else merge(acc, r)
            assert acc is not None
            if any(within(rec.path, b) for b in bound):
                acc = WHOLE
            out.files.append((key, rec.path, acc))
        for seq, under, why in reversed(self._losses):
            if seq <= cursor:
                break
            if under is None or within(under, root) or within(root, under):
                out.reasons.append(why)
        out.dirs.reverse()
        out.files.reverse()
        out.reasons.reverse()
        return out
