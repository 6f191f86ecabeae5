"""Fixtures for the tracer tests: they load the real BPF object into the real kernel."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cli_harness import Yeet
from tests.journal_service import journal_service
from yeet.model.errors import TracerUnavailable
from yeet.tracer import Tracer


@pytest.fixture(scope="module")
def journal_socket() -> Iterator[Path]:
    """A ``yeet tracer`` service for the module's tests (each uses its own roots)."""
    if os.geteuid() != 0:
        pytest.skip("the change journal needs root")
    sock = Path(f"/tmp/yeet-journal-{uuid.uuid4().hex[:8]}.sock")
    with journal_service(sock):
        yield sock


@pytest.fixture
def y(tmp_path: Path, journal_socket: Path) -> Yeet:
    """The CLI, its sessions asking the module's journal service."""
    return Yeet(tmp_path / "home", {"YEET_TRACER_SOCKET": str(journal_socket)})


@pytest.fixture
def open_tracer() -> Iterator[Callable[..., Tracer]]:
    """open_tracer(roots, **kw) -> Tracer, closed at teardown.

    Skips only where eBPF cannot work at all (not root / not Linux); a
    refusal by a kernel that should work fails the test.
    """
    opened: list[Tracer] = []

    def _open(roots: list[str | Path], **kw: Any) -> Tracer:
        if os.geteuid() != 0:
            pytest.skip("the tracer tests need root")
        try:
            t = Tracer.open([str(r) for r in roots], **kw)
        except TracerUnavailable as e:
            if not os.path.exists("/sys/kernel/btf/vmlinux"):
                pytest.skip(f"no BTF: {e}")
            raise
        opened.append(t)
        return t

    yield _open
    for t in opened:
        t.close()


@pytest.fixture(params=["ext4", "tmpfs"])
def base(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    """A directory on ext4 (the tracer sees changes where they land in the
    filesystem) or on a tmpfs of its own (it sees them by system call)."""
    if request.param == "ext4":
        yield tmp_path
        return
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512m", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.fixture
def private_ext4(tmp_path: Path) -> Iterator[Path]:
    """An ext4 filesystem of its own (an image on a loop device): nobody else's
    ``syncfs`` writes its dirty pages back, which would hide a write that lands in
    a page that is still dirty."""
    img, point = tmp_path / "fs.img", tmp_path / "fs"
    point.mkdir()
    with open(img, "wb") as f:
        f.truncate(256 << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(img)], check=True)
    subprocess.run(["mount", "-o", "loop", str(img), str(point)], check=True)
    try:
        yield point
    finally:
        subprocess.run(["umount", str(point)], check=False)
