"""Scenario 4: ``kill -9`` at random points of a remote sync, then run it again.

Topology: ``laptop 10.99.1.1 ──veth── 10.99.1.2 nas`` (sshd on the nas; the CLI on
the laptop; a two-way session between a laptop directory and one on the nas).

Every trial edits both sides (disjoint paths: small files modified, created and
deleted, one multi-chunk large file rewritten on each side), starts ``yeet sync``,
and kills, with SIGKILL, either the client (the ``yeet`` process on the laptop) or
the agent (the ``yeet agent`` process on the nas) at a random moment. Then:

* right after the kill, in both trees every file holds a whole version: the one
  before the trial or the one the trial wrote (no torn file, nothing foreign);
* ``yeet sync`` again: both trees hold every edit of both sides (nothing lost, in
  particular not the nas's own edits), they are equal, and no temporary file is
  left in either tree.

Kill moments are stratified over the measured duration of an uninterrupted run
(trial i of n dies at a random point of the i-th n-th of it), so they cover start-up,
scans, transfers and commits; the seed is printed (``VMTESTS_SEED`` replays it).
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from vmtests.conftest import lab_in
from vmtests.lab import Host, Lab
from vmtests.trees import files, temp_names, write

SMALL_FILES = 300
LARGE = {"big/a.bin": 9 << 20, "big/b.bin": 6 << 20}  # alpha rewrites a, beta rewrites b
CLIENT_TRIALS = 12
AGENT_TRIALS = 8


@dataclass
class KillNet:
    lab: Lab
    laptop: Host
    nas: Host


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KillNet]:
    with lab_in(tmp_path_factory.mktemp("kill")) as lab:
        laptop, nas = lab.host("laptop"), lab.host("nas")
        lab.link(laptop, nas)
        lab.sshd(nas, nas.addr_for(laptop))
        yield KillNet(lab, laptop, nas)


Version = bytes | None  # None: the path holds nothing


@dataclass
class Trees:
    """Both roots and what both must hold once in sync (``expected``)."""

    net: KillNet
    name: str
    alpha: Path
    beta: Path
    rng: random.Random
    expected: dict[str, bytes] = field(default_factory=dict)
    trial: int = 0

    def sync(self, rc: int | None = 0) -> float:
        t = time.monotonic()
        self.net.lab.yeet(self.net.laptop, "sync", "--name", self.name, "--quiet", rc=rc)
        return time.monotonic() - t

    def edit(self) -> dict[str, tuple[Version, Version]]:
        """Edit both sides (disjoint paths); path -> (before, after) for what changed."""
        self.trial += 1
        rng, k = self.rng, self.trial
        changes: dict[str, tuple[Version, Version]] = {}
        for side, root, parity, large in (
            ("a", self.alpha, 0, "big/a.bin"),
            ("b", self.beta, 1, "big/b.bin"),
        ):
            own = sorted(p for p in self.expected if p.startswith("s/") and _num(p) % 2 == parity)
            for p in rng.sample(own, min(25, len(own))):
                changes[p] = (self.expected[p], rng.randbytes(rng.randrange(1, 32 << 10)))
            for p in rng.sample([p for p in own if p not in changes], 3):
                changes[p] = (self.expected[p], None)
            for i in range(8):
                changes[f"new/t{k}/{side}{i}"] = (None, rng.randbytes(rng.randrange(1, 16 << 10)))
            changes[large] = (self.expected[large], rng.randbytes(LARGE[large]))
            for p, (_old, new) in changes.items():
                if _owner(p) != side:
                    continue
                if new is None:
                    (root / p).unlink()
                else:
                    write(root, p, new)
        return changes

    def check_whole(self, changes: dict[str, tuple[Version, Version]], when: str) -> bool:
        """Every file in both trees is a whole version; True if the trees are mid-way
        (some but not all of the trial's changes arrived on the far side)."""
        arrived = 0
        for root in (self.alpha, self.beta):
            now = files(root)
            foreign = [p for p in now if p not in self.expected and p not in changes]
            assert [p for p in foreign if not _is_temp(p)] == [], f"{when}: {foreign}"
            for p in set(self.expected) | set(changes):
                allowed = set(changes[p]) if p in changes else {self.expected[p]}
                have = now.get(p)
                assert have in allowed, (
                    f"{when}: {root.name}/{p} is torn or foreign: "
                    f"{len(have) if have is not None else 'absent'} bytes, allowed sizes "
                    f"{[len(v) if v is not None else None for v in allowed]}"
                )
                if p in changes and changes[p][0] != changes[p][1] and have == changes[p][1]:
                    arrived += 1
        return len(changes) < arrived < 2 * len(changes)

    def settle(self, changes: dict[str, tuple[Version, Version]], when: str) -> None:
        """After a complete run: both trees hold exactly every edit, no temp files."""
        for p, (_old, new) in changes.items():
            if new is None:
                self.expected.pop(p, None)
            else:
                self.expected[p] = new
        for root in (self.alpha, self.beta):
            assert temp_names(root) == [], f"{when}: temporary files left in {root}"
            now = files(root)
            missing = sorted(set(self.expected) - set(now))
            extra = sorted(set(now) - set(self.expected))
            wrong = sorted(p for p in self.expected if p in now and now[p] != self.expected[p])
            assert not (missing or extra or wrong), (
                f"{when}: {root.name}: missing {missing[:5]}, extra {extra[:5]}, "
                f"wrong {wrong[:5]}"
            )


def _num(path: str) -> int:
    return int(path.rsplit("f", 1)[1])


def _owner(path: str) -> str:
    if path.startswith("s/"):
        return "a" if _num(path) % 2 == 0 else "b"
    if path.startswith("big/"):
        return path[4]
    return path.rsplit("/", 1)[1][0]


def _is_temp(path: str) -> bool:
    return any(part.startswith((".yeet-tmp", "partial-")) for part in path.split("/"))


def _seed() -> int:
    seed = int(os.environ.get("VMTESTS_SEED", random.randrange(1 << 30)))
    print(f"\nVMTESTS_SEED={seed}")
    return seed


def _start(net: KillNet, tmp: Path, name: str) -> Trees:
    rng = random.Random(_seed())
    t = Trees(net, name, tmp / "alpha", tmp / "nas" / "beta", rng)
    for i in range(SMALL_FILES):
        t.expected[f"s/d{i % 10}/f{i}"] = rng.randbytes(rng.randrange(1, 32 << 10))
    for p, size in LARGE.items():
        t.expected[p] = rng.randbytes(size)
    for p, data in t.expected.items():
        write(t.alpha, p, data)
    net.lab.yeet(net.laptop, "sync", str(t.alpha), f"nas:{t.beta}", "--name", name, "--quiet")
    t.settle({}, "initial copy")
    return t


def _calibrate(t: Trees) -> float:
    """Duration of an uninterrupted trial (edits on both sides), checked like the others."""
    changes = t.edit()
    took = t.sync()
    t.settle(changes, "uninterrupted trial")
    return took


def test_kill_client_at_random_points(net: KillNet, tmp_path: Path) -> None:
    t = _start(net, tmp_path, "kc")
    full = _calibrate(t)
    midway = 0
    for i in range(CLIENT_TRIALS):
        changes = t.edit()
        when = full * (i + t.rng.random()) / CLIENT_TRIALS
        proc = net.lab.spawn(net.laptop, "sync", "--name", t.name, "--quiet")
        time.sleep(when)  # the random kill moment (not a synchronisation)
        finished = proc.poll() is not None
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        label = f"client trial {i} (kill at {when:.2f} s of {full:.2f})"
        midway += t.check_whole(changes, label + ", after the kill")
        t.sync()
        t.settle(changes, label + ", after the rerun")
        if finished:
            print(f"{label}: the run had already finished")
    print(f"{CLIENT_TRIALS} client kills, {midway} left the trees mid-way")
    assert midway >= 1, "no kill landed in the middle of a transfer: the test tests nothing"


def _session_open(pid: int) -> bool:
    """Has agent ``pid`` opened the session (its state database on the nas)?"""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}").endswith("/state.db"):
                return True
        except OSError:
            continue
    return False


