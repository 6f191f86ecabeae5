"""A small network of test hosts: network namespaces, links, one sshd per host.

Every "host" is a network namespace of its own (its own interfaces, addresses and
routes). Hosts are joined by point-to-point links, each its own /24 subnet, and
nothing routes between links: a host two links away is reachable only by hopping
through the host in the middle (an SSH jump host), as on a home network behind a
gateway. A link is either a veth pair (fast, cut with ``down()``/``up()``) or a
``wire`` (``vmtests/wire.py``: a user-space cable that delays and drops frames,
standing in for ``tc netem``, which this machine's kernel lacks).

Each remote host runs a real OpenSSH ``sshd`` (``tests/sshd.py``) inside its
namespace; its sessions get a HOME and XDG directories of their own, so the yeet
agent's cache, state, staging and trash on that host live apart from the client's.
The client ("laptop" or "hub") runs the real ``yeet`` CLI inside its namespace with
its own HOME (``~/.ssh/config``, ``known_hosts``, key) and ``XDG_STATE_HOME``.

Namespace names carry the creating process's pid (``yv<pid>-<tag>-<host>``), so
parallel test workers never collide, and ``sweep_stale`` removes what a killed
worker left behind without touching a live one's. ``Lab.close`` kills every
process left in its namespaces and deletes them, whatever state the test left.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.cli_harness import Result
from tests.sshd import Netns, SshServer, SshWorld

PREFIX = "yv"
REMOTE_PYTHON = "/usr/bin/python3"
"""The remote hosts' python: Debian's own, no yeet, no zstandard/blake3 (a stock NAS)."""
WIRE = Path(__file__).resolve().parent / "wire.py"


def sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, check=check, capture_output=True, text=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_netns(ns: str) -> None:
    """SIGKILL every process in ``ns``, then delete it."""
    for _ in range(20):
        pids = [int(p) for p in sh("ip", "netns", "pids", ns, check=False).stdout.split()]
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)
    sh("ip", "netns", "del", ns, check=False)


def sweep_stale() -> None:
    """Delete lab namespaces whose creating process is gone (a killed test worker)."""
    for line in sh("ip", "netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.strip() else ""
        if not name.startswith(PREFIX):
            continue
        head = name[len(PREFIX) :].split("-", 1)[0]
        if head.isdigit() and not _alive(int(head)):
            _kill_netns(name)


def process_table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) for every process now."""
    out: dict[int, tuple[int, str]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])
        out[int(entry)] = (ppid, cmd)
    return out


def descendants(pid: int) -> dict[int, str]:
    """Every process below ``pid``: pid -> command line."""
    table = process_table()
    children: dict[int, list[int]] = {}
    for p, (ppid, _cmd) in table.items():
        children.setdefault(ppid, []).append(p)
    out: dict[int, str] = {}
    todo = list(children.get(pid, []))
    while todo:
        p = todo.pop()
        out[p] = table[p][1]
        todo.extend(children.get(p, []))
    return out


