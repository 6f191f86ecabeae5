"""Explaining a refused host key: which known_hosts file and line, and what to do.

Invariant owned here: this module only *explains* a refusal; it never accepts
a key. It reads known_hosts files (plain and hashed host names, wildcards,
negations, ``[host]:port``) and reports the lines that name the host, so the
message can say "changed: line N of FILE holds another key" or "unknown: no
line names it", with the fingerprint of the key the server offered.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class KnownLine:
    file: str
    line: int
    keytype: str
    key: str  # base64 blob
    marker: str  # "", "@revoked", "@cert-authority"


def host_pattern(host: str, port: int | None) -> str:
    return host if port in (None, 22) else f"[{host}]:{port}"


def _glob(pattern: str) -> re.Pattern[str]:
    """OpenSSH host patterns: only ``*`` and ``?`` are special (``[host]:port`` is literal)."""
    return re.compile(
        "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    )


def _matches(field: str, name: str) -> bool:
    if field.startswith("|1|"):
        try:
            _, _, salt, digest = field.split("|")
            mac = hmac.new(base64.b64decode(salt), name.encode(), hashlib.sha1).digest()
            return hmac.compare_digest(mac, base64.b64decode(digest))
        except (ValueError, TypeError):
            return False
    hit = False
    for pat in field.split(","):
        negate = pat.startswith("!")
        if negate:
            pat = pat[1:]
        if _glob(pat).fullmatch(name):
            if negate:
                return False
            hit = True
    return hit


def lines_for(files: list[str], host: str, port: int | None) -> list[KnownLine]:
    """Every line of ``files`` whose host field names ``host`` (on ``port``)."""
    name = host_pattern(host, port)
    out: list[KnownLine] = []
    for file in files:
        path = os.path.expanduser(file)
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                for n, raw in enumerate(f, 1):
                    parts = raw.split()
                    if not parts or parts[0].startswith("#"):
                        continue
                    marker = ""
                    if parts[0].startswith("@"):
                        marker, parts = parts[0], parts[1:]
                    if len(parts) < 3:
                        continue
                    if _matches(parts[0], name):
                        out.append(KnownLine(path, n, parts[1], parts[2], marker))
        except OSError:
            continue
    return out


def explain(
    files: list[str], host: str, port: int | None, offered: tuple[str, str, str] | None
) -> tuple[str, str]:
    """``(message, hint)`` for a refused host key.

    ``offered`` is ``(keytype, base64 key, fingerprint)`` of what the server
    presented, when it could be fetched.
    """
    name = host_pattern(host, port)
    shown = ", ".join(os.path.expanduser(f) for f in files) or "~/.ssh/known_hosts"
    found = lines_for(files, host, port)
    fp = f" (it offers {offered[0]} key {offered[2]})" if offered else ""
    revoked = [k for k in found if k.marker == "@revoked"]
    if offered and any(k.key == offered[1] for k in revoked):
        k = next(k for k in revoked if k.key == offered[1])
        return (
            f"the host key of {name} is marked @revoked in {k.file} line {k.line}; refusing it",
            "do not connect until the host's administrator issued a new key",
        )
    plain = [k for k in found if not k.marker]
    if plain and offered is None:
        k = plain[0]
        return (
            f"the host key of {name} was refused: it does not match the {k.keytype} key "
            f"recorded in {k.file} line {k.line} (a changed host key?). "
            "Nothing was synchronised.",
            f"if the host was reinstalled and you verified its new key, remove the old one "
            f"with `ssh-keygen -R '{name}' -f {k.file}` and add the new one",
        )
    if plain:
        k = plain[0]
        where = f"{k.file} line {k.line}"
        return (
            f"the host key of {name} has CHANGED{fp}: it does not match the {k.keytype} key "
            f"recorded in {where}. Someone may be intercepting the connection "
            "(man-in-the-middle), or the host was reinstalled. Nothing was synchronised.",
            f"if you verified that the new key is genuine, remove the old one with "
            f"`ssh-keygen -R '{name}' -f {k.file}` and add the new one",
        )
    first = os.path.expanduser(files[0]) if files else "~/.ssh/known_hosts"
    return (
        f"{name} is not a known host{fp}: no entry in {shown}; yeet never accepts "
        "unknown host keys. Nothing was synchronised.",
        "check the key fingerprint with the host's administrator, then add it (e.g. "
        f"`ssh-keyscan -p {port or 22} {host} >> {first}`, "
        "or connect once with ssh and accept it)",
    )
