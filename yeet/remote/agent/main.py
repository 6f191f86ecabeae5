"""``yeet agent``: the remote end of a session, speaking the protocol on stdin/stdout.

Invariants owned here:

* It runs on any CPython 3.9+ with only the standard library: before anything
  imports ``msgspec``, the stand-in (``yeet.compat.msgspec_lite``) is installed
  if, and only if, the real one is missing; zstandard and blake3 are optional
  and negotiated away at the hello.
* The protocol owns file descriptor 1: the agent keeps a private copy of it and
  points fd 1 at stderr, so a stray ``print`` can never corrupt the stream.
* It exits when its input ends (the client went away or the link dropped),
  after calls in progress have finished or been cancelled.

Usage: ``yeet agent [--state DIR]`` (``DIR``: keep this side's state there
instead of under ``$XDG_STATE_HOME/yeet/agent/``).
"""

from __future__ import annotations

import os
import sys

MIN_PYTHON = (3, 9)


def _parse(argv: list[str]) -> str | None:
    state: str | None = None
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg == "--state" and args:
            state = args.pop(0)
        elif arg.startswith("--state="):
            state = arg.split("=", 1)[1]
        elif arg in ("-h", "--help"):
            print(__doc__, file=sys.stderr)
            raise SystemExit(0)
        else:
            print(f"yeet agent: unexpected argument {arg!r}", file=sys.stderr)
            raise SystemExit(2)
    return state


def _widen_pipes(*fds: int) -> None:
    """Bigger pipe buffers (Linux): far fewer wake-ups per megabyte moved."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on Unix
        return
    setsize = getattr(fcntl, "F_SETPIPE_SZ", 1031)
    for fd in fds:
        try:
            fcntl.fcntl(fd, setsize, 1 << 20)
        except OSError:
            pass  # not a pipe, or above the system's limit: keep the default


def main(argv: list[str] | None = None) -> int:
    if sys.version_info < MIN_PYTHON:
        print(
            f"yeet agent: needs Python {MIN_PYTHON[0]}.{MIN_PYTHON[1]} or newer, "
            f"this is {sys.version.split()[0]}",
            file=sys.stderr,
        )
        return 1
    state = _parse(list(sys.argv[1:] if argv is None else argv))

    from yeet.compat import install_msgspec_fallback

    install_msgspec_fallback()

    import asyncio
    from pathlib import Path

    from yeet.remote.agent.endpoint import AgentEndpoint
    from yeet.remote.agent.serve import AgentServer

    proto_out = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    _widen_pipes(0, proto_out)

    async def run() -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=1 << 20)
        await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(0, "rb", buffering=0)
        )
        transport, protocol = await loop.connect_write_pipe(
            asyncio.streams.FlowControlMixin, os.fdopen(proto_out, "wb", buffering=0)
        )
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        endpoint = AgentEndpoint(Path(state) if state else None)
        try:
            await AgentServer(reader, writer, endpoint).run()
        finally:
            transport.close()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
