"""kill -9 at random moments during a large transition: nothing torn, nothing lost."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cli_harness import Yeet, snapshot, write

TRIALS = 20


def version(rng: random.Random, path: str, tag: str) -> bytes:
    size = rng.choice([0, 10, 3000, 3000, 70_000, 70_000, 2_500_000])
    head = f"{path}:{tag}:".encode()
    return head + rng.randbytes(max(0, size - len(head)))


@pytest.mark.local_only  # timed local trials; vmtests kill remote ends
def test_kill_9_during_sync_never_tears_or_loses(yeet: Yeet, roots: tuple[Path, Path]) -> None:
    a, b = roots
    rng = random.Random(1234)
    paths = [f"d{i % 7}/sub{i % 3}/f{i}" for i in range(100)]
    known: dict[str, set[bytes]] = {}
    for p in paths:
        data = version(rng, p, "v0")
        write(a, p, data)
        known[p] = {data}
    yeet.sync(a, b)
    killed_at = []
    duration = 0.0
    for trial in range(TRIALS + 1):
        # A large transition: alpha rewrites many files, deletes and creates some;
        # beta edits files alpha does not touch (those edits must never be lost).
        alpha_paths = rng.sample(paths, 50)
        beta_paths = rng.sample([p for p in paths if p not in alpha_paths], 10)
        for p in alpha_paths:
            data = version(rng, p, f"a{trial}")
            write(a, p, data)
            known[p].add(data)
        beta_edits = {}
        for p in beta_paths:
            data = version(rng, p, f"b{trial}")
            write(b, p, data)
            known[p].add(data)
            beta_edits[p] = data
        proc = subprocess.Popen(
            [sys.executable, "-m", "yeet", "sync", "-q", str(a), str(b), "--name", "s"],
            env=yeet.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        started = time.monotonic()
        if trial == 0:
            proc.wait()  # calibration: how long does such a transition take?
            duration = time.monotonic() - started
        else:
            delay = rng.uniform(0.05, 0.95) * duration
            time.sleep(delay)
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                killed_at.append(delay)
            proc.wait()
        # Right after the kill: every file holds one whole known version.
        for root in (a, b):
            for rel, desc in snapshot(root).items():
                assert ".yeet-tmp-" not in rel, f"temp file left in the tree: {rel}"
                if desc.startswith("file:"):
                    assert (root / rel).read_bytes() in known[rel], f"torn file {root}/{rel}"
        # Rerun to completion: both sides agree and no edit was lost.
        yeet.sync(a, b, rc=0)
        assert snapshot(a) == snapshot(b)
        for p, data in beta_edits.items():
            assert (a / p).read_bytes() == data, f"beta's edit of {p} lost"
        for p in alpha_paths:
            assert (b / p).read_bytes() == (a / p).read_bytes()
        stage = yeet.session_dir() / "beta" / "stage"
        assert not stage.exists() or list(stage.iterdir()) == []
    assert len(killed_at) >= TRIALS // 2, f"only {len(killed_at)} runs were killed mid-way"
