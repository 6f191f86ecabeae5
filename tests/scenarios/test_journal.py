"""One-shot syncs scoped by the change journal (``yeet tracer``): real BPF, fanotify, CLI.

A sync after a change re-lists only the directories the journals name, gives
the same trees as a full scan, and falls back to a full scan (still syncing
everything) when the journal lost events.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cli_harness import Yeet, snapshot, write
from tests.journal_service import journal_service
from tests.pagecache import evict, resident_bytes
from tests.scenarios.test_watch import wait_for
from yeet.contract.endpoint import Endpoint
from yeet.core.decisions import Side
from yeet.model import settings as yeet_settings
from yeet.remote.client.connect import subprocess_endpoint
from yeet.replica.endpoint import LocalEndpoint
from yeet.session.settings import Settings
from yeet.session.sync import Session
from yeet.state.store import SessionStore

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the change journal needs root")

DIRS, FILES = 30, 4


@pytest.fixture(scope="module")
def journal_socket() -> Iterator[Path]:
    sock = Path(f"/tmp/yeet-journal-{uuid.uuid4().hex[:8]}.sock")
    with journal_service(sock):
        yield sock


def _sync(y: Yeet, a: Path, b: Path, *opts: str) -> dict[str, Any]:
    r = y("sync", "--json", str(a), str(b), "--name", "s", *opts, rc=0)
    doc = json.loads(r.out)
    assert isinstance(doc, dict)
    doc["stderr"] = r.err
    return doc


def _tree(root: Path) -> None:
    for d in range(DIRS):
        for f in range(FILES):
            write(root, f"d{d:02}/sub/f{f}", f"{d}-{f}\n" * 50)
    write(root, "big.bin", b"\0" * (4 << 20))


def test_sync_after_a_change_lists_only_what_changed(tmp_path: Path, journal_socket: Path) -> None:
    y = Yeet(tmp_path / "home", {"YEET_TRACER_SOCKET": str(journal_socket)})
    a, b = tmp_path / "alpha", tmp_path / "beta"
    _tree(a)
    write(a, "build/obj/old.o", "ignored")
    first = _sync(y, a, b, "--ignore", "build/")  # stored with the session
    full = first["scan"]["listed"]
    assert not first["scan"]["journal"]
    assert full["alpha"] >= 2 * DIRS + 1
    assert "change journal" not in first["stderr"]  # it just started: nothing to say

    quiet = _sync(y, a, b)  # our own writes to beta, reported once
    assert quiet["scan"]["journal"], quiet["stderr"]
    still = _sync(y, a, b)
    assert still["scan"]["journal"] and still["scan"]["listed"] == {"alpha": 0, "beta": 0}

    # changes of every kind, on both sides
    with open(a / "big.bin", "r+b") as f:
        f.seek(1 << 20)
        f.write(b"\1" * 4096)
    write(a, "d03/sub/f0", "changed\n")
    write(a, "new/deeper/x", "new file\n")
    os.rename(a / "d05/sub/f1", a / "d06/sub/moved")
    (a / "d07/sub/f2").unlink()
    (a / "d08/sub/f3").chmod(0o755)
    write(b, "d10/sub/f0", "changed on beta\n")
    (b / "d11/sub").rename(b / "d11/renamed")
    write(a, "build/obj/new.o", "ignored, so never synced")
    write(a, "build/more/x.o", "ignored too")

    scoped = _sync(y, a, b)
    assert scoped["scan"]["journal"], scoped["stderr"]
    listed = scoped["scan"]["listed"]
    print(f"\nfull scan listed {full}, the journal-scoped sync listed {listed}")
    assert max(listed.values()) <= 12, listed  # not 2*DIRS+1
    assert scoped["scan"]["hinted"]["alpha"] >= 2
    assert scoped["applied"]["beta"]["files"] >= 4
    assert {k: v for k, v in snapshot(a).items() if not k.startswith("build")} == snapshot(b)
    assert (b / "d08/sub/f3").stat().st_mode & 0o111
    assert (a / "d11/renamed/f1").exists() and not (a / "d11/sub").exists()
    assert not (b / "build").exists()

    # a full scan finds nothing left to do: the scoped pass was complete
    control = Yeet(y.home, {"YEET_TRACER_SOCKET": str(tmp_path / "no-journal.sock")})
    r = control("sync", "--json", str(a), str(b), "--name", "s", rc=0)
    doc = json.loads(r.out)
    assert not doc["scan"]["journal"] and doc["scan"]["listed"]["alpha"] >= 2 * DIRS
    assert "change journal" in r.err and "scanning everything" in r.err  # said once...
    again = control("sync", "--json", str(a), str(b), "--name", "s", rc=0)
    assert "change journal" not in again.err  # ...not at every sync
    for side in ("alpha", "beta"):
        applied = doc["applied"][side]
        assert applied["files"] == applied["dirs"] == applied["removed"] == 0, doc


def test_lost_events_mean_a_full_scan_that_syncs_everything(tmp_path: Path) -> None:
    sock = tmp_path / "small-journal.sock"
    y = Yeet(tmp_path / "home", {"YEET_TRACER_SOCKET": str(sock)})
    a, b = tmp_path / "alpha", tmp_path / "beta"
    paths = [write(a, f"s/f{i:02}", b"\0" * 65536) for i in range(40)]
    with journal_service(sock, "--max-files", "4"):
        _sync(y, a, b)
        assert _sync(y, a, b)["scan"]["journal"]

        def storm(seed: int) -> None:
            fds = [os.open(p, os.O_RDWR) for p in paths]
            for i in range(2000):
                os.pwrite(fds[(i * 7 + seed) % len(fds)], b"%d" % i, (i * 4099) % 65000)
            for fd in fds:
                os.close(fd)

        ts = [threading.Thread(target=storm, args=(s,)) for s in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        doc = _sync(y, a, b)
        assert not doc["scan"]["journal"]
        assert "lost" in doc["stderr"], doc["stderr"]
        assert doc["applied"]["beta"]["files"] == 40
        assert snapshot(a) == snapshot(b)
        # the journal recovers: the next interval is vouched for again
        _sync(y, a, b)  # our own writes to beta
        with open(paths[0], "r+b") as f:
            f.write(b"after the storm")
        doc = _sync(y, a, b)
        assert doc["scan"]["journal"], doc["stderr"]
        assert doc["applied"]["beta"]["files"] == 1
    assert snapshot(a) == snapshot(b)


def test_the_agent_asks_its_own_hosts_journal(
    tmp_path: Path, journal_socket: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Beta served by its own ``yeet agent`` process (the wire protocol): it asks the
    journal of its host; the session gets both sides' dirty ranges as hints."""
    monkeypatch.setenv("YEET_TRACER_SOCKET", str(journal_socket))
    yeet_settings.reload()
    a, b = tmp_path / "a", tmp_path / "b"
    _tree(a)
    store = SessionStore(tmp_path / "state.db")
    settings = Settings("t", str(a), str(b), digest="blake2b")

    async def once() -> tuple[Session, Any]:
        local = SessionStore(tmp_path / "local.db")
        eps: dict[Side, Endpoint] = {
            Side.ALPHA: LocalEndpoint(local.conn, local.lock, tmp_path / "alpha-side"),
            Side.BETA: subprocess_endpoint(tmp_path / "beta-state"),
        }
        session = Session(settings, store, eps, {Side.ALPHA: str(a), Side.BETA: str(b)})
        try:
            return session, await session.run()
        finally:
            await asyncio.gather(*(ep.close() for ep in eps.values()), return_exceptions=True)
            local.close()

    try:
        for _ in range(2):  # copy, then take our own writes to beta in
            _s, out = asyncio.run(once())
            assert out.in_sync
        with open(a / "big.bin", "r+b") as f:
            f.seek(8192)
            f.write(b"a" * 100)
        with open(b / "d01/sub/f1", "r+b") as f:
            f.seek(10)
            f.write(b"b" * 5)
        session, out = asyncio.run(once())
    finally:
        store.close()
    assert out.in_sync and out.journal, out.notes
    assert max(out.listed.values()) <= 4, out.listed
    assert session.hints[Side.ALPHA] == {"big.bin": ((8192, 8292),)}
    assert session.hints[Side.BETA] == {"d01/sub/f1": ((10, 15),)}
    assert snapshot(a) == snapshot(b)


