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

Kill moments are stratified over the work of an uninterrupted run, measured by the
nas agent's I/O (``/proc/PID/io``: bytes read and written, pipes and files), so they
land in scans, transfers and commits whatever the machine's load (trial i of n dies
at a random point of the i-th n-th of it); one more agent kill lands at start-up;
the seed is printed (``VMTESTS_SEED`` replays it).
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

SMALL_FILES = 200
LARGE = {"big/a.bin": 8 << 20, "big/b.bin": 4 << 20}  # alpha rewrites a, beta rewrites b
CLIENT_TRIALS = 4
AGENT_TRIALS = 3
INF = float("inf")


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
                f"{when}: {root.name}: missing {missing[:5]}, extra {extra[:5]}, wrong {wrong[:5]}"
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


@dataclass
class Run:
    rc: int
    output: str
    opened: float  # seconds from the start until the nas's agent had opened the session
    agent_done: float  # ... until that agent had exited (or was killed)
    ended: float  # ... until the client exited
    killed: int  # processes killed
    io: int  # bytes the nas's agents read and wrote (pipes and files), as last seen


def _io(pid: int) -> int | None:
    """``rchar + wchar`` of a live process: every byte it read or wrote, of any file."""
    try:
        with open(f"/proc/{pid}/io") as f:
            fields = dict(line.split(": ") for line in f.read().splitlines())
    except (OSError, ValueError):
        return None
    return int(fields["rchar"]) + int(fields["wchar"])


def _run(
    t: Trees,
    *,
    kill_client_at: float = INF,
    kill_client_at_io: float = INF,
    kill_agent_after: float | None = INF,
    kill_agent_at_io: float = INF,
) -> Run:
    """One ``yeet sync`` of the session, watched from outside.

    ``kill_client_at``: SIGKILL the client that many seconds after its start.
    ``kill_client_at_io``: ... once the nas's agents (the session's and the bulk
    channel's) have read and written that many bytes (their progress through scans,
    transfers and commits, whatever the speed).
    ``kill_agent_after``: SIGKILL the nas's agent that many seconds after it opened
    the session (``None``: as soon as it exists, before its handshake);
    ``kill_agent_at_io``: ... once the nas's agents have read and written that many bytes.
    """
    net = t.net
    start = time.monotonic()
    proc = net.lab.spawn(net.laptop, "sync", "--name", t.name, "--quiet")
    agents: dict[int, str] = {}
    opened = agent_done = INF
    killed = 0
    seen_io: dict[int, int] = {}  # of every agent of the nas: the session's and bulk ones
    looked = -1.0

    def now() -> float:
        return time.monotonic() - start

    while proc.poll() is None and now() < 120:
        if now() - looked >= 0.05:  # a bulk agent starts with the first large file
            looked = now()
            for pid in net.nas.agents():
                seen_io.setdefault(pid, 0)
        for pid in seen_io:
            seen_io[pid] = _io(pid) or seen_io[pid]
        if now() >= kill_client_at or sum(seen_io.values()) >= kill_client_at_io:
            proc.kill()
            killed += 1
            break
        if opened == INF:
            agents = net.nas.agents()
            if agents and (kill_agent_after is None or all(_session_open(p) for p in agents)):
                opened = now()
        elif agent_done == INF:
            if not any(os.path.exists(f"/proc/{p}") for p in agents):
                agent_done = now()
            elif (
                kill_agent_after is None
                or now() >= opened + kill_agent_after
                or sum(seen_io.values()) >= kill_agent_at_io
            ):
                for pid in agents:
                    try:
                        os.kill(pid, signal.SIGKILL)
                        killed += 1
                    except ProcessLookupError:
                        pass
                agent_done = now()
        time.sleep(0.002)
    out, err = proc.communicate(timeout=120)
    return Run(proc.returncode, out + err, opened, agent_done, now(), killed, sum(seen_io.values()))


def _calibrate(t: Trees) -> Run:
    """An uninterrupted trial (edits on both sides), timed and checked like the others."""
    changes = t.edit()
    run = _run(t)
    assert run.rc == 0 and run.opened < run.agent_done < INF, run
    t.settle(changes, "uninterrupted trial")
    return run


def test_kill_client_at_random_points(net: KillNet, tmp_path: Path) -> None:
    """Kills stratified over the work of a run, measured by the nas's agents' I/O
    (bytes they read and wrote: scans, data in and out, staged files, commits), so
    they land in every phase whatever the machine's speed."""
    t = _start(net, tmp_path, "kc")
    cal = _calibrate(t)
    assert cal.io > 2 * sum(LARGE.values()), cal  # the clock does tick with the work
    midway = killed = 0
    for i in range(CLIENT_TRIALS):
        changes = t.edit()
        at = cal.io * (i + t.rng.random()) / CLIENT_TRIALS
        run = _run(t, kill_client_at_io=at)
        label = f"client trial {i} (kill at {at / 2**20:.1f} of {cal.io / 2**20:.1f} MiB of I/O)"
        mid = t.check_whole(changes, label + ", after the kill")
        midway += mid
        killed += run.killed
        rerun = t.sync()
        t.settle(changes, label + ", after the rerun")
        print(
            f"{label}: {'killed' if run.killed else 'had finished'} after {run.ended:.1f} s, "
            f"mid-way: {mid}; rerun {rerun:.1f} s"
        )
    print(f"{CLIENT_TRIALS} client trials, {killed} killed, {midway} left the trees mid-way")
    assert killed >= CLIENT_TRIALS // 2, "most runs ended before their kill: the test tests little"
    assert midway >= 1, "no kill landed in the middle of a transfer: the test tests nothing"


def test_kill_agent_at_random_points(net: KillNet, tmp_path: Path) -> None:
    t = _start(net, tmp_path, "ka")
    cal = _calibrate(t)

    # At start-up, before the handshake: the run fails cleanly (an agent that cannot
    # start is an error on a run's first connection), the next run does the work.
    changes = t.edit()
    run = _run(t, kill_agent_after=None)
    assert run.killed == 1, run
    assert run.rc == 7 and "closed before a yeet agent started" in run.output, run
    t.check_whole(changes, "agent killed at start-up")
    t.sync()
    t.settle(changes, "agent killed at start-up, after the rerun")

    # During its working life (kills stratified over its I/O, as for the client):
    # the client reconnects to a new agent and carries on; whatever it could not
    # finish is reported (exit 1), never a crash.
    killed = reconnected = 0
    for i in range(AGENT_TRIALS):
        changes = t.edit()
        at = cal.io * (i + t.rng.random()) / AGENT_TRIALS
        run = _run(t, kill_agent_at_io=at)
        label = f"agent trial {i} (killed at {at / 2**20:.1f} of {cal.io / 2**20:.1f} MiB of I/O)"
        assert run.rc in (0, 1), f"{label}: rc {run.rc}\n{run.output}"
        t.check_whole(changes, label + ", after the run")
        rerun = t.sync()
        t.settle(changes, label + ", after the rerun")
        again = "reconnected" in run.output
        print(
            f"{label}: killed {run.killed}, rc {run.rc} after {run.ended:.1f} s, "
            f"reconnected {again}; rerun {rerun:.1f} s"
        )
        if run.rc:
            print(run.output)
        killed += run.killed
        reconnected += again
    assert killed >= AGENT_TRIALS // 2, f"only {killed} agents were killed while they worked"
    assert reconnected >= 1, "no run ever reconnected after its agent was killed"
