"""Stage handles belong to the agent that gave them out (found by vmtests/test_kill9.py).

A handle used to be translated into the agent's number *before* the call that
reconnected, so after a lost agent the new agent received the old agent's
numbers, which it may have given out to uploads of its own (agents count from 1).
Now the translation is done for the connection the call goes out on: an old handle
fails on the client, as "interrupted by a lost connection" (a transient problem,
sent again by the next pass), and never reaches the new agent.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from yeet.contract.values import EndpointConfig, Op
from yeet.model import digest, settings
from yeet.model.entries import Entry, file_entry
from yeet.remote.client.bulk import ENV
from yeet.remote.client.endpoint import RemoteEndpoint
from yeet.remote.client.local_process import ProcessChannel, SubprocessConnector

ALG = "blake2b"
CLIENT_SIDE = "interrupted by a lost connection"


async def _open(tmp: Path) -> RemoteEndpoint:
    ep = RemoteEndpoint(SubprocessConnector(tmp / "agent-state"), notify=lambda _m: None)
    await ep.open(EndpointConfig("t", "beta", str(tmp / "beta"), create_root=True, digest=ALG))
    return ep


async def _staged(ep: RemoteEndpoint, path: str, size: int) -> tuple[int, Entry]:
    """An upload that arrived whole on the agent: (local handle, entry)."""
    data = os.urandom(size)
    entry = file_entry(digest.of_bytes(ALG, data), len(data))
    stage = await ep.stage_open(path, entry)
    await ep.stage_write(stage.handle, 0, data)
    assert await ep._settle_writes(stage.handle) is None
    return stage.handle, entry


async def _kill_agent(ep: RemoteEndpoint) -> None:
    """SIGKILL the agent and wait until the client noticed (it reconnects lazily)."""
    channel = ep._channel
    assert isinstance(channel, ProcessChannel)
    channel.proc.kill()
    await channel.proc.wait()
    for _ in range(500):
        if ep._rpc is None or not ep._rpc.alive:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the client never noticed that its agent died")


def test_apply_of_an_upload_lost_with_its_agent(tmp_path: Path) -> None:
    async def scenario() -> None:
        ep = await _open(tmp_path)
        try:
            handle, entry = await _staged(ep, "big.bin", 3 << 20)
            await _kill_agent(ep)
            [result] = await ep.apply([Op("big.bin", None, entry, stage=handle)])
            assert ep.reconnects == 1
            assert not result.ok and result.transient, result
            assert CLIENT_SIDE in (result.problem or ""), f"sent to the agent: {result.problem!r}"
            assert not (tmp_path / "beta" / "big.bin").exists()
            # The next pass sends it again, on the new agent: it lands.
            handle, entry = await _staged(ep, "big.bin", 1 << 20)
            [result] = await ep.apply([Op("big.bin", None, entry, stage=handle)])
            assert result.ok, result
        finally:
            await ep.close()

    asyncio.run(scenario())


def test_chunks_on_the_bulk_channel_outlive_the_sessions_agent(tmp_path: Path) -> None:
    """The bulk agent writes into the partial file, not through a handle: chunks sent
    after the session's agent died are kept, and the next attempt resumes with them."""
    data = os.urandom(4 << 20)
    entry = file_entry(digest.of_bytes(ALG, data), len(data))

    async def scenario() -> None:
        ep = await _open(tmp_path)
        try:
            stage = await ep.stage_open("big.bin", entry)
            await ep.stage_write(stage.handle, 0, data[: 2 << 20])
            assert await ep._settle_writes(stage.handle) is None
            await _kill_agent(ep)
            await ep.stage_write(stage.handle, 2 << 20, data[2 << 20 :])
            assert await ep._settle_writes(stage.handle) is None
            [result] = await ep.apply([Op("big.bin", None, entry, stage=stage.handle)])
            assert not result.ok and result.transient and CLIENT_SIDE in (result.problem or "")
            again = await ep.stage_open("big.bin", entry)  # the next pass
            assert sorted(again.have) == [(0, 2 << 20), (2 << 20, 2 << 20)]
            [result] = await ep.apply([Op("big.bin", None, entry, stage=again.handle)])
            assert result.ok, result
            assert ep.reconnects == 1
        finally:
            await ep.close()

    asyncio.run(scenario())
    assert (tmp_path / "beta" / "big.bin").read_bytes() == data


def test_stage_write_of_an_upload_lost_with_its_agent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunks on the session's channel (no bulk channel): an old handle fails."""
    monkeypatch.setenv(ENV, "0")
    settings.reload()

    async def scenario() -> None:
        ep = await _open(tmp_path)
        try:
            handle, _entry = await _staged(ep, "big.bin", 2 << 20)
            await _kill_agent(ep)
            # Write-behind: the call returns at once; its failure is kept for the apply.
            await ep.stage_write(handle, 2 << 20, b"more")
            err = await ep._settle_writes(handle)
            assert ep.reconnects == 1
            assert isinstance(err, OSError) and CLIENT_SIDE in str(err), repr(err)
        finally:
            await ep.close()

    asyncio.run(scenario())
