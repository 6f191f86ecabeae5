"""Settling what an interrupted run was about to write, before anything else.

Invariant owned here: after a crash (kill -9, power loss, a lost link during an
``apply``), every change the dead run had recorded as intended (``SessionStore.intend``)
is looked at once, at the start of the next run, before its first scan: a path whose
side holds exactly the intended new entry was written by yeet, so the ancestor records
it as agreed (the other side held that entry when the change was planned). A path
holding anything else is left to the ordinary reconcile (the write did not happen, or
the user changed the path since): nothing is ever guessed into agreement.
"""

from __future__ import annotations

from collections.abc import Mapping

from yeet.contract.endpoint import Endpoint
from yeet.core.decisions import Side
from yeet.core.trees import applied_update
from yeet.model.entries import Entry
from yeet.model.paths import join
from yeet.state.store import SessionStore, Update


async def entries_at(endpoint: Endpoint, paths: list[str]) -> dict[str, Entry]:
    """What ``endpoint`` holds at each of ``paths`` (absent paths are missing from the result)."""
    wanted = set(paths)
    found: dict[str, Entry] = {}
    async for batch in endpoint.scan(sorted(wanted), recursive=False, partial_parent=True):
        for directory, listing in batch.listings:
            for name, entry in (listing or {}).items():
                path = join(directory, name)
                if path in wanted:
                    found[path] = entry
    return found


async def settle(store: SessionStore, endpoints: Mapping[Side, Endpoint]) -> int:
    """Turn the intents of an interrupted run into agreements where they landed;
    forget them all. Returns how many had landed."""
    pending = store.intents()
    if not pending:
        return 0
    updates: list[Update] = []
    for side in Side:
        mine = [(path, old, new) for s, path, old, new in pending if s == side.value]
        if not mine:
            continue
        held = await entries_at(endpoints[side], [path for path, _old, _new in mine])
        for path, old, new in mine:
            if held.get(path) == new:
                updates.append(Update(path, new, applied=applied_update(old, new)))
    store.record(sorted(updates, key=lambda u: u.path.count("/")))
    store.forget_intents()
    return len(updates)
