"""``ssh://`` addresses mean what git and OpenSSH say; sessions from before keep their place.

``ssh://host/abs/path`` is absolute and ``ssh://host/~/path`` is in the home
directory; ``yeet status`` prints a form that cannot be misread. A session whose
stored address was written with the old meaning (``ssh://host:port/rel`` was
home-relative) keeps synchronising the same directory.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from tests.remote.conftest import BARE_DEBIAN, make_tree, tree, yeet
from tests.sshd import SshServer, SshWorld


def _status(world: SshWorld, name: str) -> dict[str, object]:
    r = yeet(world, "status", name, "--json")
    rows = json.loads(r.stdout)
    assert len(rows) == 1, r.stderr
    return dict(rows[0])


def _session_dir(world: SshWorld, name: str) -> Path:
    return world.root / "client-state" / "yeet" / "sessions" / name


def test_ssh_url_paths_are_absolute_or_in_the_home(world: SshWorld, box: SshServer) -> None:
    a = world.root / "alpha"
    make_tree(a, {"x": b"1", "d/y": b"2"})
    url = f"ssh://root@127.0.0.1:{box.port}"
    absolute, rel, plain = world.root / "abs-beta", "rel/beta", world.root / "plain-beta"
    cases = {
        "abs": (f"{url}{absolute}", absolute, f"{url}{absolute}"),
        "rel": (f"{url}/~/{rel}", box.home / rel, f"{url}/~/{rel}"),
        "plain": (f"ssh://box{plain}", plain, f"box:{plain}"),  # no port: scp form
    }
    for name, (address, where, shown) in cases.items():
        r = yeet(world, "sync", str(a), address, "--name", name, python=BARE_DEBIAN)
        assert r.returncode == 0, r.stderr
        assert tree(where) == tree(a), name
        row = _status(world, name)
        assert row["beta"] == shown and row["beta_root"] == str(where), row
        r = yeet(world, "status", name)
        assert r.stdout.split("\t")[3] == shown
    # nothing landed in the remote home's copy of the absolute paths
    assert not (box.home / absolute.relative_to("/")).exists()
    assert not (box.home / plain.relative_to("/")).exists()


def test_session_stored_with_the_old_meaning_keeps_its_place(
    world: SshWorld, box: SshServer
) -> None:
    """A state database as an older yeet wrote it: ``ssh://h:port/rel`` meant the home's
    ``rel`` and ``ssh://h:port//abs`` the absolute ``/abs``. The next run migrates the
    texts, stores the resolved roots, and keeps the agent's state (its trash)."""
    url = f"ssh://root@127.0.0.1:{box.port}"
    a = world.root / "alpha"
    make_tree(a, {"x": b"one", "gone": b"bye"})
    # a relative path whose absolute reading is also under the test's directory
    rel = str(world.root / "in-home" / "beta").lstrip("/")
    home_beta, abs_reading = box.home / rel, Path("/") / rel
    r = yeet(world, "sync", f"{url}{a}", f"{url}/~/{rel}", "--name", "s", python=BARE_DEBIAN)
    assert r.returncode == 0, r.stderr
    (a / "gone").unlink()
    r = yeet(world, "sync", "--name", "s", python=BARE_DEBIAN)
    assert r.returncode == 0 and not (home_beta / "gone").exists(), r.stderr
    assert len(yeet(world, "trash", "s").stdout.splitlines()) == 1

    directory = _session_dir(world, "s")
    (directory / "session.json").unlink()  # older yeets kept none
    db = sqlite3.connect(directory / "state.db")
    db.execute("UPDATE meta SET value=? WHERE key='alpha'", (json.dumps(f"{url}/{a}"),))
    db.execute("UPDATE meta SET value=? WHERE key='beta'", (json.dumps(f"{url}/{rel}"),))
    db.execute("DELETE FROM meta WHERE key IN ('addresses', 'alpha_root', 'beta_root')")
    db.commit()
    db.close()

    # status reads the old texts with their old meaning (and writes nothing)
    row = _status(world, "s")
    assert (row["alpha"], row["beta"]) == (f"{url}{a}", f"{url}/~/{rel}")
    # the words that made the old session now mean other places: said, not done
    r = yeet(world, "sync", f"{url}/{a}", f"{url}/{rel}", "--name", "s", python=BARE_DEBIAN)
    assert r.returncode == 2 and "absolute now" in r.stderr, r.stderr
    assert not abs_reading.exists()

    (a / "x").write_bytes(b"two")
    r = yeet(world, "sync", "--name", "s", python=BARE_DEBIAN)
    assert r.returncode == 0, r.stderr
    assert (home_beta / "x").read_bytes() == b"two" and not abs_reading.exists()
    row = _status(world, "s")
    assert (row["alpha"], row["beta"]) == (f"{url}{a}", f"{url}/~/{rel}")
    assert (row["alpha_root"], row["beta_root"]) == (str(a), str(home_beta))
    stored = json.loads((directory / "session.json").read_text())
    assert stored["beta"] == f"{url}/~/{rel}" and stored["addresses"] == 2
    # the agent found its state again under the same key: the trash is still there
    trashed = [line.split("\t")[5] for line in yeet(world, "trash", "s").stdout.splitlines()]
    assert sorted(trashed) == ["gone", "x"]


def test_old_words_without_a_port_name_the_old_session(world: SshWorld, box: SshServer) -> None:
    """``ssh://box/rel`` used to be stored as ``box:rel`` (session named after it); typed
    again, it now means ``/rel``: yeet says so instead of starting a second session."""
    a = world.root / "alpha"
    make_tree(a, {"x": b"1"})
    rel = str(world.root / "b").lstrip("/")
    r = yeet(world, "sync", str(a), f"box:{rel}", python=BARE_DEBIAN)
    assert r.returncode == 0, r.stderr
    (old,) = (world.root / "client-state" / "yeet" / "sessions").iterdir()
    db = sqlite3.connect(old / "state.db")
    db.execute("DELETE FROM meta WHERE key='addresses'")
    db.commit()
    db.close()
    (old / "session.json").unlink()
    r = yeet(world, "sync", str(a), f"ssh://box/{rel}", python=BARE_DEBIAN)
    assert r.returncode == 2 and "absolute now" in r.stderr and old.name in r.stderr, r.stderr
    assert not (world.root / "b").exists()
    assert len(list(old.parent.iterdir())) == 1
