"""Large changed files travel as deltas, through the real CLI: few bytes, same digest,
in place through the journal or staged, and kill -9 during an in-place apply
leaves the old or the new file."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.cli_harness import Yeet
from yeet.replica.write.inplace import SUFFIX, recover

# The remote agent here is a bare python3 (no pyfastcdc: whole files, by design);
# deltas over a real sshd with a full remote are in tests/remote/test_ssh_delta.py.
pytestmark = pytest.mark.local_only

MIB = 1 << 20
SIZE = 24 * MIB


def _applied(yeet: Yeet, a: Path, b: Path) -> dict[str, int]:
    r = yeet("sync", "--json", str(a), str(b), "--name", "s", rc=0)
    counters: dict[str, int] = json.loads(r.out)["applied"]["beta"]
    return counters


def _edit_inplace(data: bytearray, rng: random.Random) -> None:
    for _ in range(16):
        off = rng.randrange(0, len(data) - 4096)
        data[off : off + 4096] = rng.randbytes(4096)


def _insert(data: bytearray, rng: random.Random) -> None:
    mid = len(data) // 2
    data[mid:mid] = rng.randbytes(MIB)


def _append(data: bytearray, rng: random.Random) -> None:
    data += rng.randbytes(2 * MIB)


def _truncate(data: bytearray, rng: random.Random) -> None:
    del data[len(data) - 3 * MIB - 123 :]


EDITS: dict[str, tuple[Callable[[bytearray, random.Random], None], int]] = {
    # name: (edit, most literal bytes the delta may send)
    "inplace": (_edit_inplace, 16 * 16 * 1024),
    "insert": (_insert, 2 * MIB),
    "append": (_append, 3 * MIB),
    "truncate": (_truncate, 64 * 1024),
}


@pytest.mark.parametrize("where", ["inplace", "staged"])
@pytest.mark.parametrize("edit", sorted(EDITS))
def test_changed_large_file_goes_as_a_delta(
    yeet: Yeet, roots: tuple[Path, Path], edit: str, where: str
) -> None:
    a, b = roots
    rng = random.Random(edit)
    data = bytearray(rng.randbytes(SIZE))
    (a / "big").write_bytes(data)
    (a / "small").write_bytes(b"s")
    inplace_min = 4 * MIB if where == "inplace" else 1 << 40
    yeet.extra_env = {**(yeet.extra_env or {}), "YEET_INPLACE_MIN": str(inplace_min)}
    first = _applied(yeet, a, b)
    assert first["delta_files"] == 0 and first["bytes"] == SIZE + 1
    change, most = EDITS[edit]
    change(data, rng)
    (a / "big").write_bytes(data)
    (a / "small").write_bytes(b"t")  # travels in the same run
    got = _applied(yeet, a, b)
    assert (b / "big").read_bytes() == data
    assert (b / "small").read_bytes() == b"t"
    assert got["delta_files"] == 1 and got["delta_bytes"] == len(data)
    assert 0 < got["literal_bytes"] <= most, got
    assert got["bytes"] == got["literal_bytes"] + 1
    trash = yeet("trash", "s", rc=0).out
    assert ("big" in trash) == (where == "staged" or edit == "insert"), trash
    again = _applied(yeet, a, b)
    assert again["files"] == 0


def test_delta_off_sends_whole_files(yeet: Yeet, roots: tuple[Path, Path]) -> None:
    a, b = roots
    data = bytearray(os.urandom(4 * MIB))
    (a / "big").write_bytes(data)
    yeet.extra_env = {**(yeet.extra_env or {}), "YEET_DELTA_MIN": "off"}
    _applied(yeet, a, b)
    data[100:200] = os.urandom(100)
    (a / "big").write_bytes(data)
    got = _applied(yeet, a, b)
    assert got["delta_files"] == 0 and got["bytes"] == len(data)
    assert (b / "big").read_bytes() == data


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(8 * MIB):
            h.update(chunk)
    return h.hexdigest()


def test_kill_9_during_inplace_delta_leaves_old_or_new(
    yeet: Yeet, roots: tuple[Path, Path]
) -> None:
    a, b = roots
    rng = random.Random(9)
    size = 96 * MIB
    data = bytearray(rng.randbytes(size))
    (a / "big").write_bytes(data)
    yeet.extra_env = {**(yeet.extra_env or {}), "YEET_INPLACE_MIN": str(8 * MIB)}
    yeet.sync(a, b)
    key = hashlib.blake2b(os.fsencode(os.path.realpath(b)), digest_size=12).hexdigest()
    journal = yeet.home / "state" / "yeet" / "inplace" / key  # per root (root_redo_dir)
    outcomes: dict[str, int] = {}
    caught = 0
    for trial in range(4):
        old = _digest(b / "big")
        for _ in range(30):  # scattered edits (few enough to stay in place)
            off = rng.randrange(0, size - 4096)
            data[off : off + 4096] = rng.randbytes(4096)
        (a / "big").write_bytes(data)
        new = _digest(a / "big")
        proc = subprocess.Popen(
            [sys.executable, "-m", "yeet", "sync", "--quiet", str(a), str(b), "--name", "s"],
            env=yeet.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        delay = [0.0, 0.01, 0.05, 0.2][trial]
        deadline = time.monotonic() + 60
        seen = False
        while time.monotonic() < deadline and proc.poll() is None:
            if any(p.name.endswith(SUFFIX) for p in journal.glob("*")):
                seen = True
                time.sleep(delay)
                break
            time.sleep(0.0005)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        caught += seen and proc.returncode == -signal.SIGKILL
        # what a restart does first (the endpoint's open): roll forward or back
        recover(journal, verify=False)
        now = _digest(b / "big")
        assert now in (old, new), f"trial {trial}: torn file (journal seen: {seen})"
        outcomes["new" if now == new else "old"] = (
            outcomes.get("new" if now == new else "old", 0) + 1
        )
        yeet.sync(a, b)
        assert _digest(b / "big") == new
    print(f"kill -9 trials: {outcomes}, caught inside the journal window: {caught}")
    assert caught >= 2  # the kills really landed inside in-place applies