def test_journal_ranges_make_a_large_update_send_just_those_pages(
    tmp_path: Path, journal_socket: Path
) -> None:
    """The dirty ranges the kernel saw become the delta: no signatures, only the
    written pages travel, and the result is verified by digest."""
    y = Yeet(
        tmp_path / "home",
        {"YEET_TRACER_SOCKET": str(journal_socket), "YEET_INPLACE_MIN": str(1 << 20)},
    )
    a, b = tmp_path / "alpha", tmp_path / "beta"
    write(a, "big.img", os.urandom(16 << 20))
    _sync(y, a, b)
    _sync(y, a, b)  # our own writes to beta echo back once
    with open(a / "big.img", "r+b") as f:
        for i in range(4):
            f.seek((3 * i + 1) << 20)
            f.write(os.urandom(4096))
    doc = _sync(y, a, b)
    assert doc["scan"]["journal"], doc["stderr"]
    beta = doc["applied"]["beta"]
    assert beta["delta_files"] == 1, beta
    assert 0 < beta["literal_bytes"] <= 4 * 4096, beta  # pages, not the file
    assert beta["signature_bytes"] == 0, beta  # the hint replaced the signatures
    assert (b / "big.img").read_bytes() == (a / "big.img").read_bytes()


def test_watch_reads_and_sends_a_large_file_where_it_was_written(
    tmp_path: Path, journal_socket: Path
) -> None:
    """Continuous mode asks the journals before each pass: a large file written in
    four pages is read again only around them (its cache is dropped first; what
    is resident afterwards is what was read) and arrives whole."""
    y = Yeet(
        tmp_path / "home",
        {"YEET_TRACER_SOCKET": str(journal_socket), "YEET_INPLACE_MIN": str(1 << 20)},
    )
    a, b = tmp_path / "alpha", tmp_path / "beta"
    data = bytearray(os.urandom(32 << 20))
    write(a, "big.img", bytes(data))
    b.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "yeet", "sync", "--watch", "-q", str(a), str(b), "--name", "s"],
        env=y.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def arrived(spots: list[int]) -> bool:  # reads beta only: alpha's cache is measured
        try:
            with open(b / "big.img", "rb") as f:
                return all(os.pread(f.fileno(), 4096, o) == data[o : o + 4096] for o in spots)
        except FileNotFoundError:
            return False

    try:
        wait_for(lambda: arrived([0, len(data) - 4096]), timeout=120)
        wait_for(lambda: (b / "big.img").read_bytes() == data, timeout=60)
        time.sleep(1.5)  # our own writes to beta come back once as events
        evict(a / "big.img")
        assert resident_bytes(a / "big.img") == 0
        pages = [(3 * i + 1) << 20 for i in range(4)]
        with open(a / "big.img", "r+b") as f:
            for off in pages:
                piece = os.urandom(4096)
                data[off : off + 4096] = piece
                os.pwrite(f.fileno(), piece, off)  # whole pages: nothing read
        wait_for(lambda: arrived(pages), timeout=120)
        read = resident_bytes(a / "big.img") - len(pages) * 4096
        assert read <= len(pages) * 64 << 10, f"the sender read {read} bytes of the file"
        assert (b / "big.img").read_bytes() == data
    finally:
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
