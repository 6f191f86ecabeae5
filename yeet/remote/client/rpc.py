"""Calls to an agent over one byte-stream pair, many in flight at once.

Invariants owned here:

* One reader task owns the incoming stream and routes every answer to the
  call that awaits it; writes are whole frames, so concurrent calls never
  interleave bytes. Answers arrive in any order (multiplexing).
* A stream is read with a bounded window: credit is granted back as items are
  consumed, so an agent can never run ahead by more than ``STREAM_WINDOW``.
* When the link fails, every waiting call fails at once with ``ConnectionLost``
  (an ``OSError``: per-file code treats it as a transient problem, the
  endpoint above may reconnect); a protocol violation fails them with the
  ``ProtocolError`` instead, and the link is not used again.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol

from yeet import __version__
from yeet.contract.calls import ENDPOINT
from yeet.model import digest as digests
from yeet.model.errors import ProtocolError
from yeet.protocol import codec
from yeet.protocol.connection import (
    STREAM_WINDOW,
    BannerReceived,
    ClientConnection,
    EndReceived,
    ErrorReceived,
    Event,
    ItemReceived,
    ResultReceived,
    WelcomeReceived,
)
from yeet.protocol.messages import Welcome
from yeet.remote.faults import exception_of

READ_SIZE = 1 << 20


class ByteReader(Protocol):
    async def read(self, n: int = -1) -> bytes: ...


class ByteWriter(Protocol):
    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...

    def close(self) -> None: ...


class ConnectionLost(ConnectionError):
    """The link to the agent broke; what was in flight has an unknown outcome."""

    def __init__(self, where: str, detail: str = "") -> None:
        super().__init__(
            errno.ECONNRESET, f"connection to {where} lost" + (f": {detail}" if detail else "")
        )


_END = object()


def retrieve(fut: asyncio.Future[Any]) -> None:
    """A done-callback: fetch a future's exception, so a failure nobody awaited any
    more is not reported as "never retrieved"."""
    if not fut.cancelled():
        fut.exception()


class RpcClient:
    def __init__(
        self,
        reader: ByteReader,
        writer: ByteWriter,
        where: str,
        *,
        compression: Sequence[str] | None = None,
        noise_limit: int | None = None,
        stderr_tail: Any = None,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.where = where
        self.conn = ClientConnection(__version__, ENDPOINT, noise_limit=noise_limit)
        self.compression = tuple(compression) if compression is not None else codec.available()
        self.welcome: Welcome | None = None
        self.stderr_tail = stderr_tail
        self._futures: dict[int, asyncio.Future[Any]] = {}
        self._streams: dict[int, asyncio.Queue[Any]] = {}
        self._failure: BaseException | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._drain_lock = asyncio.Lock()
        self.wire_sent = 0  # bytes written to / read from the channel (frames, compressed)
        self.wire_received = 0

    @property
    def alive(self) -> bool:
        return self._failure is None

    # -- setting up ---------------------------------------------------------------------

    async def start(self) -> Welcome:
        """Skip to the banner, say hello, get the welcome; then serve calls."""
        banner = await self._until(BannerReceived)
        assert isinstance(banner, BannerReceived)
        await self._send(self.conn.hello(self.compression, digests.available()))
        welcome = await self._until(WelcomeReceived)
        assert isinstance(welcome, WelcomeReceived)
        self.welcome = welcome.welcome
        self._reader_task = asyncio.ensure_future(self._read_loop())
        return self.welcome

    async def _until(self, kind: type) -> Event:
        while True:
            event = self.conn.next_event()
            if event is not None:
                if isinstance(event, ErrorReceived):
                    raise ProtocolError(
                        f"the agent on {self.where} refused the connection: {event.fault.message}",
                        hint=event.fault.hint,
                    )
                if not isinstance(event, kind):
                    raise ProtocolError(f"unexpected {type(event).__name__} during the handshake")
                return event
            try:
                data = await self.reader.read(READ_SIZE)
                self.wire_received += len(data)
            except (ConnectionError, OSError) as err:
                raise ConnectionLost(self.where, str(err)) from None
            if not data:
                eof = self.conn.eof_error()
                tail = await self._stderr()
                if tail:
                    eof = ProtocolError(f"{eof} (its error output: {tail})", hint=eof.hint)
                raise eof
            self.conn.receive_data(data)

    async def _stderr(self) -> str:
        if self.stderr_tail is None:
            return ""
        text: str = await self.stderr_tail()
        return text.strip()

    # -- the reader ---------------------------------------------------------------------

    async def _read_loop(self) -> None:
        try:
            while True:
                data = await self.reader.read(READ_SIZE)
                self.wire_received += len(data)
                if not data:
                    raise ConnectionLost(self.where, "the agent's output ended")
                self.conn.receive_data(data)
                while (event := self.conn.next_event()) is not None:
                    self._route(event)
        except asyncio.CancelledError:
            self._fail_all(ConnectionLost(self.where, "closed"))
            raise
        except ProtocolError as err:
            self._fail_all(err)
        except (ConnectionError, OSError) as err:
            self._fail_all(
                err if isinstance(err, ConnectionLost) else ConnectionLost(self.where, str(err))
            )
        except Exception as err:  # a bug here must not leave calls hanging forever
            if type(err).__module__.startswith("asyncssh"):
                # asyncssh's ConnectionLost/DisconnectError are not ConnectionErrors
                self._fail_all(ConnectionLost(self.where, str(err)))
            else:
                self._fail_all(err)

    def _route(self, event: Event) -> None:
        if isinstance(event, ResultReceived):
            fut = self._futures.pop(event.call, None)
            if fut is not None and not fut.done():
                fut.set_result(event.value)
        elif isinstance(event, ItemReceived):
            queue = self._streams.get(event.call)
            if queue is not None:
                queue.put_nowait(event.value)
        elif isinstance(event, EndReceived):
            queue = self._streams.pop(event.call, None)
            if queue is not None:
                queue.put_nowait(_END)
        elif isinstance(event, ErrorReceived):
            if event.call == 0:
                raise ProtocolError(
                    f"the agent on {self.where} gave up on the connection: {event.fault.message}",
                    local=True,
                    hint=event.fault.hint,
                )
            exc = exception_of(event.fault, self.where)
            fut = self._futures.pop(event.call, None)
            if fut is not None and not fut.done():
                fut.set_exception(exc)
            queue = self._streams.pop(event.call, None)
            if queue is not None:
                queue.put_nowait(exc)

    def _fail_all(self, err: BaseException) -> None:
        if self._failure is None:
            self._failure = err
        for fut in self._futures.values():
            if not fut.done():
                fut.set_exception(err)
        for queue in self._streams.values():
            queue.put_nowait(err)
        self._futures.clear()
        self._streams.clear()
        self.conn.close()
        with contextlib.suppress(Exception):
            self.writer.close()

    # -- sending ------------------------------------------------------------------------

    async def _send(self, data: bytes) -> None:
        if not data:
            return
        if self._failure is not None:
            raise self._failure
        try:
            self.writer.write(data)
            self.wire_sent += len(data)
            async with self._drain_lock:
                await self.writer.drain()
        except Exception as err:
            # asyncssh's ConnectionLost/DisconnectError are not ConnectionErrors
            if not isinstance(err, OSError) and not type(err).__module__.startswith("asyncssh"):
                raise
            lost = err if isinstance(err, ConnectionLost) else ConnectionLost(self.where, str(err))
            self._fail_all(lost)
            raise lost from None

    def _check(self) -> None:
        if self._failure is not None:
            raise self._failure

    async def call(self, name: str, *args: Any) -> Any:
        self._check()
        call, data = self.conn.call(name, args)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        fut.add_done_callback(retrieve)  # its waiter may be gone (cancelled) when it fails
        self._futures[call] = fut
        await self._send(data)
        try:
            return await fut
        except asyncio.CancelledError:
            if self._failure is None:
                with contextlib.suppress(Exception):
                    await self._send(self.conn.cancel(call))
            raise

    async def stream(self, name: str, *args: Any) -> AsyncIterator[Any]:
        self._check()
        call, data = self.conn.call(name, args)
        queue: asyncio.Queue[Any] = asyncio.Queue()
        self._streams[call] = queue
        await self._send(data)
        finished = False
        consumed = 0
        try:
            while True:
                item = await queue.get()
                if item is _END:
                    finished = True
                    return
                if isinstance(item, BaseException):
                    finished = True
                    raise item
                yield item
                consumed += 1
                if consumed >= STREAM_WINDOW // 2:
                    await self._send(self.conn.credit(call, consumed))
                    consumed = 0
        finally:
            if not finished and self._failure is None:
                with contextlib.suppress(Exception):
                    await self._send(self.conn.cancel(call))

    async def aclose(self) -> None:
        if self._reader_task is not None:
            self._reader_task.cancel()
            with contextlib.suppress(BaseException):
                await self._reader_task
        self._fail_all(ConnectionLost(self.where, "closed"))
