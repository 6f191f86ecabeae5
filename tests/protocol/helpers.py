"""Building connections in every state, and valid frames of every kind."""

from __future__ import annotations

from typing import Any

from yeet.contract.calls import ENDPOINT
from yeet.contract.values import EndpointConfig
from yeet.model.entries import file_entry
from yeet.protocol.connection import AgentConnection, ClientConnection, State
from yeet.protocol.frames import Kind, encode_frame
from yeet.protocol.messages import Fault, Hello, Welcome

VERSION = "0.0-test"
import msgspec  # noqa: E402

enc = msgspec.msgpack.encode

SAMPLE_ARGS: dict[str, tuple[Any, ...]] = {
    "open": (EndpointConfig("s", "beta", "/r"),),
    "scan": ([""],),
    "read_files": ([],),
    "read_range": ("a", file_entry(b"d" * 32, 3), 0, 3),
    "stage_open": ("a", file_entry(b"d" * 32, 3)),
    "stage_write": (1, 0, b"abc"),
    "stage_keep": (1, 0, 3, b"h" * 16),
    "stage_abort": (1,),
    "apply": ([],),
    "stat_paths": (["a"],),
    "trash_list": (),
    "trash_restore": ([1], False),
    "close": (),
    "changes": (b"cursor",),
}


def hello_frame(**over: Any) -> bytes:
    fields = dict(
        protocol=1,
        version=VERSION,
        methods=ENDPOINT.names(),
        compression=("zstd", "zlib", "none"),
        digests=("blake2b",),
        max_frame=1 << 20,
    )
    fields.update(over)
    return encode_frame(Kind.HELLO, enc(Hello(**fields)))


def welcome_frame(compression: str = "none", **over: Any) -> bytes:
    fields: dict[str, Any] = dict(
        protocol=1,
        version=VERSION,
        compression=compression,
        digests=("blake2b",),
        max_frame=1 << 20,
    )
    fields.update(over)
    return encode_frame(Kind.WELCOME, enc(Welcome(**fields)))


def client_in(state: State, compression: str = "none") -> ClientConnection:
    """A client connection brought to ``state`` by a real handshake."""
    c = ClientConnection(VERSION, ENDPOINT, max_frame=1 << 20)
    if state is State.BANNER:
        return c
    c.receive_data(b"YEET-AGENT/1 0.0-test blake2b\n")
    assert c.next_event() is not None
    if state is State.HELLO:
        return c
    c.hello(["zstd", "zlib", "none"], ["blake2b"])
    if state is State.WELCOME:
        return c
    c.receive_data(welcome_frame(compression))
    assert c.next_event() is not None
    if state is State.READY:
        return c
    c.close()
    return c


def agent_in(state: State, compression: str = "none") -> AgentConnection:
    a = AgentConnection(VERSION, ENDPOINT, max_frame=1 << 20)
    if state is State.BANNER:
        return a
    a.banner()
    if state is State.HELLO:
        return a
    a.receive_data(hello_frame(compression=(compression,)))
    assert a.next_event() is not None
    if state is State.WELCOME:
        return a
    a.welcome(["blake2b"])
    if state is State.READY:
        return a
    a.fatal(Fault("x", "y"))
    return a


def frames_of_every_kind(call: int = 1, method: str = "read_range") -> list[tuple[str, bytes]]:
    """One plausible frame of each kind (and a few malformed variants)."""
    m = ENDPOINT.named(method)
    args = SAMPLE_ARGS[method]
    out = [
        ("hello", hello_frame()),
        ("welcome", welcome_frame()),
        ("call", encode_frame(Kind.CALL, enc(args), method=m.index, call=call)),
        ("call-bad-args", encode_frame(Kind.CALL, enc(["x"]), method=m.index, call=call)),
        ("call-bad-method", encode_frame(Kind.CALL, enc(args), method=999, call=call)),
        ("result", encode_frame(Kind.RESULT, enc(b"abc"), call=call)),
        ("result-bad", encode_frame(Kind.RESULT, enc({"x": 1}), call=call)),
        ("item", encode_frame(Kind.ITEM, enc({"listings": []}), call=call)),
        ("end", encode_frame(Kind.END, b"", call=call)),
        ("error", encode_frame(Kind.ERROR, enc(Fault("OSError", "boom", None, 5)), call=call)),
        ("fatal", encode_frame(Kind.ERROR, enc(Fault("ProtocolError", "bye")), call=0)),
        ("cancel", encode_frame(Kind.CANCEL, b"", call=call)),
        ("credit", encode_frame(Kind.CREDIT, enc(4), call=call)),
        ("credit-bad", encode_frame(Kind.CREDIT, enc(-4), call=call)),
        ("garbage-payload", encode_frame(Kind.RESULT, b"\xc1\xc1", call=call)),
        ("zstd-flag", encode_frame(Kind.RESULT, b"\x28\xb5\x2f\xfd", flags=1, call=call)),
    ]
    return out
