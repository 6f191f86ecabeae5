"""The msgspec stand-in speaks the same msgpack as msgspec, and validates like it."""

from __future__ import annotations

import subprocess
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from yeet.compat import msgspec_lite as lite
from yeet.compat.msgspec_lite import msgpack as lite_msgpack
from yeet.contract import values as api
from yeet.delta import ops
from yeet.model import annotations, entries
from yeet.protocol import messages
from yeet.remote.client import zipapp

BARE = "/root/.pyenv/versions/3.9.18/bin/python3"


kinds = st.sampled_from(list(entries.Kind))
entry = st.builds(
    entries.Entry,
    kinds,
    st.binary(max_size=32),
    st.integers(0, 2**63 - 1),
    st.booleans(),
    st.text(max_size=10),
    st.text(max_size=10),
)
names = st.text(min_size=1, max_size=8)
problem = st.builds(
    entries.Problem, names, st.text(max_size=10), st.sampled_from(["alpha", "beta", ""])
)
batch = st.builds(
    api.ScanBatch,
    st.lists(
        st.tuples(names, st.none() | st.dictionaries(names, entry, max_size=4)), max_size=4
    ).map(tuple),
    st.lists(problem, max_size=3).map(tuple),
    st.integers(0, 10**9),
    st.integers(0, 10**12),
)
op = st.builds(
    api.Op,
    names,
    st.none() | entry,
    st.none() | entry,
    st.none() | st.binary(max_size=64),
    st.none() | st.integers(0, 2**31),
    st.none() | names,
)
config = st.builds(
    api.EndpointConfig,
    names,
    st.sampled_from(["alpha", "beta"]),
    names,
    st.lists(names, max_size=3).map(tuple),
    st.booleans(),
)
sizes = st.integers(0, 2**40)
plan = st.builds(
    api.PlanReply,
    st.lists(
        st.builds(ops.Copy, sizes, sizes) | st.builds(ops.Literal, sizes, sizes), max_size=5
    ).map(tuple),
)
values = st.one_of(batch, op, config, entry, problem, plan)


ROUND_TRIP = """
import sys
sys.path[:0] = [sys.argv[1]]
from yeet.compat import install_msgspec_fallback
assert install_msgspec_fallback()
import msgspec
from yeet.contract import values as api
from yeet.model import entries
types = {"ScanBatch": api.ScanBatch, "Op": api.Op, "EndpointConfig": api.EndpointConfig,
         "Entry": entries.Entry, "Problem": entries.Problem, "PlanReply": api.PlanReply}
items = msgspec.msgpack.Decoder(list[tuple[str, bytes]]).decode(sys.stdin.buffer.read())
out = []
for name, data in items:
    value = msgspec.msgpack.Decoder(types[name]).decode(data)
    assert type(value).__module__.startswith("yeet."), type(value)
    out.append(msgspec.msgpack.encode(value))
sys.stdout.buffer.write(msgspec.msgpack.encode(out))
"""


@pytest.fixture(scope="module")
def pyz(tmp_path_factory: pytest.TempPathFactory) -> str:
    data, _tag = zipapp.build()
    path = tmp_path_factory.mktemp("pyz") / "yeet.pyz"
    path.write_bytes(data)
    return str(path)


@settings(max_examples=6, deadline=None)
@given(st.lists(values, min_size=40, max_size=40))
def test_stand_in_on_bare_python_speaks_msgspecs_msgpack(pyz: str, batch: list[Any]) -> None:
    """Decoded by the stand-in on a bare 3.9 and encoded again: the very same bytes."""
    sent = [(type(v).__name__, msgspec.msgpack.encode(v)) for v in batch]
    out = subprocess.run(
        [BARE, "-I", "-c", ROUND_TRIP, pyz],
        input=msgspec.msgpack.encode(sent),
        capture_output=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr.decode()
    back = msgspec.msgpack.decode(out.stdout, type=list[bytes])
    assert back == [data for _name, data in sent]
    for value, data in zip(batch, back, strict=True):
        assert msgspec.msgpack.Decoder(type(value)).decode(data) == value


@pytest.mark.parametrize(
    "tp,obj",
    [
        (int, "x"),
        (int, True),
        (str, 1),
        (bytes, "x"),
        (entries.Entry, [99]),
        (entries.Entry, []),
        (api.ReadRequest, {"path": "a"}),
        (tuple[int, int], [1]),
        (api.ScanBatch, {"listings": [["a", {"x": [1, 2, 3, 4, 5, 6, 7]}]]}),
    ],
)
def test_validation_errors_like_msgspec(tp: Any, obj: Any) -> None:
    data = msgspec.msgpack.encode(obj)
    with pytest.raises(msgspec.ValidationError):
        msgspec.msgpack.Decoder(tp).decode(data)
    if tp in (api.ReadRequest, api.ScanBatch, entries.Entry):
        return  # the stand-in resolves struct types in the agent's own module namespace
    with pytest.raises(lite.ValidationError):
        lite_msgpack.Decoder(tp).decode(data)


@pytest.mark.parametrize("data", [b"", b"\xc1", b"\x93\x01", b"\xdb\xff\xff\xff\xff"])
def test_malformed_msgpack(data: bytes) -> None:
    with pytest.raises(lite.DecodeError):
        lite_msgpack.Decoder(Any).decode(data)


def test_frozen_and_defaults() -> None:
    class P(lite.Struct, frozen=True):
        a: int
        b: tuple[str, ...] = ()

    p = P(1)
    assert p.b == () and P(1) == p and hash(P(1)) == hash(p)
    with pytest.raises(AttributeError):
        p.a = 2  # type: ignore[misc]
    with pytest.raises(TypeError):
        P()  # type: ignore[call-arg]
    from yeet.compat.msgspec_lite import structs

    assert structs.replace(p, a=3).a == 3


def test_annotations_union_syntax_everywhere() -> None:
    t = annotations.evaluate("dict[str, Entry] | None", vars(entries))
    assert msgspec.convert({"a": [2]}, t) == {"a": entries.Entry(entries.Kind.FILE)}
    with pytest.raises(annotations.BadAnnotation):
        annotations.evaluate("__import__('os')", {})
    assert annotations.class_hints(messages.Fault)["errno"] == int | None


def test_tagged_delta_ops_decode_like_msgspec() -> None:
    """The one delta-op type is a tagged union: the stand-in picks the class by tag."""
    wire = msgspec.msgpack.encode([ops.Copy(5, 6), ops.Data(b"xy")])
    assert lite_msgpack.Decoder(list[Any]).decode(wire) == [[0, 5, 6], [1, b"xy"]]
    with pytest.raises(msgspec.ValidationError):
        msgspec.msgpack.Decoder(list[ops.DeltaOp]).decode(msgspec.msgpack.encode([[2, 1, 1]]))
