"""Shorthand trees and a pure simulation of applying a plan, for engine tests."""

from __future__ import annotations

from collections.abc import Mapping

import blake3

from yeet.core.decisions import Change, Conflict, Mode, Side
from yeet.core.trees import Plan, applied_update, apply_ancestor_update, reconcile
from yeet.model.entries import DIRECTORY, Entry, dir_entry, file_entry, is_dir, symlink_entry
from yeet.model.paths import is_within

D = DIRECTORY


def F(content: str, executable: bool = False) -> Entry:
    data = content.encode()
    return file_entry(blake3.blake3(data).digest(), len(data), executable)


def X(content: str) -> Entry:
    return F(content, executable=True)


def FM(content: str, mode: int) -> Entry:
    """A file with known permission bits."""
    data = content.encode()
    return file_entry(blake3.blake3(data).digest(), len(data), mode=0o100000 | mode)


def DM(mode: int) -> Entry:
    """A directory with known permission bits."""
    return dir_entry(0o040000 | mode)


def L(target: str) -> Entry:
    return symlink_entry(target)


Tree = dict[str, Entry]


def tree(**kw: Entry) -> Tree:
    """``tree(a=F("x"), d=D, d__c=F("y"))``: ``__`` stands for ``/``."""
    return {k.replace("__", "/"): v for k, v in kw.items()}


def apply_changes(t: Tree, changes: list[Change]) -> list[Change]:
    """Apply changes like the executor would; return the ones that succeeded."""
    done = []
    for c in changes:
        if t.get(c.path) != c.old:
            raise AssertionError(f"plan expected {c.old} at {c.path}, tree has {t.get(c.path)}")
        if c.new is None:
            assert not any(k.startswith(c.path + "/") for k in t), f"rmdir non-empty {c.path}"
            del t[c.path]
        else:
            parent = c.path.rsplit("/", 1)[0] if "/" in c.path else ""
            assert parent == "" or is_dir(t.get(parent)), f"no parent dir for {c.path}"
            if c.old is not None and c.old.is_dir and not c.new.is_dir:
                assert not any(k.startswith(c.path + "/") for k in t)
            t[c.path] = c.new
        done.append(c)
    return done


def order_for_executor(changes: list[Change]) -> list[Change]:
    """Creations/updates first (parents first), removals after (deepest first),
    then replacements of directories, as the real executor schedules them."""
    from yeet.model.paths import sort_key

    def replaces_dir(c: Change) -> bool:
        return c.old is not None and c.old.is_dir and (c.new is None or not c.new.is_dir)

    first = [c for c in changes if c.new is not None and not replaces_dir(c)]
    removals = [c for c in changes if c.new is None]
    removals.sort(key=lambda c: sort_key(c.path), reverse=True)
    late = [c for c in changes if c.new is not None and replaces_dir(c)]
    late_paths = [c.path for c in late]
    # creations below a late replacement wait for it
    blocked = [c for c in first if any(is_within(c.path, p) and c.path != p for p in late_paths)]
    first = [c for c in first if c not in blocked]
    return first + removals + late + blocked


def run_sync(
    ancestor: Mapping[str, Entry],
    alpha: Mapping[str, Entry],
    beta: Mapping[str, Entry],
    mode: Mode = Mode.TWO_WAY_SAFE,
    order: list[Side] | None = None,
    portable_modes: bool = False,
) -> tuple[Tree, Tree, Tree, list[Conflict], Plan]:
    """Reconcile, apply the plan to copies, update the ancestor; return everything."""
    plan = reconcile(ancestor, alpha, beta, mode, order=order, portable_modes=portable_modes)
    a, x, y = dict(ancestor), dict(alpha), dict(beta)
    for u in plan.ancestor:
        apply_ancestor_update(a, u.path, u.entry)
    for side_tree, changes in ((x, plan.alpha), (y, plan.beta)):
        for c in apply_changes(side_tree, order_for_executor(changes)):
            apply_ancestor_update(a, c.path, c.new, applied=applied_update(c.old, c.new))
    return a, x, y, plan.conflicts, plan
