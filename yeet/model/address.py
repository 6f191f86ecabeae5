"""Endpoint addresses: local paths, ``[user@]host:path`` and ``ssh://[user@]host[:port]/path``.

Invariant owned here: an address parses to exactly one ``Location``, with the
meaning git and OpenSSH give it:

* ``[user@]host:path`` (scp style): relative to the remote home directory unless
  it starts with ``/``;
* ``ssh://[user@]host[:port]/abs/path``: absolute;
* ``ssh://[user@]host[:port]/~/path`` (``/~`` alone: the home itself, ``/~user/path``:
  another user's home): relative to a home directory.

A remote ``Location.path`` is absolute (``/...``) or relative to the home (``rel``,
``~/rel``, ``~user/rel``: the agent resolves it there). Its canonical text (stored
with the session, printed by ``yeet status``) is stable across runs and working
directories and cannot be misread: local paths are made absolute; a remote one is
``[user@]host:/abs`` or ``[user@]host:rel`` when it has no port, and
``ssh://[user@]host:port/abs`` or ``ssh://[user@]host:port/~/rel`` when it has one.

Sessions written before address format ``ADDRESS_FORMAT`` stored a home-relative
path with a port as ``ssh://host:port/rel`` and an absolute one as
``ssh://host:port//abs``: ``migrate`` turns such a stored text into the canonical
text of the same place.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit

from yeet.model.errors import UsageError

_SCP = re.compile(r"^(?:(?P<user>[^@/:]+)@)?(?P<host>\[[^\]]+\]|[^/:]+):(?P<path>.*)$")
_URL_SAFE = "/~!$&'()*+,;=:@-._"  # kept as they are in a URL path; "%", "?", "#" are quoted

ADDRESS_FORMAT = 2
"""Stored with every session (meta ``addresses``): the meaning its stored addresses have."""


@dataclass(frozen=True)
class Location:
    path: str
    host: str | None = None
    user: str | None = None
    port: int | None = None

    @property
    def is_local(self) -> bool:
        return self.host is None

    @property
    def home_relative(self) -> bool:
        """A remote path the agent resolves against a home directory."""
        return self.host is not None and not self.path.startswith("/")

    def canonical(self) -> str:
        if self.host is None:
            return self.path
        user = f"{self.user}@" if self.user else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        if not self.port:
            return f"{user}{host}:{self.path}"
        if self.path.startswith("/"):
            tail = self.path
        elif self.path.startswith("~") and self.path != "~" and not self.path.startswith("~/"):
            tail = "/" + self.path  # ~user/rel
        else:
            rel = self.path[1:].lstrip("/") if self.path.startswith("~") else self.path
            tail = "/~" if rel in ("", ".") else "/~/" + rel
        encoded = quote(tail.encode("utf-8", "surrogateescape"), safe=_URL_SAFE)
        return f"ssh://{user}{host}:{self.port}{encoded}"


def _url_parts(address: str) -> tuple[str, str | None, int | None, str]:
    """``(host, user, port, path)`` of an ``ssh://`` address; the path is everything
    from the first ``/`` after the authority, percent-decoded (so ``?`` and ``#``
    may be written as they are)."""
    rest = address[len("ssh://") :]
    slash = rest.find("/")
    authority, raw_path = (rest, "") if slash < 0 else (rest[:slash], rest[slash:])
    u = urlsplit("ssh://" + authority)
    if not u.hostname or u.query or u.fragment:
        raise UsageError(f"no host in {address!r}", hint="ssh://[user@]host[:port]/path")
    try:
        port = u.port
    except ValueError:
        raise UsageError(f"bad port in {address!r}") from None
    return u.hostname, u.username, port, unquote(raw_path, errors="surrogateescape")


def parse(address: str) -> Location:
    if not address:
        raise UsageError("empty endpoint address")
    if address.startswith("ssh://"):
        host, user, port, path = _url_parts(address)
        if not path:
            raise UsageError(
                f"no path in {address!r}",
                hint="ssh://host/abs/path for an absolute path, ssh://host/~/path for one "
                "in the home directory",
            )
        if path == "/~":
            path = "."
        elif path.startswith("/~/"):
            path = path[3:].lstrip("/") or "."
        elif path.startswith("/~"):
            path = path[1:]  # ~user/...: the agent expands it
        else:
            path = "/" + path.lstrip("/")  # absolute, as in git and OpenSSH
        return Location(path, host, user, port)
    # A local path is anything with a slash before any colon, or no colon at all.
    colon = address.find(":")
    slash = address.find("/")
    if colon > 0 and (slash < 0 or colon < slash):
        m = _SCP.match(address)
        if m:
            host = m["host"].strip("[]")
            return Location(m["path"] or ".", host, m["user"])
    return Location(os.path.abspath(os.path.expanduser(address)))


def _legacy(address: str) -> Location:
    """How a yeet before address format 2 read an ``ssh://`` address: ``/path`` and
    ``/~/path`` relative to the home, ``//path`` absolute."""
    u = urlsplit(address)
    path = unquote(u.path) or "."
    if path.startswith("//"):
        path = path[1:]
    elif path.startswith("/~/"):
        path = path[3:] or "."
    elif path.startswith("/"):
        path = path[1:] or "."
    return Location(path, u.hostname, u.username, u.port)


def migrate(stored: str) -> str:
    """The canonical text, today, of an address a session stored before format 2."""
    if not stored.startswith("ssh://"):
        return stored  # local paths and scp addresses kept their meaning
    return _legacy(stored).canonical()


def legacy_canonical(address: str) -> str:
    """The canonical text a yeet before format 2 gave a typed address (session names
    derive from it)."""
    if not address.startswith("ssh://"):
        return parse(address).canonical()
    loc = _legacy(address)
    user = f"{loc.user}@" if loc.user else ""
    host = f"[{loc.host}]" if loc.host and ":" in loc.host else loc.host
    if loc.port:
        return f"ssh://{user}{host}:{loc.port}/{loc.path}"
    return f"{user}{host}:{loc.path}"
