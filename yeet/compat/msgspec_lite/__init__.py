"""A small pure-Python stand-in for the part of ``msgspec`` that yeet's agent uses.

Why it exists: the remote end of a session may be a stock ``python3`` (3.9+)
with nothing but the standard library, where the compiled ``msgspec`` cannot be
installed. No library serves that case: ``msgspec`` is compiled only, and the
pure-Python msgpack libraries have no typed structs. yeet's values are
``msgspec.Struct`` classes and its wire format is plain msgpack, so the agent
bootstrap installs this module as ``sys.modules['msgspec']`` *only* when the
real ``msgspec`` cannot be imported (``yeet.compat.install_msgspec_fallback``).

Invariant owned here: for the types yeet uses (structs with ``frozen``,
``array_like`` and ``omit_defaults``; ``int``, ``float``, ``str``, ``bytes``,
``bool``, ``None``, int enums, unions, lists, tuples, sequences, dicts), a value
encoded here decodes with the real ``msgspec`` to an equal value and vice versa,
and decoding validates types like ``msgspec`` does (``ValidationError``, a
``DecodeError``, a ``ValueError``). Nothing else of ``msgspec`` is provided.
"""

from __future__ import annotations

import collections.abc
import enum
import typing
from typing import Any, ClassVar

from yeet.model.annotations import class_hints

__all__ = [
    "DecodeError",
    "EncodeError",
    "MsgspecError",
    "Struct",
    "ValidationError",
    "convert",
    "to_builtins",
]


class MsgspecError(Exception):
    pass


class EncodeError(MsgspecError):
    pass


class DecodeError(MsgspecError, ValueError):
    pass


class ValidationError(DecodeError):
    pass


_NODEFAULT = object()


class Struct:
    """Typed record: fields from annotations, defaults from class attributes."""

    __struct_fields__: ClassVar[tuple[str, ...]] = ()
    __struct_defaults__: ClassVar[dict[str, Any]] = {}
    __struct_options__: ClassVar[dict[str, Any]] = {}
    __struct_hints__: ClassVar[dict[str, Any] | None] = None

    def __init_subclass__(cls, **options: Any) -> None:
        merged = dict(getattr(cls, "__struct_options__", {}))
        for key in ("frozen", "array_like", "omit_defaults"):
            if key in options:
                merged[key] = bool(options.pop(key))
        if "tag" in options:  # array_like only: the tag is the array's first item
            tag = options.pop("tag")
            merged["tag"] = cls.__name__ if tag is True else tag
        if options:
            raise TypeError(f"unsupported Struct options: {sorted(options)}")
        super().__init_subclass__()
        fields: list[str] = []
        for klass in reversed(cls.__mro__):
            for name in klass.__dict__.get("__annotations__", {}):  # noqa: RUF063 (3.9)
                if name not in fields and not name.startswith("__"):
                    fields.append(name)
        defaults = {}
        for name in fields:
            value = getattr(cls, name, _NODEFAULT)
            if value is not _NODEFAULT:
                defaults[name] = value
        cls.__struct_fields__ = tuple(fields)
        cls.__struct_defaults__ = defaults
        cls.__struct_options__ = merged
        cls.__struct_hints__ = None
        if merged.get("frozen"):
            cls.__hash__ = Struct._frozen_hash  # type: ignore[method-assign,assignment]
        else:
            cls.__hash__ = None  # type: ignore[assignment]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        cls = type(self)
        fields = cls.__struct_fields__
        if len(args) > len(fields):
            raise TypeError(f"{cls.__name__}: too many positional arguments")
        values = dict(zip(fields, args))
        for key, value in kwargs.items():
            if key not in fields:
                raise TypeError(f"{cls.__name__}: unexpected keyword argument {key!r}")
            if key in values:
                raise TypeError(f"{cls.__name__}: argument {key!r} given twice")
            values[key] = value
        defaults = cls.__struct_defaults__
        for name in fields:
            if name in values:
                value = values[name]
            elif name in defaults:
                value = _fresh(defaults[name])
            else:
                raise TypeError(f"{cls.__name__}: missing required argument {name!r}")
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        if type(self).__struct_options__.get("frozen"):
            raise AttributeError(f"immutable type: {type(self).__name__!r}")
        object.__setattr__(self, name, value)

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, f) for f in type(self).__struct_fields__)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, Struct)
        return self._values() == other._values()

    def _frozen_hash(self) -> int:
        return hash((type(self).__name__, self._values()))

    def __repr__(self) -> str:
        inner = ", ".join(f"{f}={getattr(self, f)!r}" for f in type(self).__struct_fields__)
        return f"{type(self).__name__}({inner})"

    def __copy__(self) -> Struct:
        return self


