"""Failures crossing the wire: exceptions in the agent, ``Fault`` values, exceptions here.

Invariant owned here: a call that fails in the agent fails here with the same
meaning: ``OSError`` stays an ``OSError`` with its errno (per-file trouble the
executor reports as a problem), a ``YeetError`` stays that ``YeetError`` (same
exit code, same hint), a malformed path is an ``OSError(EINVAL)``, and anything
unexpected is an ``EndpointError`` naming the host, never silently dropped.
"""

from __future__ import annotations

import errno as errnos

from yeet.model import errors
from yeet.model.paths import BadPath
from yeet.protocol.messages import Fault

_YEET_ERRORS: dict[str, type[errors.YeetError]] = {
    cls.__name__: cls
    for cls in (
        errors.YeetError,
        errors.UsageError,
        errors.SessionNotFound,
        errors.EndpointError,
        errors.SessionBusy,
        errors.TracerUnavailable,
        errors.StateError,
    )
}


def fault_of(err: BaseException) -> Fault:
    """What the agent sends for an exception raised by a call."""
    if isinstance(err, errors.ProtocolError):
        return Fault("ProtocolError", str(err), err.hint)
    if isinstance(err, errors.YeetError):
        name = type(err).__name__ if type(err).__name__ in _YEET_ERRORS else "YeetError"
        return Fault(name, str(err), err.hint)
    if isinstance(err, BadPath):
        return Fault("BadPath", str(err), None, errnos.EINVAL)
    if isinstance(err, OSError):
        return Fault("OSError", str(err), None, err.errno)
    return Fault("InternalError", f"{type(err).__name__}: {err}")


def exception_of(fault: Fault, where: str) -> BaseException:
    """The exception a failed remote call raises here (``where`` names the agent)."""
    if fault.kind in ("OSError", "BadPath"):
        # the agent sent ``str(err)``: "[Errno 28] ..." would read "[Errno 28] [Errno 28] ..."
        number = fault.errno or errnos.EIO
        return OSError(number, fault.message.removeprefix(f"[Errno {number}] "))
    if fault.kind == "ProtocolError":
        return errors.ProtocolError(
            f"the agent on {where} rejected our input: {fault.message}", local=True, hint=fault.hint
        )
    cls = _YEET_ERRORS.get(fault.kind)
    if cls is not None:
        return cls(fault.message, hint=fault.hint)
    return errors.EndpointError(
        f"the yeet agent on {where} failed: {fault.message}",
        hint="this is a bug in yeet; the agent's log is on its standard error",
    )
