"""``yeet trash``: list what a session replaced or deleted, and put it back.

Invariant owned here: restoring never overwrites anything silently: if the
path is occupied, the current content goes to the trash first (``--force``) or
nothing happens there. A bulk restore (everything under a directory, or
everything one pass trashed) puts back the newest version of each path, on
each side it was trashed on, in one connection per side and a few calls of up
to ``RESTORE_BATCH`` items each, never one call (or connection) per item.

Line format of the listing (tab-separated; new fields are only appended)::

    SIDE ID TIME KIND SIZE PATH PASS
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterable
from dataclasses import dataclass

import msgspec

from yeet.cli.pathargs import PathArg, local_roots, path_argument
from yeet.cli.report import iso
from yeet.cli.runner import endpoints, locked_store, stored_settings
from yeet.contract.endpoint import Endpoint
from yeet.contract.values import OpResult, TrashItem
from yeet.core.decisions import Side
from yeet.model.errors import EndpointError, UsageError, YeetError
from yeet.model.paths import is_within, sort_key
from yeet.model.quoting import dumps, quote
from yeet.model.units import size_text
from yeet.state.store import SessionStore

RESTORE_BATCH = 1000


@dataclass(frozen=True)
class Request:
    """What ``yeet trash`` was asked (after option checks in ``main``)."""

    restore: str | None = None  # PATH as typed
    side: str | None = None
    item: int | None = None
    pass_id: int | str | None = None  # a number, or "last"
    force: bool = False
    as_json: bool = False


async def _run(store: SessionStore, name: str, req: Request) -> int:
    settings = stored_settings(store, name)
    sides = [Side(req.side)] if req.side else list(Side)
    async with endpoints(store, settings) as (eps, roots):
        items: list[TrashItem] = []
        for s in sides:
            info = await eps[s].open(settings.endpoint_config(s, roots[s], create_root=False))
            if not info.root_exists:
                raise EndpointError(
                    f"{s} root {quote(roots[s])} does not exist: its trash cannot be opened",
                    hint="mount or recreate it (an empty directory will do), or use --side",
                )
            items.extend(await eps[s].trash_list())
        items = _of_pass(items, req.pass_id)
        if req.restore is None and req.item is None:
            _list(items, req.as_json)
            return 0
        chosen, single = _choose(store, name, items, req)
        pass_id = store.next_pass()
        results: list[tuple[TrashItem, OpResult]] = []
        for s in sides:
            mine = sorted((i for i in chosen if i.side == s), key=lambda i: sort_key(i.path))
            results.extend(await _restore(eps[s], mine, req.force, pass_id))
    return _report(name, results, single, req.as_json)


def _of_pass(items: list[TrashItem], wanted: int | str | None) -> list[TrashItem]:
    if wanted is None:
        return items
    if wanted == "last":
        numbered = [i.pass_id for i in items if i.pass_id]
        if not numbered:
            raise YeetError(
                "nothing in the trash says which pass put it there",
                hint="items trashed by an older yeet have no pass; restore them by path",
            )
        wanted = max(numbered)
    return [i for i in items if i.pass_id == wanted]


def _list(items: list[TrashItem], as_json: bool) -> None:
    if as_json:
        doc = msgspec.to_builtins(items)
        for row in doc:
            row["path"] = quote(row["path"])
        print(dumps(doc))
        return
    for i in items:
        print(
            f"{i.side}\t{i.id}\t{iso(i.trashed)}\t{i.kind}\t{size_text(i.size)}\t"
            f"{quote(i.path)}\t{i.pass_id}"
        )


def _choose(
    store: SessionStore, name: str, items: list[TrashItem], req: Request
) -> tuple[list[TrashItem], bool]:
    """The items to restore, and whether one path was asked for (not a bulk restore)."""
    if req.item is not None:
        chosen = [i for i in items if i.id == req.item]
        what = f"item {req.item}"
        single = True
    else:
        assert req.restore is not None
        addresses = {s: store.get_meta(str(s)) or "" for s in Side}
        arg = path_argument(req.restore, local_roots(addresses))
        what = quote(arg.path) if arg.path else "the root"
        chosen, single = _by_path(items, arg)
    if req.pass_id is not None:
        what += f" from pass {req.pass_id}"
    if not chosen:
        raise YeetError(
            f"nothing in the trash of {name!r} for {what}",
            hint=f"`yeet trash {name}` lists what is there",
        )
    if single:
        if len({i.side for i in chosen}) > 1:
            raise UsageError(
                f"{what} is in the trash of both sides", hint="choose one with --side alpha|beta"
            )
        return [max(chosen, key=lambda i: (i.trashed, i.id))], True
    return _newest(chosen), False


def _by_path(items: list[TrashItem], arg: PathArg) -> tuple[list[TrashItem], bool]:
    if not arg.under:
        exact = [i for i in items if i.path == arg.path]
        if exact:
            return exact, True
    return [i for i in items if i.path != arg.path and is_within(i.path, arg.path)], False


def _newest(items: Iterable[TrashItem]) -> list[TrashItem]:
    """The newest version of each (side, path)."""
    best: dict[tuple[str, str], TrashItem] = {}
    for i in items:
        key = (i.side, i.path)
        old = best.get(key)
        if old is None or (i.trashed, i.id) > (old.trashed, old.id):
            best[key] = i
    return list(best.values())


async def _restore(
    endpoint: Endpoint, items: list[TrashItem], force: bool, pass_id: int
) -> list[tuple[TrashItem, OpResult]]:
    out: list[tuple[TrashItem, OpResult]] = []
    for start in range(0, len(items), RESTORE_BATCH):
        batch = items[start : start + RESTORE_BATCH]
        results = await endpoint.trash_restore([i.id for i in batch], force, pass_id)
        out.extend(zip(batch, results, strict=True))
    return out


def _report(
    name: str, results: list[tuple[TrashItem, OpResult]], single: bool, as_json: bool
) -> int:
    failed = [(i, r) for i, r in results if not r.ok]
    if single and failed:
        item, r = failed[0]
        raise YeetError(f"cannot restore {quote(item.path)}: {r.problem}")
    if as_json:
        print(
            dumps(
                [
                    {
                        "side": i.side,
                        "id": i.id,
                        "path": quote(i.path),
                        "restored": r.ok,
                        "problem": r.problem,
                    }
                    for i, r in results
                ]
            )
        )
    else:
        for i, r in results:
            if r.ok:
                print(f"restored\t{i.side}\t{quote(i.path)}\tfrom {iso(i.trashed)}")
            else:
                print(f"problem\t{i.side}\t{quote(i.path)}\t{quote(r.problem or '')}")
    if failed:
        print(
            f"yeet: restored {len(results) - len(failed)} of {len(results)}; "
            f"{len(failed)} left in the trash (see the problem lines; --force trashes what "
            f"is at a path now and restores it anyway; `yeet trash {name}` lists the trash)",
            file=sys.stderr,
        )
        return 1
    return 0


def trash(name: str, req: Request) -> int:
    with locked_store(name, create=False) as store:
        return asyncio.run(_run(store, name, req))
