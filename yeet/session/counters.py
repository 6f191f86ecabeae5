"""What a run did, counted; and where the executor records what it writes.

Invariant owned here: ``Counters`` count what was applied, once per applied change
(``count``), per receiving side; nothing here decides or writes.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from yeet.model.entries import Entry
from yeet.state.store import Update


class IntentLog(Protocol):
    """Where the executor records what it is about to write, and what it did
    (``yeet.state.store.SessionStore``)."""

    def intend(
        self, side: str, changes: Iterable[tuple[str, Entry | None, Entry | None]]
    ) -> None: ...

    def record(
        self, updates: Iterable[Update], settled: tuple[str, Iterable[str]] | None = None
    ) -> None: ...


@dataclass
class Counters:
    files: int = 0
    bytes: int = 0
    dirs: int = 0
    removed: int = 0
    copied_locally: int = 0
    failed: int = 0
    transient: int = 0
    kept: int = 0  # bytes of a changed large file the receiver already held (not sent)
    delta_files: int = 0  # large files updated by a delta
    delta_bytes: int = 0  # their sizes
    literal_bytes: int = 0  # new bytes sent for them (the rest came from the old file)
    signature_bytes: int = 0  # signatures sent back by the receiver

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)

    def count(self, new: Entry | None, old: Entry | None) -> None:
        """One change applied: ``old`` became ``new``."""
        if new is None:
            self.removed += 1
        elif new.is_dir:
            self.dirs += 1
        else:
            self.files += 1
            if new.is_file and not (old is not None and old.is_file and old.digest == new.digest):
                self.bytes += new.size


@dataclass
class Rate:
    """Bytes per second, smoothed."""

    value: float = 0.0
    moved: int = 0
    started: float = field(default_factory=time.monotonic)

    def add(self, nbytes: int, seconds: float) -> None:
        self.moved += nbytes
        if seconds > 0:
            sample = nbytes / seconds
            self.value = sample if self.value == 0 else 0.7 * self.value + 0.3 * sample
