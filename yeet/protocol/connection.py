"""The protocol state machine of one connection side, client or agent.

Invariants owned here:

* Client: banner, then ``hello``, then the agent's ``welcome``, then calls.
  Agent: banner (sent), the client's ``hello``, ``welcome``, then answers.
  Anything else, in any state, raises ``ProtocolError``: ``local=False`` when
  the peer sent it, ``local=True`` when our own side asked for it. After an
  error the connection is closed and stays closed.
* Every call has an id greater than all before it and gets exactly one final
  message (result, end of stream, or error), also after a cancel. A stream
  sends an item only against credit the client granted (``STREAM_WINDOW`` at
  the call, more with ``credit``), so a slow reader bounds the agent's output.
* Payloads are decoded with the types of the method table; a payload that does
  not match its type is the peer's fault. Every byte is accounted for: no
  partial frame, no unknown kind, no unknown flag is ever accepted.

Pure: no I/O; bytes in, events and bytes out.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Union

import msgspec

from yeet.model.errors import ProtocolError
from yeet.protocol import codec, names
from yeet.protocol.banner import PROTOCOL, Banner, BannerScanner, banner_line
from yeet.protocol.frames import (
    COMPRESSION_FLAGS,
    DEFAULT_MAX_FRAME,
    FIXED,
    FLAG_NAMES,
    Frame,
    FrameDecoder,
    Kind,
    encode_frame,
)
from yeet.protocol.messages import Fault, Hello, Welcome
from yeet.protocol.registry import Method, Registry

STREAM_WINDOW = 8
MAX_CREDIT = 1 << 20

_enc = msgspec.msgpack.Encoder()
_hello = msgspec.msgpack.Decoder(Hello)
_welcome = msgspec.msgpack.Decoder(Welcome)
_fault = msgspec.msgpack.Decoder(Fault)
_int = msgspec.msgpack.Decoder(int)


class State(enum.Enum):
    BANNER = "banner"  # client: waiting for the agent's banner; agent: not sent yet
    HELLO = "hello"  # client: must send hello; agent: waiting for it
    WELCOME = "welcome"  # client: waiting for welcome; agent: must send it
    READY = "ready"
    CLOSED = "closed"


# -- events ------------------------------------------------------------------------------


@dataclass(frozen=True)
class BannerReceived:
    banner: Banner


@dataclass(frozen=True)
class HelloReceived:
    hello: Hello


@dataclass(frozen=True)
class WelcomeReceived:
    welcome: Welcome


@dataclass(frozen=True)
class CallReceived:
    call: int
    method: Method
    args: tuple[Any, ...]


@dataclass(frozen=True)
class ResultReceived:
    call: int
    value: Any


@dataclass(frozen=True)
class ItemReceived:
    call: int
    value: Any


@dataclass(frozen=True)
class EndReceived:
    call: int


@dataclass(frozen=True)
class ErrorReceived:
    """A failed call, or (``call == 0``) the peer giving up on the connection."""

    call: int
    fault: Fault


@dataclass(frozen=True)
class CancelReceived:
    call: int


@dataclass(frozen=True)
class CreditReceived:
    call: int
    items: int


Event = Union[
    BannerReceived,
    HelloReceived,
    WelcomeReceived,
    CallReceived,
    ResultReceived,
    ItemReceived,
    EndReceived,
    ErrorReceived,
    CancelReceived,
    CreditReceived,
]


def _decode(decoder: Any, payload: bytes, what: str) -> Any:
    try:
        return decoder.decode(payload)
    except (ValueError, TypeError, OverflowError, RecursionError) as err:
        raise ProtocolError(f"malformed {what}: {err}") from None


class _Side:
    """What client and agent share: framing, compression, closing on errors."""

    def __init__(self, version: str, registry: Registry, max_frame: int) -> None:
        self.version = version
        self.registry = registry
        self.max_frame = max_frame
        self.state = State.BANNER
        self.codec = codec.Codec("none")
        self._frames = FrameDecoder(max_frame)
        self.broken: ProtocolError | None = None
        self._escaped = False  # the payload being framed has escaped names

    def _fail(self, message: str, *, local: bool) -> ProtocolError:
        err = ProtocolError(message, local=local)
        self._close(err)
        return err

    def _close(self, err: ProtocolError | None) -> None:
        self.state = State.CLOSED
        if err is not None and self.broken is None:
            self.broken = err

    def _check_open(self) -> None:
        if self.state is State.CLOSED:
            raise ProtocolError("the connection is closed", local=True)

    def _frame(
        self, kind: Kind, payload: bytes, *, method: int = 0, call: int = 0, pack: bool = False
    ) -> bytes:
        flags = 0
        escaped, self._escaped = self._escaped, False
        if len(payload) + FIXED > self.max_frame:
            # The limit holds for the payload as decoded, compressed or not. Nothing was
            # sent: the connection stays usable (the caller may answer with an error).
            raise ProtocolError(
                f"refusing to send a {len(payload)}-byte {kind.name} (limit {self.max_frame})",
                local=True,
            )
        if pack:
            flags, payload = self.codec.pack(payload)
        if escaped:
            flags |= FLAG_NAMES
        return encode_frame(
            kind, payload, flags=flags, method=method, call=call, max_frame=self.max_frame
        )

    def _encode(self, value: Any) -> bytes:
        """Encode ``value``; names that UTF-8 cannot carry are escaped and the next
        ``_frame`` says so (it is always framed right away)."""
        self._escaped = False
        try:
            try:
                data: bytes = _enc.encode(value)
                if not names.may_need_unescape(data):
                    return data
            except UnicodeEncodeError:
                pass
            escaped = names.escape(value)
            if escaped is value:
                return _enc.encode(value)
            self._escaped = True
            return _enc.encode(escaped)
        except (TypeError, ValueError, OverflowError) as err:
            raise self._fail(f"cannot encode {type(value).__name__}: {err}", local=True) from None

    def _names(self, frame: Frame, value: Any) -> Any:
        return names.unescape(value) if frame.flags & FLAG_NAMES else value

    def _next_frame(self) -> Frame | None:
        try:
            return self._frames.next_frame()
        except ProtocolError as err:
            self._close(err)
            raise

    def _payload(self, frame: Frame) -> bytes:
        if frame.kind in (Kind.HELLO, Kind.WELCOME) and frame.flags:
            raise self._fail("handshake frames are never compressed", local=False)
        try:
            return self.codec.unpack(frame.flags & COMPRESSION_FLAGS, frame.payload, self.max_frame)
        except ProtocolError as err:
            self._close(err)
            raise

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Buffer bytes from the peer; ``next_event`` then turns them into events."""
        if self.state is State.CLOSED:
            return  # whatever arrives after the end is ignored
        self._feed(bytes(data))

    def _feed(self, data: bytes) -> None:
        self._frames.feed(data)

    def next_event(self) -> Event | None:
        """The next event, or None until more bytes arrive. Raises ProtocolError."""
        if self.state is State.CLOSED:
            return None
        try:
            frame = self._pending_banner()
            if frame is not None:
                return frame
            got = self._next_frame()
            if got is None:
                return None
            return self._handle(got)
        except ProtocolError as err:
            self._close(err)
            raise
        except (ValueError, TypeError, KeyError, IndexError, OverflowError) as err:
            # Defence in depth: no input may crash the state machine.
            raise self._fail(f"malformed input: {type(err).__name__}: {err}", local=False) from None

    def _pending_banner(self) -> Event | None:
        return None

    def _handle(self, frame: Frame) -> Event:
        raise NotImplementedError


