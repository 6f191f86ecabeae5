"""Settings written once: the defaults of a session's options, and what the environment says.

Invariants owned here:

* Every default of a session option is written here once; the session's settings
  (``yeet.session.settings``), the endpoint's configuration and the command line
  take them from here.
* No other module reads ``os.environ`` (``tests/layout`` checks it). ``environment()``
  reads every variable yeet knows once, on first use (the CLI and the agent ask
  at start-up, so a bad value is a usage error before anything is touched), and
  hands out the same frozen value afterwards; ``reload()`` reads again (tests).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from yeet.model.errors import UsageError

# -- the defaults of a session's options ------------------------------------------------

MODE = "two-way-safe"
SYMLINKS = "portable"
SYMLINK_CHOICES = ("portable", "raw", "ignore")
DIGEST = "blake3"
TRASH_DAYS = 30.0
PERMISSIONS = "preserve"
PERMISSION_CHOICES = ("preserve", "portable")
MAX_DELETE = "50%"
"""The deletion guard: a pass may delete at most half of a side's files (when more
than ``yeet.core.guard.SMALL_SIDE`` would go)."""

# -- tunables of the environment ----------------------------------------------------------

DELTA_MIN = 1 << 20
"""Smallest old and new size of a file updated by a delta (``YEET_DELTA_MIN``)."""
INPLACE_MIN = 64 << 20
"""Smallest file patched in place (``YEET_INPLACE_MIN``)."""
COPY_INDEX = 50_000
"""Contents remembered per side for local copies (``YEET_COPY_INDEX``)."""
SSH_WINDOW = 16 << 20
SSH_PACKET = 256 << 10
TRACER_SOCKET = "/run/yeet/tracer.sock"


@dataclass(frozen=True)
class Environment:
    """What the environment says (each field: its variable, and its default)."""

    delta_min: int | None = DELTA_MIN  # YEET_DELTA_MIN (``off``: None, no deltas)
    inplace_min: int = INPLACE_MIN  # YEET_INPLACE_MIN
    copy_index: int = COPY_INDEX  # YEET_COPY_INDEX (0: no local copies)
    ssh_client: str = "asyncssh"  # YEET_SSH (``openssh``: the ssh command)
    ssh_window: int = SSH_WINDOW  # YEET_SSH_WINDOW
    ssh_packet: int = SSH_PACKET  # YEET_SSH_PACKET
    remote_python: str = "python3"  # YEET_REMOTE_PYTHON
    bulk_channel: bool = True  # YEET_BULK_CHANNEL (``0``: one channel per remote)
    tracer_socket: str = TRACER_SOCKET  # YEET_TRACER_SOCKET
    debug: bool = False  # YEET_DEBUG (tracebacks, the wire echoed)
    state_home: Path = Path("~/.local/state/yeet")  # $XDG_STATE_HOME/yeet

    @classmethod
    def read(cls, environ: Mapping[str, str]) -> Environment:
        def number(name: str, default: int, low: int = 0) -> int:
            raw = environ.get(name, "")
            if not raw:
                return default
            try:
                value = int(raw)
            except ValueError:
                value = low - 1
            if value < low:
                raise UsageError(
                    f"{name}={raw!r} is not a whole number of at least {low}",
                    hint=f"unset {name} for its default ({default})",
                )
            return value

        delta = environ.get("YEET_DELTA_MIN", "")
        xdg = environ.get("XDG_STATE_HOME") or os.path.join(
            environ.get("HOME") or os.path.expanduser("~"), ".local/state"
        )
        return cls(
            delta_min=None if delta == "off" else number("YEET_DELTA_MIN", DELTA_MIN),
            inplace_min=number("YEET_INPLACE_MIN", INPLACE_MIN),
            copy_index=_lenient(environ.get("YEET_COPY_INDEX", ""), COPY_INDEX),
            ssh_client="openssh" if environ.get("YEET_SSH") == "openssh" else "asyncssh",
            ssh_window=number("YEET_SSH_WINDOW", SSH_WINDOW, 1),
            ssh_packet=number("YEET_SSH_PACKET", SSH_PACKET, 1),
            remote_python=environ.get("YEET_REMOTE_PYTHON") or "python3",
            bulk_channel=environ.get("YEET_BULK_CHANNEL", "1") != "0",
            tracer_socket=environ.get("YEET_TRACER_SOCKET") or TRACER_SOCKET,
            debug=bool(environ.get("YEET_DEBUG")),
            state_home=Path(xdg) / "yeet",
        )


def _lenient(raw: str, default: int) -> int:
    """A size hint: anything but a number is its default, a negative number 0."""
    try:
        return max(0, int(raw)) if raw else default
    except ValueError:
        return default


_current: Environment | None = None


def environment() -> Environment:
    """The environment as read at start-up (read now if nothing asked before)."""
    global _current
    if _current is None:
        _current = Environment.read(os.environ)
    return _current


def reload() -> Environment:
    """Read the environment again (for tests that change it in-process)."""
    global _current
    _current = None
    return environment()
