"""Scenario 2: a slow, lossy link — 100 ms delay and 2 % loss in each direction.

Topology: ``laptop 10.99.1.1 ══wire══ 10.99.1.2 nas``, where the wire is
``vmtests/wire.py`` (``tc netem delay 100ms loss 2%`` on both ends, done in user
space: this kernel has no ``sch_netem``). Round trip: 200 ms.

A tree of 1000 small files and a few MB-sized files goes up, edits come
back, and a no-op run checks nothing more moves. Times are printed, not asserted.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from vmtests.conftest import lab_in
from vmtests.lab import Host, Lab, Link
from vmtests.trees import diff, temp_names, tree, write

DELAY = 0.100
LOSS = 0.02
SMALL_FILES = 1000
LARGE_FILES = 3
LARGE_SIZE = 3 << 20


@dataclass
class SlowNet:
    lab: Lab
    laptop: Host
    nas: Host
    link: Link


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlowNet]:
    with lab_in(tmp_path_factory.mktemp("slow")) as lab:
        laptop, nas = lab.host("laptop"), lab.host("nas")
        link = lab.link(laptop, nas, delay=DELAY, loss=LOSS)
        lab.sshd(nas, nas.addr_for(laptop))
        yield SlowNet(lab, laptop, nas, link)


def _ping_ms(net: SlowNet) -> float:
    """Round trip of a TCP connect to the nas's sshd (SYN, SYN-ACK), in ms."""
    code = (
        "import socket,sys,time\n"
        "best=1e9\n"
        "for _ in range(5):\n"
        " t=time.monotonic(); s=socket.create_connection((sys.argv[1],22),10)\n"
        " best=min(best,time.monotonic()-t); s.close()\n"
        "print(best*1000)\n"
    )
    r = net.laptop.run("python3", "-c", code, net.nas.addr_for(net.laptop))
    return float(r.stdout)


def _timed(net: SlowNet, *args: str) -> tuple[float, str]:
    t = time.monotonic()
    r = net.lab.yeet(net.laptop, *args, timeout=240)
    return time.monotonic() - t, r.out


def test_small_and_large_files_over_a_slow_lossy_link(net: SlowNet, tmp_path: Path) -> None:
    rtt = _ping_ms(net)
    assert rtt >= 2 * DELAY * 1000 * 0.95, f"the wire does not delay: {rtt:.0f} ms"
    rng = random.Random(5)
    a, b = tmp_path / "laptop", tmp_path / "nas" / "dir"
    for i in range(SMALL_FILES):
        write(a, f"src/m{i % 40:02}/f{i}.txt", rng.randbytes(rng.randrange(10, 4000)))
    for i in range(LARGE_FILES):
        write(a, f"assets/big{i}.bin", rng.randbytes(LARGE_SIZE))
    total = sum(len(v[0]) for v in tree(a).values() if isinstance(v, tuple))

    took, out = _timed(net, "sync", str(a), f"nas:{b}", "--name", "slow")
    assert out.startswith("synced\tslow\talpha→beta: "), out
    assert tree(a) == tree(b), diff(tree(a), tree(b))
    assert temp_names(b) == []
    first = took

    # Edits on the nas come back: some small files, a block of a large one, a new dir.
    for i in rng.sample(range(SMALL_FILES), 100):
        write(b, f"src/m{i % 40:02}/f{i}.txt", rng.randbytes(rng.randrange(10, 4000)))
    with open(b / "assets/big1.bin", "r+b") as f:
        f.seek(LARGE_SIZE // 2)
        f.write(rng.randbytes(64 << 10))
    for i in range(20):
        write(b, f"results/r{i}.log", rng.randbytes(2000))
    took, out = _timed(net, "sync", "--name", "slow")
    assert out.startswith("synced\tslow\tbeta→alpha: 121 files"), out
    assert tree(a) == tree(b), diff(tree(a), tree(b))
    back = took

    took, out = _timed(net, "sync", "--name", "slow")
    assert out == "synced\tslow\tno changes\n", out
    noop = took

    stats = net.link.stop_wire()
    dropped = sum(d["dropped"] for d in stats.values())
    frames = sum(d["frames"] for d in stats.values())
    print(
        f"\nRTT {rtt:.0f} ms, loss {LOSS:.0%} each way: initial {SMALL_FILES} small + "
        f"{LARGE_FILES}×{LARGE_SIZE >> 20} MB files ({total / 1e6:.1f} MB) in {first:.1f} s; "
        f"121 edits back in {back:.1f} s; no-op in {noop:.1f} s; "
        f"the wire dropped {dropped} of {frames} frames"
    )
    assert dropped > 0 and dropped / frames > LOSS / 3, stats  # the loss was real
