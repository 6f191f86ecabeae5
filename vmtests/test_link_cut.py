"""Scenario 3: the link is cut during a ~128 MiB transfer, then restored.

Topology: ``laptop 10.99.1.1 ──veth── 10.99.1.2 nas`` (the nas runs sshd).

What crossed the link is measured on the laptop's end of the veth (its transmit
counter), so "nothing sent twice but what was in flight" is checked on the wire,
not on yeet's own bookkeeping.

Two kinds of cut:

* the cable is pulled for 3 s and plugged back: TCP keeps the connection (no
  keepalive fires in 3 s), yeet must simply carry on, sending nothing twice;
* the cable is pulled and, while it is out, the nas drops every TCP connection
  (``ss -K``: a rebooted router or NAT box, an sshd restart): when the cable is
  back the laptop's retransmission is answered by a reset, so yeet must reconnect,
  start a new agent, and resume the large file from its journaled chunks.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from vmtests.conftest import lab_in
from vmtests.lab import Host, Lab, Link
from vmtests.trees import temp_names, write
from yeet.remote.client.uploads import BULK_BYTES
from yeet.session.executor import MAX_CHUNK, WORKERS

LARGE = 96 << 20
SMALL_FILES = 128
SMALL_SIZE = 256 << 10
TOTAL = LARGE + SMALL_FILES * SMALL_SIZE  # 128 MiB
BATCH = 2 << 20  # the scheduler's batch of small files (Scheduler.batch_bytes)
OUTAGE = 3.0


@dataclass
class CutNet:
    lab: Lab
    laptop: Host
    nas: Host
    link: Link
    source: Path


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CutNet]:
    root = tmp_path_factory.mktemp("cut")
    with lab_in(root) as lab:
        laptop, nas = lab.host("laptop"), lab.host("nas")
        link = lab.link(laptop, nas)
        lab.sshd(nas, nas.addr_for(laptop))
        source = root / "source"
        write(source, "vm/disk.img", os.urandom(LARGE))
        for i in range(SMALL_FILES):
            write(source, f"objs/{i % 16:02}/o{i}.bin", os.urandom(SMALL_SIZE))
        # Upload the agent once, so the measured transfers carry only the tree.
        warm = root / "warm"
        write(warm, "x", b"x")
        lab.yeet(laptop, "sync", str(warm), f"nas:{root / 'warm-nas'}", "--name", "warm")
        yield CutNet(lab, laptop, nas, link, source)


def _digests(root: Path) -> dict[str, str]:
    out = {}
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            p = Path(dirpath) / name
            out[p.relative_to(root).as_posix()] = hashlib.blake2b(p.read_bytes()).hexdigest()
    return out


@dataclass
class Cut:
    sent: int  # bytes that crossed the link (laptop -> nas) during the run
    cut_at: int  # ... before the cable was pulled
    reconnects: int

    @property
    def extra(self) -> int:
        return self.sent - TOTAL


IN_FLIGHT = min(BULK_BYTES, MAX_CHUNK) + (WORKERS - 1) * (BATCH + SMALL_SIZE)
"""What a cut may cost: the content in flight that the receiver had not yet recorded,
sent again. That is the pieces of large uploads not yet recorded (at most
``BULK_BYTES``, which is meant to be one chunk: ``min`` keeps this bound from growing
with it) and a small-file batch for each worker but the one the large file keeps (a
batch ends with the file that crosses ``BATCH``)."""
OVERHEAD = 0.02
"""Protocol, SSH and TCP/IP overhead on the wire (measured: well under 1 %)."""
DROPPED_IN_BUFFERS = 2 << 20
"""What had crossed the link but was still in the nas's socket and pipe buffers when its
connections were dropped: lost with them whatever yeet does (an allowance)."""


def cut_during_transfer(net: CutNet, beta: Path, name: str, *, drop_state: bool) -> Cut:
    """Sync ``source`` to ``nas:beta``, pulling the cable when a third has crossed it;
    check that the run completes with both trees equal; measure the traffic."""
    lab, laptop, nas, link = net.lab, net.laptop, net.nas, net.link
    before = link.counters(laptop)
    t0 = time.monotonic()
    proc = lab.spawn(laptop, "sync", str(net.source), f"nas:{beta}", "--name", name, "--json")
    try:
        while link.counters(laptop)["tx_bytes"] - before["tx_bytes"] < TOTAL // 3:
            assert proc.poll() is None, f"finished before the cut: {proc.communicate()}"
            assert time.monotonic() - t0 < 120, "the transfer does not progress"
            time.sleep(0.005)
        link.down()
        cut_at = link.counters(laptop)["tx_bytes"] - before["tx_bytes"]
        if drop_state:
            # The nas forgets every connection while the cable is out.
            killed = nas.run("ss", "-K", "-t", "-n", "state", "established", "sport", "= :22")
            assert laptop.addr_for(nas) in killed.stdout, killed  # (ss lists what it closed)
        stalled = link.counters(laptop)["tx_bytes"]
        time.sleep(OUTAGE)  # the outage itself (not a synchronisation)
        assert proc.poll() is None, f"yeet gave up during a {OUTAGE} s outage: {proc.communicate()}"
        assert link.counters(laptop)["tx_bytes"] == stalled, "bytes crossed a cut link"
        link.up()
        out, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        link.up()
    elapsed = time.monotonic() - t0
    result = Cut(
        link.counters(laptop)["tx_bytes"] - before["tx_bytes"], cut_at, err.count("reconnected to")
    )
    print(
        f"\n{name}: {TOTAL / 2**20:.0f} MiB in {elapsed:.1f} s with a {OUTAGE:.0f} s cut after "
        f"{cut_at / 2**20:.0f} MiB; {result.sent / 2**20:.1f} MiB crossed the link "
        f"({result.extra / 2**20:+.1f} MiB over the data); reconnects: {result.reconnects}"
    )
    assert proc.returncode == 0, f"rc {proc.returncode}\n{out}\n{err}"
    doc = json.loads(out)
    assert doc["state"] == "synced" and not doc["conflicts"] and not doc["problems"], doc
    applied = doc["applied"]["beta"]
    assert applied["files"] == SMALL_FILES + 1 and applied["bytes"] == TOTAL, applied
    if drop_state:
        assert result.reconnects >= 1, f"the connection was reset, yet no reconnect: {err}"
    assert _digests(net.source) == _digests(beta)
    assert temp_names(beta) == []
    # And a further run has nothing to do.
    r = lab.yeet(laptop, "sync", "--name", name)
    assert r.out == f"synced\t{name}\tno changes\n", r.out
    return result


def test_cable_out_for_seconds(net: CutNet, tmp_path: Path) -> None:
    cut = cut_during_transfer(net, tmp_path / "beta", "cable", drop_state=False)
    # The connection survived: nothing at all is sent twice.
    assert cut.sent <= TOTAL * (1 + OVERHEAD), f"{cut.extra / 2**20:.1f} MiB over the data"


def test_cable_out_and_connections_dropped(net: CutNet, tmp_path: Path) -> None:
    cut = cut_during_transfer(net, tmp_path / "beta", "reset", drop_state=True)
    # Resumed, not restarted, and no duplicate work beyond what was in flight:
    # the chunks in flight at the cut resume from the receiver's journal. (Before
    # Upload.holds took several journal records together, 33-41 MiB went twice.)
    assert cut.sent <= TOTAL * (1 + OVERHEAD) + IN_FLIGHT + DROPPED_IN_BUFFERS, (
        f"{cut.extra / 2**20:.1f} MiB more than the data crossed the link "
        f"(what may be in flight is {IN_FLIGHT / 2**20:.1f} MiB)"
    )


def test_link_helpers_restore_the_link(net: CutNet) -> None:
    """(The other tests rely on it.) A cut link carries nothing; restored, it carries."""
    net.link.down()
    r = net.laptop.run("python3", "-c", _PROBE, net.nas.addr_for(net.laptop))
    assert r.stdout.strip() != "ok"
    net.link.up()
    r = net.laptop.run("python3", "-c", _PROBE, net.nas.addr_for(net.laptop))
    assert r.stdout.strip() == "ok", r


_PROBE = (
    "import socket,sys\n"
    "s=socket.socket(); s.settimeout(3)\n"
    "try:\n s.connect((sys.argv[1],22)); print('ok')\n"
    "except OSError as e: print(e.strerror or type(e).__name__)\n"
)
