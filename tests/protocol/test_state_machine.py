"""Every (state, message) pair: a valid next state, or a ProtocolError, never a crash."""

from __future__ import annotations

from typing import Any

import pytest

from yeet.contract.calls import ENDPOINT
from yeet.model.errors import ProtocolError
from yeet.protocol.connection import (
    STREAM_WINDOW,
    AgentConnection,
    CallReceived,
    ClientConnection,
    EndReceived,
    ErrorReceived,
    ItemReceived,
    ResultReceived,
    State,
)
from yeet.protocol.frames import Kind, encode_frame
from yeet.protocol.messages import Fault

from .helpers import SAMPLE_ARGS, agent_in, client_in, enc, frames_of_every_kind

STATES = list(State)
FRAMES = frames_of_every_kind()


def _drain(conn: Any) -> list[Any]:
    events = []
    while (ev := conn.next_event()) is not None:
        events.append(ev)
    return events


def _feed(conn: Any, data: bytes) -> tuple[str, Any]:
    before = conn.state
    try:
        conn.receive_data(data)
        events = _drain(conn)
    except ProtocolError as err:
        assert conn.state is State.CLOSED, "an error must close the connection"
        return "error", err
    except Exception as err:  # pragma: no cover - the property under test
        pytest.fail(f"{type(err).__name__} escaped in state {before}: {err}")
    assert conn.state in STATES
    return "ok", events


@pytest.mark.parametrize("state", STATES, ids=lambda s: s.value)
@pytest.mark.parametrize("name,frame", FRAMES, ids=[n for n, _ in FRAMES])
def test_client_every_state_and_frame(state: State, name: str, frame: bytes) -> None:
    c = client_in(state)
    if state is State.READY:
        call, _ = c.call("read_range", SAMPLE_ARGS["read_range"])
        assert call == 1
    outcome, value = _feed(c, frame)
    if outcome == "error":
        assert not value.local, "input from the agent is never our own fault"
    legal = {
        (State.WELCOME, "welcome"),
        (State.WELCOME, "fatal"),
        (State.READY, "result"),
        (State.READY, "error"),
        (State.READY, "fatal"),
    }
    if (state, name) in legal:
        assert outcome == "ok", value
    elif state in (State.READY, State.WELCOME):
        assert outcome == "error", f"{name} accepted in {state}"


@pytest.mark.parametrize("state", STATES, ids=lambda s: s.value)
@pytest.mark.parametrize("name,frame", FRAMES, ids=[n for n, _ in FRAMES])
def test_agent_every_state_and_frame(state: State, name: str, frame: bytes) -> None:
    a = agent_in(state)
    outcome, value = _feed(a, frame)
    if outcome == "error":
        assert not value.local
    legal = {(State.HELLO, "hello"), (State.READY, "call")}
    if (state, name) in legal:
        assert outcome == "ok", value
    elif state is State.READY and name in ("cancel", "credit"):
        assert outcome == "error"  # call 1 was never made
    elif state in (State.HELLO, State.WELCOME, State.READY, State.BANNER):
        assert outcome == "error", f"{name} accepted in {state}"


CLIENT_SENDS = {
    "hello": lambda c: c.hello(["none"], ["blake2b"]),
    "call": lambda c: c.call("stat_paths", (["a"],))[1],
    "cancel": lambda c: c.cancel(1),
    "credit": lambda c: c.credit(1, 2),
}
AGENT_SENDS = {
    "banner": lambda a: a.banner(),
    "welcome": lambda a: a.welcome(["blake2b"]),
    "result": lambda a: a.result(1, []),
    "item": lambda a: a.item(1, None),
    "end": lambda a: a.end(1),
    "error": lambda a: a.error(1, Fault("x", "y")),
}


@pytest.mark.parametrize("state", STATES, ids=lambda s: s.value)
@pytest.mark.parametrize("action", sorted(CLIENT_SENDS))
def test_client_sending_in_every_state(state: State, action: str) -> None:
    c = client_in(state)
    try:
        data = CLIENT_SENDS[action](c)
    except ProtocolError as err:
        assert err.local, "a refused send is our own fault"
        assert c.state is State.CLOSED or action != "hello"
        return
    assert isinstance(data, bytes)
    ok = {("hello", State.HELLO), ("call", State.READY)}
    if action in ("hello", "call"):
        assert (action, state) in ok


@pytest.mark.parametrize("state", STATES, ids=lambda s: s.value)
@pytest.mark.parametrize("action", sorted(AGENT_SENDS))
def test_agent_sending_in_every_state(state: State, action: str) -> None:
    a = agent_in(state)
    with pytest.raises(ProtocolError) as err:
        if action == "banner" and state is State.BANNER:
            raise ProtocolError("fine", local=True)
        if action == "welcome" and state is State.WELCOME:
            raise ProtocolError("fine", local=True)
        AGENT_SENDS[action](a)  # no call 1 is open: always refused
    assert err.value.local


# -- conversations --------------------------------------------------------------------------


def _pair(compression: str = "zstd") -> tuple[ClientConnection, AgentConnection]:
    return client_in(State.READY, compression), agent_in(State.READY, compression)


