"""The watcher does not report yeet's own writes (real inotify, real endpoint), and
still reports anything a user does, even to a path yeet just wrote."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import blake3

from yeet.contract.values import DirtySet, EndpointConfig, Op
from yeet.model.entries import Entry, dir_entry, file_entry
from yeet.replica.endpoint import LocalEndpoint
from yeet.state.store import SessionStore


def _file(data: bytes, mode: int = 0o100644) -> Entry:
    return file_entry(blake3.blake3(data).digest(), len(data), mode=mode)


async def _quiet(events: asyncio.Queue[DirtySet], seconds: float) -> set[str]:
    """Directories reported within ``seconds``."""
    dirs: set[str] = set()
    try:
        async with asyncio.timeout(seconds):
            while True:
                dirty = await events.get()
                assert not dirty.overflow
                dirs |= set(dirty.dirs)
    except TimeoutError:
        pass
    return dirs


def test_own_writes_are_not_edits_but_user_writes_are(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()

    async def run() -> None:
        store = SessionStore(tmp_path / "state.db")
        ep = LocalEndpoint(store.conn, store.lock, tmp_path / "storage")
        await ep.open(EndpointConfig("t", "beta", str(root)))
        events: asyncio.Queue[DirtySet] = asyncio.Queue()
        armed = asyncio.Event()

        async def follow() -> None:
            async for dirty in ep.watch():
                if not armed.is_set():
                    armed.set()
                    continue
                await events.put(dirty)

        task = asyncio.create_task(follow())
        try:
            await armed.wait()
            # yeet creates a directory with files in it, a file, replaces and removes one
            d = dir_entry(0o040755)
            results = await ep.apply([Op("d", None, d), Op("top", None, _file(b"1"), data=b"1")])
            assert all(r.ok for r in results)
            ops = [Op(f"d/f{i}", None, _file(b"x%d" % i), data=b"x%d" % i) for i in range(50)]
            assert all(r.ok for r in await ep.apply(ops))
            await ep.apply([Op("top", _file(b"1"), _file(b"22"), data=b"22")])
            await ep.apply([Op("d/f0", _file(b"x0"), None)])
            await ep.apply([Op("d/f1", _file(b"x1"), _file(b"x1", 0o100600))])  # chmod
            assert await _quiet(events, 1.0) == set()
            # a user writes to a path yeet just wrote, and creates one beside it
            (root / "d" / "f2").write_bytes(b"user's")
            assert await _quiet(events, 1.0) == {"d"}
            os.chmod(root / "top", 0o600)
            (root / "d" / "new").mkdir()
            assert await _quiet(events, 1.0) == {"", "d", "d/new"}
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await ep.close()
            store.close()

    asyncio.run(run())