def _fresh(value: Any) -> Any:
    """Mutable empty defaults are copied, like msgspec does."""
    if isinstance(value, (list, dict, set)):
        return type(value)(value)
    return value


def _hints(cls: type[Struct]) -> dict[str, Any]:
    hints = cls.__struct_hints__
    if hints is None:
        hints = class_hints(cls)
        cls.__struct_hints__ = hints
    return hints


# -- encoding to builtins --------------------------------------------------------------


def struct_to_builtin(obj: Struct) -> Any:
    """One level: a struct as a list (array_like) or a dict (defaults omitted if asked).

    Like msgspec, ``omit_defaults`` applies to the dict form only: arrays always
    carry every field.
    """
    cls = type(obj)
    opts = cls.__struct_options__
    fields = cls.__struct_fields__
    values = [getattr(obj, f) for f in fields]
    if opts.get("array_like"):
        return [opts["tag"], *values] if "tag" in opts else values
    if opts.get("omit_defaults"):
        defaults = cls.__struct_defaults__
        return {
            f: v for f, v in zip(fields, values) if not (f in defaults and _same(v, defaults[f]))
        }
    return dict(zip(fields, values))


def _same(value: Any, default: Any) -> bool:
    if value is default:
        return True
    try:
        return type(value) is type(default) and bool(value == default)
    except Exception:
        return False


