"""Calls on an upload that was dropped meanwhile are ordinary per-path failures.

When one chunk of a large upload fails, the upload is dropped while other workers
still hold chunks of it. Their calls must fail as ``OSError`` (the file is then one
problem; the rest of the sync goes on), never as ``KeyError``/``ValueError`` (a
crash), never hang, and never write through a descriptor closed under them (its
number may already belong to another file). Real writers, a real agent process.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from yeet.contract.values import EndpointConfig, Op
from yeet.model import digest
from yeet.model.entries import Entry, file_entry
from yeet.remote.client.endpoint import RemoteEndpoint
from yeet.remote.client.local_process import SubprocessConnector
from yeet.replica.scan.ignore import IgnoreRules
from yeet.replica.scan.statcache import StatCache
from yeet.replica.write.trash import Trash
from yeet.replica.write.writer import Writer
from yeet.state.store import SessionStore

ALG = "blake2b"
MiB = 1 << 20


@pytest.fixture
def other_fs(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs: a staging directory on another filesystem than the root."""
    mnt = tmp_path / "other-fs"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.fixture(params=["stage-on-root-fs", "stage-elsewhere"])
def writer(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Writer]:
    """A writer whose staging is a partial upload (same filesystem as the root) or a
    temporary file in the tree (staging directory on another filesystem)."""
    root = tmp_path / "root"
    root.mkdir()
    state = tmp_path / "state"
    if request.param == "stage-elsewhere":
        state = request.getfixturevalue("other_fs") / "state"
    state.mkdir()
    store = SessionStore(state / "s.db")
    trash = Trash(str(state / "trash"), store.conn, store.lock, "beta")
    w = Writer(
        str(root),
        str(state / "stage"),
        trash,
        StatCache(store.conn, store.lock, "beta"),
        IgnoreRules(),
        ALG,
    )
    assert w.same_device is (request.param == "stage-on-root-fs")
    try:
        yield w
    finally:
        w.close()


def _entry(data: bytes) -> Entry:
    return file_entry(digest.of_bytes(ALG, data), len(data))


def test_calls_on_an_aborted_upload_fail_as_oserror(writer: Writer, tmp_path: Path) -> None:
    data = os.urandom(3 * MiB)
    entry = _entry(data)
    handle, _have, _maybe = writer.stage_open("big.bin", entry)
    writer.stage_write(handle, 0, data[:MiB])
    writer.stage_abort(handle, keep=True)
    with pytest.raises(OSError):
        writer.stage_write(handle, MiB, data[MiB:])
    with pytest.raises(OSError):
        writer.staged_fd(handle)
    try:
        assert writer.stage_keep(handle, 0, MiB, b"x" * 16) is False
    except OSError:
        pass
    [result] = writer.apply([Op("big.bin", None, entry, stage=handle)])
    assert not result.ok, result
    assert not (tmp_path / "root" / "big.bin").exists()


def test_writes_racing_an_abort_never_crash(writer: Writer) -> None:
    """Chunks being written (in threads, as the endpoint does) while the upload is
    dropped: each write lands whole or fails as an ``OSError`` (``Dropped``)."""
    piece = os.urandom(256 << 10)
    for trial in range(40):
        entry = _entry(piece * 8 + bytes([trial]))
        handle, _have, _maybe = writer.stage_open("big.bin", entry)
        go = threading.Barrier(5)
        errors: list[BaseException] = []

        def chunks(
            first: int,
            handle: int = handle,
            go: threading.Barrier = go,
            errors: list[BaseException] = errors,
        ) -> None:
            go.wait()
            try:
                for i in range(first, 8, 4):
                    writer.stage_write(handle, i * len(piece), piece)
            except BaseException as err:  # what matters is which
                errors.append(err)

        threads = [threading.Thread(target=chunks, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        go.wait()
        writer.stage_abort(handle, keep=trial % 2 == 0)
        for t in threads:
            t.join()
        assert all(isinstance(e, OSError) for e in errors), errors


def test_remote_chunks_in_flight_when_the_upload_is_aborted(tmp_path: Path) -> None:
    """Write-behind chunks of several workers queued for one upload when it is
    aborted: the abort returns, the workers' calls end (no hang, no crash), and
    later chunks fail as ``OSError``."""
    data = os.urandom(24 * MiB)
    entry = _entry(data)

    async def scenario() -> None:
        ep = RemoteEndpoint(SubprocessConnector(tmp_path / "agent-state"), notify=lambda _m: None)
        root = str(tmp_path / "beta")
        await ep.open(EndpointConfig("t", "beta", root, create_root=True, digest=ALG))
        try:
            stage = await ep.stage_open("big.bin", entry)

            async def worker(n: int) -> None:
                for at in range(n * 4 * MiB, len(data), 12 * MiB):
                    await ep.stage_write(stage.handle, at, data[at : at + 4 * MiB])

            workers = [asyncio.ensure_future(worker(n)) for n in range(3)]
            await asyncio.sleep(0)  # every worker has queued its first pieces
            await asyncio.wait_for(ep.stage_abort(stage.handle, keep=True), 30)
            done = await asyncio.wait_for(asyncio.gather(*workers, return_exceptions=True), 30)
            assert all(r is None or isinstance(r, OSError) for r in done), done
            with pytest.raises(OSError):
                await ep.stage_write(stage.handle, 0, data[:MiB])
            [result] = await ep.apply([Op("big.bin", None, entry, stage=stage.handle)])
            assert not result.ok
        finally:
            await ep.close()

    asyncio.run(scenario())
