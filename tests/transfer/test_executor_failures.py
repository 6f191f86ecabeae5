"""A failure that is not a per-path problem is never swallowed by the workers.

(A bug once made an agent unable to encode a reply; the worker task died
silently and ``yeet sync`` said "synced, no changes".)
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, cast

import pytest

from yeet.contract.endpoint import Endpoint
from yeet.contract.values import Op, OpResult
from yeet.core.decisions import Change, Side
from yeet.core.localindex import LocalIndex
from yeet.model.entries import DIRECTORY
from yeet.session.executor import Executor


class _Broken:
    """An endpoint whose writes fail the way a bug does (not an OSError)."""

    async def apply(self, ops: Sequence[Op], trash_pass: int = 0) -> list[OpResult]:
        raise RuntimeError("cannot encode reply")


def _executor(recorded: list[Any]) -> Executor:
    eps = cast(dict[Side, Endpoint], {Side.ALPHA: _Broken(), Side.BETA: _Broken()})
    return Executor(
        eps, recorded.extend, lambda p, t: recorded.append(p), {s: LocalIndex() for s in Side}
    )


def test_worker_failure_reaches_drain_and_finish() -> None:
    async def run() -> None:
        recorded: list[Any] = []
        ex = _executor(recorded)
        ex.start()
        ex.submit([Change(Side.BETA, "d", None, DIRECTORY)])
        with pytest.raises(RuntimeError, match="cannot encode"):
            await asyncio.wait_for(ex.drain(), 10)
        with pytest.raises(RuntimeError, match="cannot encode"):
            await asyncio.wait_for(ex.finish(), 10)
        assert recorded == []  # nothing was recorded as applied

    asyncio.run(run())
