"""Endpoint addresses: local paths, ``[user@]host:path`` and ``ssh://[user@]host[:port]/path``.

Invariant owned here: an address parses to exactly one ``Location``, and its
canonical text (stored with the session) is stable across runs and working
directories: local paths are made absolute, remote ones are kept as written.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from yeet.errors import UsageError

_SCP = re.compile(r"^(?:(?P<user>[^@/:]+)@)?(?P<host>\[[^\]]+\]|[^/:]+):(?P<path>.*)$")


@dataclass(frozen=True)
class Location:
    path: str
    host: str | None = None
    user: str | None = None
    port: int | None = None

    @property
    def is_local(self) -> bool:
        return self.host is None

    def canonical(self) -> str:
        if self.host is None:
            return self.path
        user = f"{self.user}@" if self.user else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = f":{self.port}" if self.port else ""
        if not port:
            return f"{user}{host}:{self.path}"
        return f"ssh://{user}{host}{port}/{self.path}"


def parse(address: str) -> Location:
    if not address:
        raise UsageError("empty endpoint address")
    if address.startswith("ssh://"):
        u = urlsplit(address)
        if not u.hostname:
            raise UsageError(f"no host in {address!r}", hint="ssh://[user@]host[:port]/path")
        try:
            port = u.port
        except ValueError:
            raise UsageError(f"bad port in {address!r}") from None
        path = unquote(u.path) or "."
        # ssh://host/~/x and ssh://host/x mean a path relative to the home directory,
        # ssh://host//abs means an absolute one (as in git's ssh URLs).
        if path.startswith("//"):
            path = path[1:]
        elif path.startswith("/~/"):
            path = path[3:] or "."
        elif path.startswith("/"):
            path = path[1:] or "."
        return Location(path, u.hostname, u.username, port)
    # A local path is anything with a slash before any colon, or no colon at all.
    colon = address.find(":")
    slash = address.find("/")
    if colon > 0 and (slash < 0 or colon < slash):
        m = _SCP.match(address)
        if m:
            host = m["host"].strip("[]")
            return Location(m["path"] or ".", host, m["user"])
    return Location(os.path.abspath(os.path.expanduser(address)))
