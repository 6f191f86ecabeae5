"""Turning an address into an ``Endpoint`` in another process: the public entry points.

Invariant owned here: a remote location becomes a ``RemoteEndpoint`` over SSH
(or a local agent process, for ``subprocess_endpoint``) and nothing connects
until the endpoint is first used; the digest of a new session is the best one
that every end can compute (``best_digest``, from the agents' welcomes), decided
once and then stored with the session.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from yeet.model import digest as digests
from yeet.model.address import Location
from yeet.model.settings import environment
from yeet.remote.client.endpoint import RemoteEndpoint
from yeet.remote.client.local_process import SubprocessConnector


def remote_endpoint(location: Location, via: Sequence[str] = ()) -> RemoteEndpoint:
    """The endpoint for ``[user@]host:path`` (``location.path`` is its root there).

    SSH goes through asyncssh; ``YEET_SSH=openssh`` selects the OpenSSH client
    binary instead (faster bulk transfers, see ``yeet.remote.client.openssh``).
    """
    from yeet.remote.client.openssh import OpenSshConnector  # asyncssh: imported when needed
    from yeet.remote.client.ssh import SshConnector, targets

    assert location.host is not None
    target = targets(location.host, location.user, location.port, via)
    key = location.path  # keys the agent's state for this root, however it is resolved
    if environment().ssh_client == "openssh":
        return RemoteEndpoint(OpenSshConnector(target), state_key=key)
    return RemoteEndpoint(SshConnector(target), state_key=key)


def subprocess_endpoint(state_dir: Path | None = None) -> RemoteEndpoint:
    """A local endpoint served by its own ``python -m yeet agent`` process."""
    return RemoteEndpoint(SubprocessConnector(state_dir))


def best_digest(theirs: Sequence[Sequence[str]]) -> str:
    """The best digest this end and every end in ``theirs`` (their agents' welcome
    ``digests``) can compute."""
    here = digests.available()
    if not theirs or len(here) == 1:
        return here[0]
    for alg in here:
        if all(alg in t for t in theirs):
            return alg
    return "blake2b"