def test_multiplexed_calls_answered_out_of_order() -> None:
    c, a = _pair()
    sent = [c.call("stat_paths", ([f"p{i}"],)) for i in range(5)]
    for _, data in sent:
        a.receive_data(data)
    calls = _drain(a)
    assert [e.call for e in calls] == [1, 2, 3, 4, 5]
    for ev in reversed(calls):
        c.receive_data(a.result(ev.call, []))
    results = _drain(c)
    assert [r.call for r in results] == [5, 4, 3, 2, 1]
    assert all(isinstance(r, ResultReceived) for r in results)
    assert c.outstanding == 0


def test_stream_respects_credit() -> None:
    c, a = _pair()
    call, data = c.call("scan", ([""],))
    a.receive_data(data)
    (ev,) = _drain(a)
    assert isinstance(ev, CallReceived) and ev.method.stream
    for _ in range(STREAM_WINDOW):
        c.receive_data(a.item(call, {"listings": []}))
    with pytest.raises(ProtocolError) as err:
        a.item(call, {"listings": []})
    assert err.value.local
    items = _drain(c)
    assert len(items) == STREAM_WINDOW and all(isinstance(i, ItemReceived) for i in items)
    a2 = agent_in(State.READY, "zstd")
    a2.receive_data(data)
    _drain(a2)
    a2.receive_data(c.credit(call, 3))
    _drain(a2)
    assert a2.credit_left(call) == STREAM_WINDOW + 3


def test_item_beyond_credit_is_the_agents_fault() -> None:
    c, _a = _pair()
    call, _ = c.call("scan", ([""],))
    item = encode_frame(Kind.ITEM, enc({"listings": []}), call=call)
    c.receive_data(item * STREAM_WINDOW)
    assert len(_drain(c)) == STREAM_WINDOW
    c.receive_data(item)
    with pytest.raises(ProtocolError) as err:
        _drain(c)
    assert not err.value.local


def test_cancel_still_gets_a_final_message() -> None:
    c, a = _pair()
    call, data = c.call("scan", ([""],))
    a.receive_data(data + c.cancel(call))
    evs = _drain(a)
    assert [type(e).__name__ for e in evs] == ["CallReceived", "CancelReceived"]
    c.receive_data(a.item(call, {"listings": []}) + a.end(call))
    evs = _drain(c)
    assert isinstance(evs[-1], EndReceived) and c.outstanding == 0


def test_call_ids_must_increase() -> None:
    _c, a = _pair()
    m = ENDPOINT.named("trash_list")
    a.receive_data(encode_frame(Kind.CALL, enc(()), method=m.index, call=5))
    _drain(a)
    a.receive_data(encode_frame(Kind.CALL, enc(()), method=m.index, call=5))
    with pytest.raises(ProtocolError, match="not above"):
        _drain(a)


def test_result_for_unknown_call() -> None:
    c, _a = _pair()
    c.receive_data(encode_frame(Kind.RESULT, enc(None), call=42))
    with pytest.raises(ProtocolError, match="not open") as err:
        _drain(c)
    assert not err.value.local


def test_error_and_fatal() -> None:
    c, a = _pair()
    call, data = c.call("read_range", SAMPLE_ARGS["read_range"])
    a.receive_data(data)
    _drain(a)
    c.receive_data(a.error(call, Fault("OSError", "gone", None, 2)))
    (ev,) = _drain(c)
    assert isinstance(ev, ErrorReceived) and ev.fault.errno == 2
    c.receive_data(a.fatal(Fault("ProtocolError", "bye")))
    (ev,) = _drain(c)
    assert isinstance(ev, ErrorReceived) and ev.call == 0
    assert c.state is State.CLOSED


def test_hello_with_other_protocol_or_methods_refused() -> None:
    from .helpers import hello_frame

    for frame in (hello_frame(protocol=2), hello_frame(methods=("open",))):
        a = agent_in(State.HELLO)
        a.receive_data(frame)
        with pytest.raises(ProtocolError):
            _drain(a)


def test_bulk_bytes_compressed_per_frame() -> None:
    import os

    c, a = _pair("zstd")
    _call, data = c.call("stage_write", (1, 0, b"a" * (1 << 19)))
    assert len(data) < 10_000
    a.receive_data(data)
    (ev,) = _drain(a)
    assert ev.args[2] == b"a" * (1 << 19)
    _call, data = c.call("stage_write", (1, 0, os.urandom(1 << 19)))
    assert len(data) > 1 << 19  # incompressible: sent as it is
    with pytest.raises(ProtocolError) as err:
        c.call("stage_write", (1, 0, b"a" * (1 << 20)))  # over the limit, even if it packs
    assert err.value.local


def test_answer_too_large_for_a_frame_can_still_be_answered_with_an_error() -> None:
    c, a = _pair("none")
    call, data = c.call("read_range", SAMPLE_ARGS["read_range"])
    a.receive_data(data)
    _drain(a)
    with pytest.raises(ProtocolError) as err:
        a.result(call, b"x" * (2 << 20))  # over the 1 MiB limit of these connections
    assert err.value.local and a.state is State.READY
    c.receive_data(a.error(call, Fault("ProtocolError", str(err.value))))
    (ev,) = _drain(c)
    assert isinstance(ev, ErrorReceived) and c.outstanding == 0
