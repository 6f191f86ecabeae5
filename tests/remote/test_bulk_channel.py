"""Large uploads go on a channel of their own (``yeet.remote.client.bulk``).

Real agent processes on real pipes: the session's agent and a bulk agent. The
bulk agent is stopped (SIGSTOP) in the middle of an upload, which is what a
saturated link looks like from the session's channel; calls on the session's
channel must still be answered, the upload must finish once the bulk agent runs
again, and its chunks must never have crossed the session's channel.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from yeet.contract.values import EndpointConfig, Op, ReadRequest
from yeet.model import digest, settings
from yeet.model.entries import Entry, file_entry
from yeet.remote.client.bulk import ENV
from yeet.remote.client.endpoint import RemoteEndpoint
from yeet.remote.client.local_process import ProcessChannel, SubprocessConnector
from yeet.remote.client.uploads import BULK_BYTES, WRITE_PIECE
from yeet.replica.write import partial

ALG = "blake2b"
MiB = 1 << 20


async def _open(tmp: Path) -> RemoteEndpoint:
    ep = RemoteEndpoint(SubprocessConnector(tmp / "agent-state"), notify=lambda _m: None)
    await ep.open(EndpointConfig("t", "beta", str(tmp / "beta"), create_root=True, digest=ALG))
    return ep


def _pieces(length: int) -> tuple[tuple[int, int], ...]:
    """The chunk journal of ``length`` bytes sent from offset 0: a record per piece,
    each made as the piece arrived."""
    return tuple((o, WRITE_PIECE) for o in range(0, length, WRITE_PIECE))


async def _finish(ep: RemoteEndpoint, handle: int, entry: Entry, data: bytes, at: int) -> None:
    """Send ``data`` from ``at`` on and commit the upload as big.bin."""
    await ep.stage_write(handle, at, data[at:])
    [result] = await ep.apply([Op("big.bin", None, entry, stage=handle)])
    assert result.ok, result


def test_a_stalled_upload_does_not_hold_back_the_sessions_calls(tmp_path: Path) -> None:
    big = os.urandom(48 * MiB)
    entry = file_entry(digest.of_bytes(ALG, big), len(big))

    async def scenario() -> None:
        ep = await _open(tmp_path)
        try:
            stage = await ep.stage_open("big.bin", entry)
            await ep.stage_write(stage.handle, 0, big[: 4 * MiB])
            assert await ep._settle_writes(stage.handle) is None
            channel = ep.bulk._channel
            assert isinstance(channel, ProcessChannel), "no bulk channel was opened"
            assert channel.proc.pid != ep._channel.proc.pid  # type: ignore[union-attr]
            os.kill(channel.proc.pid, signal.SIGSTOP)
            try:
                # chunks queue up behind the stopped bulk agent (as many as may be
                # in flight: a further stage_write would wait for them)
                for offset in range(4 * MiB, 4 * MiB + BULK_BYTES, 4 * MiB):
                    await ep.stage_write(stage.handle, offset, big[offset : offset + 4 * MiB])
                # ... and no more: what a lost link can cost is BULK_BYTES sent again
                at = 4 * MiB + BULK_BYTES
                more = asyncio.ensure_future(ep.stage_write(stage.handle, at, big[at : at + MiB]))
                await asyncio.sleep(0.5)
                assert not more.done(), f"over {BULK_BYTES} bytes went out unrecorded"
                small = b"small edit\n"
                op = Op("small.txt", None, file_entry(digest.of_bytes(ALG, small), len(small)))
                [result] = await asyncio.wait_for(
                    ep.apply([Op(op.path, None, op.new, data=small)]), 30
                )
                assert result.ok, result
                assert (tmp_path / "beta" / "small.txt").read_bytes() == small
                assert not (tmp_path / "beta" / "big.bin").exists()
            finally:
                os.kill(channel.proc.pid, signal.SIGCONT)
            await more
            for offset in range(5 * MiB + BULK_BYTES, len(big), 4 * MiB):
                await ep.stage_write(stage.handle, offset, big[offset : offset + 4 * MiB])
            [result] = await ep.apply([Op("big.bin", None, entry, stage=stage.handle)])
            assert result.ok, result
            assert (tmp_path / "beta" / "big.bin").read_bytes() == big
            assert ep.bulk.opened == 1
            assert ep._rpc is not None and ep._rpc.wire_sent < MiB, "chunks crossed the session"
            assert ep.wire()[0] > len(big)  # both channels are counted
        finally:
            await ep.close()

    asyncio.run(scenario())


def test_without_a_bulk_channel_uploads_share_the_session(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV, "0")
    settings.reload()
    data = os.urandom(6 * MiB)
    entry = file_entry(digest.of_bytes(ALG, data), len(data))

    async def scenario() -> None:
        ep = await _open(tmp_path)
        try:
            stage = await ep.stage_open("big.bin", entry)
            await ep.stage_write(stage.handle, 0, data)
            [result] = await ep.apply([Op("big.bin", None, entry, stage=stage.handle)])
            assert result.ok, result
            assert ep.bulk.opened == 0
            assert ep._rpc is not None and ep._rpc.wire_sent > len(data)
        finally:
            await ep.close()

    asyncio.run(scenario())
    assert (tmp_path / "beta" / "big.bin").read_bytes() == data


def test_chunks_the_bulk_agent_recorded_survive_it(tmp_path: Path) -> None:
    """The session's agent resumes from chunks the bulk agent recorded; a killed bulk
    agent is replaced for the next chunk."""
    data = os.urandom(16 * MiB)
    entry = file_entry(digest.of_bytes(ALG, data), len(data))

    async def scenario() -> None:
        ep = await _open(tmp_path)
        try:
            stage = await ep.stage_open("big.bin", entry)
            await ep.stage_write(stage.handle, 0, data[: 8 * MiB])
            assert await ep._settle_writes(stage.handle) is None
            await ep.stage_abort(stage.handle, keep=True)  # e.g. the session was stopped
            again = await ep.stage_open("big.bin", entry)
            assert again.have == _pieces(8 * MiB)  # recorded by the bulk agent
            channel = ep.bulk._channel
            assert isinstance(channel, ProcessChannel)
            channel.proc.kill()
            await channel.proc.wait()
            while ep.bulk._rpc is not None and ep.bulk._rpc.alive:
                await asyncio.sleep(0.01)
            await _finish(ep, again.handle, entry, data, 8 * MiB)
            assert ep.bulk.opened == 2
        finally:
            await ep.close()

    asyncio.run(scenario())
    assert (tmp_path / "beta" / "big.bin").read_bytes() == data


def test_a_stalled_download_does_not_hold_back_the_sessions_answers(tmp_path: Path) -> None:
    """Ranges of a large file read from a remote alpha come back on the bulk channel:
    with the bulk agent stopped mid-read, a small file is still read on the session's
    channel; the large file's bytes never cross the session's channel; a range of a
    file changed since its scan is refused on the bulk channel too."""
    alpha = tmp_path / "alpha"
    alpha.mkdir()
    big = os.urandom(24 * MiB)
    (alpha / "big.bin").write_bytes(big)
    (alpha / "small.txt").write_bytes(b"small\n")

    async def scenario() -> None:
        ep = RemoteEndpoint(SubprocessConnector(tmp_path / "agent-state"), notify=lambda _m: None)
        await ep.open(EndpointConfig("t", "alpha", str(alpha), digest=ALG))
        try:
            entries: dict[str, Entry] = {}
            async for batch in ep.scan():
                for _dir, listing in batch.listings:
                    entries.update(listing or {})
            first = await ep.read_range("big.bin", entries["big.bin"], 0, 4 * MiB)
            assert first == big[: 4 * MiB]
            channel = ep.bulk._channel
            assert isinstance(channel, ProcessChannel), "no bulk channel was opened"
            os.kill(channel.proc.pid, signal.SIGSTOP)
            try:
                # (beyond what the first read asked ahead for: 4, 8 and 12 MiB)
                reading = asyncio.ensure_future(
                    ep.read_range("big.bin", entries["big.bin"], 16 * MiB, 4 * MiB)
                )
                [small] = await asyncio.wait_for(
                    ep.read_files([ReadRequest("small.txt", entries["small.txt"])]), 30
                )
                assert small.data == b"small\n"
                assert not reading.done()
            finally:
                os.kill(channel.proc.pid, signal.SIGCONT)
            got = {0: first, 16 * MiB: await reading}
            for at in range(4 * MiB, len(big), 4 * MiB):
                if at not in got:
                    got[at] = await ep.read_range("big.bin", entries["big.bin"], at, 4 * MiB)
            assert b"".join(got[o] for o in sorted(got)) == big
            assert ep._rpc is not None and ep._rpc.wire_received < MiB, "ranges crossed the session"
            with open(alpha / "big.bin", "r+b") as f:  # changed after the scan
                f.write(b"changed")
            with pytest.raises(OSError, match="modified since the scan"):
                await ep.read_range("big.bin", entries["big.bin"], 4 * MiB, 4 * MiB)
            # forgotten: once a rescan vouches for the file again, it is checked anew
            assert ("big.bin", entries["big.bin"].digest) not in ep._sources
        finally:
            await ep.close()

    asyncio.run(scenario())


@pytest.mark.parametrize(
    "path",
    [
        "relative/stage/partial-x",
        "/tmp/stage/notpartial",
        "/tmp/stage/partial-x.chunks",
        "/tmp/other/partial-x",
    ],
)
def test_the_bulk_agent_writes_only_into_partial_uploads(path: str) -> None:
    with pytest.raises(ValueError, match="not a partial upload"):
        partial.attach(path, 1)
