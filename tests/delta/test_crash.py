"""kill -9 at random moments while patching in place (and while recovering).

After each kill, ``recover`` runs (sometimes itself killed and re-run), and
the file's digest must be the old or the new one. Kill times are spread over
the whole measured duration of an update, so every phase gets hit.
"""

from __future__ import annotations

import collections
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import msgspec
from blake3 import blake3

from tests.delta.crash_worker import Job
from yeet.delta import delta, signature
from yeet.replica.write.inplace import recover

TRIALS = 30
SIZE = 24 << 20
ROOT = Path(__file__).resolve().parents[2]


def spawn(mode: str, path: Path, jdir: Path, ops: Path, log: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.delta.crash_worker",
            mode,
            str(path),
            str(jdir),
            str(ops),
            str(log),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"ready\n"
    return proc


def test_kill_9_during_inplace_patch(tmp_path: Path) -> None:
    rnd = random.Random(1234)
    base = rnd.randbytes(SIZE)
    new = bytearray(base)
    for _ in range(64):
        p = rnd.randrange(0, SIZE // 4096) * 4096
        new[p : p + 4096] = rnd.randbytes(4096)
    new[SIZE // 3 : SIZE // 3 + 2 << 20] = rnd.randbytes(2 << 20)
    new += rnd.randbytes(3 << 20)
    new_b = bytes(new)
    old_d, new_d = blake3(base).digest(), blake3(new_b).digest()
    ops_file = tmp_path / "ops"
    ops = list(delta(new_b, signature(base, SIZE)))
    ops_file.write_bytes(msgspec.msgpack.encode(Job(ops, len(new_b), new_d)))
    path, jdir, log = tmp_path / "file", tmp_path / "journal", tmp_path / "phases"
    jdir.mkdir()

    def reset() -> None:
        path.write_bytes(base)
        log.write_bytes(b"")

    # calibrate: how long does an update take once the worker is ready?
    reset()
    proc = spawn("apply", path, jdir, ops_file, log)
    t0 = time.monotonic()
    proc.wait()
    duration = time.monotonic() - t0
    assert path.read_bytes() == new_b

    outcomes: collections.Counter[str] = collections.Counter()
    for trial in range(TRIALS):
        reset()
        proc = spawn("apply", path, jdir, ops_file, log)
        time.sleep(duration * 1.1 * (trial + rnd.random()) / TRIALS)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        phases = log.read_text().split()
        reached = phases[-1] if phases else "started"
        if trial % 3 == 0 and os.listdir(jdir):  # kill the recovery too
            rec = spawn("recover", path, jdir, ops_file, log)
            time.sleep(rnd.random() * 0.05)
            rec.send_signal(signal.SIGKILL)
            rec.wait()
        recover(str(jdir))
        assert os.listdir(jdir) == []
        d = blake3(path.read_bytes()).digest()
        assert d in (old_d, new_d), f"trial {trial}: torn file after kill at {reached}"
        outcomes[f"{reached}->{'new' if d == new_d else 'old'}"] += 1
    print(f"\nupdate takes {duration * 1000:.0f} ms; kill outcomes over {TRIALS} trials:")
    for k, v in sorted(outcomes.items()):
        print(f"  killed after {k:<20} {v}")
    assert any(k.endswith("old") for k in outcomes) and any(k.endswith("new") for k in outcomes)