def _agent_run(
    t: Trees, kill_after: float | None
) -> tuple[int, str, float, int, dict[int, str]]:
    """Run a sync; once the nas's agent has opened the session, wait ``kill_after`` s
    and SIGKILL it (``None``: kill it as soon as it exists, before its handshake;
    ``inf``: never, but measure how long it worked after opening the session).
    ``(rc, stdout + stderr, that lifetime, agents killed, agents)``."""
    proc = t.net.lab.spawn(t.net.laptop, "sync", "--name", t.name, "--quiet")
    deadline = time.monotonic() + 60
    agents: dict[int, str] = {}
    while proc.poll() is None and time.monotonic() < deadline:
        agents = t.net.nas.agents()
        if agents and (kill_after is None or all(_session_open(p) for p in agents)):
            break
        time.sleep(0.005)
    assert agents, f"no agent ever ran on the nas: {proc.communicate()}"
    opened = time.monotonic()
    killed = 0
    if kill_after == float("inf"):  # measure how long the agent works
        while any(os.path.exists(f"/proc/{p}") for p in agents) and proc.poll() is None:
            time.sleep(0.005)
        lifetime = time.monotonic() - opened
    else:
        time.sleep(kill_after or 0.0)  # the random kill moment (not a synchronisation)
        for pid in agents:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
        lifetime = 0.0
    out, err = proc.communicate(timeout=180)
    return proc.returncode, out + err, lifetime, killed, agents


def test_kill_agent_at_random_points(net: KillNet, tmp_path: Path) -> None:
    t = _start(net, tmp_path, "ka")
    changes = t.edit()
    rc, out, working, _killed, _agents = _agent_run(t, float("inf"))
    assert rc == 0, out
    t.settle(changes, "uninterrupted trial")

    # At start-up, before the handshake: the run fails cleanly (an agent that cannot
    # start is an error on a run's first connection), the next run does the work.
    changes = t.edit()
    rc, out, _working, killed, _agents = _agent_run(t, None)
    assert killed == 1 and rc == 7 and "closed before a yeet agent started" in out, (rc, out)
    t.check_whole(changes, "agent killed at start-up")
    t.sync()
    t.settle(changes, "agent killed at start-up, after the rerun")

    # During its working life: the client reconnects to a new agent and carries on;
    # whatever it could not finish is reported (exit 1), never a crash.
    killed_alive = reconnected = 0
    for i in range(AGENT_TRIALS):
        changes = t.edit()
        when = 0.85 * working * (i + t.rng.random()) / AGENT_TRIALS
        rc, out, _working, killed, _agents = _agent_run(t, when)
        label = f"agent trial {i} (killed {when:.2f} s into a {working:.2f} s session)"
        assert rc in (0, 1), f"{label}: rc {rc}\n{out}"
        t.check_whole(changes, label + ", after the run")
        t.sync()
        t.settle(changes, label + ", after the rerun")
        print(f"{label}: killed {killed}, rc {rc}, reconnected {'reconnected' in out}")
        if rc:
            print(out)
        killed_alive += killed
        reconnected += "reconnected" in out
    assert killed_alive >= AGENT_TRIALS // 2, f"only {killed_alive} agents were killed alive"
    assert reconnected >= 1, "no run ever reconnected after its agent was killed"
