"""A typed method table for RPC, derived from a class's own method signatures.

Invariant owned here: each method crosses the wire with exactly the types its
definition declares (arguments as one fixed-length tuple, the result, or each item of
an ``AsyncIterator[T]`` result as a stream of ``T``) and is validated against them on
arrival; methods are numbered by their position in the table (both ends check the
names at the hello). Pure: no I/O.
"""

from __future__ import annotations

import collections.abc
import inspect
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from yeet.model.annotations import function_hints
from yeet.model.errors import ProtocolError

_REQUIRED = inspect.Parameter.empty


@dataclass(frozen=True)
class Method:
    index: int
    name: str
    params: tuple[str, ...]
    defaults: tuple[Any, ...]  # ``inspect.Parameter.empty`` where required
    args_type: Any  # a fixed-length tuple type
    result_type: Any  # of the result, or of each item for a stream
    stream: bool

    def bind(self, args: Sequence[Any]) -> tuple[Any, ...]:
        """All arguments, defaults filled in; too few or too many is our own bug."""
        if len(args) > len(self.params):
            raise ProtocolError(f"{self.name}: too many arguments", local=True)
        full = list(args)
        for i in range(len(args), len(self.params)):
            if self.defaults[i] is _REQUIRED:
                raise ProtocolError(f"{self.name}: missing argument {self.params[i]}", local=True)
            full.append(self.defaults[i])
        return tuple(full)


def _describe(index: int, proto: type, name: str) -> Method:
    func = getattr(proto, name)
    hints = function_hints(func)
    sig = inspect.signature(func)
    params = [p for p in sig.parameters.values() if p.name != "self"]
    ret = hints.get("return")
    stream = typing.get_origin(ret) is collections.abc.AsyncIterator
    result = typing.get_args(ret)[0] if stream else ret
    arg_types = tuple(hints[p.name] for p in params)
    args_type = tuple.__class_getitem__(arg_types) if arg_types else tuple[()]
    return Method(
        index,
        name,
        tuple(p.name for p in params),
        tuple(p.default for p in params),
        args_type,
        type(None) if result is None else result,
        stream,
    )


class Registry:
    """Methods by name and index, with typed decoders for their payloads."""

    def __init__(self, entries: Sequence[tuple[type, str]]) -> None:
        self.methods = tuple(_describe(i, proto, name) for i, (proto, name) in enumerate(entries))
        self.by_name = {m.name: m for m in self.methods}
        self._args = [msgspec.msgpack.Decoder(m.args_type) for m in self.methods]
        self._results = [msgspec.msgpack.Decoder(m.result_type) for m in self.methods]

    def names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.methods)

    def get(self, index: int) -> Method:
        if not 0 <= index < len(self.methods):
            raise ProtocolError(f"unknown method number {index}")
        return self.methods[index]

    def named(self, name: str) -> Method:
        try:
            return self.by_name[name]
        except KeyError:
            raise ProtocolError(f"unknown method {name!r}", local=True) from None

    def decode_args(self, method: Method, payload: bytes) -> tuple[Any, ...]:
        value: tuple[Any, ...] = _decode(self._args[method.index], payload, method.name)
        return value

    def decode_result(self, method: Method, payload: bytes) -> Any:
        return _decode(self._results[method.index], payload, method.name)


def _decode(decoder: Any, payload: bytes, what: str) -> Any:
    try:
        return decoder.decode(payload)
    except msgspec.DecodeError as err:
        raise ProtocolError(f"malformed {what} message: {err}") from None
    except (ValueError, TypeError, OverflowError, RecursionError) as err:
        raise ProtocolError(f"malformed {what} message: {type(err).__name__}: {err}") from None
