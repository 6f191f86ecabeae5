"""Every scenario runs with both roots local; most run again with beta, and with
both roots, behind a real OpenSSH sshd on 127.0.0.1 (the directories stay on
this machine, so the tests look at them directly). ``@pytest.mark.local_only``
keeps a scenario to local roots (it inspects local state or times a local run).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli_harness import Yeet
from tests.sshd import SshWorld

WHERE = ("local", "beta-remote", "both-remote")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "local_only: run this scenario with local roots only")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "roots_at" in metafunc.fixturenames:
        local = metafunc.definition.get_closest_marker("local_only") is not None
        metafunc.parametrize("roots_at", ("local",) if local else WHERE)


@pytest.fixture
def roots_at() -> str:
    return "local"  # replaced by pytest_generate_tests


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    """A filesystem of its own (a 64 MiB tmpfs: small enough to fill; another
    filesystem than yeet's state, so staging uses temporary names in the tree)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={64 << 20},mode=0755", "tmpfs", str(mnt)], check=True
    )
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.fixture
def on_disk(tmp_path: Path, yeet: Yeet, roots_at: str, disk: Path) -> tuple[Path, Path]:
    """Like ``roots``, with beta on ``disk``."""
    a, b = tmp_path / "alpha", disk / "beta"
    a.mkdir()
    b.mkdir()
    if roots_at != "local":
        yeet.remote[str(b)] = f"box:{b}"
    if roots_at == "both-remote":
        yeet.remote[str(a)] = f"box:{a}"
    return a, b


@pytest.fixture
def box_env() -> dict[str, str]:
    """Environment of the sshd's sessions (the remote side's HOME, XDG dirs...): a
    module overrides this fixture to put, e.g., the agent's state elsewhere."""
    return {}


@pytest.fixture
def yeet(tmp_path: Path, roots_at: str, box_env: dict[str, str]) -> Iterator[Yeet]:
    if roots_at == "local":
        yield Yeet(tmp_path / "home")
        return
    world = SshWorld(tmp_path / "ssh")
    try:
        srv = world.server("box", env=box_env)
        world.trust(srv)
        world.alias("box", srv)
        env = {k: v for k, v in world.env().items() if k not in ("XDG_STATE_HOME", "PYTHONPATH")}
        yield Yeet(tmp_path / "home", extra_env=env)
    finally:
        world.stop()


@pytest.fixture
def roots(tmp_path: Path, yeet: Yeet, roots_at: str) -> tuple[Path, Path]:
    a, b = tmp_path / "alpha", tmp_path / "beta"
    a.mkdir()
    if roots_at != "local":
        yeet.remote[str(b)] = f"box:{b}"
    if roots_at == "both-remote":
        yeet.remote[str(a)] = f"box:{a}"
    return a, b
