"""How names appear in yeet's output, and how they are read back from arguments.

Invariant owned here: ``unquote(quote(name)) == name`` for every name a
filesystem can hold (any bytes, decoded as Python does, with
``surrogateescape``), and ``quote(name)`` is valid UTF-8 on one line, with no
control character (so no tab): it is safe as a field of a tab-separated line,
and in JSON it is never a lone surrogate. Pure: no I/O.

The scheme (git's): a name is printed as it is unless it holds a control
character (C0, DEL, C1), a line or paragraph separator (U+2028, U+2029), a byte
that is not UTF-8, or starts with a double quote. Then it is printed inside
double quotes with C escapes: ``\\t`` ``\\n`` ``\\r`` ``\\\\`` ``\\"``, ``\\xNN``
for a byte (an ASCII control or a byte that is not UTF-8) and ``\\uNNNN`` for
another character (C1 controls, U+2028, U+2029). (``yeet trace``, whose fields
are separated by spaces, quotes a name holding a space too.) Every command that
takes a path accepts this quoted form as well as the plain name (an argument in double
quotes that is a well-formed quoted name is decoded; anything else is the name
itself).
"""

from __future__ import annotations

import json
import re
from typing import Any

_NEEDS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_SHORT = {"\t": "\\t", "\n": "\\n", "\r": "\\r", "\\": "\\\\", '"': '\\"'}
_UNSHORT = {"t": 0x09, "n": 0x0A, "r": 0x0D, "\\": 0x5C, '"': 0x22}
_HEX = frozenset("0123456789abcdefABCDEF")


def needs_quoting(name: str, also: str = "") -> bool:
    return (
        name.startswith('"')
        or _NEEDS.search(name) is not None
        or any(c in name for c in also)
        or (name == "" and bool(also))
    )


def quote(name: str, also: str = "") -> str:
    """``name`` as yeet prints it (see the module docstring). ``also``: characters
    that force the quoted form too (a space, where fields are separated by spaces;
    an empty name is then ``""``)."""
    if not needs_quoting(name, also):
        return name
    out = ['"']
    for ch in name:
        o = ord(ch)
        if ch in _SHORT:
            out.append(_SHORT[ch])
        elif o < 0x20 or o == 0x7F:
            out.append(f"\\x{o:02x}")
        elif 0xDC80 <= o <= 0xDCFF:  # a byte that is not UTF-8 (surrogateescape)
            out.append(f"\\x{o - 0xDC00:02x}")
        elif 0x80 <= o <= 0x9F or o in (0x2028, 0x2029) or 0xD800 <= o <= 0xDFFF:
            out.append(f"\\u{o:04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def unquote(text: str) -> str:
    """The name ``text`` stands for: decoded if it is a quoted name, else itself."""
    if len(text) < 2 or text[0] != '"' or text[-1] != '"':
        return text
    decoded = _decode(text[1:-1])
    return text if decoded is None else decoded


def _decode(inner: str) -> str | None:
    out = bytearray()
    i, n = 0, len(inner)
    while i < n:
        ch = inner[i]
        if ch == '"':
            return None  # an unescaped quote: not a quoted name
        if ch != "\\":
            out += ch.encode("utf-8", "surrogateescape")
            i += 1
            continue
        if i + 1 >= n:
            return None
        kind = inner[i + 1]
        if kind in _UNSHORT:
            out.append(_UNSHORT[kind])
            i += 2
        elif kind == "x" and _hex(inner, i + 2, 2):
            out.append(int(inner[i + 2 : i + 4], 16))
            i += 4
        elif kind == "u" and _hex(inner, i + 2, 4):
            code = int(inner[i + 2 : i + 6], 16)
            if 0xD800 <= code <= 0xDFFF:
                return None
            out += chr(code).encode()
            i += 6
        else:
            return None
    return out.decode("utf-8", "surrogateescape")


def _hex(text: str, start: int, count: int) -> bool:
    digits = text[start : start + count]
    return len(digits) == count and all(c in _HEX for c in digits)


def dumps(value: Any) -> str:
    """JSON of ``value`` (indented, as every ``--json`` prints it) in which no string
    holds a lone surrogate: paths should be ``quote``d by the caller; any other
    string that still holds one (a non-UTF-8 byte) is quoted here."""
    return json.dumps(_safe(value), indent=2)


def _safe(value: Any) -> Any:
    if isinstance(value, str):
        return quote(value) if _has_surrogate(value) else value
    if isinstance(value, dict):
        return {_safe(k): _safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_safe(v) for v in value]
    return value


def _has_surrogate(text: str) -> bool:
    return any(0xD800 <= ord(c) <= 0xDFFF for c in text)
