"""Opening sessions for commands: settings, lock, state, endpoints.

Invariants owned here:

* A command that touches a session's trees or state holds the session lock for
  its whole duration, and a session's endpoints never change after creation (a
  different pair needs a different name).
* A session's stored addresses keep the meaning they were written with: those of
  a session from before address format 2 are rewritten (``url.migrate``) to the
  canonical text of the same place, and the absolute root each end resolved to on
  its first probe is stored (meta ``alpha_root``/``beta_root``) and used from then
  on, so later runs go to the same directories.
* Failures of the state database while a command runs are ``StateError``s (exit 3)
  naming the database; the database stays where it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, fields, replace
from typing import Any

from yeet.cli.roots import check_apart
from yeet.contract.endpoint import Endpoint
from yeet.core.decisions import Mode, Side
from yeet.model.address import ADDRESS_FORMAT, Location, legacy_canonical, migrate, parse
from yeet.model.errors import SessionNotFound, StateError, UsageError
from yeet.replica.endpoint import LocalEndpoint
from yeet.session.settings import Settings
from yeet.state import identity
from yeet.state.db import StateDamaged, failed
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
        a, b = stored_pair(name)
        return name, a, b
    if alpha is None or beta is None:
        raise UsageError("give both ALPHA and BETA (or only --name NAME)")
    a, b = parse(alpha).canonical(), parse(beta).canonical()
    if a == b:
        raise UsageError(f"alpha and beta are the same place: {a}")
    if name is None:
        _refuse_old_meaning(alpha, beta, default_name(a, b))
    return name or default_name(a, b), a, b


def _pair_of(doc: dict[str, Any]) -> tuple[str, str]:
    a, b = str(doc["alpha"]), str(doc["beta"])
    if doc.get("addresses", 1) < ADDRESS_FORMAT:
        return migrate(a), migrate(b)
    return a, b


def stored_pair(name: str) -> tuple[str, str]:
    """The addresses of an existing session (canonical today), read without
    changing anything: from its identity file, else from its database."""
    directory = existing_session_dir(name)
    doc = identity.read(directory)
    if doc is None:
        try:
            store = SessionStore(directory / "state.db", read_only=True)
        except StateDamaged as err:
            raise StateError(
                f"session {name!r}: {err}; its endpoints were not recorded anywhere else "
                "(it was created by an older yeet)",
                hint=f"`yeet sync ALPHA BETA --name {name}` sets the database aside and "
                "starts the session again",
            ) from None
        try:
            doc = store.identity()
        finally:
            store.close()
    if "alpha" not in doc or "beta" not in doc:
        raise SessionNotFound(
            f"session {name!r} was never created completely (a first sync that failed)",
            hint=f"`yeet sync ALPHA BETA --name {name}` creates it; `yeet forget {name}` "
            "removes what is left",
        )
    return _pair_of(doc)


def has_pair(name: str) -> bool:
    """True when session ``name`` exists and its endpoints are known."""
    try:
        stored_pair(name)
    except (SessionNotFound, StateError):
        return False
    return True


def _refuse_old_meaning(alpha: str, beta: str, name: str) -> None:
    """Typed ``ssh://host/path`` addresses that an older yeet read as home-relative:
    if that older yeet's session for the same words exists, say what changed
    instead of silently starting a second session somewhere else."""
    old = legacy_canonical(alpha), legacy_canonical(beta)
    old_name = default_name(*old)
    if old_name == name or not (session_dir(old_name) / "state.db").exists():
        return
    try:
        stored = stored_pair(old_name)
    except StateError:
        return
    if stored != (migrate(old[0]), migrate(old[1])):
        return
    raise UsageError(
        f"ssh:// addresses are absolute now, as in git and OpenSSH: session {old_name!r}, "
        f"created by an older yeet from the same words, synchronises {stored[0]} and "
        f"{stored[1]}",
        hint=f"`yeet sync --name {old_name}` continues that session; give --name NAME to "
        "start a session for the absolute paths (write ssh://host/~/path for a path in the "
        "home directory)",
    )


def _migrate(store: SessionStore) -> None:
    """Rewrite the stored addresses of a session from before address format 2."""
    a = store.get_meta("alpha")
    if a is None or store.get_meta("addresses", 1) >= ADDRESS_FORMAT:
        return
    store.set_meta(alpha=migrate(a), beta=migrate(store.get_meta("beta")), addresses=ADDRESS_FORMAT)


def settings_for(
    store: SessionStore,
    name: str,
    alpha: str,
    beta: str,
    o: Overrides,
    digest: str | None = None,
) -> Settings:
    """The session's settings: stored ones, updated by explicit overrides.

    ``digest``: for a session being created, the one ``roots.check_new_pair`` chose.
    """
    if o.via is not None:
        store.set_meta(via=list(o.via))
    _migrate(store)
    if store.get_meta("alpha") is None:
        if digest is None:
            raise StateError(
                f"session {name!r} has no recorded endpoints",
                hint=f"`yeet sync ALPHA BETA --name {name}` starts it again",
            )
        s = Settings(name, alpha, beta, digest=digest)
        store.set_meta(
            alpha=alpha, beta=beta, addresses=ADDRESS_FORMAT, created=time.time(), digest=digest
        )
    else:
        sa, sb = store.get_meta("alpha"), store.get_meta("beta")
        if (sa, sb) != (alpha, beta):
            if all(t == x or migrate(t) == x for t, x in ((alpha, sa), (beta, sb))):
                raise UsageError(
                    f"ssh:// addresses are absolute now, as in git and OpenSSH: session "
                    f"{name!r}, created by an older yeet, synchronises {sa} and {sb}",
                    hint=f"`yeet sync --name {name}` continues it; give --name NAME to start "
                    "a session for the absolute paths",
                )
            raise UsageError(
                f"session {name!r} synchronises {sa} and {sb}, not {alpha} and {beta}",
                hint="use another --name for another pair, or `yeet forget` the old session",
            )
        s = Settings.from_meta(name, alpha, beta, store.get_meta)
    given = {f.name: getattr(o, f.name) for f in fields(o) if f.name != "via"}
    s = replace(s, **{key: value for key, value in given.items() if value is not None})
    store.set_meta(**s.meta())
    notice = store.set_aside_notice()  # every command that meets the session says so
    if notice:
        print(f"yeet: warning: {notice}", file=sys.stderr)
    return s


@contextlib.contextmanager
def locked_store(name: str, *, create: bool) -> Iterator[SessionStore]:
    directory = session_dir(name) if create else existing_session_dir(name)
    db = directory / "state.db"
    with SessionLock(directory):
        try:
            store = SessionStore(db)
        except sqlite3.Error as err:
            raise failed(db, err) from None
        try:
            yield store
        except sqlite3.Error as err:
            raise failed(db, err) from None
        finally:
            store.close()


def make_endpoint(store: SessionStore, name: str, side: Side, location: Location) -> Endpoint:
    if location.is_local:
        return LocalEndpoint(store.conn, store.lock, session_dir(name) / side.value)
    from yeet.remote.client.connect import remote_endpoint  # asyncssh: only when needed

    return remote_endpoint(location, tuple(store.get_meta("via", [])))


@contextlib.asynccontextmanager
async def endpoints(
    store: SessionStore, settings: Settings
) -> AsyncIterator[tuple[dict[Side, Endpoint], dict[Side, str]]]:
    """Both endpoints, and the roots to open them with: the stored resolved roots
    (the probe's, stored on the first run). Refuses roots that overlap."""
    locs = {Side.ALPHA: parse(settings.alpha), Side.BETA: parse(settings.beta)}
    eps = {s: make_endpoint(store, settings.name, s, loc) for s, loc in locs.items()}
    try:
        stored = {s: store.get_meta(f"{s.value}_root") for s in Side}
        probes = await asyncio.gather(*(eps[s].probe(stored[s] or locs[s].path) for s in Side))
        infos = dict(zip(Side, probes, strict=True))
        check_apart(infos)
        new = {f"{s.value}_root": infos[s].path for s in Side if not stored[s]}
        if new:
            store.set_meta(**new)
        yield eps, {s: stored[s] or infos[s].path for s in Side}
    finally:
        await asyncio.gather(
            *(endpoint.close() for endpoint in eps.values()), return_exceptions=True
        )


def stored_settings(store: SessionStore, name: str) -> Settings:
    _migrate(store)
    alpha, beta = store.get_meta("alpha"), store.get_meta("beta")
    return settings_for(store, name, alpha, beta, Overrides())
