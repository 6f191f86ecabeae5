"""Sides served by their own ``python -m yeet agent`` process, and lost links."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

from tests.remote.conftest import make_tree, tree
from yeet.contract.endpoint import Endpoint
from yeet.core.decisions import Side
from yeet.remote.client.connect import subprocess_endpoint
from yeet.remote.client.endpoint import RemoteEndpoint
from yeet.replica.endpoint import LocalEndpoint
from yeet.session.outcome import Outcome
from yeet.session.settings import Settings
from yeet.session.sync import Session
from yeet.state.store import SessionStore


async def sync(
    tmp: Path, a: Path, b: Path, eps: dict[Side, Endpoint], *, watch: Any = None
) -> Outcome:
    store = SessionStore(tmp / "state.db")
    settings = Settings("t", str(a), str(b), digest="blake2b")
    session = Session(settings, store, eps, {Side.ALPHA: str(a), Side.BETA: str(b)})
    watcher = asyncio.ensure_future(watch()) if watch else None
    try:
        return await session.run()
    finally:
        if watcher is not None:
            watcher.cancel()
        await asyncio.gather(*(ep.close() for ep in eps.values()), return_exceptions=True)
        store.close()


def _local(tmp: Path) -> LocalEndpoint:
    store = SessionStore(tmp / "local.db")
    return LocalEndpoint(store.conn, store.lock, tmp / "local-side")


def test_one_side_in_its_own_process(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    make_tree(
        a, {"x": b"x", "d/y": (b"y" * 10, True), "big": os.urandom(3 << 20), "l": ("link", "x")}
    )
    out = asyncio.run(
        sync(
            tmp_path,
            a,
            b,
            {Side.ALPHA: _local(tmp_path), Side.BETA: subprocess_endpoint(tmp_path / "bs")},
        )
    )
    assert out.in_sync, out
    assert tree(a) == tree(b)
    (b / "d/y").unlink()
    (b / "new").write_bytes(b"n")
    out = asyncio.run(
        sync(
            tmp_path,
            a,
            b,
            {Side.ALPHA: _local(tmp_path), Side.BETA: subprocess_endpoint(tmp_path / "bs")},
        )
    )
    assert out.in_sync and tree(a) == tree(b) and (a / "new").exists()


def test_both_sides_in_their_own_processes(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    make_tree(a, {f"f{i}": os.urandom(1000) for i in range(300)} | {"big": os.urandom(5 << 20)})
    eps: dict[Side, Endpoint] = {
        Side.ALPHA: subprocess_endpoint(tmp_path / "as"),
        Side.BETA: subprocess_endpoint(tmp_path / "bs"),
    }
    out = asyncio.run(sync(tmp_path, a, b, eps))
    assert out.in_sync, out
    assert tree(a) == tree(b)


SMALL_FILES = 1000
SMALL = 16 << 10
LARGE = 8 << 20


@pytest.mark.parametrize("cut_side", ["beta", "alpha"])
def test_lost_agent_is_restarted_and_nothing_is_lost(tmp_path: Path, cut_side: str) -> None:
    """Kill the agent process mid-transfer: the endpoint reconnects, the sync completes,
    and what was re-sent is at most the batch and the large file in flight."""
    a, b = tmp_path / "a", tmp_path / "b"
    spec: dict[str, object] = {f"s/{i // 50}/f{i}": os.urandom(SMALL) for i in range(SMALL_FILES)}
    spec |= {"L1": os.urandom(LARGE), "L2": os.urandom(LARGE)}
    make_tree(a, spec)
    total = SMALL_FILES * SMALL + 2 * LARGE
    remote = subprocess_endpoint(tmp_path / "rs")
    notes: list[str] = []
    remote.notify = notes.append
    eps: dict[Side, Endpoint] = {Side.ALPHA: _local(tmp_path), Side.BETA: _local(tmp_path / "x")}
    side = Side.BETA if cut_side == "beta" else Side.ALPHA
    eps[side] = remote
    counter = "sent_bytes" if side is Side.BETA else "received_bytes"

    async def cut() -> None:
        while getattr(remote, counter) < total // 3:
            await asyncio.sleep(0.005)
        channel: Any = remote._channel
        channel.proc.kill()

    out = asyncio.run(sync(tmp_path, a, b, eps, watch=cut))
    assert out.in_sync, (out, notes)
    assert tree(a) == tree(b)
    assert remote.reconnects >= 1 and any("reconnect" in n for n in notes), notes
    moved = getattr(remote, counter)
    assert moved <= total + (8 << 20) + LARGE, f"re-sent {moved - total} bytes"


def test_reconnect_gives_up_with_a_clear_error(tmp_path: Path) -> None:
    from yeet.model.errors import EndpointError
    from yeet.remote.client.local_process import SubprocessConnector

    ep = RemoteEndpoint(SubprocessConnector(python="/nonexistent/python"), reconnect_for=1)
    with pytest.raises(EndpointError, match="cannot reach a local agent process"):
        asyncio.run(ep.connect())
