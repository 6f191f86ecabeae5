"""The change journal fails closed: a failure in any stage of the drain makes the
interval incomplete (that sync scans) - never a complete answer short of a change.

The service runs in this process (real BPF, real fanotify); each test breaks one
stage once, by replacing the function that stage calls with one that raises.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from yeet.tracer import drain as drain_mod
from yeet.tracer.inodes import InodeIndex
from yeet.tracer.peers import Peer
from yeet.tracer.service import TracerService

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the change journal needs root")

ROOT = Peer(pid=os.getpid(), uid=0, gid=0)


@pytest.fixture(scope="module")
def service() -> Iterator[TracerService]:
    s = TracerService(f"/tmp/yeet-failclosed-{uuid.uuid4().hex[:8]}.sock")
    try:
        yield s
    finally:
        s.close()


class Journal:
    """One root's questions to the service, cursor kept."""

    def __init__(self, service: TracerService, root: Path) -> None:
        self.service, self.root = service, root
        self.cursor: bytes | None = None

    def ask(self) -> dict[str, Any]:
        async def go() -> dict[str, Any]:
            return await self.service.journal(ROOT, str(self.root), self.cursor)

        answer = asyncio.run(go())
        assert answer["ok"], answer
        self.cursor = base64.b64decode(str(answer["cursor"]))
        return answer

    def quiet(self) -> None:
        """Ask until an answer is complete and empty (the journal is settled)."""
        for _ in range(10):
            a = self.ask()
            if a["complete"] and not a["dirs"] and not a["files"]:
                return
        raise AssertionError(f"the journal did not settle: {a}")


@pytest.fixture
def journal(tmp_path: Path, service: TracerService) -> Journal:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "f").write_bytes(b"0" * 10_000)
    j = Journal(service, root)
    j.ask()
    j.quiet()
    return j


def _change(root: Path) -> None:
    with open(root / "sub" / "f", "r+b") as f:
        f.seek(100)
        f.write(b"changed")
    (root / "sub" / "new").write_text("new")


def _once(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn``, except that its first call raises."""
    calls = []

    def broken(*args: Any, **kw: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("injected failure")
        return fn(*args, **kw)

    return broken


def _fails_closed(journal: Journal, service: TracerService) -> None:
    before = service.drainer.failures
    answer = journal.ask()
    assert service.drainer.failures > before, "the injected failure was not reached"
    assert not answer["complete"], answer
    assert "injected failure" in str(answer["reason"]), answer
    # and the journal recovers: the next interval is vouched for again
    journal.quiet()
    _change(journal.root)
    again = journal.ask()
    assert again["complete"], again
    assert "sub" in again["dirs"] and "sub/f" in dict(again["files"])


def test_reading_name_events_fails(
    journal: Journal, service: TracerService, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service.names, "read", _once(service.names.read))
    _change(journal.root)
    _fails_closed(journal, service)


def test_reading_written_files_fails(
    journal: Journal, service: TracerService, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service.tracer, "dirty_files", _once(service.tracer.dirty_files))
    _change(journal.root)
    _fails_closed(journal, service)


def test_placing_a_written_file_fails(
    journal: Journal, service: TracerService, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service.tracer, "locate", _once(service.tracer.locate))
    _change(journal.root)
    _fails_closed(journal, service)


def test_naming_a_directory_fails(
    journal: Journal, service: TracerService, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(drain_mod, "name_of_handle", _once(drain_mod.name_of_handle))
    _change(journal.root)
    _fails_closed(journal, service)


def test_indexing_a_new_name_fails(
    journal: Journal, service: TracerService, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(InodeIndex, "add_path", _once(InodeIndex.add_path))
    _change(journal.root)
    _fails_closed(journal, service)


def test_answering_fails_the_question_not_the_journal(
    journal: Journal, service: TracerService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure while answering (after the drain) is an error the client turns into
    "incomplete"; the same cursor then gets the full answer."""
    _change(journal.root)
    cursor = journal.cursor
    monkeypatch.setattr(service, "_visible", _once(service._visible))

    async def over_the_protocol() -> dict[str, object]:
        raw = base64.b64encode(cursor or b"").decode()
        line = json.dumps({"op": "journal", "root": str(journal.root), "cursor": raw})
        return await service.reply(ROOT, line.encode())

    reply = asyncio.run(over_the_protocol())
    assert reply["ok"] is False and "injected failure" in str(reply["error"]), reply
    journal.cursor = cursor
    answer = journal.ask()
    assert answer["complete"], answer
    assert "sub/f" in dict(answer["files"]) and "sub" in answer["dirs"]


def test_a_failure_while_the_service_waits_is_remembered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Name events are read as they come (the event loop's reader callback), not only
    when someone asks: a failure there must still reach the next answer."""
    from yeet.replica.changes import ask

    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    sock = tmp_path / "s.sock"

    async def scenario() -> tuple[bool, str, bool]:
        service = TracerService(str(sock))
        ready = asyncio.Event()
        task = asyncio.ensure_future(service.serve(ready))
        try:
            await ready.wait()
            first = await asyncio.to_thread(ask, str(root), None, str(sock))
            quiet = await asyncio.to_thread(ask, str(root), first.cursor, str(sock))
            assert quiet.complete, quiet.reason
            failures = service.drainer.failures
            monkeypatch.setattr(service.names, "read", _once(service.names.read))
            (root / "sub" / "new").write_text("made while nobody asked")
            for _ in range(100):  # the reader callback runs (and fails)
                await asyncio.sleep(0.02)
                if service.drainer.failures > failures:
                    break
            after = await asyncio.to_thread(ask, str(root), quiet.cursor, str(sock))
            later = await asyncio.to_thread(ask, str(root), after.cursor, str(sock))
            return after.complete, after.reason, later.complete
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            service.close()

    complete, reason, recovered = asyncio.run(scenario())
    assert not complete and "injected failure" in reason
    assert recovered
