"""Opening sessions for commands: settings, lock, state, endpoints.

Invariant owned here: a command that touches a session's trees or state holds
the session lock for its whole duration, and a session's endpoints never
change after creation (a different pair needs a different name).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from yeet.endpoint.api import Endpoint
from yeet.endpoint.local import LocalEndpoint
from yeet.endpoint.url import Location, parse
from yeet.engine.guard import DEFAULT_LIMIT
from yeet.engine.reconcile import Mode, Side
from yeet.errors import UsageError
from yeet.session import Settings
from yeet.state.sessions import (
    SessionLock,
    default_name,
    existing_session_dir,
    session_dir,
)
from yeet.state.store import SessionStore


@dataclass(frozen=True)
class Overrides:
    """Options given on the command line (None: keep the stored value)."""

    mode: Mode | None = None
    ignores: tuple[str, ...] | None = None
    ignore_vcs: bool | None = None
    symlinks: str | None = None
    trash_days: float | None = None
    via: tuple[str, ...] | None = None  # SSH jump hosts (stored in the session)
    permissions: str | None = None
    owner: bool | None = None
    times: bool | None = None
    max_delete: str | None = None


def resolve_name(alpha: str | None, beta: str | None, name: str | None) -> tuple[str, str, str]:
    """``(name, alpha, beta)`` canonical, from what the user typed."""
    if alpha is None and beta is None:
        if name is None:
            raise UsageError("give ALPHA and BETA, or --name of an existing session")
        store_dir = existing_session_dir(name)
        store = SessionStore(store_dir / "state.db")
        try:
            a, b = store.get_meta("alpha"), store.get_meta("beta")
        finally:
            store.close()
        return name, a, b
    if alpha is None or beta is None:
        raise UsageError("give both ALPHA and BETA (or only --name NAME)")
    a, b = parse(alpha).canonical(), parse(beta).canonical()
    if a == b:
        raise UsageError(f"alpha and beta are the same place: {a}")
    if parse(a).is_local and parse(b).is_local:
        pa, pb = Path(a), Path(b)
        if pa in pb.parents or pb in pa.parents:
            raise UsageError(
                f"one root lies inside the other: {a} and {b}",
                hint="synchronise two separate directory trees",
            )
    return name or default_name(a, b), a, b


def settings_for(store: SessionStore, name: str, alpha: str, beta: str, o: Overrides) -> Settings:
    """The session's settings: stored ones, updated by explicit overrides."""
    if o.via is not None:
        store.set_meta(via=list(o.via))
    if store.get_meta("alpha") is None:
        from yeet.transport.connect import agree_digest  # asyncssh: only when needed

        via = tuple(store.get_meta("via", []))
        s = Settings(name, alpha, beta, digest=agree_digest([parse(alpha), parse(beta)], via))
        store.set_meta(alpha=alpha, beta=beta, created=time.time(), digest=s.digest)
    else:
        sa, sb = store.get_meta("alpha"), store.get_meta("beta")
        if (sa, sb) != (alpha, beta):
            raise UsageError(
                f"session {name!r} synchronises {sa} and {sb}, not {alpha} and {beta}",
                hint="use another --name for another pair, or `yeet forget` the old session",
            )
        s = Settings(
            name,
            alpha,
            beta,
            Mode(store.get_meta("mode", Mode.TWO_WAY_SAFE.value)),
            tuple(store.get_meta("ignores", [])),
            bool(store.get_meta("ignore_vcs", False)),
            store.get_meta("symlinks", "portable"),
            float(store.get_meta("trash_days", 30.0)),
            store.get_meta("digest", "blake3"),
            store.get_meta("permissions", "preserve"),
            bool(store.get_meta("owner", False)),
            bool(store.get_meta("times", False)),
            str(store.get_meta("max_delete", DEFAULT_LIMIT)),
        )
    if o.mode is not None:
        s = replace(s, mode=o.mode)
    if o.ignores is not None:
        s = replace(s, ignores=o.ignores)
    if o.ignore_vcs is not None:
        s = replace(s, ignore_vcs=o.ignore_vcs)
    if o.symlinks is not None:
        s = replace(s, symlinks=o.symlinks)
    if o.trash_days is not None:
        s = replace(s, trash_days=o.trash_days)
    if o.permissions is not None:
        s = replace(s, permissions=o.permissions)
    if o.owner is not None:
        s = replace(s, owner=o.owner)
    if o.times is not None:
        s = replace(s, times=o.times)
    if o.max_delete is not None:
        s = replace(s, max_delete=o.max_delete)
    store.set_meta(
        mode=s.mode.value,
        ignores=list(s.ignores),
        ignore_vcs=s.ignore_vcs,
        symlinks=s.symlinks,
        trash_days=s.trash_days,
        permissions=s.permissions,
        owner=s.owner,
        times=s.times,
        max_delete=s.max_delete,
    )
    return s


@contextlib.contextmanager
def locked_store(name: str, *, create: bool) -> Iterator[SessionStore]:
    directory = session_dir(name) if create else existing_session_dir(name)
    with SessionLock(directory):
        store = SessionStore(directory / "state.db")
        try:
            yield store
        finally:
            store.close()


def make_endpoint(store: SessionStore, name: str, side: Side, location: Location) -> Endpoint:
    if location.is_local:
        return LocalEndpoint(store.conn, store.lock, session_dir(name) / side.value)
    from yeet.transport.connect import remote_endpoint  # asyncssh: only when needed

    return remote_endpoint(location, tuple(store.get_meta("via", [])))


@contextlib.asynccontextmanager
async def endpoints(
    store: SessionStore, settings: Settings
) -> AsyncIterator[tuple[dict[Side, Endpoint], dict[Side, str]]]:
    locs = {Side.ALPHA: parse(settings.alpha), Side.BETA: parse(settings.beta)}
    eps = {s: make_endpoint(store, settings.name, s, loc) for s, loc in locs.items()}
    try:
        yield eps, {s: loc.path for s, loc in locs.items()}
    finally:
        await asyncio.gather(*(ep.close() for ep in eps.values()), return_exceptions=True)


def roots_of(settings: Settings) -> dict[Side, str]:
    return {Side.ALPHA: parse(settings.alpha).path, Side.BETA: parse(settings.beta).path}


def stored_settings(store: SessionStore, name: str) -> Settings:
    alpha, beta = store.get_meta("alpha"), store.get_meta("beta")
    return settings_for(store, name, alpha, beta, Overrides())
