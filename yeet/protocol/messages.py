"""The messages of the handshake and of failures, as wire values.

Invariant owned here: these structs are encoded as msgpack maps (named fields),
so either end may add optional fields without breaking the other; everything
else on the wire is typed by the method table (``yeet.contract.calls``).
"""

from __future__ import annotations

import msgspec


class Hello(msgspec.Struct, frozen=True):
    """The client's first frame: what it speaks and what it can do."""

    protocol: int
    version: str
    methods: tuple[str, ...]
    compression: tuple[str, ...]
    digests: tuple[str, ...]
    max_frame: int


class Welcome(msgspec.Struct, frozen=True):
    """The agent's answer: the compression chosen for the whole session, its digests."""

    protocol: int
    version: str
    compression: str
    digests: tuple[str, ...]
    max_frame: int
    host: str = ""
    python: str = ""
    stand_ins: tuple[str, ...] = ()


class Fault(msgspec.Struct, frozen=True):
    """Why a call failed (or, for call 0, why the agent gives up on the connection)."""

    kind: str  # an error class name: EndpointError, FileChangedError, OSError, ...
    message: str
    hint: str | None = None
    errno: int | None = None
