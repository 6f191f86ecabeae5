"""Ctrl-C ends a command even when something swallowed the cancellation."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from yeet.cli import interrupt


def _ctrl_c_soon() -> None:
    asyncio.get_running_loop().call_later(0.1, os.kill, os.getpid(), signal.SIGINT)


def test_a_swallowed_cancellation_is_repeated_until_the_command_ends() -> None:
    swallowed = []

    async def stubborn() -> None:
        _ctrl_c_soon()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            swallowed.append(True)  # e.g. asyncio.wait_for on 3.11, or a library
        await asyncio.sleep(60)

    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        interrupt.run(stubborn(), recancel=0.2)
    assert swallowed
    assert time.monotonic() - start < 10


def test_cleanup_after_ctrl_c_runs_and_the_result_is_keyboardinterrupt() -> None:
    cleaned = []

    async def polite() -> None:
        _ctrl_c_soon()
        try:
            await asyncio.sleep(60)
        finally:
            await asyncio.sleep(0.05)
            cleaned.append(True)

    with pytest.raises(KeyboardInterrupt):
        interrupt.run(polite())
    assert cleaned


def test_without_ctrl_c_it_is_asyncio_run() -> None:
    async def work() -> int:
        await asyncio.sleep(0)
        return 7

    assert interrupt.run(work()) == 7
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
