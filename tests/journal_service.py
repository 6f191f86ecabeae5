"""A real ``yeet tracer`` service (the change journal) in a child process, for tests."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@contextmanager
def journal_service(sock: Path, *extra: str) -> Iterator[subprocess.Popen[str]]:
    """Run ``yeet tracer --socket SOCK`` until the block ends; fails if it cannot start.

    Its log goes to a file (``$YEET_TEST_TRACER_LOG`` if set): a pipe nobody reads
    would block the service once full."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    named = os.environ.get("YEET_TEST_TRACER_LOG")
    log = open(named, "a") if named else tempfile.TemporaryFile("w+")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "yeet.tracer.service", "--socket", str(sock), *extra],
        cwd=REPO, env=env, stderr=log, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not sock.exists():
            if proc.poll() is not None:
                log.seek(0)
                raise AssertionError(log.read() or "service died")
            assert time.monotonic() < deadline, "the journal service did not start"
            time.sleep(0.02)
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
