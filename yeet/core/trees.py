"""Whole-tree helpers around the streaming reconciler, for in-memory trees.

Invariant owned here: ``reconcile`` over complete trees gives exactly what the
streaming ``Reconciler`` decides when fed the same trees listing by listing (in
any order), and ``apply_ancestor_update`` is the ancestor's update rule that the
SQLite store implements too. Pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from yeet.core.decisions import (
    AncestorRequest,
    AncestorUpdate,
    Change,
    Conflict,
    Decision,
    ListingRequest,
    Mode,
    Retry,
    Side,
)
from yeet.core.reconcile import Reconciler
from yeet.model.entries import Entry, is_dir, listing_digest
from yeet.model.paths import parent_of, sort_key


@dataclass(slots=True)
class Plan:
    """Everything ``reconcile`` decided, grouped."""

    alpha: list[Change] = field(default_factory=list)
    beta: list[Change] = field(default_factory=list)
    ancestor: list[AncestorUpdate] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)
    retry: list[Retry] = field(default_factory=list)

    def add(self, decisions: Iterable[Decision]) -> None:
        for d in decisions:
            if isinstance(d, Change):
                (self.alpha if d.side is Side.ALPHA else self.beta).append(d)
            elif isinstance(d, AncestorUpdate):
                self.ancestor.append(d)
            elif isinstance(d, Retry):
                self.retry.append(d)
            else:
                self.conflicts.append(d)

    @property
    def empty(self) -> bool:
        return not (self.alpha or self.beta or self.ancestor or self.conflicts)


def listings_of(tree: Mapping[str, Entry]) -> list[tuple[str, dict[str, Entry]]]:
    """Split a flat tree (relpath -> entry) into directory listings, parents first."""
    dirs: dict[str, dict[str, Entry]] = {"": {}}
    for path, entry in tree.items():
        if entry.is_dir:
            dirs.setdefault(path, {})
    for path, entry in tree.items():
        parent = parent_of(path)
        if parent in dirs:
            dirs[parent][path[len(parent) + 1 :] if parent else path] = entry
    return sorted(dirs.items(), key=lambda kv: sort_key(kv[0]))


def subtree_of(tree: Mapping[str, Entry], path: str) -> dict[str, Entry]:
    prefix = path + "/" if path else ""
    return {k: v for k, v in tree.items() if k.startswith(prefix) and k != path}


def children_of(tree: Mapping[str, Entry], path: str) -> dict[str, Entry]:
    prefix = path + "/" if path else ""
    return {
        k[len(prefix) :]: v
        for k, v in tree.items()
        if k.startswith(prefix) and "/" not in k[len(prefix) :] and k != path
    }


def answer(rec: Reconciler, ancestor: Mapping[str, Entry]) -> None:
    """Answer every pending ancestor request of ``rec`` from an in-memory tree."""
    while wants := rec.wants():
        for want in wants:
            if not isinstance(want, AncestorRequest):
                raise TypeError(f"cannot answer {want} from an ancestor")
            if want.subtree:
                rec.ancestor_subtree(want.path, subtree_of(ancestor, want.path))
            else:
                rec.ancestor_children(want.path, children_of(ancestor, want.path))


def reconcile(
    ancestor: Mapping[str, Entry],
    alpha: Mapping[str, Entry],
    beta: Mapping[str, Entry],
    mode: Mode = Mode.TWO_WAY_SAFE,
    *,
    order: Iterable[Side] | None = None,
    use_digests: bool = False,
    portable_modes: bool = False,
) -> Plan:
    """Reconcile complete trees (relpath -> entry; the root ``""`` is implicit).

    ``order`` optionally interleaves the two sides' listings (a sequence of sides,
    one listing taken from that side per element) to exercise streaming.
    """
    digests = None
    if use_digests:
        dirs = [""] + [p for p, e in ancestor.items() if e.is_dir]
        digests = {d: listing_digest(children_of(ancestor, d)) for d in dirs}
    rec = Reconciler(mode, digests, portable_modes=portable_modes)
    plan = Plan()
    queues = {Side.ALPHA: listings_of(alpha), Side.BETA: listings_of(beta)}
    sequence = (
        list(order or [])
        + [Side.ALPHA] * len(queues[Side.ALPHA])
        + [Side.BETA] * len(queues[Side.BETA])
    )
    answer(rec, ancestor)
    for side in sequence:
        if queues[side]:
            path, entries = queues[side].pop(0)
            rec.listing(side, path, entries)
            answer(rec, ancestor)
            plan.add(rec.take())
    for side in (Side.ALPHA, Side.BETA):
        rec.finish(side)
        answer(rec, ancestor)
        plan.add(rec.take())
    assert rec.done, "reconciler did not finish"
    return plan


def apply_ancestor_update(
    tree: dict[str, Entry], path: str, entry: Entry | None, *, applied: bool = False
) -> None:
    """The ancestor's update rule, shared with the state store.

    An agreement (``applied=False``) that sets a path keeps its recorded
    descendants only when it was and stays a directory. A change that was just
    *applied* to one side (``applied=True``) always forgets them: that side had
    no subtree there, and the subtree being copied is recorded child by child.
    (A directory whose own permission bits changed is recorded as an agreement:
    ``applied_update`` says which.)
    """
    old = tree.get(path)
    if applied or entry is None or not (is_dir(old) and entry.is_dir):
        prefix = path + "/"
        for k in [k for k in tree if k.startswith(prefix)]:
            del tree[k]
    if entry is None:
        tree.pop(path, None)
    else:
        tree[path] = entry


def applied_update(old: Entry | None, new: Entry | None) -> bool:
    """How a change just applied to a side is recorded: ``applied`` (forgetting the
    recorded subtree) unless it changed only a directory's own metadata."""
    return not (is_dir(old) and is_dir(new))


