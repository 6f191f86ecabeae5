"""Three-way reconcile of two replicas against their last agreed state, streamed.

Invariant owned here: a decision for a path is made only from complete
knowledge of what it depends on, and it never loses content:

* a side that did not change since the ancestor takes the other side's change;
* identical changes on both sides are agreements, not conflicts;
* a deletion never wins over a modification (two-way modes): the modified
  subtree is propagated back instead;
* anything else is a ``Conflict`` that touches neither side and blocks only its
  own path and subtree (``two-way-resolved`` lets alpha win instead; one-way
  modes follow Mutagen's one-way rules);
* a subtree holding content that cannot be synchronised (``SPECIAL`` entries or
  unreadable directories) is never replaced or deleted: that becomes a conflict;
* permission bits are part of an entry: a ``chmod`` is a change like any other.
  Where both sides hold the same content with different bits (two-way modes), the
  side that kept the ancestor's bits takes the other's; if the ancestor does not
  know the bits (a new path, or a session recorded before permissions were
  synced), the *narrower* bits win, so an update never widens a file; bits
  changed differently on both sides are a conflict. A directory whose bits
  differ is decided on its own and its children are still reconciled;
* with ``portable`` permissions only the exec bit is compared (filesystems
  without modes); the bits of new content are the writer's business;
* a path the caller says is *stale* (``stale``: work of an earlier pass landed on
  it, or above it, or below a directory, after this pass began reading) is not
  decided from listings and ancestor data that may straddle that write: it
  becomes a ``Retry`` (look at its directory again), never a change.

The semantics are Mutagen's ``Reconcile`` (pkg/synchronization/core), but the
input arrives as *directory listings* from each side's scanner, in any order
(a directory's listing before its descendants'), and decisions are emitted as
soon as the listings they depend on are known. So a transfer can start long
before a scan of millions of files ends. Only a disagreement where a directory
faces its own deleted/replaced self needs the whole subtree first.

Sans-IO: the reconciler asks for ancestor data (and, when scoped, for listings)
through ``wants()``. ``yeet.core.trees.reconcile`` wraps it for complete
in-memory trees.

*Scoped* mode re-decides only *dirty* directories (from a watcher or a change
journal): every other directory is assumed to still hold what the ancestor
says, so it is neither listed nor reconciled. Paths on the way to dirty
directories are descended through without listing; a directory that is new,
or a subtree that changed wholesale, is asked for with a ``ListingRequest``
(a recursive scan) and decided completely.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field

from yeet.core.decisions import (
    AncestorRequest,
    AncestorUpdate,
    Change,
    Conflict,
    Decision,
    Listing,
    ListingRequest,
    Mode,
    Retry,
    Side,
    Stale,
    Want,
)
from yeet.model.entries import (
    Entry,
    is_dir,
    is_special,
    kept,
    listing_digest,
    narrower,
    portable,
    same_content,
)
from yeet.model.paths import is_within, join, parent_of, sort_key


class _Delta(enum.Enum):
    """How one side differs from the ancestor below (and at) a path."""

    EMPTY = 0  # unchanged
    DELETIONS = 1  # only deletions
    OTHER = 2  # creations or modifications


_Handler = Callable[[str, Listing | None], None]
_AncHandler = Callable[[dict[str, Entry]], None]


@dataclass(slots=True)
class _Subtree:
    """A side's subtree below a path, collected listing by listing."""

    entries: dict[str, Entry] = field(default_factory=dict)
    listings: dict[str, Listing] = field(default_factory=dict)
    outstanding: int = 0
    complete: bool = True


