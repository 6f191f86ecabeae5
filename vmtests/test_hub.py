"""Scenarios 5 and 6: this machine as the hub between remote hosts.

Topology (a star; the two spokes have no link to each other)::

    hostA 10.99.1.2 ──── 10.99.1.1 hub 10.99.2.1 ──── 10.99.2.2 hostB

The hub runs the CLI; hostA and hostB each run an sshd with a stock python3 and
their own HOME (agent cache, agent state, trash).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from vmtests.conftest import lab_in
from vmtests.lab import Host, Lab, Link
from vmtests.trees import diff, temp_names, tree, write


@dataclass
class Star:
    lab: Lab
    hub: Host
    a: Host
    b: Host
    to_a: Link
    to_b: Link


@pytest.fixture(scope="module")
def star(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Star]:
    with lab_in(tmp_path_factory.mktemp("star")) as lab:
        hub, a, b = lab.host("hub"), lab.host("hostA"), lab.host("hostB")
        to_a, to_b = lab.link(hub, a), lab.link(hub, b)
        lab.sshd(a, a.addr_for(hub), alias="hostA")
        lab.sshd(b, b.addr_for(hub), alias="hostB")
        yield Star(lab, hub, a, b, to_a, to_b)


def _reaches(src: Host, addr: str) -> bool:
    code = (
        "import socket,sys\n"
        "try:\n socket.create_connection((sys.argv[1],22),3).close(); print('ok')\n"
        "except OSError as e: print(e)\n"
    )
    return src.run("python3", "-c", code, addr).stdout.strip() == "ok"


def test_two_remotes_through_the_hub(star: Star, tmp_path: Path) -> None:
    """Scenario 5: ``yeet sync hostA:x hostB:y``, edits on both remotes."""
    lab, hub = star.lab, star.hub
    assert _reaches(hub, star.a.addr_for(hub)) and _reaches(hub, star.b.addr_for(hub))
    assert not _reaches(star.a, star.b.addr_for(hub)), "the spokes must not see each other"
    x, y = tmp_path / "on-A" / "x", tmp_path / "on-B" / "y"
    big = os.urandom(3 << 20)
    write(x, "src/app.py", b"print('A')\n")
    write(x, "src/run.sh", b"#!/bin/sh\n", executable=True)
    write(x, "shared.txt", b"v1\n")
    write(x, "gone.txt", b"to be deleted\n")
    write(x, "media/big.bin", big)
    (x / "latest").symlink_to("src/app.py")
    write(y, "from-b/notes.md", b"B was here first\n")

    rx_a, tx_b = star.to_a.counters(hub)["rx_bytes"], star.to_b.counters(hub)["tx_bytes"]
    r = lab.yeet(hub, "sync", f"hostA:{x}", f"hostB:{y}", "--name", "ab")
    assert r.out.startswith("synced\tab\t") and "alpha→beta: " in r.out, r.out
    assert "beta→alpha: 1 files" in r.out, r.out
    assert tree(x) == tree(y), diff(tree(x), tree(y))
    # The content went A -> hub -> B: over both links, through the hub.
    assert star.to_a.counters(hub)["rx_bytes"] - rx_a > len(big)
    assert star.to_b.counters(hub)["tx_bytes"] - tx_b > len(big)
    # Each remote keeps its own side's state; the hub keeps the session.
    assert list(star.a.home.glob(".local/state/yeet/agent/ab-alpha-*/state.db"))
    assert list(star.b.home.glob(".local/state/yeet/agent/ab-beta-*/state.db"))
    assert (lab.world.root / "client-state/yeet/sessions/ab/state.db").exists()

    # Edits on both remotes, different paths: both travel.
    write(x, "src/app.py", b"print('A2')\n")
    (x / "gone.txt").unlink()
    write(y, "from-b/notes.md", b"B edited\n")
    write(y, "from-b/data/new.csv", b"a,b\n1,2\n")
    (y / "src/run.sh").chmod(0o644)
    with open(y / "media/big.bin", "r+b") as f:
        f.seek(1 << 20)
        f.write(b"B" * 4096)
    lab.yeet(hub, "sync", "--name", "ab", "--quiet")
    assert tree(x) == tree(y), diff(tree(x), tree(y))
    assert (y / "src/app.py").read_bytes() == b"print('A2')\n"
    assert not (y / "gone.txt").exists()
    assert (x / "from-b/notes.md").read_bytes() == b"B edited\n"
    assert (x / "from-b/data/new.csv").exists() and not os.access(x / "src/run.sh", os.X_OK)
    assert (x / "media/big.bin").read_bytes()[1 << 20 : (1 << 20) + 4096] == b"B" * 4096

    # Both edit the same file: a conflict, nothing else blocked, settled for B.
    write(x, "shared.txt", b"A's\n")
    write(y, "shared.txt", b"B's\n")
    write(x, "more.txt", b"more\n")
    r = lab.yeet(hub, "sync", "--name", "ab", rc=1)
    assert "conflict\tshared.txt\talpha modified\tbeta modified" in r.out, r.out
    assert (y / "more.txt").read_bytes() == b"more\n"
    r = lab.yeet(hub, "conflicts", "ab", rc=1)
    assert r.out == "ab\tshared.txt\tmodified\tmodified\n", r.out
    lab.yeet(hub, "resolve", "ab", "shared.txt", "--keep", "beta")
    assert (x / "shared.txt").read_bytes() == b"B's\n"
    r = lab.yeet(hub, "sync", "--name", "ab")
    assert r.out == "synced\tab\tno changes\n", r.out
    assert tree(x) == tree(y), diff(tree(x), tree(y))
    assert temp_names(x) == [] and temp_names(y) == []
    r = lab.yeet(hub, "trash", "ab")
    assert any(line.split("\t")[0::5] == ["alpha", "shared.txt"] for line in r.out.splitlines())


def test_offline_replica_with_older_versions_comes_back(star: Star, tmp_path: Path) -> None:
    """Scenario 6: the hub syncs with A and with B; B is offline while A edits; B
    comes back and takes A's newer versions without conflicts (Syncthing's failure
    mode), even though its own old copies carry newer modification times."""
    lab, hub = star.lab, star.hub
    h, sa, sb = tmp_path / "hub", tmp_path / "on-A" / "s", tmp_path / "on-B" / "s"
    big = bytearray(os.urandom(2 << 20))
    for i in range(8):
        write(h, f"docs/f{i}.txt", f"version 1 of f{i}\n".encode())
    write(h, "img/big.bin", bytes(big))
    write(h, "old.txt", b"soon deleted on A\n")
    lab.yeet(hub, "sync", str(h), f"hostA:{sa}", "--name", "ha", "--quiet")
    lab.yeet(hub, "sync", str(h), f"hostB:{sb}", "--name", "hb", "--quiet")
    assert tree(h) == tree(sa) == tree(sb)
    b_before = tree(sb)

    star.to_b.down()
    try:
        assert not _reaches(hub, star.b.addr_for(hub))
        # A edits while B is away; the hub takes A's edits.
        for i in range(4):
            write(sa, f"docs/f{i}.txt", f"version 2 of f{i}, from A\n".encode())
        big[4096:8192] = os.urandom(4096)
        write(sa, "img/big.bin", bytes(big))
        write(sa, "docs/new-on-A.txt", b"new\n")
        (sa / "old.txt").unlink()
        r = lab.yeet(hub, "sync", "--name", "ha")
        assert r.out.startswith("synced\tha\tbeta→alpha: 6 files"), r.out
        assert "1 removed" in r.out, r.out
        assert tree(h) == tree(sa)
        # B cannot be reached: nothing happens to anything, no conflict recorded.
        hub_tree = tree(h)
        r = lab.yeet(hub, "sync", "--name", "hb", rc=5)
        assert "cannot reach hostB" in r.err, r.err
        assert tree(h) == hub_tree
        lab.yeet(hub, "conflicts", "hb", rc=0)
        # Meanwhile on B: its old copies get newer mtimes (clock skew, a touch, a
        # restore from backup), and B makes an edit of its own elsewhere.
        future = time.time() + 3600
        for rel in ("docs/f0.txt", "docs/f1.txt", "docs/f2.txt", "docs/f3.txt", "img/big.bin"):
            os.utime(sb / rel, (future, future))
        write(sb, "docs/f7.txt", b"version 2 of f7, from B\n")
    finally:
        star.to_b.up()
    assert tree(sb) != b_before and _reaches(hub, star.b.addr_for(hub))

    r = lab.yeet(hub, "sync", "--name", "hb")
    assert "conflict" not in r.out, r.out
    assert r.out.startswith("synced\thb\t"), r.out
    lab.yeet(hub, "conflicts", "hb", rc=0)
    for i in range(4):
        assert (sb / f"docs/f{i}.txt").read_bytes() == f"version 2 of f{i}, from A\n".encode()
    assert (sb / "img/big.bin").read_bytes() == bytes(big)
    assert (sb / "docs/new-on-A.txt").exists() and not (sb / "old.txt").exists()
    assert (h / "docs/f7.txt").read_bytes() == b"version 2 of f7, from B\n"
    assert tree(h) == tree(sb), diff(tree(h), tree(sb))
    # B's replaced versions are in B's trash, not lost and not in the tree.
    r = lab.yeet(hub, "trash", "hb")
    trashed = {tuple(line.split("\t")[0::5]) for line in r.out.splitlines()}
    assert ("beta", "docs/f0.txt") in trashed and ("beta", "old.txt") in trashed, r.out

    # And A gets B's edit: all three agree.
    r = lab.yeet(hub, "sync", "--name", "ha")
    assert r.out.startswith("synced\tha\talpha→beta: 1 files"), r.out
    assert tree(h) == tree(sa) == tree(sb)
    for name in ("ha", "hb"):
        r = lab.yeet(hub, "status", name)
        assert r.out.startswith(f"synced\t{name}\t"), r.out
    assert temp_names(h) == temp_names(sa) == temp_names(sb) == []
