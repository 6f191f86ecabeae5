"""Group commit: many writers share each durability barrier.

Invariant owned here: ``wait()`` returns only after a barrier (``syncfs``) that
*started after* ``wait()`` was called has completed; every caller arriving while
one barrier runs shares the next one, so N concurrent batches cost about one
``syncfs`` each round, not N.
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class GroupCommit:
    def __init__(self, barrier: Callable[[], None]) -> None:
        self._barrier = barrier
        self._cond = threading.Condition()
        self._started = 0
        self._done = 0
        self._running = False
        self._failed: BaseException | None = None

    def wait(self) -> None:
        """Block until everything written before this call is durable.

        A failed barrier (e.g. EIO) is sticky: this and every later call raise it.
        """
        with self._cond:
            target = self._started + 1
            while self._done < target and self._failed is None:
                if self._running:
                    self._cond.wait()
                    continue
                self._running = True
                self._started += 1
                generation = self._started
                self._cond.release()
                try:
                    self._barrier()
                except BaseException as err:
                    self._failed = err
                finally:
                    self._cond.acquire()
                    self._running = False
                    self._done = generation
                    self._cond.notify_all()
            if self._failed is not None:
                raise self._failed


class Turns:
    """Hands out tickets in arrival order and lets holders proceed one at a time, in order."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._next_ticket = 0
        self._serving = 0

    def ticket(self) -> int:
        with self._cond:
            t = self._next_ticket
            self._next_ticket += 1
            return t

    def wait_turn(self, ticket: int) -> None:
        with self._cond:
            while self._serving != ticket:
                self._cond.wait()

    def done(self, ticket: int) -> None:
        with self._cond:
            assert self._serving == ticket
            self._serving += 1
            self._cond.notify_all()
