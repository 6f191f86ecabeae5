"""Optional transport through the OpenSSH client binary (``YEET_SSH=openssh``).

Why it exists: asyncssh encrypts in Python, which caps bulk throughput near
100 MB/s on a small machine, while OpenSSH's ``ssh`` does several hundred. With
``YEET_SSH=openssh`` (and an ``ssh`` on PATH) the agent's byte stream runs
through ``ssh`` instead; everything above the byte stream is unchanged.

Invariants owned here: ``ssh`` runs with ``BatchMode=yes`` and
``StrictHostKeyChecking=yes``, so an unknown or changed host key is refused
(OpenSSH's own message, naming the known_hosts line, becomes the error), never
accepted and never asked about; jump hosts go to ``-J``. The agent is started,
and uploaded when missing, exactly as by the asyncssh transport.
"""

from __future__ import annotations

import asyncio
import os
import shutil

from yeet.model.errors import EndpointError
from yeet.protocol.banner import MAGIC, NOISE_LIMIT
from yeet.remote.client import zipapp
from yeet.remote.client.local_process import ProcessChannel
from yeet.remote.client.rpc import ConnectionLost
from yeet.remote.client.ssh import UPLOAD_MARK, SshTarget, agent_command, upload_command

_HOST_KEY_SIGNS = ("Host key verification failed", "REMOTE HOST IDENTIFICATION HAS CHANGED")


class OpenSshConnector:
    def __init__(self, target: SshTarget, ssh: str | None = None) -> None:
        self.target = target
        self.ssh = ssh or shutil.which("ssh") or "ssh"
        self.where = target.describe()
        self.uploads = 0

    def _args(self, command: str) -> list[str]:
        t = self.target
        args = [self.ssh, "-T", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"]
        config = os.path.join(os.path.expanduser("~"), ".ssh", "config")
        if os.path.exists(config):  # ssh reads the passwd home's; follow $HOME as asyncssh does
            args += ["-F", config]
        args += ["-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=4"]
        if t.port:
            args += ["-p", str(t.port)]
        if t.user:
            args += ["-l", t.user]
        if t.via:
            args += ["-J", ",".join(t.via)]
        return [*args, "--", t.host, command]

    def sibling(self) -> OpenSshConnector:
        return self  # every channel is an ssh process (a connection) of its own

    async def aclose(self) -> None:
        pass

    async def open_channel(self) -> ProcessChannel:
        payload, tag = zipapp.build()
        for _attempt in range(2):
            try:
                proc = await asyncio.create_subprocess_exec(
                    *self._args(agent_command(self.target.python, tag)),
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                )
            except OSError as err:
                raise EndpointError(f"cannot run {self.ssh}: {err}") from None
            channel = ProcessChannel(proc, self.target.host)
            head = b""
            assert proc.stdout is not None
            while MAGIC not in head and len(head) <= NOISE_LIMIT:
                data = await proc.stdout.read(1 << 16)
                if not data:
                    break
                head += data
                if UPLOAD_MARK in head.split(b"\n")[:-1]:
                    break
            if UPLOAD_MARK not in head.split(b"\n")[:-1]:
                if MAGIC not in head:
                    await self._check_refused(channel)
                channel.reader = _Prefixed(head, proc.stdout)
                return channel
            await channel.aclose()
            await self._upload(payload, tag)
        raise EndpointError(f"{self.where}: the uploaded yeet agent does not start")

    async def _check_refused(self, channel: ProcessChannel) -> None:
        """ssh gave up before the agent started: a refusal is an EndpointError."""
        await channel.proc.wait()
        text = (await channel.stderr_tail()).strip()
        if channel.proc.returncode == 255:
            if any(sign in text for sign in _HOST_KEY_SIGNS):
                raise EndpointError(
                    f"{self.where}: ssh refused the host key; nothing was synchronised: {text}",
                    hint="check the host key (ssh-keygen -R HOST removes a stale one)",
                )
            raise ConnectionLost(self.where, text or "ssh failed")

    async def _upload(self, payload: bytes, tag: str) -> None:
        proc = await asyncio.create_subprocess_exec(
            *self._args(upload_command(tag)),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        _out, err = await proc.communicate(payload)
        if proc.returncode != 0:
            raise EndpointError(
                f"{self.where}: cannot install the yeet agent: {err.decode(errors='replace')}"
            )
        self.uploads += 1


class _Prefixed:
    def __init__(self, head: bytes, reader: asyncio.StreamReader) -> None:
        self.head = head
        self.reader = reader

    async def read(self, n: int = -1) -> bytes:
        if self.head:
            data, self.head = self.head, b""
            return data
        return await self.reader.read(n)
