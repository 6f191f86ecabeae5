"""``yeet agent``'s serving loop: one ``LocalEndpoint`` behind the protocol, on two pipes.

Invariants owned here:

* Every call runs as its own task, so calls overlap as they do in-process; a
  stream sends an item only against credit; every call gets exactly one final
  message, also when it fails or is cancelled.
* Nothing from the wire is trusted: a frame is decoded against the call's own
  types (``yeet.contract.calls``), its arguments are checked by
  ``yeet.remote.agent.endpoint.AgentEndpoint`` before they reach the root, and a
  malformed frame ends the connection with a ``ProtocolError`` sent to the
  client, never with a crash.
"""

from __future__ import annotations

import asyncio
import functools
import socket
import sys
from typing import Any

from yeet import __version__
from yeet.contract.calls import ENDPOINT
from yeet.model import digest
from yeet.model.errors import ProtocolError, YeetError
from yeet.model.paths import BadPath
from yeet.protocol import codec
from yeet.protocol.connection import (
    AgentConnection,
    CallReceived,
    CancelReceived,
    CreditReceived,
    HelloReceived,
    State,
)
from yeet.protocol.messages import Fault
from yeet.remote.agent.endpoint import AgentEndpoint
from yeet.remote.faults import fault_of

READ_SIZE = 1 << 20


class AgentServer:
    """Serves one connection: reads calls from ``reader``, writes answers to ``writer``."""

    def __init__(self, reader: Any, writer: Any, endpoint: AgentEndpoint) -> None:
        self.reader = reader
        self.writer = writer
        self.endpoint = endpoint
        self.conn = AgentConnection(__version__, ENDPOINT)
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._credit: dict[int, asyncio.Event] = {}
        self._write_lock = asyncio.Lock()
        self._closing = False

    async def _send(self, data: bytes) -> None:
        if not data or self._closing:
            return
        try:
            self.writer.write(data)
            async with self._write_lock:
                await self.writer.drain()
        except (ConnectionError, OSError):
            self._closing = True

    async def run(self) -> None:
        caps = list(digest.available()) + list(codec.available())
        await self._send(self.conn.banner(caps))
        try:
            while True:
                data = await self.reader.read(READ_SIZE)
                if not data:
                    break
                self.conn.receive_data(data)
                while True:
                    event = self.conn.next_event()
                    if event is None:
                        break
                    await self._dispatch(event)
        except ProtocolError as err:
            await self._send(self.conn.fatal(Fault("ProtocolError", str(err), err.hint)))
        finally:
            self._closing = True
            for task in self._tasks.values():
                task.cancel()
            if self._tasks:
                await asyncio.gather(*self._tasks.values(), return_exceptions=True)
            await self.endpoint.close()

    async def _dispatch(self, event: Any) -> None:
        if isinstance(event, HelloReceived):
            await self._send(
                self.conn.welcome(
                    digest.available(),
                    host=socket.gethostname(),
                    python=sys.version.split()[0],
                    stand_ins=_stand_ins(),
                )
            )
        elif isinstance(event, CallReceived):
            if event.method.stream:
                self._credit[event.call] = asyncio.Event()
                self._credit[event.call].set()
            task = asyncio.ensure_future(self._serve(event))
            self._tasks[event.call] = task
            task.add_done_callback(functools.partial(self._done, event.call))
        elif isinstance(event, CancelReceived):
            running = self._tasks.get(event.call)
            if running is not None:
                running.cancel()
        elif isinstance(event, CreditReceived):
            ev = self._credit.get(event.call)
            if ev is not None:
                ev.set()

    def _done(self, call: int, _task: object = None) -> None:
        self._tasks.pop(call, None)
        self._credit.pop(call, None)

    async def _serve(self, event: CallReceived) -> None:
        call, method = event.call, event.method
        try:
            func = getattr(self.endpoint, method.name)
            if method.stream:
                stream = func(*event.args)
                try:
                    async for item in stream:
                        while self.conn.credit_left(call) <= 0:
                            ev = self._credit[call]
                            ev.clear()
                            await ev.wait()
                        await self._send(self.conn.item(call, item))
                finally:
                    await stream.aclose()
                await self._send(self.conn.end(call))
            else:
                value = await func(*event.args)
                await self._send(self.conn.result(call, value))
        except asyncio.CancelledError:
            if not self._closing and self.conn.is_open(call):
                await self._send(self.conn.error(call, Fault("Cancelled", "cancelled")))
        except ProtocolError as err:  # e.g. an answer too large for one frame
            if self.conn.is_open(call) and self.conn.state is State.READY:
                await self._send(self.conn.error(call, fault_of(err)))
        except Exception as err:
            if not isinstance(err, (OSError, BadPath, YeetError)):
                import traceback

                traceback.print_exc(file=sys.stderr)
            if self.conn.is_open(call) and not self._closing:
                await self._send(self.conn.error(call, fault_of(err)))


def _stand_ins() -> tuple[str, ...]:
    msgspec = sys.modules.get("msgspec")
    out = []
    if msgspec is not None and msgspec.__name__.startswith("yeet."):
        out.append("msgspec")
    if "zstd" not in codec.available():
        out.append("zstandard")
    if "blake3" not in digest.available():
        out.append("blake3")
    from yeet.delta.chunking import available

    if not available():
        out.append("pyfastcdc")
    return tuple(out)
