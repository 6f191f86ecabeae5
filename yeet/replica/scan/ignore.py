"""Which paths a session does not synchronise.

Invariant owned here: ignore rules are gitignore syntax (``pathspec``), matched
against the relpath from the root (with a trailing ``/`` for directories), and
they are the same on both sides of a session. An ignored directory is not
descended into. ``--ignore-vcs`` adds the metadata directories of the common
version control systems (off by default: syncing git checkouts is a main use).
"""

from __future__ import annotations

from collections.abc import Iterable

VCS_PATTERNS = (".git", ".hg", ".svn", ".bzr", "_darcs", ".jj", "CVS/", ".pijul")


class IgnoreRules:
    def __init__(self, patterns: Iterable[str] = (), ignore_vcs: bool = False) -> None:
        lines = [p for p in patterns if p.strip()]
        if ignore_vcs:
            lines.extend(VCS_PATTERNS)
        self.patterns = tuple(lines)
        self._spec = None
        if lines:
            import pathspec  # only sessions with ignore rules pay for it

            self._spec = pathspec.GitIgnoreSpec.from_lines(lines)

    def __bool__(self) -> bool:
        return self._spec is not None

    def ignored(self, relpath: str, is_dir: bool) -> bool:
        if self._spec is None:
            return False
        return bool(self._spec.match_file(relpath + "/" if is_dir else relpath))
