"""The values reconcile speaks in: sides and modes, the changes, conflicts and ancestor
updates it decides, and what it asks its caller for.

Invariant owned here: these are plain values (frozen, comparable), shared by the
pure core and every process that acts on its decisions; nothing here decides.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from yeet.model.entries import Entry, describe_change


class Mode(enum.StrEnum):
    TWO_WAY_SAFE = "two-way-safe"
    TWO_WAY_RESOLVED = "two-way-resolved"
    ONE_WAY_SAFE = "one-way-safe"
    ONE_WAY_REPLICA = "one-way-replica"


class Side(enum.StrEnum):
    ALPHA = "alpha"
    BETA = "beta"

    @property
    def other(self) -> Side:
        return Side.BETA if self is Side.ALPHA else Side.ALPHA


Listing = Mapping[str, Entry]
"""The children of one directory: name -> entry."""


@dataclass(frozen=True, slots=True)
class Change:
    """Make ``path`` on ``side`` go from ``old`` (what the plan saw) to ``new``."""

    side: Side
    path: str
    old: Entry | None
    new: Entry | None


@dataclass(frozen=True, slots=True)
class AncestorUpdate:
    """Both sides already agree at ``path``: record it (``None``: forget the path)."""

    path: str
    entry: Entry | None


@dataclass(frozen=True, slots=True)
class Conflict:
    path: str
    ancestor: Entry | None
    alpha: Entry | None
    beta: Entry | None

    @property
    def alpha_action(self) -> str:
        return describe_change(self.ancestor, self.alpha)

    @property
    def beta_action(self) -> str:
        return describe_change(self.ancestor, self.beta)


@dataclass(frozen=True, slots=True)
class Retry:
    """``path`` could not be decided from consistent data: list its directory again."""

    path: str


Decision = Change | AncestorUpdate | Conflict | Retry

Stale = Callable[[str, bool], bool]
"""``stale(path, subtree)``: work not decided by this pass changed ``path`` or a
directory above it (or, with ``subtree``, something below it) since the pass began."""


@dataclass(frozen=True, slots=True)
class AncestorRequest:
    """The reconciler needs the ancestor's children of ``path`` (or its whole subtree)."""

    path: str
    subtree: bool


@dataclass(frozen=True, slots=True)
class ListingRequest:
    """(Scoped mode) scan ``path`` on ``side`` recursively and feed its listings,
    then call ``scanned(side, path)``."""

    side: Side
    path: str


Want = AncestorRequest | ListingRequest
