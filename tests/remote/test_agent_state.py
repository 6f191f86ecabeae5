"""The agent's own state database (stat cache, trash index) on a full disk: the command
fails (exit 3) naming it, and nothing is set aside, so the trash stays restorable."""

from __future__ import annotations

from tests.diskfull import fill, small_tmpfs
from tests.remote.conftest import BARE_DEBIAN, make_tree, yeet
from tests.sshd import SshServer, SshWorld


def test_full_agent_state_directory_keeps_its_state(world: SshWorld, box: SshServer) -> None:
    a, b = world.root / "alpha", world.root / "beta"
    make_tree(a, {"x": b"1", "gone": b"2"})
    with small_tmpfs(box.home / ".local" / "state", "2m") as state:
        r = yeet(world, "sync", str(a), f"box:{b}", "--name", "s", python=BARE_DEBIAN)
        assert r.returncode == 0, r.stderr
        (a / "gone").unlink()
        r = yeet(world, "sync", "--name", "s", python=BARE_DEBIAN)
        assert r.returncode == 0, r.stderr
        (db,) = state.glob("yeet/agent/s-beta-*/state.db")
        fillers = fill(state)
        (a / "x").write_bytes(b"changed")
        r = yeet(world, "sync", "--name", "s", python=BARE_DEBIAN)
        assert r.returncode == 3, (r.returncode, r.stderr)
        assert str(db) in r.stderr and "is full" in r.stderr.replace(str(db), ""), r.stderr
        assert "Traceback" not in r.stderr
        assert not list(db.parent.glob("state.db.damaged-*"))
        for f in fillers:
            f.unlink()
        r = yeet(world, "sync", "--name", "s", python=BARE_DEBIAN)
        assert r.returncode == 0, r.stderr
        assert (b / "x").read_bytes() == b"changed"
        trashed = [line.split("\t")[5] for line in yeet(world, "trash", "s").stdout.splitlines()]
        assert "gone" in trashed
