"""Which side a transfer step failed on, and what its problem line says.

Invariants owned here:

* A per-path failure of a transfer names the side whose operation failed: the
  receiver for a write (``stage_open``/``stage_write``/``patch_*``/``apply``), the
  source for a read (``read_*``, ``delta_ops``, the source's signature). A step
  wraps each endpoint call in ``on(side)``; an ``OSError`` there becomes a
  ``SideFailure`` carrying that side, caught by the step that reports it.
* A full filesystem (``ENOSPC``/``EDQUOT``) is not worth another pass of the same
  run (it is not transient) and its partial upload is not kept (it would hold the
  space that other files and programs on that side need).
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Iterator
from typing import TypeVar

from yeet.core.decisions import Side
from yeet.replica.fs.space import is_full

T = TypeVar("T")


class SideFailure(Exception):
    """An endpoint call of ``side`` failed with ``err`` (an ``OSError``)."""

    def __init__(self, side: Side, err: OSError) -> None:
        super().__init__(str(err))
        self.side = side
        self.err = err

    @property
    def full(self) -> bool:
        return is_full(self.err)

    @property
    def transient(self) -> bool:
        """Worth a rescan and another pass (the file changed, the link dropped)."""
        return not self.full

    def reason(self, doing: str) -> str:
        """The problem text: what was interrupted (``doing``) and why."""
        why = describe(self.err)
        return why if self.full else f"{doing}: {why}"


@contextlib.contextmanager
def on(side: Side) -> Iterator[None]:
    """Calls in this block are ``side``'s: an ``OSError`` is that side's failure."""
    try:
        yield
    except SideFailure:
        raise
    except OSError as err:
        raise SideFailure(side, err) from err


async def of(side: Side, call: Awaitable[T]) -> T:
    """``await call``, a call of ``side`` (as in ``on``)."""
    with on(side):
        return await call


def describe(err: OSError) -> str:
    """An ``OSError`` as a problem reason: its message (and file, if it names one)."""
    if not err.strerror:
        return str(err)
    return err.strerror + (f" ({err.filename})" if err.filename else "")