# -- the client ---------------------------------------------------------------------------


@dataclass
class _Outstanding:
    method: Method
    credit: int = 0
    cancelled: bool = False


class ClientConnection(_Side):
    """The side that calls: yeet talking to an agent."""

    def __init__(
        self,
        version: str,
        registry: Registry,
        max_frame: int = DEFAULT_MAX_FRAME,
        noise_limit: int | None = None,
    ) -> None:
        super().__init__(version, registry, max_frame)
        self._banner = (
            BannerScanner(version) if noise_limit is None else BannerScanner(version, noise_limit)
        )
        self._banner_event: BannerReceived | None = None
        self._calls: dict[int, _Outstanding] = {}
        self._last_call = 0
        self.welcome: Welcome | None = None

    @property
    def outstanding(self) -> int:
        return len(self._calls)

    def banner_noise(self) -> str:
        return self._banner.noise()

    def eof_error(self) -> ProtocolError:
        """The error for a stream that ended (before the banner: what the remote printed)."""
        if self.state is State.BANNER:
            return self._banner.eof_error()
        return ProtocolError("the agent closed the connection")

    def _feed(self, data: bytes) -> None:
        if self.state is State.BANNER and self._banner_event is None:
            try:
                banner = self._banner.feed(data)
            except ProtocolError as err:
                self._close(err)
                raise
            if banner is None:
                return
            self._banner_event = BannerReceived(banner)
            data = self._banner.rest
        if data:
            self._frames.feed(data)

    def _pending_banner(self) -> Event | None:
        if self.state is State.BANNER:
            if self._banner_event is None:
                return None
            self.state = State.HELLO
            return self._banner_event
        return None

    def next_event(self) -> Event | None:
        if self.state is State.BANNER and self._banner_event is None:
            return None
        if self.state is State.HELLO:
            return None  # hello must be sent before anything is read
        return super().next_event()

    def hello(self, compression: Sequence[str], digests: Sequence[str]) -> bytes:
        self._check_open()
        if self.state is not State.HELLO:
            raise self._fail(f"hello sent in state {self.state.value}", local=True)
        self.state = State.WELCOME
        hello = Hello(
            PROTOCOL,
            self.version,
            self.registry.names(),
            tuple(compression),
            tuple(digests),
            self.max_frame,
        )
        return self._frame(Kind.HELLO, self._encode(hello))

    def call(self, name: str, args: Sequence[Any]) -> tuple[int, bytes]:
        """``(call id, bytes to send)`` for a call of ``name``."""
        self._check_open()
        if self.state is not State.READY:
            raise self._fail(f"call sent in state {self.state.value}", local=True)
        method = self.registry.named(name)
        full = method.bind(args)
        self._last_call += 1
        call = self._last_call
        data = self._frame(Kind.CALL, self._encode(full), method=method.index, call=call, pack=True)
        self._calls[call] = _Outstanding(method, STREAM_WINDOW if method.stream else 0)
        return call, data

    def cancel(self, call: int) -> bytes:
        """Ask the agent to stop a call; its final message still comes (and is awaited)."""
        self._check_open()
        out = self._calls.get(call)
        if out is None or out.cancelled:
            return b""
        out.cancelled = True
        return self._frame(Kind.CANCEL, b"", call=call)

    def credit(self, call: int, items: int) -> bytes:
        """Let a stream send ``items`` more items."""
        self._check_open()
        out = self._calls.get(call)
        if out is None or not out.method.stream or out.cancelled or items <= 0:
            return b""
        if out.credit + items > MAX_CREDIT:
            raise self._fail("stream credit overflow", local=True)
        out.credit += items
        return self._frame(Kind.CREDIT, self._encode(items), call=call)

    def close(self) -> None:
        self._close(None)

    def _handle(self, frame: Frame) -> Event:
        kind = frame.kind
        if self.state is State.WELCOME:
            if kind is Kind.WELCOME:
                return self._on_welcome(self._payload(frame))
            if kind is Kind.ERROR and frame.call == 0:
                return self._on_fatal(self._payload(frame))
            raise self._fail(f"expected welcome, got {kind.name}", local=False)
        assert self.state is State.READY
        if kind is Kind.ERROR and frame.call == 0:
            return self._on_fatal(self._payload(frame))
        if kind not in (Kind.RESULT, Kind.ITEM, Kind.END, Kind.ERROR):
            raise self._fail(f"an agent never sends {kind.name}", local=False)
        if frame.method != 0:
            raise self._fail(f"{kind.name} with a method number", local=False)
        out = self._calls.get(frame.call)
        if out is None:
            raise self._fail(f"{kind.name} for call {frame.call}, which is not open", local=False)
        method = out.method
        if kind is Kind.ERROR:
            fault = self._names(frame, _decode(_fault, self._payload(frame), "error"))
            del self._calls[frame.call]
            return ErrorReceived(frame.call, fault)
        if kind is Kind.RESULT:
            if method.stream:
                raise self._fail(f"result for stream {method.name}", local=False)
            value = self._names(frame, self.registry.decode_result(method, self._payload(frame)))
            del self._calls[frame.call]
            return ResultReceived(frame.call, value)
        if not method.stream:
            raise self._fail(f"{kind.name} for non-stream call {method.name}", local=False)
        if kind is Kind.END:
            if frame.payload:
                raise self._fail("end of stream with a payload", local=False)
            del self._calls[frame.call]
            return EndReceived(frame.call)
        if out.credit <= 0:
            raise self._fail(f"{method.name} sent an item without credit", local=False)
        out.credit -= 1
        item = self.registry.decode_result(method, self._payload(frame))
        return ItemReceived(frame.call, self._names(frame, item))

    def _on_welcome(self, payload: bytes) -> Event:
        welcome: Welcome = _decode(_welcome, payload, "welcome")
        if welcome.protocol != PROTOCOL:
            raise self._fail(
                f"the agent welcomed us with protocol {welcome.protocol}, we speak {PROTOCOL}",
                local=False,
            )
        if welcome.compression not in codec.available():
            raise self._fail(f"the agent chose compression {welcome.compression!r}", local=False)
        if welcome.max_frame < 1024:
            raise self._fail("the agent's frame limit is too small", local=False)
        self.codec = codec.Codec(welcome.compression)
        self.max_frame = min(self.max_frame, welcome.max_frame)
        self.welcome = welcome
        self.state = State.READY
        return WelcomeReceived(welcome)

    def _on_fatal(self, payload: bytes) -> Event:
        fault: Fault = _decode(_fault, payload, "error")
        event = ErrorReceived(0, fault)
        self._close(None)
        return event


