"""Multi-host tests: every host is a network namespace with its own sshd (see lab.py)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from vmtests.lab import Lab


@pytest.fixture(scope="session", autouse=True)
def _needs_root() -> None:
    assert os.geteuid() == 0, "vmtests create network namespaces: run them as root"


@contextmanager
def lab_in(root: Path) -> Iterator[Lab]:
    lab = Lab(root)
    try:
        yield lab
    finally:
        lab.close()


@pytest.fixture
def workdir(tmp_path: Path) -> Callable[[str], Path]:
    """``workdir(name)``: a fresh directory for one test's trees."""

    def make(name: str) -> Path:
        p = tmp_path / name
        p.mkdir(parents=True)
        return p

    return make
