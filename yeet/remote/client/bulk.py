"""The bulk channel: large files' bytes on a second channel to a second agent.

Invariants owned here:

* The session's channel never carries the chunks of a resumable upload, nor the
  ranges of a large download, while a bulk channel works: a call (a scan, a
  small file, a rename) and its answer never wait behind chunks already queued
  for or by the agent (head-of-line blocking, in both directions).
* The bulk agent opens no session and holds no lock: it only writes chunks, each
  made durable and recorded in the upload's chunk journal, into a partial upload
  that the session's agent opened (``StageInfo.partial``). The session's agent
  still reads the whole file, checks its digest and commits it; a chunk the bulk
  agent recorded is as good as one it recorded itself (resume works across both).
* The bulk agent reads only files that the session's agent checked against the
  entry being sent (``read_open``: root, path and stat signature), inside that
  root, and only while the file still has that signature.
* A host that refuses a second channel costs nothing but speed: the link is
  switched off for the endpoint (said once) and chunks go on the session's
  channel as before. A bulk link lost mid-upload fails that upload's chunk (a
  transient problem: the next pass resumes from the chunks recorded) and is
  opened again for the next chunk.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import cast

from yeet.contract.values import ReadSource
from yeet.model.errors import YeetError
from yeet.model.settings import environment
from yeet.remote.client.channel import Channel, Connector, drop_link
from yeet.remote.client.rpc import ConnectionLost, RpcClient, retrieve

ENV = "YEET_BULK_CHANNEL"
"""``0``: send uploads on the session's channel (no second channel)."""


class BulkLink:
    def __init__(self, connector: Connector, notify: Callable[[str], None]) -> None:
        self.connector = connector
        self.where = connector.where
        self.notify = notify
        self.enabled = environment().bulk_channel
        self.opened = 0  # bulk channels opened so far
        self._rpc: RpcClient | None = None
        self._channel: Channel | None = None
        self._lock = asyncio.Lock()
        self._handles: dict[str, asyncio.Future[int]] = {}  # partial path -> bulk handle
        self._closing: set[asyncio.Task[None]] = set()
        self._wire = [0, 0]

    async def write(self, path: str, size: int, offset: int, data: bytes) -> bool:
        """Write a chunk of the partial upload at ``path``; False when there is no
        bulk channel (send it on the session's channel instead)."""
        rpc = await self._client()
        if rpc is None:
            return False
        fut = self._handles.get(path)
        if fut is None:
            fut = asyncio.ensure_future(rpc.call("bulk_open", path, size))
            fut.add_done_callback(retrieve)
            self._handles[path] = fut
        try:
            handle = await asyncio.shield(fut)
            await rpc.call("bulk_write", handle, offset, data)
        except ConnectionLost:
            await self._lost(rpc)
            raise
        except Exception:
            if fut.done() and not fut.cancelled() and fut.exception() is not None:
                self._handles.pop(path, None)  # e.g. the partial is gone: open it again
            raise
        return True

    async def read(self, source: ReadSource, offset: int, length: int) -> bytes | None:
        """A range of a file that the session's agent checked (``read_open``); None
        when there is no bulk channel (read it on the session's channel instead)."""
        rpc = await self._client()
        if rpc is None:
            return None
        try:
            return cast(bytes, await rpc.call("bulk_read", source, offset, length))
        except ConnectionLost:
            await self._lost(rpc)
            raise

    def done(self, path: str) -> None:
        """The upload at ``path`` is committed or dropped: let the bulk agent close it."""
        fut = self._handles.pop(path, None)
        rpc = self._rpc
        if fut is None or rpc is None or not rpc.alive:
            return
        if fut.done() and not fut.cancelled() and fut.exception() is None:
            task = asyncio.ensure_future(self._close_handle(rpc, fut.result()))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    @staticmethod
    async def _close_handle(rpc: RpcClient, handle: int) -> None:
        with contextlib.suppress(ConnectionLost, YeetError, OSError):
            await rpc.call("bulk_close", handle)

    def wire(self) -> tuple[int, int]:
        sent, received = self._wire
        if self._rpc is not None:
            sent += self._rpc.wire_sent
            received += self._rpc.wire_received
        return sent, received

    async def _client(self) -> RpcClient | None:
        if not self.enabled:
            return None
        rpc = self._rpc
        if rpc is not None and rpc.alive:
            return rpc
        async with self._lock:
            if not self.enabled:
                return None
            if self._rpc is not None and self._rpc.alive:
                return self._rpc
            await self._drop()
            try:
                channel = await self.connector.open_channel()
            except YeetError as err:  # refused (not worth retrying): no bulk channel
                self.enabled = False
                self.notify(f"no second channel to {self.where} ({err}); uploads share one")
                return None
            rpc = RpcClient(
                channel.reader, channel.writer, self.where, stderr_tail=channel.stderr_tail
            )
            try:
                await rpc.start()
            except BaseException as err:
                await rpc.aclose()
                with contextlib.suppress(Exception):
                    await channel.aclose()
                if isinstance(err, YeetError):
                    self.enabled = False
                    self.notify(f"no bulk agent on {self.where} ({err}); uploads share one channel")
                    return None
                raise
            self._rpc, self._channel = rpc, channel
            self.opened += 1
            return rpc

    async def _lost(self, rpc: RpcClient) -> None:
        async with self._lock:
            if self._rpc is rpc:
                await self._drop()

    async def _drop(self) -> None:
        rpc, self._rpc = self._rpc, None
        channel, self._channel = self._channel, None
        self._handles.clear()  # they belonged to that agent
        # not politely: every chunk the bulk agent recorded is durable, one it was
        # writing is simply not recorded (sent again on resume)
        await drop_link(rpc, channel, self._wire, polite=False)

    async def aclose(self) -> None:
        for task in list(self._closing):
            task.cancel()
        await asyncio.gather(*self._closing, return_exceptions=True)
        async with self._lock:
            self.enabled = False
            await self._drop()
        await self.connector.aclose()