# -- the agent ----------------------------------------------------------------------------


@dataclass
class _Serving:
    method: Method
    credit: int


class AgentConnection(_Side):
    """The side that answers: ``yeet agent``."""

    def __init__(
        self,
        version: str,
        registry: Registry,
        max_frame: int = DEFAULT_MAX_FRAME,
        compressions: Sequence[str] | None = None,
    ) -> None:
        super().__init__(version, registry, max_frame)
        self._compressions = tuple(compressions) if compressions is not None else codec.available()
        self._serving: dict[int, _Serving] = {}
        self._last_call = 0
        self.hello_msg: Hello | None = None

    def banner(self, caps: Sequence[str] = ()) -> bytes:
        self._check_open()
        if self.state is not State.BANNER:
            raise self._fail("banner sent twice", local=True)
        self.state = State.HELLO
        return banner_line(self.version, caps)

    def welcome(self, digests: Sequence[str], **extra: Any) -> bytes:
        self._check_open()
        if self.state is not State.WELCOME or self.hello_msg is None:
            raise self._fail(f"welcome sent in state {self.state.value}", local=True)
        chosen = codec.choose(self.hello_msg.compression, self._compressions)
        self.max_frame = min(self.max_frame, self.hello_msg.max_frame)
        msg = Welcome(PROTOCOL, self.version, chosen, tuple(digests), self.max_frame, **extra)
        data = self._frame(Kind.WELCOME, self._encode(msg))
        self.codec = codec.Codec(chosen)
        self.state = State.READY
        return data

    def credit_left(self, call: int) -> int:
        s = self._serving.get(call)
        return 0 if s is None else s.credit

    def is_open(self, call: int) -> bool:
        return call in self._serving

    def _serving_call(self, call: int, what: str) -> _Serving:
        self._check_open()
        if self.state is not State.READY:
            raise self._fail(f"{what} sent in state {self.state.value}", local=True)
        s = self._serving.get(call)
        if s is None:
            raise self._fail(f"{what} for call {call}, which is not open", local=True)
        return s

    def result(self, call: int, value: Any) -> bytes:
        s = self._serving_call(call, "result")
        if s.method.stream:
            raise self._fail(f"result for stream {s.method.name}", local=True)
        data = self._frame(Kind.RESULT, self._encode(value), call=call, pack=True)
        del self._serving[call]
        return data

    def item(self, call: int, value: Any) -> bytes:
        s = self._serving_call(call, "item")
        if not s.method.stream:
            raise self._fail(f"item for non-stream {s.method.name}", local=True)
        if s.credit <= 0:
            raise self._fail(f"item for {s.method.name} without credit", local=True)
        s.credit -= 1
        return self._frame(Kind.ITEM, self._encode(value), call=call, pack=True)

    def end(self, call: int) -> bytes:
        s = self._serving_call(call, "end")
        if not s.method.stream:
            raise self._fail(f"end for non-stream {s.method.name}", local=True)
        del self._serving[call]
        return self._frame(Kind.END, b"", call=call)

    def error(self, call: int, fault: Fault) -> bytes:
        self._serving_call(call, "error")
        del self._serving[call]
        return self._frame(Kind.ERROR, self._encode(fault), call=call)

    def fatal(self, fault: Fault) -> bytes:
        """The last frame of a connection the agent gives up on (call 0); then closed."""
        if self.state in (State.BANNER,):
            return b""
        self._close(None)
        return encode_frame(Kind.ERROR, _enc.encode(fault), max_frame=max(self.max_frame, 1 << 16))

    def _handle(self, frame: Frame) -> Event:
        kind = frame.kind
        if self.state is State.BANNER:
            raise self._fail("the client spoke before the banner was sent", local=False)
        if self.state is State.HELLO:
            if kind is not Kind.HELLO:
                raise self._fail(f"expected hello, got {kind.name}", local=False)
            return self._on_hello(self._payload(frame))
        if self.state is State.WELCOME:
            raise self._fail(f"got {kind.name} before the welcome was sent", local=False)
        if kind is Kind.CALL:
            return self._on_call(frame)
        if frame.method != 0:
            raise self._fail(f"{kind.name} with a method number", local=False)
        if kind is Kind.CANCEL:
            if frame.payload:
                raise self._fail("cancel with a payload", local=False)
            self._check_past(frame.call, "cancel")
            return CancelReceived(frame.call)
        if kind is Kind.CREDIT:
            items = _decode(_int, self._payload(frame), "credit")
            if not 0 < items <= MAX_CREDIT:
                raise self._fail(f"credit of {items} items", local=False)
            self._check_past(frame.call, "credit")
            s = self._serving.get(frame.call)
            if s is not None:
                if not s.method.stream:
                    raise self._fail(f"credit for non-stream {s.method.name}", local=False)
                if s.credit + items > MAX_CREDIT:
                    raise self._fail("stream credit overflow", local=False)
                s.credit += items
            return CreditReceived(frame.call, items)
        raise self._fail(f"a client never sends {kind.name}", local=False)

    def _check_past(self, call: int, what: str) -> None:
        if not 0 < call <= self._last_call:
            raise self._fail(f"{what} for call {call}, which was never made", local=False)

    def _on_hello(self, payload: bytes) -> Event:
        hello: Hello = _decode(_hello, payload, "hello")
        if hello.protocol != PROTOCOL:
            raise self._fail(
                f"the client speaks protocol {hello.protocol} (yeet {hello.version}), "
                f"this agent speaks {PROTOCOL} (yeet {self.version})",
                local=False,
            )
        if hello.methods != self.registry.names():
            raise self._fail(
                f"method tables differ (client yeet {hello.version}, agent yeet {self.version})",
                local=False,
            )
        if hello.max_frame < 1024:
            raise self._fail("the client's frame limit is too small", local=False)
        self.hello_msg = hello
        self.state = State.WELCOME
        return HelloReceived(hello)

    def _on_call(self, frame: Frame) -> Event:
        if frame.call <= self._last_call:
            raise self._fail(
                f"call id {frame.call} is not above the last one ({self._last_call})", local=False
            )
        method = self.registry.get(frame.method)
        args = self._names(frame, self.registry.decode_args(method, self._payload(frame)))
        self._last_call = frame.call
        self._serving[frame.call] = _Serving(method, STREAM_WINDOW if method.stream else 0)
        return CallReceived(frame.call, method, args)
