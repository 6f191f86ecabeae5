"""The quoting of names in yeet's output: any name round-trips, and the quoted form
is one line of valid UTF-8 with no control character."""

from __future__ import annotations

import json
import os

from hypothesis import example, given
from hypothesis import strategies as st

from yeet.model.quoting import dumps, needs_quoting, quote, unquote

# what a file name can be: any bytes but NUL and "/", as Python decodes them
names = st.binary(min_size=1, max_size=40).map(
    lambda b: os.fsdecode(b.replace(b"\0", b"x").replace(b"/", b"y"))
)
# and relpaths made of them, plus any text at all (a field of a record, a reason)
relpaths = st.lists(names, min_size=1, max_size=4).map("/".join)
texts = st.text()


def _clean(q: str) -> None:
    q.encode("utf-8")  # strict: no lone surrogate
    assert len(q.splitlines()) <= 1, q
    assert "\t" not in q
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in q), q


@given(st.one_of(names, relpaths, texts))
@example("tab\there")
@example("new\nline")
@example('"starts with a quote')
@example("caf\udce9")
@example("\u2028")
@example('"\\x41"')
@example("back\\slash")
def test_any_name_round_trips_and_prints_on_one_clean_line(name: str) -> None:
    q = quote(name)
    assert unquote(q) == name
    _clean(q)
    assert json.loads(dumps({"path": q}))["path"] == q


@given(st.one_of(names, texts))
def test_a_name_that_needs_no_quoting_is_printed_and_read_as_it_is(name: str) -> None:
    if not needs_quoting(name):
        assert quote(name) == name
        assert unquote(name) == name


@given(st.binary(max_size=40))
def test_bytes_round_trip(raw: bytes) -> None:
    name = os.fsdecode(raw)
    assert os.fsencode(unquote(quote(name))) == raw


def test_the_scheme_is_gits() -> None:
    assert quote("plain name.txt") == "plain name.txt"
    assert quote("a\tb") == '"a\\tb"'
    assert quote("a\nb") == '"a\\nb"'
    assert quote("caf" + os.fsdecode(b"\xe9")) == '"caf\\xe9"'
    assert quote('"x') == '"\\"x"'
    assert quote("a\x01\x7f\u0085") == '"a\\x01\\x7f\\u0085"'
    assert quote("a\\b") == "a\\b"  # a backslash alone needs nothing
    assert quote("a\\b\n") == '"a\\\\b\\n"'


def test_malformed_quoted_text_is_a_name_itself() -> None:
    for text in ('"', '"abc', '"a"b"', '"\\q"', '"\\x4"', '"\\"', '"\\ud800"'):
        assert unquote(text) == text


def test_json_never_holds_a_lone_surrogate() -> None:
    raw = "caf" + os.fsdecode(b"\xe9")
    text = dumps({"reason": f"cannot read {raw}", raw: [raw]})
    text.encode("utf-8")
    doc = json.loads(text)
    assert unquote(doc["reason"]) == f"cannot read {raw}"
    assert doc[quote(raw)] == [quote(raw)]
