"""Deltas over the real sshd, through the real CLI: a changed large file moves as
a few literal bytes both ways (remote receiver, remote source); a bare remote
python without pyfastcdc negotiates deltas off and still syncs whole files."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

from tests.remote.conftest import BARE_DEBIAN, FULL_PYTHON, yeet
from tests.sshd import SshServer, SshWorld

MIB = 1 << 20


def _sync(world: SshWorld, alpha: str, beta: str, python: str) -> dict[str, dict[str, int]]:
    return _run(world, alpha, beta, python)["applied"]


def _run(
    world: SshWorld, alpha: str, beta: str, python: str
) -> dict[str, dict[str, dict[str, int]]]:
    r = yeet(
        world,
        "sync",
        "--json",
        alpha,
        beta,
        "--name",
        "s",
        python=python,
        YEET_INPLACE_MIN=str(8 * MIB),
    )
    assert r.returncode == 0, r.stderr + r.stdout
    doc: dict[str, dict[str, dict[str, int]]] = json.loads(r.stdout)
    return doc


def _edit(path: Path, rng: random.Random) -> bytes:
    data = bytearray(path.read_bytes())
    for _ in range(8):
        off = rng.randrange(0, len(data) - 4096)
        data[off : off + 4096] = rng.randbytes(4096)
    data += rng.randbytes(100_000)
    path.write_bytes(data)
    return bytes(data)


@pytest.mark.parametrize("remote", ["beta", "alpha"])
def test_delta_over_ssh(world: SshWorld, box: SshServer, remote: str) -> None:
    rng = random.Random(remote)
    a, b = world.root / "alpha", world.root / "beta"
    a.mkdir()
    (a / "big").write_bytes(rng.randbytes(32 * MIB))
    alpha = f"box:{a}" if remote == "alpha" else str(a)
    beta = f"box:{b}" if remote == "beta" else str(b)
    _sync(world, alpha, beta, FULL_PYTHON)
    assert (b / "big").read_bytes() == (a / "big").read_bytes()
    # alpha -> beta
    data = _edit(a / "big", rng)
    doc = _run(world, alpha, beta, FULL_PYTHON)
    got = doc["applied"]["beta"]
    assert (b / "big").read_bytes() == data
    assert got["delta_files"] == 1 and got["literal_bytes"] < 400_000, got
    wire = doc["wire"][remote]  # every protocol byte of the run, scans included
    assert wire["sent"] + wire["received"] < 1 << 20, wire
    # beta -> alpha (the other direction through the same link)
    data = _edit(b / "big", rng)
    got = _sync(world, alpha, beta, FULL_PYTHON)["alpha"]
    assert (a / "big").read_bytes() == data
    assert got["delta_files"] == 1 and got["literal_bytes"] < 400_000, got


def test_bare_remote_without_pyfastcdc_sends_whole_files(world: SshWorld, box: SshServer) -> None:
    a, b = world.root / "alpha", world.root / "beta"
    a.mkdir()
    (a / "big").write_bytes(os.urandom(4 * MIB))
    _sync(world, str(a), f"box:{b}", BARE_DEBIAN)
    data = _edit(a / "big", random.Random(1))
    got = _sync(world, str(a), f"box:{b}", BARE_DEBIAN)["beta"]
    assert (b / "big").read_bytes() == data
    assert got["delta_files"] == 0 and got["bytes"] == len(data), got
