"""Settling one conflict: a session operation, like a sync pass restricted to one path.

Invariant owned here: ``resolve`` makes the losing side equal to the kept side at that
path (and below) through the same checked, trashed, durable writes as a sync (the
session's executor, intents and trash pass), so the losing content can be restored
from the trash; it looks at the trees as they are *now*, not as they were when the
conflict was recorded, and it records what it settled in the session's store (the
conflicts at and below the path, and the session's state once nothing is left).
"""

from __future__ import annotations

import time

from yeet.contract.endpoint import Endpoint
from yeet.core.decisions import Change, Mode, Side
from yeet.core.localindex import LocalIndex
from yeet.core.trees import reconcile
from yeet.model.entries import DIRECTORY, Entry, Problem
from yeet.model.errors import EndpointError, YeetError
from yeet.model.paths import join, parent_of
from yeet.session.executor import Executor
from yeet.session.sync import Session
from yeet.state.store import Update


def with_parents(path: str, tree: dict[str, Entry]) -> dict[str, Entry]:
    """``tree`` with the directories above ``path`` in it."""
    p = parent_of(path)
    while p:
        tree[p] = DIRECTORY
        p = parent_of(p)
    return tree


async def subtree(endpoint: Endpoint, path: str) -> dict[str, Entry]:
    """The entry at ``path`` and everything below it (plus its parent directories)."""
    tree: dict[str, Entry] = {}
    async for batch in endpoint.scan([path], partial_parent=True):
        for d, entries in batch.listings:
            for name, e in (entries or {}).items():
                tree[join(d, name)] = e
    return with_parents(path, tree)


async def resolve(session: Session, path: str, keep: Side) -> list[Problem]:
    """Make ``keep.other`` equal to ``keep`` at ``path``; the problems that stopped it."""
    store, eps = session.store, session.endpoints
    infos = await session.open()
    for s in Side:
        if not infos[s].root_exists:
            raise EndpointError(f"{s} root {session.roots[s]} does not exist")
    trees = {s: await subtree(eps[s], path) for s in Side}
    ancestor = with_parents(path, store.ancestor_subtree(path))
    here = store.ancestor_get(path)
    if here is not None:
        ancestor[path] = here
    loser = keep.other
    plan = reconcile(
        ancestor,
        trees[keep],
        trees[loser],
        Mode.ONE_WAY_REPLICA,
        portable_modes=session.settings.permissions == "portable",
    )
    if plan.conflicts:
        c = plan.conflicts[0]
        raise YeetError(
            f"cannot make {loser} equal to {keep} at {c.path}: it holds content yeet "
            "cannot remove (a socket, device or unreadable directory)",
            hint="remove it by hand, then resolve again",
        )
    problems: list[Problem] = []
    executor = Executor(
        eps,
        store.record,
        lambda p, _t: problems.append(p),
        {Side.ALPHA: LocalIndex(), Side.BETA: LocalIndex()},
        intents=store,
    )
    executor.trash_pass = store.next_pass()
    executor.start()
    executor.submit(Change(loser, c.path, c.old, c.new) for c in plan.beta)
    executor.release()
    await executor.finish()
    store.record(Update(u.path, u.entry, applied=False) for u in plan.ancestor)
    store.refresh_digests()
    if not problems:
        store.replace_conflicts([], under=path)
    store.set_meta(last_resolve=time.time())
    if (
        not store.conflicts()
        and not store.problems()
        and store.get_meta("last_state") in ("conflicts",)
    ):
        store.set_meta(last_state="synced")
    return problems