class Reconciler:
    """Streaming three-way reconcile. Feed listings, drain decisions with ``take``."""

    def __init__(
        self,
        mode: Mode,
        ancestor_digests: Mapping[str, bytes] | None = None,
        scope: Collection[str] | None = None,
        *,
        portable_modes: bool = False,
        stale: Stale | None = None,
    ) -> None:
        """``ancestor_digests`` (directory -> ``listing_digest`` of its ancestor
        children), when given, lets a directory whose three listings are equal be
        passed over without asking for the ancestor's children.

        ``scope``: re-decide only these directories (their listings are fed by
        the caller, non-recursively, then ``scanned(side, d, recursive=False)``).

        ``portable_modes``: compare only the exec bit of files, not the other
        permission bits (``--permissions portable``). ``stale``: see ``Stale``.
        """
        self.mode = mode
        self.portable = portable_modes
        self._stale = stale or (lambda _path, _subtree: False)
        self._digests = ancestor_digests or {}
        self._out: list[Decision] = []
        self._inbox: dict[Side, dict[str, Listing | None]] = {Side.ALPHA: {}, Side.BETA: {}}
        self._waiting: dict[tuple[Side, str], _Handler] = {}
        self._finished: set[Side] = set()
        self._wants: list[Want] = []
        self._anc_children: dict[str, _AncHandler] = {}
        self._anc_subtree: dict[str, _AncHandler] = {}
        self._started: set[str] = set()
        self._scope = None if scope is None else set(scope)
        self._covered: dict[Side, set[str]] = {Side.ALPHA: set(), Side.BETA: set()}
        self._kids: dict[str, set[str]] = {}
        for d in self._scope or ():
            child = d
            while child:
                parent = parent_of(child)
                self._kids.setdefault(parent, set()).add(child)
                child = parent
        self.decided: set[str] = set()  # directories whose children were decided
        self.decided_under: set[str] = set()  # subtrees decided as a whole
        self._agree_dir("", ancestor_is_dir=True, full=self._scope is None)

    # -- inputs -----------------------------------------------------------------------

    def listing(self, side: Side, path: str, entries: Listing | None) -> None:
        """A directory listing from ``side``'s scan (``None``: the directory is unreadable)."""
        handler = self._waiting.pop((side, path), None)
        if handler is not None:
            handler(path, entries)
        else:
            self._inbox[side][path] = entries

    def finish(self, side: Side) -> None:
        """``side``'s full scan is complete: listings still awaited will never come."""
        self._finished.add(side)
        self.scanned(side, "")

    def scanned(self, side: Side, path: str, recursive: bool = True) -> None:
        """A scan of ``path`` on ``side`` (and below, if ``recursive``) is complete."""
        if not recursive:
            handler = self._waiting.pop((side, path), None)
            if handler is not None:
                handler(path, None)
            return
        for key in sorted(k for k in self._waiting if k[0] is side and is_within(k[1], path)):
            handler = self._waiting.pop(key, None)
            if handler is not None:
                handler(key[1], None)

    def ancestor_children(self, path: str, entries: Listing) -> None:
        self._anc_children.pop(path)(dict(entries))

    def ancestor_subtree(self, path: str, entries: Mapping[str, Entry]) -> None:
        """All ancestor entries strictly below ``path``, keyed by full relpath."""
        self._anc_subtree.pop(path)(dict(entries))

    # -- outputs ----------------------------------------------------------------------

    def wants(self) -> list[Want]:
        wants, self._wants = self._wants, []
        return wants

    def take(self) -> list[Decision]:
        out, self._out = self._out, []
        return out

    @property
    def done(self) -> bool:
        return (
            not self._waiting
            and not self._anc_children
            and not self._anc_subtree
            and (self._scope is not None or len(self._finished) == 2)
        )

    # -- plumbing ---------------------------------------------------------------------

    def _wait(self, side: Side, path: str, handler: _Handler, *, ask: bool = True) -> None:
        inbox = self._inbox[side]
        if path in inbox:
            handler(path, inbox.pop(path))
        elif side in self._finished:
            handler(path, None)
        elif self._scope is None or path in self._scope or self._is_covered(side, path):
            self._waiting[(side, path)] = handler
        elif ask:
            self._covered[side].add(path)
            self._wants.append(ListingRequest(side, path))
            self._waiting[(side, path)] = handler

    def _is_covered(self, side: Side, path: str) -> bool:
        covered = self._covered[side]
        p = path
        while True:
            if p in covered:
                return True
            if p == "":
                return False
            p = parent_of(p)

    def _discard(self, side: Side, path: str) -> None:
        """Listings of ``side`` at and below ``path`` are not needed."""

        def drop(p: str, listing: Listing | None) -> None:
            for name, entry in (listing or {}).items():
                if entry.is_dir:
                    self._wait(side, join(p, name), drop, ask=False)

        self._wait(side, path, drop, ask=False)

    def _ask_children(self, path: str, handler: _AncHandler) -> None:
        self._anc_children[path] = handler
        self._wants.append(AncestorRequest(path, subtree=False))

    def _ask_subtree(self, path: str, handler: _AncHandler) -> None:
        self._anc_subtree[path] = handler
        self._wants.append(AncestorRequest(path, subtree=True))

    # -- comparing entries ------------------------------------------------------------

    def _eq(self, alpha: Entry | None, beta: Entry | None) -> bool:
        """The two sides (or the ancestor and a side) hold the same."""
        if self.portable:
            return portable(alpha) == portable(beta)
        return alpha == beta

    def _kept(self, ancestor: Entry | None, e: Entry | None) -> bool:
        """``e`` is unchanged since the ancestor ``a`` (as far as ``a`` knows)."""
        if self.portable:
            return kept(portable(ancestor), portable(e))
        return kept(ancestor, e)

    # -- agreement: both sides hold a directory ----------------------------------------

    def _agree_dir(self, path: str, *, ancestor_is_dir: bool, full: bool) -> None:
        """Both sides hold a directory at ``path``: decide its children.

        In scoped mode, a directory outside the scope that was a directory in the
        ancestor too is assumed unchanged: only the way to dirty ones is followed.
        """
        if path in self._started:
            return
        self._started.add(path)
        if not full and ancestor_is_dir and self._scope is not None and path not in self._scope:
            for child in sorted(self._kids.get(path, ())):
                self._agree_dir(child, ancestor_is_dir=True, full=False)
            return
        parts: dict[str, Listing | None] = {}

        def got(part: str, listing: Listing | None) -> None:
            parts[part] = listing
            if len(parts) == 2:
                alpha, beta = parts["x"], parts["y"]
                if not ancestor_is_dir:
                    got("a", {})
                elif alpha is not None and beta is not None and self._unchanged(path, alpha, beta):
                    self.decided.add(path)
                    for name, entry in alpha.items():
                        if entry.is_dir:
                            self._agree_dir(join(path, name), ancestor_is_dir=True, full=full)
                else:
                    self._ask_children(path, lambda lst: got("a", lst))
            elif len(parts) == 3:
                self._reconcile_dir(path, parts["a"], parts["x"], parts["y"], full)

        self._wait(Side.ALPHA, path, lambda _p, lst: got("x", lst))
        self._wait(Side.BETA, path, lambda _p, lst: got("y", lst))

    def _unchanged(self, path: str, alpha: Listing, beta: Listing) -> bool:
        """Both listings equal the ancestor's (by digest): nothing to do here."""
        known = self._digests.get(path)
        if known is None or len(alpha) != len(beta):
            return False
        return listing_digest(alpha) == known and listing_digest(beta) == known

    def _reconcile_dir(
        self,
        path: str,
        ancestor: Listing | None,
        alpha: Listing | None,
        beta: Listing | None,
        full: bool,
    ) -> None:
        if alpha is None or beta is None:
            # One side could not be read: decide nothing below here.
            for side, listing in ((Side.ALPHA, alpha), (Side.BETA, beta)):
                for name, entry in (listing or {}).items():
                    if entry.is_dir:
                        self._discard(side, join(path, name))
            return
        ancestor = ancestor or {}
        self.decided.add(path)
        for name in sorted(ancestor.keys() | alpha.keys() | beta.keys()):
            self._reconcile_path(
                join(path, name), ancestor.get(name), alpha.get(name), beta.get(name), full
            )

    def _retry(
        self, p: str, ancestor: Entry | None, alpha: Entry | None, beta: Entry | None
    ) -> bool:
        """If ``p`` is stale, emit a ``Retry`` and drop what lies below it."""
        if not self._stale(p, is_dir(ancestor) or is_dir(alpha) or is_dir(beta)):
            return False
        self._out.append(Retry(p))
        self._discard_dirs(p, alpha, beta)
        return True

    def _reconcile_path(
        self, p: str, ancestor: Entry | None, alpha: Entry | None, beta: Entry | None, full: bool
    ) -> None:
        if self._retry(p, ancestor, alpha, beta):
            return
        if is_special(alpha) or is_special(beta):
            self._discard_dirs(p, alpha, beta)
            return
        if alpha is None and beta is None:
            if ancestor is not None:
                self._out.append(AncestorUpdate(p, None))
            return
        if self._eq(alpha, beta):
            assert alpha is not None
            if not self._eq(ancestor, alpha):
                self._out.append(AncestorUpdate(p, alpha))
            if alpha.is_dir:
                # A directory new to the ancestor must be listed in full.
                self._agree_dir(
                    p, ancestor_is_dir=is_dir(ancestor), full=full or not is_dir(ancestor)
                )
            return
        if alpha is not None and beta is not None and alpha.is_dir and beta.is_dir:
            # The same directory on both sides with other permission bits: decide the
            # bits on their own; the children are reconciled as usual.
            self._dir_meta(p, ancestor, alpha, beta)
            self._agree_dir(p, ancestor_is_dir=is_dir(ancestor), full=full or not is_dir(ancestor))
            return
        self.decided_under.add(p)
        self._disagree(p, ancestor, alpha, beta)

    def _discard_dirs(
        self, p: str, alpha: Entry | None, beta: Entry | None, collected: Side | None = None
    ) -> None:
        """Drop the listings below ``p`` of each side holding a directory there."""
        if is_dir(alpha) and collected is not Side.ALPHA:
            self._discard(Side.ALPHA, p)
        if is_dir(beta) and collected is not Side.BETA:
            self._discard(Side.BETA, p)

    def _dir_meta(self, p: str, ancestor: Entry | None, alpha: Entry, beta: Entry) -> None:
        alpha_delta = (
            _Delta.EMPTY if is_dir(ancestor) and self._kept(ancestor, alpha) else _Delta.OTHER
        )
        beta_delta = (
            _Delta.EMPTY if is_dir(ancestor) and self._kept(ancestor, beta) else _Delta.OTHER
        )
        winner = self._winner(ancestor, alpha, beta, alpha_delta, beta_delta)
        if winner is None:
            self._out.append(Conflict(p, ancestor, alpha, beta))
        elif winner is Side.ALPHA:
            self._out.append(Change(Side.BETA, p, beta, alpha))
        else:
            self._out.append(Change(Side.ALPHA, p, alpha, beta))

    # -- disagreement -----------------------------------------------------------------

    def _disagree(
        self, p: str, ancestor: Entry | None, alpha: Entry | None, beta: Entry | None
    ) -> None:
        dir_side = Side.ALPHA if is_dir(alpha) else Side.BETA if is_dir(beta) else None
        if dir_side is None:
            self._decide(p, ancestor, alpha, beta, None, None, {})
            return
        if not is_dir(ancestor):
            # The directory side is certainly a creation; decide without its subtree
            # unless that subtree turns out to be the loser (then it must be listed).
            winner = self._winner(
                ancestor,
                alpha,
                beta,
                _Delta.OTHER if dir_side is Side.ALPHA else None,
                _Delta.OTHER if dir_side is Side.BETA else None,
            )
            if winner is not dir_side.other:
                self._decide(p, ancestor, alpha, beta, None, None, {})
                return
        sub = _Subtree(outstanding=1)
        anc: dict[str, dict[str, Entry]] = {}
        pending = [2 if is_dir(ancestor) else 1]

        def finished() -> None:
            pending[0] -= 1
            if pending[0] == 0:
                self._decide(p, ancestor, alpha, beta, dir_side, sub, anc.get("sub", {}))

        def got(q: str, listing: Listing | None) -> None:
            if listing is None:
                sub.complete = False
            else:
                sub.listings[q] = listing
                children = []
                for name, entry in listing.items():
                    child = join(q, name)
                    sub.entries[child] = entry
                    if entry.is_dir:
                        children.append(child)
                sub.outstanding += len(children)
                for child in children:
                    self._wait(dir_side, child, got)
            # Count this listing done only after its children are registered, so
            # that re-entrant completion below cannot finish the subtree twice.
            sub.outstanding -= 1
            if sub.outstanding == 0:
                finished()

        def got_ancestor(entries: dict[str, Entry]) -> None:
            anc["sub"] = entries
            finished()

        if is_dir(ancestor):
            self._ask_subtree(p, got_ancestor)
        self._wait(dir_side, p, got)

    def _side_delta(
        self,
        ancestor: Entry | None,
        e: Entry | None,
        sub: _Subtree | None,
        anc_sub: dict[str, Entry],
    ) -> _Delta:
        if self._kept(ancestor, e):
            if sub is None or not is_dir(e):
                return _Delta.EMPTY
        elif not (is_dir(e) and is_dir(ancestor)):
            return _Delta.DELETIONS if e is None else _Delta.OTHER
        elif sub is None:
            return _Delta.OTHER  # the directory's own bits changed
        # Both directories: compare the synchronisable part of the subtrees.
        assert sub is not None
        if not self._kept(ancestor, e):
            return _Delta.OTHER  # its own bits changed: that is a modification too
        mine = {k: v for k, v in sub.entries.items() if not v.is_special}
        if any(not self._kept(anc_sub.get(k), v) for k, v in mine.items()):
            return _Delta.OTHER
        return _Delta.DELETIONS if len(mine) != len(anc_sub) else _Delta.EMPTY

    def _winner(
        self,
        ancestor: Entry | None,
        alpha: Entry | None,
        beta: Entry | None,
        alpha_delta: _Delta | None,
        beta_delta: _Delta | None,
    ) -> Side | None:
        """The side whose content wins at this path, or ``None`` for a conflict/untrack.

        ``dx``/``dy`` are passed when known from subtrees; otherwise derived from the
        entries themselves (valid whenever that side holds no directory).
        """
        if alpha_delta is None:
            alpha_delta = self._side_delta(ancestor, alpha, None, {})
        if beta_delta is None:
            beta_delta = self._side_delta(ancestor, beta, None, {})
        if self.mode is Mode.ONE_WAY_REPLICA:
            return Side.ALPHA
        if self.mode is Mode.ONE_WAY_SAFE:
            return Side.ALPHA if beta_delta is not _Delta.OTHER else None
        if alpha is not None and beta is not None and _bits_only(alpha, beta) and not self.portable:
            return self._bits_winner(ancestor, alpha, beta)
        if beta_delta is _Delta.EMPTY:
            return Side.ALPHA
        if alpha_delta is _Delta.EMPTY:
            return Side.BETA
        if alpha_delta is _Delta.DELETIONS and beta_delta is _Delta.DELETIONS:
            return Side.ALPHA if alpha is None else Side.BETA
        if beta_delta is _Delta.DELETIONS:
            return Side.ALPHA
        if alpha_delta is _Delta.DELETIONS:
            return Side.BETA
        return Side.ALPHA if self.mode is Mode.TWO_WAY_RESOLVED else None

    def _bits_winner(self, ancestor: Entry | None, alpha: Entry, beta: Entry) -> Side | None:
        """Same content, other permission bits: a one-sided change wins; without an
        ancestor that knows the bits, the narrower bits win; else a conflict."""
        resolved = Side.ALPHA if self.mode is Mode.TWO_WAY_RESOLVED else None
        if ancestor is not None and ancestor.kind is alpha.kind and ancestor.mode:
            if alpha.mode == ancestor.mode:
                return Side.BETA
            if beta.mode == ancestor.mode:
                return Side.ALPHA
            return resolved
        if narrower(alpha, beta):
            return Side.ALPHA
        if narrower(beta, alpha):
            return Side.BETA
        return resolved

    def _decide(
        self,
        p: str,
        ancestor: Entry | None,
        alpha: Entry | None,
        beta: Entry | None,
        dir_side: Side | None,
        sub: _Subtree | None,
        anc_sub: dict[str, Entry],
    ) -> None:
        collected = dir_side if sub is not None else None
        if sub is not None and self._stale(p, True):  # (the subtree took a while)
            self._out.append(Retry(p))
            self._discard_dirs(p, alpha, beta, collected)
            return
        alpha_delta = self._side_delta(
            ancestor, alpha, sub if dir_side is Side.ALPHA else None, anc_sub
        )
        beta_delta = self._side_delta(
            ancestor, beta, sub if dir_side is Side.BETA else None, anc_sub
        )
        winner = self._winner(ancestor, alpha, beta, alpha_delta, beta_delta)
        untrack = (
            self.mode is Mode.ONE_WAY_SAFE
            and alpha is None
            and not (is_dir(ancestor) and is_dir(beta))
        )
        if winner is None and untrack:
            # Beta's own content where alpha has nothing: leave it, stop tracking it.
            if ancestor is not None:
                self._out.append(AncestorUpdate(p, None))
            self._discard_dirs(p, alpha, beta, collected)
            return
        loser = winner.other if winner is not None else None
        blocked = sub is not None and (
            not sub.complete or any(e.is_special for e in sub.entries.values())
        )
        if loser is not None and loser is dir_side and blocked:
            winner = None  # cannot wipe what cannot be synchronised
        if winner is None:
            self._out.append(Conflict(p, ancestor, alpha, beta))
            self._discard_dirs(p, alpha, beta, collected)
            return
        assert loser is not None
        w_entry, l_entry = (alpha, beta) if winner is Side.ALPHA else (beta, alpha)
        if is_dir(l_entry):
            assert sub is not None
            for q in sorted(sub.entries, key=sort_key, reverse=True):
                self._out.append(Change(loser, q, sub.entries[q], None))
        self._out.append(Change(loser, p, l_entry, w_entry))
        if is_dir(w_entry):
            if sub is not None and dir_side is winner:
                # Replay the listings we already collected into the flow.
                self._inbox[winner].update(sub.listings)
            self._flow(winner, p)

    def _flow(self, source: Side, root: str) -> None:
        """Copy ``source``'s subtree below ``root`` onto the other side (which has none)."""
        target = source.other

        def got(q: str, listing: Listing | None) -> None:
            for name in sorted(listing or {}):
                entry = (listing or {})[name]
                if entry.is_special:
                    continue
                child = join(q, name)
                if self._stale(child, entry.is_dir):
                    self._out.append(Retry(child))
                    if entry.is_dir:
                        self._discard(source, child)
                    continue
                self._out.append(Change(target, child, None, entry))
                if entry.is_dir:
                    self._wait(source, child, got)

        self._wait(source, root, got)


def _bits_only(alpha: Entry, beta: Entry) -> bool:
    """Same content and owner and time: only the permission bits differ."""
    return (
        same_content(alpha, beta)
        and alpha.mode != beta.mode
        and alpha.mode != 0
        and beta.mode != 0
        and alpha.owner == beta.owner
        and alpha.mtime == beta.mtime
    )
