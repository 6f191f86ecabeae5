"""``msgspec.structs`` for the stand-in: only ``replace``."""

from __future__ import annotations

from typing import Any, TypeVar

from yeet.compat.msgspec_lite import Struct

S = TypeVar("S", bound=Struct)


def replace(obj: S, **changes: Any) -> S:
    values = {f: getattr(obj, f) for f in type(obj).__struct_fields__}
    values.update(changes)
    return type(obj)(**values)
