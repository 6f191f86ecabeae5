"""Paths from the wire are untrusted: nothing is ever read or written outside the root."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.sshd import REPO
from yeet.contract.calls import ENDPOINT
from yeet.contract.values import EndpointConfig, Op, ReadRequest
from yeet.model import digest
from yeet.model.entries import DIRECTORY, file_entry, symlink_entry
from yeet.model.paths import BadPath
from yeet.protocol.connection import ClientConnection
from yeet.protocol.frames import Kind, encode_frame
from yeet.remote.agent.endpoint import AgentEndpoint

ALG = "blake2b"


def entry(data: bytes) -> Any:
    return file_entry(digest.of_bytes(ALG, data), len(data))


@pytest.fixture
def place(tmp_path: Path) -> Iterator[tuple[AgentEndpoint, Path, Path]]:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "secret").write_bytes(b"secret")
    (root / "escape").symlink_to(outside)  # a directory link that leaves the root
    (root / "file-link").symlink_to(outside / "secret")
    (root / "ok").write_bytes(b"fine")
    ep = AgentEndpoint(tmp_path / "state")
    run(ep.open(EndpointConfig("s", "beta", str(root), digest=ALG, symlinks="raw")))
    yield ep, root, outside
    run(ep.close())
    assert sorted(os.listdir(outside)) == ["secret"], "something was written outside the root"
    assert (outside / "secret").read_bytes() == b"secret"


def run(coro: Any) -> Any:
    return asyncio.run(coro) if not _loop() else _loop().run_until_complete(coro)


_LOOP: list[asyncio.AbstractEventLoop] = []


def _loop() -> asyncio.AbstractEventLoop:
    if not _LOOP:
        _LOOP.append(asyncio.new_event_loop())
    return _LOOP[0]


BAD = ["../evil", "/tmp/evil", "a/../../evil", "a\x00b", "escape/evil", "./x", "a//b", ""]


@pytest.mark.parametrize("path", BAD)
def test_apply_refuses_bad_paths_per_path(place: Any, path: str) -> None:
    ep, root, _outside = place
    data = b"evil"
    ops = [Op(path, None, entry(data), data=data), Op("good", None, entry(b"g"), data=b"g")]
    results = run(ep.apply(ops))
    assert [r.ok for r in results] == [False, True], results
    assert results[0].problem
    assert (root / "good").read_bytes() == b"g"


def test_copy_from_outside_refused(place: Any) -> None:
    ep, root, _outside = place
    e = entry(b"secret")
    for src in ("../outside/secret", "escape/secret", "file-link"):
        (r,) = run(ep.apply([Op("stolen", None, e, copy_from=src)]))
        assert not r.ok, src
    assert not (root / "stolen").exists()


def test_mkdir_and_delete_through_symlinked_dir_refused(place: Any) -> None:
    ep, _root, outside = place
    results = run(
        ep.apply(
            [
                Op("escape/newdir", None, DIRECTORY),
                Op("escape/secret", entry(b"secret"), None),
                Op("escape/link", None, symlink_entry("/etc/passwd")),
            ]
        )
    )
    assert not any(r.ok for r in results)
    assert (outside / "secret").exists()


def test_replacing_a_symlink_replaces_the_link_not_its_target(place: Any) -> None:
    ep, root, outside = place
    (r,) = run(
        ep.apply(
            [Op("file-link", symlink_entry(str(outside / "secret")), entry(b"new"), data=b"new")]
        )
    )
    assert r.ok, r
    assert (root / "file-link").read_bytes() == b"new" and not (root / "file-link").is_symlink()


def test_reads_refuse_bad_paths(place: Any) -> None:
    ep, _root, _outside = place
    e = entry(b"secret")
    reqs = [ReadRequest(p, e) for p in ("../outside/secret", "escape/secret", "file-link", "")]
    results = run(ep.read_files([*reqs, ReadRequest("ok", entry(b"fine"))]))
    assert [r.data for r in results] == [None, None, None, None, b"fine"]
    for path in ("../outside/secret", "escape/secret", "file-link"):
        with pytest.raises((OSError, BadPath)):
            run(ep.read_range(path, e, 0, 6))
    with pytest.raises(BadPath):
        run(ep.read_range("ok", entry(b"fine"), -1, 4))
    (st,) = run(ep.stat_paths(["escape/secret"]))
    assert not st.exists


def test_scan_and_stage_refuse_bad_paths(place: Any) -> None:
    ep, _root, _outside = place
    with pytest.raises(BadPath):
        run(_consume(ep.scan(["../outside"])))
    big = entry(b"x" * 10)
    handle = run(ep.stage_open("escape/big", big)).handle  # staged in the agent's own directory
    run(ep.stage_write(handle, 0, b"x" * 10))
    (r,) = run(ep.apply([Op("escape/big", None, big, stage=handle)]))
    assert not r.ok  # and the fixture checks that nothing appeared outside
    with pytest.raises(BadPath):
        run(ep.stage_open("/abs", entry(b"x")))
    with pytest.raises(OSError):
        run(ep.stage_write(12345, 0, b"x"))  # never handed out
    (r,) = run(ep.apply([Op("big", None, entry(b"x"), stage=777)]))
    assert not r.ok and "upload" in (r.problem or "")


def test_retried_apply_is_idempotent(place: Any) -> None:
    """A batch repeated after a lost answer: its ops are already done, and reported ok."""
    ep, root, _outside = place
    ops = [Op("n1", None, entry(b"1"), data=b"1"), Op("d", None, DIRECTORY)]
    assert all(r.ok for r in run(ep.apply(ops)))
    assert all(r.ok for r in run(ep.apply(ops)))
    assert (root / "n1").read_bytes() == b"1"


async def _consume(it: Any) -> None:
    async for _ in it:
        pass


def test_malformed_input_ends_the_connection_with_a_protocol_error(tmp_path: Path) -> None:
    """Garbage after the handshake: the agent says why (an error frame) and exits cleanly."""
    client = ClientConnection("x", ENDPOINT)
    proc = subprocess.Popen(
        [sys.executable, "-m", "yeet", "agent", "--state", str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.stdin is not None and proc.stdout is not None
    client.receive_data(proc.stdout.readline())
    assert client.next_event() is not None
    garbage = encode_frame(Kind.RESULT, b"\x00" * 10, call=9)  # agents never get results
    out, err = proc.communicate(client.hello(["none"], [ALG]) + garbage, timeout=30)
    client.receive_data(out)
    events = []
    while (ev := client.next_event()) is not None:
        events.append(ev)
    assert proc.returncode == 0, err
    assert b"Traceback" not in err
    fatal = events[-1]
    assert fatal.call == 0 and "never sends RESULT" in fatal.fault.message
