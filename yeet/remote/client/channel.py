"""What a transport hands to an endpoint: one byte-stream pair to a running agent.

Invariant owned here: a ``Connector`` either returns a fresh channel to a newly
started agent or raises: ``ConnectionLost`` (worth retrying: the host may be
back soon) or a ``YeetError`` (not worth retrying: refused host key, failed
authentication, no usable python). A channel keeps the tail of the agent's
error output so failures can say what the agent said.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from typing import Any, Protocol

from yeet.model.settings import environment
from yeet.remote.client.rpc import ByteReader, ByteWriter, RpcClient

STDERR_TAIL = 8 << 10


class Channel(Protocol):
    reader: ByteReader
    writer: ByteWriter

    async def stderr_tail(self) -> str: ...

    async def aclose(self) -> None:
        """Say goodbye: end the input, let the agent finish its calls and exit."""
        ...

    async def terminate(self) -> None:
        """Stop the agent now, whatever it was doing (it must be safe to cut off)."""
        ...


class Connector(Protocol):
    where: str

    async def open_channel(self) -> Channel: ...

    def sibling(self) -> Connector:
        """A connector to the same host whose channels do not share this one's
        connection (a bulk channel's bytes never queue in front of its calls);
        ``aclose`` of either closes only what it opened."""
        ...

    async def aclose(self) -> None: ...


class StderrTail:
    """Reads an agent's error output: keeps its tail, echoes it when ``YEET_DEBUG`` is set."""

    def __init__(self, reader: Any, label: str) -> None:
        self.label = label
        self.buf = bytearray()
        self.echo = environment().debug
        self.task = asyncio.ensure_future(self._pump(reader))

    async def _pump(self, reader: Any) -> None:
        with contextlib.suppress(Exception):
            while True:
                data = await reader.read(1 << 16)
                if not data:
                    return
                if isinstance(data, str):
                    data = data.encode()
                if self.echo:
                    for line in data.decode("utf-8", "replace").splitlines():
                        print(f"[{self.label}] {line}", file=sys.stderr)
                self.buf += data
                if len(self.buf) > STDERR_TAIL:
                    del self.buf[: len(self.buf) - STDERR_TAIL]

    async def finished(self, timeout: float = 0.5) -> None:
        """Wait (briefly) until the agent's error output has ended."""
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(asyncio.shield(self.task), timeout)

    def text(self) -> str:
        return bytes(self.buf).decode("utf-8", "replace")

    async def aclose(self) -> None:
        self.task.cancel()
        with contextlib.suppress(BaseException):
            await self.task


async def drop_link(
    rpc: RpcClient | None, channel: Channel | None, wire: list[int], *, polite: bool
) -> None:
    """Close a link: add its bytes to ``wire`` ([sent, received]), stop its reader,
    then close its channel, ``polite``ly (the agent finishes its calls) or at once."""
    if rpc is not None:
        wire[0] += rpc.wire_sent
        wire[1] += rpc.wire_received
        await rpc.aclose()
    if channel is not None:
        with contextlib.suppress(Exception):
            await (channel.aclose() if polite else channel.terminate())
