"""A mutation fuzzer for the protocol decoder (runs on the real msgspec and on the stand-in).

Valid byte streams of both sides are mutated (bit flips, overwritten length
fields, truncation, splicing, insertions, pure noise) and fed, split at random
points, into connections in every state. The only exception allowed out is
``ProtocolError``; the bytes a decoder holds never exceed what it was fed.
Importable on a bare Python 3.9 (stdlib + yeet only).
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable
from typing import Any

import msgspec

from yeet.contract.calls import ENDPOINT
from yeet.contract.values import (
    EndpointConfig,
    Op,
    ReadRequest,
    ReadSource,
    ScanBatch,
)
from yeet.delta.chunking import Params
from yeet.delta.ops import Copy, Data
from yeet.delta.signature import Signature
from yeet.model.entries import DIRECTORY, Problem, file_entry, symlink_entry
from yeet.model.errors import ProtocolError
from yeet.protocol.banner import banner_line
from yeet.protocol.connection import AgentConnection, ClientConnection, State
from yeet.protocol.frames import Kind, encode_frame
from yeet.protocol.messages import Fault, Hello, Welcome

MAX_FRAME = 1 << 16
E = file_entry(b"\x01" * 32, 3, True)
SIG = Signature(Params(1024, 512, 4096), 0, 3, b"\x02\x00", b"\x01\x02\x03\x04", b"\x05" * 8)


def _seeds() -> list[bytes]:
    enc = msgspec.msgpack.encode
    agent = AgentConnection("v", ENDPOINT, max_frame=MAX_FRAME)
    out = [
        banner_line("v", ["blake2b"]),
        encode_frame(
            Kind.HELLO,
            enc(Hello(1, "v", ENDPOINT.names(), ("zstd", "zlib", "none"), ("blake2b",), MAX_FRAME)),
        ),
        encode_frame(Kind.WELCOME, enc(Welcome(1, "v", "none", ("blake2b",), MAX_FRAME))),
        encode_frame(Kind.WELCOME, enc(Welcome(1, "v", "zlib", ("blake2b",), MAX_FRAME))),
    ]
    args = {
        "open": (EndpointConfig("s", "alpha", "/r", ignores=("*.o",)),),
        "scan": (["", "a/b"], False, True),
        "read_files": ([ReadRequest("a", E)],),
        "read_range": ("a", E, 0, 3),
        "stage_open": ("a", E),
        "stage_write": (1, 0, b"abc" * 50),
        "stage_keep": (1, 0, 3, b"h" * 16),
        "stage_abort": (1, True),
        "apply": ([Op("a", None, E, data=b"abc"), Op("d", DIRECTORY, None)], 3),
        "stat_paths": (["a", "b/c"],),
        "trash_list": (),
        "trash_restore": ([3], True, 7),
        "close": (),
        "watch": (),
        "changes": (None,),
        "signature": ("a", E, 0),
        "region_signatures": ("a", E, [(0, 3)], 0),
        "delta_plan": ("a", E, SIG),
        "delta_ops": ("a", E, 0, 3, [SIG]),
        "patch_open": ("a", E, E, True),
        "patch_write": (1, 0, [Copy(0, 3), Data(b"abc")]),
        "patch_commit": (1,),
        "patch_abort": (1,),
        "bulk_open": ("/s/stage/partial-1-2-3", 3),
        "bulk_write": (1, 0, b"abc" * 50),
        "bulk_close": (1,),
        "read_open": ("a", E),
        "bulk_read": (ReadSource("/r", "a", (1, 3, 4, 5, 0o100644)), 0, 3),
        "probe": ("/r",),
    }
    for call, m in enumerate(ENDPOINT.methods, 1):
        out.append(encode_frame(Kind.CALL, enc(args[m.name]), method=m.index, call=call))
    batch = ScanBatch(
        (("", {"a": E, "d": DIRECTORY, "l": symlink_entry("a")}), ("d", None)),
        (Problem("x", "socket", "beta"),),
        3,
    )
    out += [
        encode_frame(Kind.ITEM, enc(batch), call=2),
        encode_frame(Kind.END, b"", call=2),
        encode_frame(Kind.RESULT, enc(b"x" * 100), call=1),
        encode_frame(Kind.RESULT, enc([{"path": "a", "ok": True}]), call=1),
        encode_frame(Kind.ERROR, enc(Fault("OSError", "x", None, 2)), call=1),
        encode_frame(Kind.ERROR, enc(Fault("ProtocolError", "bye")), call=0),
        encode_frame(Kind.CANCEL, b"", call=1),
        encode_frame(Kind.CREDIT, enc(5), call=2),
    ]
    agent.banner()
    return out


def _mutate(rng: random.Random, data: bytes, seeds: list[bytes]) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(9)
        if op == 0 and b:
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
        elif op == 1 and b:
            i = rng.randrange(len(b))
            b[i] = rng.randrange(256)
        elif op == 2 and len(b) >= 4:
            length = rng.choice([0, 11, 12, 13, MAX_FRAME, MAX_FRAME + 1, 2**32 - 1])
            length = rng.choice([length, rng.randrange(2**32)])
            b[0:4] = length.to_bytes(4, "big")
        elif op == 3:
            del b[rng.randrange(len(b) + 1) :]
        elif op == 4:
            i = rng.randrange(len(b) + 1)
            b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        elif op == 5:
            b += rng.choice(seeds)
        elif op == 6 and b:
            i = rng.randrange(len(b))
            j = rng.randrange(i, min(len(b), i + 64) + 1)
            del b[i:j]
        elif op == 7 and len(b) > 5:
            b[5] = rng.choice([1, 2, 3, 0x80])  # compression flags
        elif op == 8:
            b = bytearray(rng.randbytes(rng.randint(0, 64)) if hasattr(rng, "randbytes") else b"")
    return bytes(b)


def _client(state: State, compression: str) -> ClientConnection:
    c = ClientConnection("v", ENDPOINT, max_frame=MAX_FRAME)
    if state is State.BANNER:
        return c
    c.receive_data(banner_line("v", ["blake2b"]))
    c.next_event()
    c.hello(["zstd", "zlib", "none"], ["blake2b"])
    if state is State.WELCOME:
        return c
    c.receive_data(
        encode_frame(
            Kind.WELCOME,
            msgspec.msgpack.encode(Welcome(1, "v", compression, ("blake2b",), MAX_FRAME)),
        )
    )
    c.next_event()
    c.call("read_range", ("a", E, 0, 3))
    c.call("scan", ([""],))
    return c


def _agent(state: State, compression: str) -> AgentConnection:
    a = AgentConnection("v", ENDPOINT, max_frame=MAX_FRAME, compressions=(compression, "none"))
    a.banner()
    if state is State.HELLO:
        return a
    a.receive_data(
        encode_frame(
            Kind.HELLO,
            msgspec.msgpack.encode(
                Hello(1, "v", ENDPOINT.names(), (compression, "none"), ("blake2b",), MAX_FRAME)
            ),
        )
    )
    a.next_event()
    a.welcome(["blake2b"])
    return a


def _compressions() -> list[str]:
    from yeet.protocol import codec

    return [c for c in ("zstd", "zlib", "none") if c in codec.available()]


def run(count: int, seed: int = 0, report: Callable[[str], Any] = print) -> int:
    """Feed ``count`` mutated inputs; returns how many were fed."""
    rng = random.Random(seed)
    seeds = _seeds()
    comps = _compressions()
    makers: list[Callable[[], Any]] = []
    for comp in comps:
        makers += [
            lambda comp=comp: _client(State.READY, comp),
            lambda comp=comp: _agent(State.READY, comp),
        ]
    makers += [
        lambda: _client(State.BANNER, "none"),
        lambda: _client(State.WELCOME, "none"),
        lambda: _agent(State.HELLO, "none"),
    ]
    fed = errors = events = 0
    start = time.monotonic()
    while fed < count:
        base = rng.choice(seeds)
        if rng.random() < 0.3:
            base = base + rng.choice(seeds)
        data = base if rng.random() < 0.1 else _mutate(rng, base, seeds)
        conn = rng.choice(makers)()
        points = sorted(rng.randrange(len(data) + 1) for _ in range(rng.randint(0, 3)))
        pieces = [data[a:b] for a, b in zip([0, *points], [*points, len(data)])]
        try:
            for piece in pieces:
                conn.receive_data(piece)
                while conn.next_event() is not None:
                    events += 1
                assert conn._frames.buffered <= len(data) + 1024
        except ProtocolError:
            errors += 1
        fed += 1
    report(
        f"fuzzed {fed} inputs in {time.monotonic() - start:.1f} s: {errors} protocol errors, "
        f"{events} events"
    )
    return fed


if __name__ == "__main__":
    run(
        int(sys.argv[1]) if len(sys.argv) > 1 else 10_000,
        int(sys.argv[2]) if len(sys.argv) > 2 else 0,
    )
