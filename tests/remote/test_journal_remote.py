"""The remote agent asks the change journal of *its* host (real sshd, a bare python 3.9)."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.journal_service import journal_service
from tests.remote.conftest import BARE_39, make_tree, tree, yeet
from tests.sshd import SshWorld

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the change journal needs root")


@pytest.fixture
def journal_socket() -> Iterator[Path]:
    sock = Path(f"/tmp/yeet-journal-{uuid.uuid4().hex[:8]}.sock")
    with journal_service(sock):
        yield sock


def test_remote_side_uses_its_hosts_journal(
    world: SshWorld, tmp_path: Path, journal_socket: Path
) -> None:
    env = {"YEET_TRACER_SOCKET": str(journal_socket)}
    srv = world.server("box", env=env)  # the agent's sessions get it from sshd (SetEnv)
    world.trust(srv)
    world.alias("box", srv)
    a, b = tmp_path / "a", tmp_path / "b"
    make_tree(a, {f"d{i}/f{j}": b"x" * 100 for i in range(10) for j in range(3)})

    def sync() -> dict[str, object]:
        r = yeet(world, "sync", "--json", str(a), f"box:{b}", "--name", "s", python=BARE_39, **env)
        assert r.returncode == 0, r.stderr + r.stdout
        doc = json.loads(r.stdout)
        assert isinstance(doc, dict)
        return doc

    assert not sync()["scan"]["journal"]  # type: ignore[index]
    assert sync()["scan"]["journal"]  # type: ignore[index]
    with open(b / "d3/f1", "r+b") as f:  # on the remote side
        f.seek(10)
        f.write(b"remote edit")
    doc = sync()
    scan = doc["scan"]
    assert isinstance(scan, dict)
    assert scan["journal"], doc
    assert scan["hinted"] == {"alpha": 0, "beta": 1}
    assert max(scan["listed"].values()) <= 3, scan
    assert tree(a) == tree(b)


def test_a_bare_remote_takes_journalled_ranges_in_place(
    world: SshWorld, tmp_path: Path, journal_socket: Path
) -> None:
    """The written pages of a large file go to a python3 without blake3 or the
    chunker: it patches in place (its journal checksummed with blake2b) and
    checks the blake2b-tree digest."""
    env = {"YEET_TRACER_SOCKET": str(journal_socket), "YEET_INPLACE_MIN": str(1 << 20)}
    srv = world.server("box", env=env)
    world.trust(srv)
    world.alias("box", srv)
    a, b = tmp_path / "a", tmp_path / "b"
    make_tree(a, {"big.img": os.urandom(12 << 20)})

    def sync() -> dict[str, Any]:
        r = yeet(world, "sync", "--json", str(a), f"box:{b}", "--name", "s", python=BARE_39, **env)
        assert r.returncode == 0, r.stderr + r.stdout
        doc = json.loads(r.stdout)
        assert isinstance(doc, dict)
        return doc

    sync()
    assert sync()["scan"]["journal"]
    with open(a / "big.img", "r+b") as f:
        for i in range(4):
            f.seek((2 * i + 1) << 20)
            f.write(os.urandom(4096))
    doc = sync()
    assert doc["scan"]["journal"], doc
    beta = doc["applied"]["beta"]
    assert beta["delta_files"] == 1 and 0 < beta["literal_bytes"] <= 4 * 4096, beta
    assert tree(a) == tree(b)
