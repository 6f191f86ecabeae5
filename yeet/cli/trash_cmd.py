"""``yeet trash``: list what a session replaced or deleted, and put it back.

Invariant owned here: restoring never overwrites anything silently: if the
path is occupied, the current content goes to the trash first (``--force``) or
nothing happens.
"""

from __future__ import annotations

import asyncio
import json

import msgspec

from yeet.cli.report import human_bytes, iso
from yeet.cli.runner import endpoints, locked_store, stored_settings
from yeet.endpoint.api import TrashItem
from yeet.engine.reconcile import Side
from yeet.errors import UsageError, YeetError
from yeet.session import Session
from yeet.state.store import SessionStore


async def _items(store: SessionStore, name: str) -> list[TrashItem]:
    settings = stored_settings(store, name)
    async with endpoints(store, settings) as (eps, roots):
        await Session(settings, store, eps, roots).open()
        items: list[TrashItem] = []
        for s in Side:
            items.extend(await eps[s].trash_list())
        return items


async def _restore(store: SessionStore, name: str, item: TrashItem, force: bool) -> str | None:
    settings = stored_settings(store, name)
    async with endpoints(store, settings) as (eps, roots):
        await Session(settings, store, eps, roots).open()
        result = await eps[Side(item.side)].trash_restore(item.id, force)
        return None if result.ok else result.problem


def trash(
    name: str,
    restore: str | None,
    side: str | None,
    item_id: int | None,
    force: bool,
    as_json: bool,
) -> int:
    with locked_store(name, create=False) as store:
        items = asyncio.run(_items(store, name))
        if restore is None and item_id is None:
            if as_json:
                print(json.dumps(msgspec.to_builtins(items), indent=2))
            else:
                for i in items:
                    print(
                        f"{i.side}\t{i.id}\t{iso(i.trashed)}\t{i.kind}\t{human_bytes(i.size)}\t{i.path}"
                    )
            return 0
        if item_id is not None:
            chosen = [i for i in items if i.id == item_id and (side is None or i.side == side)]
        else:
            want = (restore or "").strip("/")
            chosen = [i for i in items if i.path == want and (side is None or i.side == side)]
        if not chosen:
            raise YeetError(
                f"nothing in the trash of {name!r} for {restore or item_id!r}",
                hint=f"`yeet trash {name}` lists what is there",
            )
        sides = {i.side for i in chosen}
        if len(sides) > 1:
            raise UsageError(
                f"{restore!r} is in the trash of both sides",
                hint="choose one with --side alpha|beta",
            )
        item = max(chosen, key=lambda i: (i.trashed, i.id))
        problem = asyncio.run(_restore(store, name, item, force))
    if problem:
        raise YeetError(f"cannot restore {item.path}: {problem}")
    print(f"restored\t{item.side}\t{item.path}\tfrom {iso(item.trashed)}")
    return 0