def to_builtins(obj: Any) -> Any:
    """Structs, enums, tuples... as plain dicts, lists and scalars (recursively)."""
    if isinstance(obj, Struct):
        return to_builtins(struct_to_builtin(obj))
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, dict):
        return {to_builtins(k): to_builtins(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [to_builtins(v) for v in obj]
    if isinstance(obj, (bytearray, memoryview)):
        return bytes(obj)
    return obj


# -- typed conversion from builtins ----------------------------------------------------

_SEQUENCES = (
    list,
    collections.abc.Sequence,
    collections.abc.MutableSequence,
    collections.abc.Collection,
    collections.abc.Iterable,
)
_MAPPINGS = (dict, collections.abc.Mapping, collections.abc.MutableMapping)
_SETS = (set, frozenset, collections.abc.Set, collections.abc.MutableSet)


def _kind(obj: Any) -> str:
    if obj is None:
        return "null"
    if isinstance(obj, bool):
        return "bool"
    if isinstance(obj, int):
        return "int"
    if isinstance(obj, float):
        return "float"
    if isinstance(obj, str):
        return "str"
    if isinstance(obj, (bytes, bytearray)):
        return "bytes"
    if isinstance(obj, (list, tuple)):
        return "array"
    if isinstance(obj, dict):
        return "object"
    return type(obj).__name__


def _fail(expected: str, obj: Any, path: str) -> ValidationError:
    return ValidationError(f"Expected `{expected}`, got `{_kind(obj)}` - at `{path}`")


def convert(obj: Any, type: Any) -> Any:
    """``obj`` (builtins, as msgpack decodes them) as an instance of ``type``."""
    return _convert(obj, type, "$")


def _convert(obj: Any, tp: Any, path: str) -> Any:
    if tp is Any or tp is object:
        return obj
    if tp is None or tp is type(None):
        if obj is None:
            return None
        raise _fail("null", obj, path)
    origin = typing.get_origin(tp)
    if origin is typing.Union:
        return _union(obj, typing.get_args(tp), path)
    if origin is not None:
        return _generic(obj, origin, typing.get_args(tp), path)
    if isinstance(tp, type):
        return _plain(obj, tp, path)
    raise TypeError(f"type {tp!r} is not supported by yeet's msgspec stand-in")


def _union(obj: Any, args: tuple[Any, ...], path: str) -> Any:
    tagged = {
        a.__struct_options__["tag"]: a
        for a in args
        if isinstance(a, type) and issubclass(a, Struct) and "tag" in a.__struct_options__
    }
    if tagged and isinstance(obj, (list, tuple)):  # a tagged struct: its tag says which
        cls = tagged.get(obj[0]) if obj else None
        if cls is None:
            raise ValidationError(f"Invalid value {obj[0] if obj else None!r} - at `{path}[0]`")
        return _struct(obj, cls, path)
    if obj is None:
        if type(None) in args:
            return None
        raise _fail(" | ".join(getattr(a, "__name__", str(a)) for a in args), obj, path)
    last: ValidationError | None = None
    for arg in args:
        if arg is type(None):
            continue
        try:
            return _convert(obj, arg, path)
        except ValidationError as err:
            last = err
    assert last is not None
    raise last


def _plain(obj: Any, tp: type, path: str) -> Any:
    if issubclass(tp, Struct):
        return _struct(obj, tp, path)
    if issubclass(tp, enum.Enum):
        raw = _convert(obj, int if issubclass(tp, int) else str, path)
        try:
            return tp(raw)
        except ValueError:
            raise ValidationError(f"Invalid enum value {raw!r} - at `{path}`") from None
    if tp is bool:
        if isinstance(obj, bool):
            return obj
        raise _fail("bool", obj, path)
    if tp is int:
        if isinstance(obj, int) and not isinstance(obj, bool):
            return int(obj)
        raise _fail("int", obj, path)
    if tp is float:
        if isinstance(obj, (int, float)) and not isinstance(obj, bool):
            return float(obj)
        raise _fail("float", obj, path)
    if tp is str:
        if isinstance(obj, str):
            return obj
        raise _fail("str", obj, path)
    if tp is bytes or tp is bytearray:
        if isinstance(obj, (bytes, bytearray)):
            return tp(obj)
        raise _fail("bytes", obj, path)
    if tp in (list, tuple, set, frozenset):
        return _generic(obj, tp, (), path)
    if tp is dict:
        return _generic(obj, dict, (), path)
    raise TypeError(f"type {tp!r} is not supported by yeet's msgspec stand-in")


def _generic(obj: Any, origin: Any, args: tuple[Any, ...], path: str) -> Any:
    if origin is tuple:
        if not isinstance(obj, (list, tuple)):
            raise _fail("array", obj, path)
        if not args or (len(args) == 2 and args[1] is Ellipsis):
            item = args[0] if args else Any
            return tuple(_convert(v, item, f"{path}[{i}]") for i, v in enumerate(obj))
        if args == ((),):
            args = ()
        if len(obj) != len(args):
            raise ValidationError(
                f"Expected `array` of length {len(args)}, got {len(obj)} - at `{path}`"
            )
        return tuple(_convert(v, t, f"{path}[{i}]") for i, (v, t) in enumerate(zip(obj, args)))
    if origin in _SEQUENCES:
        if not isinstance(obj, (list, tuple)):
            raise _fail("array", obj, path)
        item = args[0] if args else Any
        return [_convert(v, item, f"{path}[{i}]") for i, v in enumerate(obj)]
    if origin in _SETS:
        if not isinstance(obj, (list, tuple)):
            raise _fail("array", obj, path)
        item = args[0] if args else Any
        made = [_convert(v, item, f"{path}[{i}]") for i, v in enumerate(obj)]
        return frozenset(made) if origin is frozenset else set(made)
    if origin in _MAPPINGS:
        if not isinstance(obj, dict):
            raise _fail("object", obj, path)
        kt, vt = args if args else (Any, Any)
        return {
            _convert(k, kt, f"{path}.key"): _convert(v, vt, f"{path}[{k!r}]")
            for k, v in obj.items()
        }
    raise TypeError(f"type {origin!r} is not supported by yeet's msgspec stand-in")


def _struct(obj: Any, cls: type[Struct], path: str) -> Struct:
    hints = _hints(cls)
    fields = cls.__struct_fields__
    defaults = cls.__struct_defaults__
    values: dict[str, Any] = {}
    if cls.__struct_options__.get("array_like"):
        if not isinstance(obj, (list, tuple)):
            raise _fail("array", obj, path)
        if "tag" in cls.__struct_options__:
            if not obj or obj[0] != cls.__struct_options__["tag"]:
                raise ValidationError(f"Invalid value {obj[0] if obj else None!r} - at `{path}[0]`")
            obj = obj[1:]
        if len(obj) > len(fields):
            raise ValidationError(
                f"Expected `array` of length at most {len(fields)}, got {len(obj)} - at `{path}`"
            )
        for i, (name, value) in enumerate(zip(fields, obj)):
            values[name] = _convert(value, hints[name], f"{path}[{i}]")
    else:
        if not isinstance(obj, dict):
            raise _fail("object", obj, path)
        for name in fields:
            if name in obj:
                values[name] = _convert(obj[name], hints[name], f"{path}.{name}")
    for name in fields:
        if name not in values and name not in defaults:
            raise ValidationError(f"Object missing required field `{name}` - at `{path}`")
    return cls(**values)
