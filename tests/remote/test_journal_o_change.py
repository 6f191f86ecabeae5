"""O(change) over SSH: 16 writes of 4 KiB in a 4 GiB file cost the sender ~1 MiB of reading.

Real sshd, real kernel tracer (the change journal), both ends on this host. The
sender's reads of the big file are measured with ``mincore`` after its cached
pages were dropped: only what the sync read from disk is resident afterwards.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.journal_service import journal_service
from tests.pagecache import evict, resident_bytes
from tests.remote.conftest import yeet
from tests.sshd import SshWorld
from yeet.model import digest

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="the change journal needs root"),
    pytest.mark.xdist_group("kernel"),
]

SIZE = 4 << 30
WRITES, WRITE = 16, 4096


@pytest.fixture
def journal_socket() -> Iterator[Path]:
    sock = Path(f"/tmp/yeet-journal-{uuid.uuid4().hex[:8]}.sock")
    with journal_service(sock):
        yield sock


def _big_file(path: Path) -> None:
    """4 GiB: random data in the first and last 8 MiB, holes between (quick to make)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(os.urandom(8 << 20))
        f.truncate(SIZE)
        f.seek(SIZE - (8 << 20))
        f.write(os.urandom(8 << 20))


def _same(a: Path, b: Path) -> bool:
    with open(a, "rb") as fa, open(b, "rb") as fb:
        return (
            digest.of_fd("blake3", fa.fileno(), SIZE)[0]
            == digest.of_fd("blake3", fb.fileno(), SIZE)[0]
        )


def test_sixteen_small_writes_in_4_gib_are_read_sent_and_written_as_blocks(
    world: SshWorld, tmp_path: Path, journal_socket: Path
) -> None:
    env = {"YEET_TRACER_SOCKET": str(journal_socket)}
    srv = world.server("box", env=env)
    world.trust(srv)
    world.alias("box", srv)
    a, b = tmp_path / "a", tmp_path / "b"
    _big_file(a / "big.img")
    b.mkdir()
    subprocess.run(["cp", "--sparse=always", str(a / "big.img"), str(b / "big.img")], check=True)
    time.sleep(2.1)  # older than the stat cache's racy window: its digests are kept

    def sync() -> dict[str, object]:
        r = yeet(world, "sync", "--json", str(a), f"box:{b}", "--name", "s", timeout=600, **env)
        assert r.returncode == 0, r.stderr + r.stdout
        doc = json.loads(r.stdout)
        assert isinstance(doc, dict)
        doc["stderr"] = r.stderr
        return doc

    sync()  # both ends hash everything once (the journal starts now)
    assert sync()["scan"]["journal"]  # type: ignore[index]
    rng = random.Random(7)
    offsets = sorted(rng.randrange(0, SIZE - WRITE) for _ in range(WRITES))
    with open(a / "big.img", "r+b") as f:
        for off in offsets:
            f.seek(off)
            f.write(os.urandom(WRITE))
    for side in (a, b):
        evict(side / "big.img")
    doc = sync()
    sender_read = resident_bytes(a / "big.img")
    receiver_read = resident_bytes(b / "big.img")
    print(
        f"\n16 x 4 KiB in 4 GiB over sshd: sender read {sender_read} B, receiver read "
        f"{receiver_read} B of the file; wire literal {doc['applied']}"
    )
    scan = doc["scan"]
    assert isinstance(scan, dict)
    assert scan["journal"], doc
    applied = doc["applied"]
    assert isinstance(applied, dict)
    beta = applied["beta"]
    assert beta["delta_files"] == 1, beta
    assert 0 < beta["literal_bytes"] <= WRITES * 2 * WRITE, beta  # pages, not the file
    assert sender_read <= 2 << 20, f"the sender read {sender_read} bytes of the big file"
    assert receiver_read <= 4 << 20, f"the receiver read {receiver_read} bytes of it"
    assert _same(a / "big.img", b / "big.img")
    shutil.rmtree(tmp_path / "a", ignore_errors=True)