@dataclass
class Host:
    lab: Lab
    name: str
    ns: str
    addrs: dict[str, str] = field(default_factory=dict)  # peer host -> our address there
    sshd: SshServer | None = None

    def prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.ns]

    def run(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return sh(*self.prefix(), *cmd, check=check)

    def addr_for(self, peer: Host) -> str:
        return self.addrs[peer.name]

    @property
    def home(self) -> Path:
        """The HOME of this host's SSH sessions (the yeet agent's cache and state)."""
        assert self.sshd is not None
        return self.sshd.home

    def agents(self) -> dict[int, str]:
        """yeet agent processes serving connections on this host now."""
        assert self.sshd is not None and self.sshd.proc is not None
        return {
            pid: cmd
            for pid, cmd in descendants(self.sshd.proc.pid).items()
            if "yeet" in cmd and cmd.endswith("agent") and not cmd.startswith("sh ")
        }


@dataclass
class Link:
    a: Host
    b: Host
    if_a: str
    if_b: str
    wire: subprocess.Popen[str] | None = None
    wire_stats: Path | None = None

    def _ends(self) -> list[tuple[Host, str]]:
        return [(self.a, self.if_a), (self.b, self.if_b)]

    def down(self) -> None:
        """Pull the cable out: both ends lose their link (and their routes)."""
        for host, ifname in self._ends():
            sh("ip", "-n", host.ns, "link", "set", ifname, "down")

    def up(self) -> None:
        for host, ifname in self._ends():
            sh("ip", "-n", host.ns, "link", "set", ifname, "up")
        # Wait for the link to carry traffic again (addresses back, no longer tentative).
        deadline = time.monotonic() + 10
        for host, ifname in self._ends():
            while True:
                info = json.loads(sh("ip", "-n", host.ns, "-j", "addr", "show", ifname).stdout)
                ok = info and "LOWER_UP" in info[0]["flags"]
                if ok or time.monotonic() > deadline:
                    break
                time.sleep(0.02)

    def counters(self, host: Host) -> dict[str, int]:
        """``tx_bytes``, ``tx_packets``, ``rx_bytes``, ``rx_packets`` of ``host``'s end."""
        ifname = self.if_a if host is self.a else self.if_b
        info = json.loads(sh("ip", "-n", host.ns, "-j", "-s", "link", "show", ifname).stdout)
        s = info[0]["stats64"]
        return {
            "tx_bytes": s["tx"]["bytes"],
            "tx_packets": s["tx"]["packets"],
            "rx_bytes": s["rx"]["bytes"],
            "rx_packets": s["rx"]["packets"],
        }

    def stop_wire(self) -> dict[str, Any]:
        """Stop the user-space wire (if any); its counters (frames carried, dropped)."""
        if self.wire is None:
            return {}
        if self.wire.poll() is None:
            self.wire.terminate()
            try:
                self.wire.wait(10)
            except subprocess.TimeoutExpired:
                self.wire.kill()
                self.wire.wait()
        self.wire = None
        if self.wire_stats is not None and self.wire_stats.exists():
            stats: dict[str, Any] = json.loads(self.wire_stats.read_text())
            return stats
        return {}


class Lab:
    """Hosts, links and sshds under ``root``; the client's HOME is ``world``."""

    def __init__(self, root: Path) -> None:
        sweep_stale()
        self.root = root
        self.tag = f"{PREFIX}{os.getpid()}-{secrets.token_hex(2)}"
        self.world = SshWorld(root)
        self.hosts: dict[str, Host] = {}
        self.links: list[Link] = []

    # -- building -------------------------------------------------------------------------

    def host(self, name: str) -> Host:
        assert len(name) <= 10 and name not in self.hosts
        ns = f"{self.tag}-{name}"
        sh("ip", "netns", "add", ns)
        host = Host(self, name, ns)
        self.hosts[name] = host
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        return host

    def link(self, a: Host, b: Host, *, delay: float = 0.0, loss: float = 0.0) -> Link:
        """Join ``a`` and ``b``: 10.99.N.1 (a) and 10.99.N.2 (b) on a subnet of their own.

        With ``delay`` or ``loss``, frames travel through a user-space wire that
        delays each by ``delay`` seconds and drops it with probability ``loss``, in
        each direction (what ``tc netem delay D loss L`` on both ends would do).
        """
        n = len(self.links) + 1
        if_a, if_b = f"to-{b.name}", f"to-{a.name}"
        link = Link(a, b, if_a, if_b)
        if delay or loss:
            link.wire_stats = self.root / f"wire-{a.name}-{b.name}.json"
            link.wire = subprocess.Popen(
                [
                    *(sys.executable, str(WIRE), a.ns, if_a, b.ns, if_b),
                    *("--delay", str(delay), "--loss", str(loss), "--stats", str(link.wire_stats)),
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            assert link.wire.stdout is not None
            ready = link.wire.stdout.readline()
            if ready.strip() != "ready":
                raise RuntimeError(f"wire did not start: {ready}{link.wire.stderr}")
        else:
            # Created directly inside both namespaces: the names never meet in ours.
            veth = ("type", "veth", "peer", "name", if_b, "netns", b.ns)
            sh("ip", "link", "add", if_a, "netns", a.ns, *veth)
        self.links.append(link)
        for host, ifname, addr in ((a, if_a, f"10.99.{n}.1"), (b, if_b, f"10.99.{n}.2")):
            sh("ip", "-n", host.ns, "addr", "add", f"{addr}/24", "dev", ifname)
            sh("ip", "-n", host.ns, "link", "set", ifname, "up")
            host.addrs[(b if host is a else a).name] = addr
        link.up()
        return link

    def sshd(self, host: Host, listen: str, *, alias: str | None = None) -> SshServer:
        """Start ``host``'s sshd on ``listen``:22; trusted and named ``alias`` in ssh config."""
        srv = self.world.server(host.name, host=listen, netns=Netns(host.ns, "", listen))
        host.sshd = srv
        self.world.trust(srv)
        self.world.alias(alias or host.name, srv)
        return srv

    # -- the client -----------------------------------------------------------------------

    def env(self, **extra: str) -> dict[str, str]:
        return self.world.env(YEET_REMOTE_PYTHON=REMOTE_PYTHON, **extra)

    def spawn(self, on: Host, *args: str, **env: str) -> subprocess.Popen[str]:
        """``yeet ARGS`` running on ``on`` (``ip netns exec`` execs: the pid is yeet's)."""
        return subprocess.Popen(
            [*on.prefix(), sys.executable, "-m", "yeet", *args],
            env=self.env(**env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=self.root,
        )

    def yeet(self, on: Host, *args: str, rc: int | None = 0, timeout: float = 180) -> Result:
        proc = self.spawn(on, *args)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            raise AssertionError(f"yeet {' '.join(args)} timed out\n{out}\n{err}") from None
        result = Result(proc.returncode, out, err)
        if rc is not None:
            assert result.rc == rc, f"yeet {' '.join(args)} -> {result.rc}\n{out}\n{err}"
        return result

    # -- teardown -------------------------------------------------------------------------

    def close(self) -> None:
        for link in self.links:
            with contextlib.suppress(Exception):
                link.stop_wire()
        with contextlib.suppress(Exception):
            self.world.stop()
        for host in self.hosts.values():
            _kill_netns(host.ns)
        self.hosts.clear()
