"""File names that are not UTF-8 (and names in the escape block) cross the wire intact."""

from __future__ import annotations

import os

from hypothesis import given
from hypothesis import strategies as st

from yeet.contract.values import PathStat
from yeet.protocol import names
from yeet.protocol.connection import CallReceived, ResultReceived, State

from .helpers import agent_in, client_in

# Any code point but the surrogates Python never produces from a file name,
# plus the ones surrogateescape does produce, plus the escape block itself.
name_chars = st.one_of(
    st.characters(blacklist_categories=("Cs",)),
    st.integers(0xDC80, 0xDCFF).map(chr),
    st.integers(0xF700, 0xF7FF).map(chr),
)
wire_names = st.text(name_chars, max_size=30)


@given(wire_names)
def test_escape_round_trips_and_is_utf8(s: str) -> None:
    escaped = names.escape(s)
    escaped.encode("utf-8")  # always encodable
    assert names.unescape(escaped) == s


@given(st.lists(wire_names, max_size=5))
def test_names_survive_a_call_and_its_result(paths: list[str]) -> None:
    c, a = client_in(State.READY, "zstd"), agent_in(State.READY, "zstd")
    call, data = c.call("stat_paths", (paths,))
    a.receive_data(data)
    (ev,) = list(iter(a.next_event, None))
    assert isinstance(ev, CallReceived) and ev.args == (paths,)
    c.receive_data(a.result(call, [PathStat(p, True, size=i) for i, p in enumerate(paths)]))
    (res,) = list(iter(c.next_event, None))
    assert isinstance(res, ResultReceived)
    assert [s.path for s in res.value] == paths


def test_plain_names_are_not_rewritten() -> None:
    value = ["src/main.c", ("a", "b"), {"k": "v"}]
    assert names.escape(value) is value
    assert names.unescape(value) is value


def test_a_real_latin1_file_name() -> None:
    raw = os.fsdecode(b"caf\xe9-latin1.txt")
    assert os.fsencode(names.unescape(names.escape(raw))) == b"caf\xe9-latin1.txt"
