"""Checking a session's two roots before anything is written.

Invariants owned here:

* A new session creates nothing (no beta root or parents, no session directory,
  no state) until both ends answered and are usable: alpha exists and is a
  directory, beta is one or can be created, and the roots do not overlap
  (``check_new_pair``; the digest the session will use comes from the same
  answers).
* Every command that opens a session's endpoints refuses roots that overlap,
  whichever ends are remote (``check_apart``, over ``Endpoint.probe``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

from yeet.contract.values import RootInfo
from yeet.core.decisions import Side
from yeet.model import digest as digests
from yeet.model.address import Location, parse
from yeet.model.errors import EndpointError, UsageError
from yeet.replica.rootinfo import overlap, probe_root


def where(location: Location, info: RootInfo) -> str:
    """A root as the messages name it: its absolute path, on its host."""
    if location.is_local:
        return info.path
    user = f"{location.user}@" if location.user else ""
    return f"{user}{location.host}:{info.path}"


def check_apart(infos: Mapping[Side, RootInfo]) -> None:
    """A usage error when one root is, or lies inside, the other."""
    a, b = infos[Side.ALPHA], infos[Side.BETA]
    if not overlap(a, b):
        return
    host = f" on {a.host}" if a.host else ""
    if a.real == b.real:
        raise UsageError(
            f"alpha and beta are the same directory{host}: {a.real}",
            hint="synchronise two separate directory trees",
        )
    raise UsageError(
        f"one root lies inside the other{host}: alpha is {a.real}, beta is {b.real}",
        hint="synchronise two separate directory trees",
    )


def _usable(side: Side, location: Location, info: RootInfo) -> None:
    if side is Side.ALPHA and not info.exists:
        raise EndpointError(
            f"alpha root {where(location, info)} does not exist",
            hint="check the path (only beta is created, on a session's first sync)",
        )
    if info.problem == "is not a directory":
        raise EndpointError(
            f"{side} root {where(location, info)} is not a directory",
            hint="give the directory to synchronise (yeet syncs directory trees)",
        )
    if info.problem:
        raise EndpointError(f"{side} root {where(location, info)} {info.problem}")


async def _probe_pair(
    locations: Mapping[Side, Location], via: Sequence[str]
) -> tuple[dict[Side, RootInfo], list[tuple[str, ...]]]:
    """Probe local roots first (no connection is made for a pair that cannot work),
    then remote ones; the first unusable root stops it."""
    infos: dict[Side, RootInfo] = {}
    theirs: list[tuple[str, ...]] = []
    for side, loc in sorted(locations.items(), key=lambda item: not item[1].is_local):
        if loc.is_local:
            infos[side] = await asyncio.to_thread(probe_root, loc.path)
        else:
            from yeet.remote.client.connect import remote_endpoint  # asyncssh: only when needed

            endpoint = remote_endpoint(loc, via)
            try:
                welcome = await endpoint.connect()
                theirs.append(welcome.digests)
                infos[side] = await endpoint.probe(loc.path)
            finally:
                await endpoint.close()
        _usable(side, loc, infos[side])
    return infos, theirs


async def check_new_pair(alpha: str, beta: str, via: Sequence[str]) -> str:
    """Check the roots of a session about to be created; the digest it will use.

    Raises ``EndpointError`` (an end is unreachable, its host key is refused, alpha
    is missing, a root cannot be used or created) or ``UsageError`` (the roots
    overlap); nothing anywhere is created either way.
    """
    locations = {Side.ALPHA: parse(alpha), Side.BETA: parse(beta)}
    infos, theirs = await _probe_pair(locations, via)
    check_apart(infos)
    if not theirs:
        return digests.available()[0]
    from yeet.remote.client.connect import best_digest

    return best_digest(theirs)
