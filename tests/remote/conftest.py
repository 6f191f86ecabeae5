"""Fixtures for transport tests: real sshd servers and a client HOME, per test."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli_harness import tree
from tests.sshd import SshServer, SshWorld

__all__ = ["tree"]  # the transport tests import it from here

BARE_39 = "/root/.pyenv/versions/3.9.18/bin/python3"
BARE_DEBIAN = "/usr/bin/python3"
FULL_PYTHON = sys.executable


@pytest.fixture
def world(tmp_path: Path) -> Iterator[SshWorld]:
    w = SshWorld(tmp_path)
    try:
        yield w
    finally:
        w.stop()


@pytest.fixture
def box(world: SshWorld) -> SshServer:
    """One trusted sshd, reachable as ``box`` (an alias in ~/.ssh/config)."""
    srv = world.server("box")
    world.trust(srv)
    world.alias("box", srv)
    return srv


def yeet(
    world: SshWorld, *args: str, python: str = FULL_PYTHON, timeout: float = 120, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run the real CLI as a user would (own HOME, own XDG dirs)."""
    return subprocess.run(
        [sys.executable, "-m", "yeet", *args],
        env=world.env(YEET_REMOTE_PYTHON=python, **env),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=world.root,
    )


def make_tree(root: Path, spec: dict[str, object]) -> None:
    for rel, what in spec.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if what == "dir":
            p.mkdir(exist_ok=True)
        elif isinstance(what, tuple) and what[0] == "link":
            p.symlink_to(str(what[1]))
        else:
            data, exe = what if isinstance(what, tuple) else (what, False)
            assert isinstance(data, bytes)
            p.write_bytes(data)
            p.chmod(0o755 if exe else 0o644)
