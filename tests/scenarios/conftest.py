from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli_harness import Yeet


@pytest.fixture
def yeet(tmp_path: Path) -> Yeet:
    return Yeet(tmp_path / "home")


@pytest.fixture
def roots(tmp_path: Path) -> tuple[Path, Path]:
    a, b = tmp_path / "alpha", tmp_path / "beta"
    a.mkdir()
    return a, b
