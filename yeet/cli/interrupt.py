"""Running a command's coroutine so that Ctrl-C always ends it.

Invariant owned here: after the first SIGINT the command's task is cancelled,
and cancelled *again* every ``RECANCEL`` seconds until it has ended. A
cancellation may be swallowed by code yeet does not own (on Python 3.11,
``asyncio.wait_for`` and ``asyncio.timeout`` drop one that lands as their
awaitable completes; a library may catch it); a watch that went on uploading
after Ctrl-C was seen in the head-of-line bench. Every await point of a
session is a safe place to stop (nothing is recorded before it is durable), so
cancelling again is always safe. A second Ctrl-C raises ``KeyboardInterrupt``
at once, as plain ``asyncio.run`` does. Either way the caller gets
``KeyboardInterrupt`` (exit 130).
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Coroutine
from types import FrameType
from typing import Any, TypeVar

T = TypeVar("T")

RECANCEL = 5.0
"""Long enough for a clean exit (closing the agents takes well under a second; a slow
link gets up to 10 s for the first goodbye, then is dropped)."""


def run(main: Coroutine[Any, Any, T], recancel: float = RECANCEL) -> T:
    """``asyncio.run(main)``, with the Ctrl-C handling above."""
    if threading.current_thread() is not threading.main_thread():
        return asyncio.run(main)
    with asyncio.Runner() as runner:
        loop = runner.get_loop()
        task = loop.create_task(main)
        interrupts = 0

        def again() -> None:
            if not task.done():
                task.cancel()  # (the first time: what asyncio.run does)
                loop.call_later(recancel, again)

        def on_sigint(_signum: int, _frame: FrameType | None) -> None:
            nonlocal interrupts
            interrupts += 1
            if interrupts > 1:
                raise KeyboardInterrupt
            loop.call_soon_threadsafe(again)

        previous = signal.signal(signal.SIGINT, on_sigint)
        try:
            return loop.run_until_complete(task)
        except asyncio.CancelledError:
            if interrupts:
                raise KeyboardInterrupt from None
            raise
        finally:
            signal.signal(signal.SIGINT, previous)
