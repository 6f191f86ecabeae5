"""Scenario 1: laptop → gateway (jump host) → nas.

Topology (three namespaces, two links, no routing between the links)::

    laptop 10.99.1.1 ──── 10.99.1.2 gateway 10.99.2.1 ──── 10.99.2.2 nas

The laptop runs the CLI; the gateway and the nas each run an sshd. The nas has a
stock ``/usr/bin/python3`` and no yeet: the agent is uploaded through the gateway.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from vmtests.conftest import lab_in
from vmtests.lab import Host, Lab
from vmtests.trees import diff, temp_names, tree, write


@dataclass
class JumpNet:
    lab: Lab
    laptop: Host
    gateway: Host
    nas: Host


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JumpNet]:
    with lab_in(tmp_path_factory.mktemp("jump")) as lab:
        laptop, gateway, nas = lab.host("laptop"), lab.host("gateway"), lab.host("nas")
        lab.link(laptop, gateway)
        lab.link(gateway, nas)
        lab.sshd(gateway, gateway.addr_for(laptop), alias="gateway")
        lab.sshd(nas, nas.addr_for(gateway), alias="nas")  # no ProxyJump in ssh config
        yield JumpNet(lab, laptop, gateway, nas)


def _connect_from(host: Host, addr: str) -> str:
    """Try a TCP connection to addr:22 from inside ``host``: "ok" or the error."""
    code = (
        "import socket,sys\n"
        "s=socket.socket(); s.settimeout(3)\n"
        "try:\n s.connect((sys.argv[1],22)); print('ok')\n"
        "except OSError as e: print(e.strerror or type(e).__name__)\n"
    )
    return host.run("python3", "-c", code, addr).stdout.strip()


def test_the_nas_is_reachable_only_through_the_gateway(net: JumpNet, tmp_path: Path) -> None:
    lab, laptop, gateway, nas = net.lab, net.laptop, net.gateway, net.nas
    assert _connect_from(laptop, gateway.addr_for(laptop)) == "ok"
    assert _connect_from(gateway, nas.addr_for(gateway)) == "ok"
    assert _connect_from(laptop, nas.addr_for(gateway)) != "ok"
    a = tmp_path / "laptop-dir"
    write(a, "x", b"x")
    beta = tmp_path / "nas-dir"
    r = lab.yeet(laptop, "sync", str(a), f"nas:{beta}", "--name", "direct", rc=5)
    assert "cannot reach nas" in r.err and "unreachable" in r.err, r.err
    assert not beta.exists()


def test_sync_via_the_gateway(net: JumpNet, tmp_path: Path) -> None:
    lab, laptop, gateway, nas = net.lab, net.laptop, net.gateway, net.nas
    a, b = tmp_path / "laptop-dir", tmp_path / "nas-data" / "dir"
    big = os.urandom(3 << 20)
    write(a, "src/main.c", b"int main() { return 0; }\n")
    write(a, "src/build.sh", b"#!/bin/sh\nmake\n", executable=True)
    write(a, "notes.txt", b"first\n")
    write(a, "todo.txt", b"- nothing\n")
    write(a, "img/disk.img", big)
    write(a, "deep/a/b/c/d.txt", b"deep\n")
    (a / "link").symlink_to("src/main.c")
    (a / "empty").mkdir()

    # First run: the route is given once.
    r = lab.yeet(laptop, "sync", str(a), f"nas:{b}", "--name", "s", "--via", "gateway")
    assert r.out.startswith("synced\ts\talpha→beta: "), r.out
    assert tree(a) == tree(b), diff(tree(a), tree(b))
    nas_log = nas.sshd.log.read_text() if nas.sshd else ""
    assert f"Connection from {gateway.addr_for(nas)}" in nas_log, "nas not reached via gateway"
    # The agent was uploaded to the nas, and the nas keeps its own state; the gateway
    # only forwarded bytes.
    assert list(nas.home.glob(".cache/yeet/*/yeet.pyz")), "agent not uploaded to the nas"
    assert list(nas.home.glob(".local/state/yeet/agent/s-beta-*/state.db"))
    assert not (gateway.home / ".cache" / "yeet").exists()
    assert (lab.world.root / "client-state" / "yeet" / "sessions" / "s" / "state.db").exists()

    # Later runs remember the route (here: the session named by its pair, no --via).
    r = lab.yeet(laptop, "sync", str(a), f"nas:{b}", "--name", "s")
    assert r.out == "synced\ts\tno changes\n", r.out

    # Laptop edits flow to the nas: modify, create, delete, chmod, a block of the image.
    write(a, "src/main.c", b"int main() { return 1; }\n")
    write(a, "src/new.h", b"#pragma once\n")
    (a / "todo.txt").unlink()
    (a / "src/build.sh").chmod(0o644)
    with open(a / "img/disk.img", "r+b") as f:
        f.seek(1 << 20)
        f.write(b"laptop block" * 100)
    lab.yeet(laptop, "sync", "--name", "s", "--quiet")
    assert tree(a) == tree(b), diff(tree(a), tree(b))
    assert not (b / "todo.txt").exists()
    assert not os.access(b / "src/build.sh", os.X_OK)
    assert (b / "img/disk.img").read_bytes()[1 << 20 : (1 << 20) + 12] == b"laptop block"

    # Nas edits flow to the laptop.
    write(b, "src/main.c", b"int main() { return 2; }\n")
    write(b, "results/log.txt", b"built on the nas\n")
    (b / "deep/a/b/c/d.txt").unlink()
    (b / "empty").rmdir()
    lab.yeet(laptop, "sync", "--name", "s", "--quiet")
    assert tree(a) == tree(b), diff(tree(a), tree(b))
    assert (a / "src/main.c").read_bytes() == b"int main() { return 2; }\n"
    assert (a / "results/log.txt").read_bytes() == b"built on the nas\n"
    assert not (a / "deep/a/b/c/d.txt").exists() and not (a / "empty").exists()

    # A conflict is recorded (nothing left in either tree), other paths keep syncing.
    write(a, "notes.txt", b"laptop's notes\n")
    write(b, "notes.txt", b"nas's notes\n")
    write(a, "other.txt", b"still flows\n")
    r = lab.yeet(laptop, "sync", "--name", "s", rc=1)
    assert "conflict\tnotes.txt\talpha modified\tbeta modified" in r.out, r.out
    assert (b / "other.txt").read_bytes() == b"still flows\n"
    assert (a / "notes.txt").read_bytes() == b"laptop's notes\n"
    assert (b / "notes.txt").read_bytes() == b"nas's notes\n"
    assert sorted(os.listdir(a)) == sorted(os.listdir(b))  # no conflict copies anywhere
    r = lab.yeet(laptop, "conflicts", "s", rc=1)
    assert r.out == "s\tnotes.txt\tmodified\tmodified\n", r.out
    r = lab.yeet(laptop, "status", "s", rc=1)
    assert r.out.startswith("conflicts\ts\t"), r.out
    r = lab.yeet(laptop, "diff", "s", "notes.txt", rc=1)
    assert "-laptop's notes" in r.out and "+nas's notes" in r.out, r.out

    # Settled for the laptop: written on the nas through the gateway, the nas's version
    # to the nas's trash, from where it can be restored (through the gateway too).
    r = lab.yeet(laptop, "resolve", "s", "notes.txt", "--keep", "alpha")
    assert r.out == "resolved\ts\tnotes.txt\tkept alpha\n", r.out
    assert (b / "notes.txt").read_bytes() == b"laptop's notes\n"
    lab.yeet(laptop, "conflicts", "s", rc=0)
    r = lab.yeet(laptop, "trash", "s")
    trashed = [line.split("\t") for line in r.out.splitlines()]
    assert ["beta", "notes.txt"] in [[t[0], t[5]] for t in trashed], r.out
    r = lab.yeet(laptop, "trash", "s", "--restore", "notes.txt", "--side", "beta", "--force")
    assert r.out.startswith("restored\tbeta\tnotes.txt\t"), r.out
    assert (b / "notes.txt").read_bytes() == b"nas's notes\n"
    lab.yeet(laptop, "sync", "--name", "s", "--quiet")
    assert (a / "notes.txt").read_bytes() == b"nas's notes\n"

    assert tree(a) == tree(b), diff(tree(a), tree(b))
    assert temp_names(a) == [] and temp_names(b) == []
    r = lab.yeet(laptop, "status", "s")
    assert r.out.startswith("synced\ts\t"), r.out
