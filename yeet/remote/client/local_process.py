"""A local side served by its own process: ``python -m yeet agent`` over pipes.

Invariant owned here: each channel is a fresh agent process whose only links to
us are its three pipes; closing the channel closes its input (the agent
finishes what it was doing and exits) and reaps it, killing it only if it does
not exit in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from pathlib import Path

from yeet.remote.client.channel import StderrTail
from yeet.remote.client.rpc import ByteReader, ByteWriter, ConnectionLost

EXIT_WAIT = 30.0


def _widen(*streams: object) -> None:
    """Bigger pipe buffers (Linux): far fewer wake-ups per megabyte moved."""
    import fcntl

    setsize = getattr(fcntl, "F_SETPIPE_SZ", 1031)
    for stream in streams:
        transport = getattr(stream, "transport", None) or getattr(stream, "_transport", None)
        pipe = transport.get_extra_info("pipe") if transport is not None else None
        if pipe is not None:
            with contextlib.suppress(OSError):
                fcntl.fcntl(pipe.fileno(), setsize, 1 << 20)


class ProcessChannel:
    def __init__(self, proc: asyncio.subprocess.Process, label: str) -> None:
        self.proc = proc
        assert proc.stdout is not None and proc.stdin is not None and proc.stderr is not None
        self.reader: ByteReader = proc.stdout
        self.writer: ByteWriter = proc.stdin
        self._stderr = StderrTail(proc.stderr, label)
        _widen(proc.stdin, proc.stdout)

    async def stderr_tail(self) -> str:
        await self._stderr.finished()
        return self._stderr.text()

    async def aclose(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()
        try:
            await asyncio.wait_for(self.proc.wait(), EXIT_WAIT)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()
        await self._stderr.aclose()

    async def terminate(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        await self.proc.wait()
        await self._stderr.aclose()


class SubprocessConnector:
    """Starts ``python -m yeet agent`` locally (``state_dir``: where its state goes)."""

    def __init__(
        self,
        state_dir: Path | None = None,
        python: str = sys.executable,
        env: dict[str, str] | None = None,
    ) -> None:
        self.state_dir = state_dir
        self.python = python
        self.env = env
        self.where = "a local agent process"

    async def open_channel(self) -> ProcessChannel:
        args = [self.python, "-m", "yeet", "agent"]
        if self.state_dir is not None:
            args += ["--state", os.fspath(self.state_dir)]
        try:
            proc = await asyncio.create_subprocess_exec(
                *args,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=self.env,
            )
        except OSError as err:
            raise ConnectionLost(self.where, f"cannot start {self.python}: {err}") from None
        return ProcessChannel(proc, "agent")

    def sibling(self) -> SubprocessConnector:
        return self  # every channel is a process of its own

    async def aclose(self) -> None:
        pass