def dirty_dirs(ancestor: Mapping[str, Entry], side: Mapping[str, Entry]) -> set[str]:
    """What a perfect watcher would report: directories of ``side`` whose listing
    differs from the ancestor's (new directories included)."""
    dirs = [""] + [p for p, e in side.items() if e.is_dir]
    return {d for d in dirs if children_of(side, d) != children_of(ancestor, d)}


def reconcile_scoped(
    ancestor: Mapping[str, Entry],
    alpha: Mapping[str, Entry],
    beta: Mapping[str, Entry],
    mode: Mode,
    scope: Iterable[str],
) -> Plan:
    """Scoped reconcile over in-memory trees: only ``scope`` is listed up front,
    anything else the reconciler asks for."""
    dirs = [""] + [p for p, e in ancestor.items() if e.is_dir]
    digests = {d: listing_digest(children_of(ancestor, d)) for d in dirs}
    scope = set(scope)
    rec = Reconciler(mode, digests, scope)
    plan = Plan()
    trees = {Side.ALPHA: alpha, Side.BETA: beta}

    def serve() -> None:
        while wants := rec.wants():
            for w in wants:
                if isinstance(w, ListingRequest):
                    tree = trees[w.side]
                    if w.path == "" or is_dir(tree.get(w.path)):
                        for d, entries in listings_of(tree):
                            if d == w.path or d.startswith(w.path + "/") or w.path == "":
                                rec.listing(w.side, d, entries)
                    rec.scanned(w.side, w.path)
                elif w.subtree:
                    rec.ancestor_subtree(w.path, subtree_of(ancestor, w.path))
                else:
                    rec.ancestor_children(w.path, children_of(ancestor, w.path))
            plan.add(rec.take())

    serve()
    for side, tree in trees.items():
        for d in sorted(scope, key=sort_key):
            if d == "" or is_dir(tree.get(d)):
                rec.listing(side, d, children_of(tree, d))
            serve()
        for d in sorted(scope, key=sort_key):
            rec.scanned(side, d, recursive=False)
            serve()
    serve()
    plan.add(rec.take())
    assert rec.done, "scoped reconciler did not finish"
    return plan
