"""Cutting the SSH connection mid-transfer: reconnect, finish, lose nothing."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.remote.conftest import BARE_DEBIAN, make_tree, tree
from tests.remote.test_local_process import _local, sync
from tests.sshd import SshServer, SshWorld
from yeet.contract.endpoint import Endpoint
from yeet.core.decisions import Side
from yeet.model import settings
from yeet.model.address import parse
from yeet.remote.client.connect import remote_endpoint

FILES = 600
SIZE = 32 << 10
LARGE = 12 << 20


def _data(root: Path) -> int:
    spec: dict[str, object] = {f"d{i % 12}/f{i}": os.urandom(SIZE) for i in range(FILES)}
    spec["large.bin"] = os.urandom(LARGE)
    make_tree(root, spec)
    return FILES * SIZE + LARGE


@pytest.mark.parametrize("remote_side", ["beta", "alpha"])
def test_cut_mid_transfer_in_process(
    world: SshWorld, box: SshServer, monkeypatch: pytest.MonkeyPatch, remote_side: str
) -> None:
    for key, value in world.env(YEET_REMOTE_PYTHON=BARE_DEBIAN).items():
        monkeypatch.setenv(key, value)
        settings.reload()
    a, b = world.root / "alpha", world.root / "beta"
    total = _data(a)
    side = Side(remote_side)
    remote = remote_endpoint(parse(f"box:{b if side is Side.BETA else a}"))
    notes: list[str] = []
    remote.notify = notes.append
    other = _local(world.root)
    eps: dict[Side, Endpoint] = {side: remote, side.other: other}
    counter = "sent_bytes" if side is Side.BETA else "received_bytes"
    cuts: list[int] = []

    async def cut() -> None:
        while getattr(remote, counter) < total // 3:
            await asyncio.sleep(0.005)
        cuts.append(box.kill_sessions())

    out = asyncio.run(sync(world.root, a, b, eps, watch=cut))
    assert cuts and cuts[0] >= 1, "the connection was never cut"
    assert out.in_sync, (out, notes)
    assert tree(a) == tree(b)
    assert remote.reconnects >= 1, notes
    moved = getattr(remote, counter)
    # At most the batch in flight (<= 16 MiB) and the large file were moved twice.
    assert moved <= total + (16 << 20) + LARGE, f"moved {moved - total} bytes twice"


def test_cut_mid_transfer_through_the_cli(world: SshWorld, box: SshServer) -> None:
    a, b = world.root / "alpha", world.root / "beta"
    _data(a)
    proc = subprocess.Popen(
        [sys.executable, "-m", "yeet", "sync", str(a), f"box:{b}", "--name", "s"],
        env=world.env(YEET_REMOTE_PYTHON=BARE_DEBIAN),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    cut = 0
    while time.monotonic() < deadline and proc.poll() is None:
        arrived = sum(len(f) for _d, _s, f in os.walk(b)) if b.exists() else 0
        if arrived >= FILES // 4:
            cut = box.kill_sessions()
            break
        time.sleep(0.01)
    out, err = proc.communicate(timeout=120)
    assert cut >= 1, f"never cut ({err})"
    assert proc.returncode == 0, err + out
    assert "reconnected to box" in err
    assert tree(a) == tree(b)
    r: Any = subprocess.run(
        [sys.executable, "-m", "yeet", "sync", "--name", "s"],
        env=world.env(YEET_REMOTE_PYTHON=BARE_DEBIAN),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0 and "no changes" in r.stdout, r.stderr + r.stdout
