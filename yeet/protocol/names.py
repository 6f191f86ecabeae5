"""Any file name across the wire, even one that is not UTF-8.

Invariant owned here: every ``str`` that crosses the wire comes out exactly as
it went in, including the lone surrogates (U+DC80..U+DCFF) by which Python
carries the bytes of a non-UTF-8 file name (``surrogateescape``), which
msgpack's UTF-8 strings cannot hold.

Such a byte becomes one private-use character in U+F780..U+F7FF; a real
character in U+F700..U+F7FF is sent as U+F700 followed by itself. Strings
without either (nearly all) are sent unchanged, and a payload is only walked
when encoding failed or its bytes contain the UTF-8 lead of that block, so
the cost is a substring search per payload.
"""

from __future__ import annotations

from typing import Any

import msgspec

BLOCK_LO, BLOCK_HI = 0xF700, 0xF7FF
QUOTE = chr(BLOCK_LO)
SURR_LO, SURR_HI = 0xDC80, 0xDCFF
# UTF-8 of U+F700..U+F7FF starts with EF 9C .. EF 9F
_LEADS = (b"\xef\x9c", b"\xef\x9d", b"\xef\x9e", b"\xef\x9f")


def _escape_str(s: str) -> str:
    out = []
    for ch in s:
        o = ord(ch)
        if SURR_LO <= o <= SURR_HI:
            out.append(chr(BLOCK_LO + (o - 0xDC00)))
        elif BLOCK_LO <= o <= BLOCK_HI:
            out.append(QUOTE + ch)
        else:
            out.append(ch)
    return "".join(out)


def _unescape_str(s: str) -> str:
    out = []
    it = iter(s)
    for ch in it:
        o = ord(ch)
        if ch == QUOTE:
            out.append(next(it, ""))
        elif 0xF780 <= o <= BLOCK_HI:
            out.append(chr(0xDC00 + (o - BLOCK_LO)))
        else:
            out.append(ch)
    return "".join(out)


def _needs_escape(s: str) -> bool:
    return any(SURR_LO <= ord(c) <= SURR_HI or BLOCK_LO <= ord(c) <= BLOCK_HI for c in s)


def _needs_unescape(s: str) -> bool:
    return any(BLOCK_LO <= ord(c) <= BLOCK_HI for c in s)


def _walk(value: Any, fix: Any, test: Any) -> Any:
    if isinstance(value, str):
        return fix(value) if test(value) else value
    if isinstance(value, list):
        items = [_walk(v, fix, test) for v in value]
        return items if any(a is not b for a, b in zip(items, value)) else value
    if isinstance(value, tuple):
        items = [_walk(v, fix, test) for v in value]
        if all(a is b for a, b in zip(items, value)):
            return value
        return type(value)(*items) if hasattr(value, "_fields") else tuple(items)
    if isinstance(value, dict):
        pairs = [(_walk(k, fix, test), _walk(v, fix, test)) for k, v in value.items()]
        if all(a is k and b is v for (a, b), (k, v) in zip(pairs, value.items())):
            return value
        return dict(pairs)
    fields = getattr(value, "__struct_fields__", None)
    if fields:
        changes = {}
        for name in fields:
            old = getattr(value, name)
            new = _walk(old, fix, test)
            if new is not old:
                changes[name] = new
        return msgspec.structs.replace(value, **changes) if changes else value
    return value


def escape(value: Any) -> Any:
    """``value`` with every string made UTF-8-safe (call when encoding failed
    or when the encoded form contains the escape block)."""
    return _walk(value, _escape_str, _needs_escape)


def unescape(value: Any) -> Any:
    """The inverse of ``escape`` on a decoded value."""
    return _walk(value, _unescape_str, _needs_unescape)


def may_need_unescape(payload: bytes) -> bool:
    return any(lead in payload for lead in _LEADS)
