"""Fuzzing the decoder: ≥ 100,000 inputs, nothing but ProtocolError, bounded memory."""

from __future__ import annotations

import os
import subprocess
import tracemalloc
from pathlib import Path

import pytest

from tests.protocol import fuzz_driver
from yeet.remote.client import zipapp

BARE_PYTHON = "/root/.pyenv/versions/3.9.18/bin/python3"
REPO = Path(__file__).resolve().parents[2]


def test_fuzz_100k_inputs() -> None:
    lines: list[str] = []
    n = fuzz_driver.run(100_000, seed=1, report=lines.append)
    print(lines[-1])
    assert n >= 100_000


def test_fuzz_memory_is_bounded() -> None:
    tracemalloc.start()
    try:
        fuzz_driver.run(5_000, seed=2, report=lambda _s: None)
        _now, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Frames are limited to 64 KiB here: a length field must not make it allocate more.
    assert peak < 8 << 20, f"peak {peak} bytes"


@pytest.mark.skipif(not os.path.exists(BARE_PYTHON), reason="no bare python 3.9 here")
def test_fuzz_on_the_msgspec_stand_in(tmp_path: Path) -> None:
    """The stand-in decodes what a bare agent receives: fuzz it on a real bare 3.9."""
    data, _tag = zipapp.build()
    pyz = tmp_path / "yeet.pyz"
    pyz.write_bytes(data)
    code = (
        "import sys; sys.path[:0] = [sys.argv[1], sys.argv[2]];"
        "from yeet.compat import install_msgspec_fallback;"
        "assert install_msgspec_fallback();"
        "from tests.protocol import fuzz_driver; fuzz_driver.run(20000, 3)"
    )
    out = subprocess.run(
        [BARE_PYTHON, "-I", "-c", code, str(pyz), str(REPO)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    print(out.stdout.strip())
    assert "fuzzed 20000 inputs" in out.stdout
