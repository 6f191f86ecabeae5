"""Where content already is on a side, so a rename or a copy is a local copy, not a transfer.

Invariant owned here: the index is bounded (``capacity`` entries per side, the
oldest forgotten first), so memory does not grow with the tree. A forgotten
entry costs at most a transfer a local copy could have saved, never a wrong
file: the writer verifies every local copy's digest.
"""

from __future__ import annotations

DEFAULT_CAPACITY = 50_000


class LocalIndex:
    """digest -> a path on this side that held that content when it was scanned."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.capacity = capacity
        self._paths: dict[bytes, str] = {}

    def add(self, digest: bytes, path: str) -> None:
        """Remember ``path`` for ``digest`` unless a path is known already."""
        if digest in self._paths or self.capacity <= 0:
            return
        if len(self._paths) >= self.capacity:
            del self._paths[next(iter(self._paths))]  # the oldest
        self._paths[digest] = path

    def get(self, digest: bytes, default: str | None = None) -> str | None:
        return self._paths.get(digest, default)

    def __len__(self) -> int:
        return len(self._paths)
