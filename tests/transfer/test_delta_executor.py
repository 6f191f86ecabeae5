"""Deltas between two real local endpoints, driven by the real executor.

Covers what the CLI cannot steer: dirty-range hints (right and wrong), a
receiver that changes before or during a delta, and the in-place and staged
patch paths through the endpoint calls themselves.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from yeet.contract.endpoint import Endpoint
from yeet.contract.values import EndpointConfig
from yeet.core.decisions import Change, Side
from yeet.core.localindex import LocalIndex
from yeet.delta.ops import Copy
from yeet.model import digest
from yeet.model.entries import Entry, Problem
from yeet.remote.client.connect import subprocess_endpoint
from yeet.replica.endpoint import LocalEndpoint
from yeet.replica.write import deltafile
from yeet.session.executor import Executor
from yeet.state.store import SessionStore, Update

MIB = 1 << 20


class World:
    def __init__(self, tmp: Path, remote_beta: bool = False) -> None:
        self.tmp = tmp
        self.remote_beta = remote_beta
        self.roots = {Side.ALPHA: tmp / "a", Side.BETA: tmp / "b"}
        for r in self.roots.values():
            r.mkdir(exist_ok=True)
        self.store = SessionStore(tmp / "state.db")
        self.ep: dict[Side, Endpoint] = {}
        self.problems: list[tuple[Problem, bool]] = []
        self.updates: list[Update] = []

    async def open(self) -> None:
        for side, root in self.roots.items():
            state = self.tmp / f"{side}-state"
            ep: Endpoint
            if side is Side.BETA and self.remote_beta:  # a real agent process, over pipes
                ep = subprocess_endpoint(state)
            else:
                ep = LocalEndpoint(self.store.conn, self.store.lock, state)
            await ep.open(EndpointConfig("t", str(side), str(root)))
            self.ep[side] = ep

    async def entry(self, side: Side, name: str) -> Entry:
        async for batch in self.ep[side].scan():
            for _path, listing in batch.listings:
                if listing and name in listing:
                    return listing[name]
        raise AssertionError(f"{name} not found on {side}")

    def executor(self, **kw: int) -> Executor:
        ex = Executor(
            dict(self.ep),
            self.updates.extend,
            lambda p, t: self.problems.append((p, t)),
            {Side.ALPHA: LocalIndex(), Side.BETA: LocalIndex()},
            **kw,  # type: ignore[arg-type]
        )
        return ex

    async def close(self) -> None:
        for ep in self.ep.values():
            await ep.close()
        self.store.close()


@asynccontextmanager
async def world(tmp: Path, remote_beta: bool = False) -> AsyncIterator[World]:
    w = World(tmp, remote_beta)
    await w.open()
    try:
        yield w
    finally:
        await w.close()


def _files(w: World, size: int) -> tuple[bytes, Path, Path]:
    old = os.urandom(size)
    a, b = w.roots[Side.ALPHA] / "f", w.roots[Side.BETA] / "f"
    a.write_bytes(old)
    b.write_bytes(old)
    return old, a, b


def _poke(path: Path, offsets: list[int], n: int = 4096) -> None:
    with open(path, "r+b") as f:
        for off in offsets:
            f.seek(off)
            f.write(os.urandom(n))


async def _run(w: World, ex: Executor, change: Change) -> None:
    ex.start()
    ex.submit([change])
    await ex.finish()


@pytest.mark.parametrize(
    ("inplace_min", "memory", "remote"),
    [(4 * MIB, 16 * MIB, False), (4 * MIB, 4096, False), (64 * MIB, 0, False), (4 * MIB, 0, True)],
    ids=["inplace", "inplace-spooled", "staged", "inplace-agent"],
)
def test_hint_sends_only_the_written_bytes(
    tmp_path: Path, inplace_min: int, memory: int, remote: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(deltafile, "MEMORY", memory)  # past it, data goes to the spool file

    async def main() -> None:
        async with world(tmp_path, remote) as w:
            _old, a, b = _files(w, 12 * MIB)
            old = await w.entry(Side.BETA, "f")
            offsets = [5 * MIB + 100, 9 * MIB]
            _poke(a, offsets)
            new = await w.entry(Side.ALPHA, "f")
            ex = w.executor(inplace_min=inplace_min)
            ex.hint(Side.BETA, "f", tuple((o, 4096) for o in offsets))
            await _run(w, ex, Change(Side.BETA, "f", old, new))
            assert not w.problems
            assert b.read_bytes() == a.read_bytes()
            c = ex.counters[Side.BETA]
            assert c.delta_files == 1 and c.signature_bytes == 0
            assert c.literal_bytes == 2 * 4096  # exactly the written bytes (no page widening)
            trashed = list((tmp_path / "beta-state" / "trash").rglob("*"))
            assert bool([t for t in trashed if t.is_file()]) == (inplace_min > 12 * MIB)

    asyncio.run(main())


@pytest.mark.parametrize("remote", [False, True], ids=["local", "agent"])
def test_wrong_hint_falls_back_to_the_whole_file(tmp_path: Path, remote: bool) -> None:
    async def main() -> None:
        async with world(tmp_path, remote) as w:
            _old, a, b = _files(w, 8 * MIB)
            old = await w.entry(Side.BETA, "f")
            _poke(a, [1 * MIB, 6 * MIB])
            new = await w.entry(Side.ALPHA, "f")
            ex = w.executor(inplace_min=4 * MIB)
            ex.hints[(Side.BETA, "f")] = ((1 * MIB, 4096),)  # misses the second write
            await _run(w, ex, Change(Side.BETA, "f", old, new))
            assert not w.problems
            assert b.read_bytes() == a.read_bytes()
            c = ex.counters[Side.BETA]
            assert c.delta_files == 0 and c.files == 1 and c.bytes == 8 * MIB
            assert not list((tmp_path / "beta-state" / "journal").glob("*.yjournal"))

    asyncio.run(main())


def test_receiver_changed_before_the_delta_is_not_overwritten(tmp_path: Path) -> None:
    async def main() -> None:
        async with world(tmp_path) as w:
            _old, a, b = _files(w, 8 * MIB)
            old = await w.entry(Side.BETA, "f")
            _poke(a, [2 * MIB])
            new = await w.entry(Side.ALPHA, "f")
            _poke(b, [3 * MIB])  # the user edits beta after its scan
            mine = b.read_bytes()
            ex = w.executor(inplace_min=4 * MIB)
            await _run(w, ex, Change(Side.BETA, "f", old, new))
            assert b.read_bytes() == mine
            assert [(p.path, t) for p, t in w.problems] == [("f", True)]
            assert "modified" in w.problems[0][0].reason
            assert not w.updates

    asyncio.run(main())


@pytest.mark.parametrize("inplace", [True, False], ids=["inplace", "staged"])
def test_receiver_changed_during_the_delta_is_not_overwritten(
    tmp_path: Path, inplace: bool
) -> None:
    """Between the signature and the commit (the endpoint calls, step by step)."""

    async def main() -> None:
        async with world(tmp_path) as w:
            _old, a, b = _files(w, 8 * MIB)
            old = await w.entry(Side.BETA, "f")
            _poke(a, [2 * MIB])
            new = await w.entry(Side.ALPHA, "f")
            src, dst = w.ep[Side.ALPHA], w.ep[Side.BETA]
            reply = await dst.signature("f", old)
            assert reply.sig is not None and reply.problem is None
            plan = await src.delta_plan("f", new, reply.sig)
            assert plan.problem is None
            handle = await dst.patch_open("f", old, new, inplace)
            pos = 0
            for step in plan.plan:
                if isinstance(step, Copy):
                    await dst.patch_write(handle, pos, [step])
                else:
                    ops = await src.delta_ops("f", new, step.offset, step.length, [])
                    await dst.patch_write(handle, pos, ops)
                pos += step.length
            _poke(b, [7 * MIB])  # the user writes now
            mine = b.read_bytes()
            result = await dst.patch_commit(handle)
            assert not result.ok and result.transient and not result.whole, result
            assert b.read_bytes() == mine
            assert digest.of_bytes("blake3", mine) != new.digest

    asyncio.run(main())


def test_source_changed_after_its_scan_is_reported_not_sent(tmp_path: Path) -> None:
    async def main() -> None:
        async with world(tmp_path) as w:
            old_bytes, a, b = _files(w, 8 * MIB)
            old = await w.entry(Side.BETA, "f")
            _poke(a, [2 * MIB])
            new = await w.entry(Side.ALPHA, "f")
            _poke(a, [4 * MIB])  # the source changes again before the transfer
            ex = w.executor(inplace_min=4 * MIB)
            await _run(w, ex, Change(Side.BETA, "f", old, new))
            assert b.read_bytes() == old_bytes
            assert [(p.path, p.side, t) for p, t in w.problems] == [("f", "alpha", True)]

    asyncio.run(main())
