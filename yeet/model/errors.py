"""The one exception hierarchy of yeet, and the exit codes scripts rely on.

Invariant owned here: every failure of a *whole command* is a ``YeetError`` carrying
the process exit code; failures of single paths are ``Problem`` values (see
``yeet.model.entries``) and never exceptions.

Exit codes (documented in the README):

* 0 - success; for ``sync``/``status``: everything is in sync.
* 1 - the command worked but the trees are not in sync (conflicts, problems, halted).
* 2 - usage error (reserved for the CLI library).
* 3 - generic failure of the command (message says what to do).
* 4 - no such session.
* 5 - an endpoint cannot be used (missing root, unreachable host, refused host key).
* 6 - the session is busy (another yeet holds its lock).
* 7 - protocol error (the other end spoke nonsense or another version).
* 8 - the kernel tracer is unavailable.
* 9 - ``yeet status --wait --timeout``: the time ran out while a sync still ran.
* 130 - interrupted (Ctrl-C).

Any other exception is a bug: the CLI prints one line, ``yeet: internal error:
...`` with what to report, and exits 3 (the traceback only with ``YEET_DEBUG=1``).
"""

from __future__ import annotations


class YeetError(Exception):
    """A failure of the whole command. ``str(err)`` is shown to the user."""

    exit_code = 3

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint

    def user_message(self) -> str:
        text = str(self)
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


class UsageError(YeetError):
    """Arguments that parse but make no sense (e.g. the same directory twice)."""

    exit_code = 2


class SessionNotFound(YeetError):
    exit_code = 4


class EndpointError(YeetError):
    """An endpoint cannot be used: root missing, host unreachable, host key refused."""

    exit_code = 5


class SessionBusy(YeetError):
    exit_code = 6


class ProtocolError(YeetError):
    """The peer sent something we cannot accept.

    ``local`` tells whether the fault is ours (we produced bad output / were asked
    for something impossible) or the remote's (it sent malformed input).
    """

    exit_code = 7

    def __init__(self, message: str, *, local: bool = False, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.local = local


class TracerUnavailable(YeetError):
    exit_code = 8


class StateError(YeetError):
    """The session state cannot be read or written."""

    exit_code = 3


class WaitTimeout(YeetError):
    """``yeet status --wait --timeout``: the time ran out while a sync still ran."""

    exit_code = 9
