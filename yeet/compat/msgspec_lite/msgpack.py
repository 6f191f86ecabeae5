"""``msgspec.msgpack`` for the stand-in: plain msgpack through the pure-Python ``msgpack``.

Invariant owned here: output is standard msgpack (binary as ``bin``, strings as
``str``), the same bytes' meaning as the real ``msgspec.msgpack`` gives them;
any malformed input raises ``DecodeError``, never anything else.
"""

from __future__ import annotations

import enum
from typing import Any

import msgpack as _msgpack

from yeet.compat.msgspec_lite import (
    DecodeError,
    EncodeError,
    Struct,
    ValidationError,
    convert,
    struct_to_builtin,
)


def _default(obj: Any) -> Any:
    if isinstance(obj, Struct):
        return struct_to_builtin(obj)
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, (set, frozenset)):
        return list(obj)
    if isinstance(obj, memoryview):
        return obj.tobytes()
    raise TypeError(f"Encoding objects of type {type(obj).__name__} is unsupported")


class Encoder:
    def encode(self, obj: Any) -> bytes:
        try:
            out: bytes = _msgpack.packb(obj, use_bin_type=True, default=_default)
        except UnicodeEncodeError:
            raise  # as msgspec does: a name that is not UTF-8 (the protocol escapes it)
        except (TypeError, ValueError, OverflowError) as err:
            raise EncodeError(str(err)) from None
        return out


class Decoder:
    def __init__(self, type: Any = Any) -> None:
        self.type = type

    def decode(self, buf: Any) -> Any:
        try:
            obj = _msgpack.unpackb(bytes(buf), raw=False, strict_map_key=False, use_list=True)
        except Exception as err:  # any malformed input is a decode error
            raise DecodeError(f"malformed msgpack: {type(err).__name__}: {err}") from None
        try:
            return convert(obj, self.type)
        except ValidationError:
            raise
        except (TypeError, ValueError) as err:
            raise ValidationError(str(err)) from None


def encode(obj: Any) -> bytes:
    return Encoder().encode(obj)


def decode(buf: Any, *, type: Any = Any) -> Any:
    return Decoder(type).decode(buf)
