"""FAILING (a yeet bug, found by test_kill9.py): stale stage handles after a reconnect.

Not collected by default (the name does not start with ``test_``); run it with
``python3 -m pytest vmtests/failing_stale_stage_handle.py``.

``RemoteEndpoint.apply`` (yeet/transport/remote.py) builds the ops it sends
(``wire``), translating each staged upload's local handle into the agent's handle
with ``_agent_handle``, *before* ``await self._client()``, which is where a lost
connection is re-established. When the agent died after the upload and before the
``apply`` (or while an earlier ``apply`` attempt was in flight), the translation
uses the old generation, the reconnect happens afterwards, and the *new* agent
receives the old agent's handle numbers:

* usually the new agent does not know the number, and answers with the problem
  "its staged upload was lost (connection reset?); it will be sent again" —
  but not ``transient`` (``yeet/transport/serve.py``, ``_check_op`` results are
  built as ``OpResult(op.path, False, problem)``), so the session does not make
  another pass: ``yeet sync`` ends with exit 1 ("problems") after a successful
  reconnect, and only the next run sends the file. Seen in ``test_kill9.py``
  (agent killed during the apply of a batch holding a large file);
* if the new agent already gave out the same number to another upload, the old
  op is applied with *that* upload's staging file ("it never aliases a new upload"
  is one of remote.py's stated invariants): the digest check refuses the commit,
  but the other upload's handle is consumed and that upload fails too.

The fix: translate handles after ``_client()`` returned (take ``rpc, _gen`` first,
then build ``wire``), so a reconnect turns every staged op of the old generation
into the transient "interrupted by a lost connection" result; and mark the agent's
lost-handle answer ``transient=True``.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from yeet import digest
from yeet.endpoint.api import EndpointConfig, Op
from yeet.engine.entries import file_entry
from yeet.transport.local_process import ProcessChannel, SubprocessConnector
from yeet.transport.remote import RemoteEndpoint

ALG = "blake2b"


async def _open(tmp: Path) -> tuple[RemoteEndpoint, list[str]]:
    notes: list[str] = []
    ep = RemoteEndpoint(SubprocessConnector(tmp / "agent-state"), notify=notes.append)
    config = EndpointConfig("t", "beta", str(tmp / "beta"), create_root=True, digest=ALG)
    await ep.open(config)
    return ep, notes


async def _kill_agent(ep: RemoteEndpoint) -> None:
    """SIGKILL the agent process and wait until the client has noticed the loss."""
    channel = ep._channel
    assert isinstance(channel, ProcessChannel)
    channel.proc.kill()
    await channel.proc.wait()
    for _ in range(500):
        if ep._rpc is None or not ep._rpc.alive:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the client never noticed that its agent died")


def test_upload_lost_with_its_agent_is_a_transient_problem(tmp_path: Path) -> None:
    async def scenario() -> None:
        ep, notes = await _open(tmp_path)
        try:
            data = os.urandom(3 << 20)
            entry = file_entry(digest.of_bytes(ALG, data), len(data))
            stage = await ep.stage_open("big.bin", entry)
            await ep.stage_write(stage.handle, 0, data)
            assert await ep._settle_writes(stage.handle) is None  # the upload arrived
            await _kill_agent(ep)
            [result] = await ep.apply([Op("big.bin", None, entry, stage=stage.handle)])
            assert not result.ok
            assert ep.reconnects == 1, notes
            # "sent again by the next pass" needs a transient problem:
            assert result.transient, f"not transient: {result.problem!r}"
        finally:
            await ep.close()

    asyncio.run(scenario())


def test_a_stale_handle_never_aliases_a_new_upload(tmp_path: Path) -> None:
    async def scenario() -> None:
        ep, notes = await _open(tmp_path)
        try:
            data = os.urandom(3 << 20)
            entry = file_entry(digest.of_bytes(ALG, data), len(data))
            stage = await ep.stage_open("big.bin", entry)
            await ep.stage_write(stage.handle, 0, data)
            assert await ep._settle_writes(stage.handle) is None  # the upload arrived
            await _kill_agent(ep)
            # Another upload starts (and reconnects) while the first one is applied.
            other = os.urandom(2 << 20)
            other_entry = file_entry(digest.of_bytes(ALG, other), len(other))
            opening = asyncio.create_task(ep.stage_open("other.bin", other_entry))
            await asyncio.sleep(0)
            applying = asyncio.create_task(
                ep.apply([Op("big.bin", None, entry, stage=stage.handle)])
            )
            other_stage = await opening
            [first] = await applying
            assert ep.reconnects == 1, notes
            assert not first.ok and first.transient, first
            # The new upload is untouched by the stale op: it completes.
            await ep.stage_write(other_stage.handle, 0, other)
            [second] = await ep.apply([Op("other.bin", None, other_entry, stage=other_stage.handle)])
            assert second.ok, f"the new upload was spoiled by the stale op: {second.problem!r}"
            assert (tmp_path / "beta" / "other.bin").read_bytes() == other
        finally:
            await ep.close()

    asyncio.run(scenario())
