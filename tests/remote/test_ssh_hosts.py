"""Host keys are always verified; jump hosts reach what is otherwise unreachable."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.remote.conftest import BARE_DEBIAN, make_tree, tree, yeet
from tests.sshd import Netns, SshServer, SshWorld


def test_unknown_host_is_refused(world: SshWorld) -> None:
    srv = world.server("stranger")
    world.alias("stranger", srv)  # in ~/.ssh/config, but its key is not in known_hosts
    a, b = world.root / "alpha", world.root / "deep" / "beta"
    make_tree(a, {"x": b"x"})
    r = yeet(world, "sync", str(a), f"stranger:{b}")
    assert r.returncode == 5, r.stderr
    assert f"[127.0.0.1]:{srv.port} is not a known host" in r.stderr
    assert str(world.known_hosts) in r.stderr and "SHA256:" in r.stderr
    assert not (world.root / "deep").exists()
    # the same with the unknown host as alpha and a local beta to be created
    r = yeet(world, "sync", f"stranger:{a}", str(b))
    assert r.returncode == 5 and "is not a known host" in r.stderr, r.stderr
    assert not (world.root / "deep").exists()
    assert not (world.root / "client-state" / "yeet" / "sessions").exists()
    assert yeet(world, "status").stdout == ""


def test_unreachable_host_creates_nothing(world: SshWorld) -> None:
    a, b = world.root / "alpha", world.root / "deep" / "beta"
    make_tree(a, {"x": b"x"})
    for pair in (
        (str(a), f"ssh://root@127.0.0.1:{_unused_port()}{b}"),
        (f"ssh://root@127.0.0.1:{_unused_port()}{a}", str(b)),
    ):
        r = yeet(world, "sync", *pair)
        assert r.returncode == 5 and "cannot reach" in r.stderr, r.stderr
    assert not (world.root / "deep").exists()
    assert not (world.root / "client-state" / "yeet" / "sessions").exists()


@pytest.mark.parametrize("hashed", [False, True], ids=["plain", "hashed"])
def test_changed_host_key_is_refused_naming_the_line(
    world: SshWorld, box: SshServer, hashed: bool
) -> None:
    other = world.server("other")
    world.trust(other)  # line 2 belongs to another host: the message must name line 1
    world.known_hosts.write_text(box.known_hosts_line() + other.known_hosts_line())
    if hashed:
        subprocess.run(["ssh-keygen", "-q", "-H", "-f", str(world.known_hosts)], check=True)
    a, b = world.root / "alpha", world.root / "beta"
    make_tree(a, {"x": b"one"})
    r = yeet(world, "sync", str(a), f"box:{b}", "--name", "s", python=BARE_DEBIAN)
    assert r.returncode == 0, r.stderr
    box.stop()
    box.new_host_key()
    box.start()
    (a / "x").write_bytes(b"two")
    r = yeet(world, "sync", "--name", "s", python=BARE_DEBIAN)
    assert r.returncode == 5, r.stderr
    assert "CHANGED" in r.stderr and f"{world.known_hosts} line 1" in r.stderr, r.stderr
    assert "ssh-keygen -R" in r.stderr and "Nothing was synchronised" in r.stderr
    assert (b / "x").read_bytes() == b"one"


@pytest.fixture
def netns() -> Iterator[Netns]:
    ns = Netns.create()
    try:
        yield ns
    finally:
        ns.delete()


def test_jump_host_reaches_a_host_only_it_can_reach(world: SshWorld, netns: Netns) -> None:
    """``target`` listens on the loopback of another network namespace: only ``jump``,
    which lives there too, can reach it."""
    jump = world.server("jump", host=netns.inner, netns=netns)
    target = world.server("target", host="127.0.0.1", netns=netns, port=_unused_port())
    world.trust(jump)
    world.trust(target)
    world.alias("jump", jump)
    world.alias("target", target, jump="jump")
    a, b = world.root / "alpha", world.root / "beta"
    make_tree(a, {"x": b"via the jump host", "d/y": b"y"})

    direct = yeet(world, "sync", str(a), f"ssh://root@127.0.0.1:{target.port}/{b}", "-n", "d")
    assert direct.returncode == 5 and "cannot reach" in direct.stderr, direct.stderr

    r = yeet(world, "sync", str(a), f"target:{b}", "--name", "cfg", python=BARE_DEBIAN)
    assert r.returncode == 0, r.stderr
    assert tree(a) == tree(b)

    b2 = world.root / "beta2"
    r = yeet(
        world,
        "sync",
        str(a),
        f"ssh://root@127.0.0.1:{target.port}/{b2}",
        "--via",
        f"root@{netns.inner}",
        "--name",
        "via",
        python=BARE_DEBIAN,
    )
    assert r.returncode == 0, r.stderr
    assert tree(a) == tree(b2)
    (a / "x").write_bytes(b"again")
    r = yeet(world, "sync", "--name", "via", python=BARE_DEBIAN)  # --via is remembered
    assert r.returncode == 0, r.stderr
    assert (b2 / "x").read_bytes() == b"again"


def test_unknown_jump_host_is_refused(world: SshWorld, netns: Netns) -> None:
    jump = world.server("jump", host=netns.inner, netns=netns)
    target = world.server("target", host="127.0.0.1", netns=netns, port=_unused_port())
    world.trust(target)  # but not the jump host
    world.alias("jump", jump)
    world.alias("target", target, jump="jump")
    a = world.root / "alpha"
    make_tree(a, {"x": b"x"})
    r = yeet(world, "sync", str(a), f"target:{world.root / 'beta'}")
    assert r.returncode == 5, r.stderr
    assert f"{netns.inner} is not a known host" in r.stderr
    assert not (world.root / "beta").exists()


def _unused_port() -> int:
    from tests.sshd import free_port

    return free_port()


def test_known_hosts_explanations_without_a_server(tmp_path: Path) -> None:
    from yeet.remote.client import hostkeys

    kh = tmp_path / "known_hosts"
    kh.write_text(
        "# comment\n"
        "other.example ssh-ed25519 AAAA1\n"
        "*.example,!bad.example ssh-ed25519 AAAA2\n"
        "@revoked [h.example]:2222 ssh-ed25519 AAAA3\n"
    )
    assert [k.line for k in hostkeys.lines_for([str(kh)], "x.example", 22)] == [3]
    assert hostkeys.lines_for([str(kh)], "bad.example", 22) == []
    msg, _hint = hostkeys.explain(
        [str(kh)], "h.example", 2222, ("ssh-ed25519", "AAAA3", "SHA256:z")
    )
    assert "@revoked" in msg and "line 4" in msg


def test_openssh_binary_transport(world: SshWorld, box: SshServer) -> None:
    """``YEET_SSH=openssh``: same agent, bytes through ``ssh``; host keys still verified."""
    a, b = world.root / "alpha", world.root / "beta"
    make_tree(a, {"x": b"one", "d/big": bytes(range(256)) * 8192})
    r = yeet(world, "sync", str(a), f"box:{b}", "-n", "s", python=BARE_DEBIAN, YEET_SSH="openssh")
    assert r.returncode == 0, r.stderr
    assert tree(a) == tree(b)
    box.stop()
    box.new_host_key()
    box.start()
    (a / "x").write_bytes(b"two")
    r = yeet(world, "sync", "-n", "s", python=BARE_DEBIAN, YEET_SSH="openssh")
    assert r.returncode == 5, r.stderr
    assert "refused the host key" in r.stderr and str(world.known_hosts) in r.stderr
    assert (b / "x").read_bytes() == b"one"


def test_keys_from_ssh_agent(world: SshWorld, box: SshServer) -> None:
    """No key file, no IdentityFile: the key comes from a running ssh-agent."""
    sock = world.root / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL)
    try:
        for _ in range(200):
            if sock.exists():
                break
            time.sleep(0.01)
        env = {"SSH_AUTH_SOCK": str(sock), "PATH": os.environ["PATH"]}
        subprocess.run(["ssh-add", "-q", str(world.key)], env=env, check=True)
        world.key.rename(world.root / "key-elsewhere")
        world.key.with_suffix(".pub").rename(world.root / "key-elsewhere.pub")
        config = world.config_file.read_text().splitlines()
        world.config_file.write_text("\n".join(x for x in config if "IdentityFile" not in x) + "\n")
        a, b = world.root / "alpha", world.root / "beta"
        make_tree(a, {"x": b"from the agent's key"})
        r = yeet(world, "sync", str(a), f"box:{b}", python=BARE_DEBIAN, SSH_AUTH_SOCK=str(sock))
        assert r.returncode == 0, r.stderr
        assert tree(a) == tree(b)
        r = yeet(world, "sync", str(a), f"box:{world.root / 'other'}", python=BARE_DEBIAN)
        assert r.returncode == 5 and "authentication failed" in r.stderr, r.stderr
    finally:
        agent.terminate()
        agent.wait()
