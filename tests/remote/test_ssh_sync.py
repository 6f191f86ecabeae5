"""Sync through the real CLI with one or both endpoints behind a real OpenSSH sshd."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest

import yeet as yeet_pkg
from tests.remote.conftest import BARE_39, BARE_DEBIAN, make_tree, tree, yeet
from tests.sshd import SshServer, SshWorld

BASE = {
    "src/main.c": b"int main() { return 0; }\n",
    "src/run.sh": (b"#!/bin/sh\necho hi\n", True),
    "docs": "dir",
    "README": b"read me\n" * 100,
    "big.bin": os.urandom(3 << 20) + b"tail",  # large: goes through staged chunks
    "link": ("link", "src/main.c"),
    "deep/a/b/c/d.txt": b"deep\n",
}


def _state_meta(world: SshWorld, key: str) -> object:
    sessions = world.root / "client-state" / "yeet" / "sessions"
    (db,) = sessions.glob("*/state.db")
    with sqlite3.connect(db) as conn:
        row = conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
    return json.loads(row[0]) if row else None


def _scenario(world: SshWorld, alpha: str, beta: str, a: Path, b: Path, python: str) -> None:
    """create, modify, delete on either side, conflict, resolve, trash: as a user would."""
    make_tree(a, BASE)
    r = yeet(world, "sync", alpha, beta, "--name", "s", python=python)
    assert r.returncode == 0, r.stderr + r.stdout
    assert tree(a) == tree(b)

    # Edits on both sides, different paths: both travel.
    (a / "src/main.c").write_bytes(b"int main() { return 1; }\n")
    (b / "docs/new.md").write_bytes(b"# new\n")
    (b / "src/run.sh").chmod(0o644)
    r = yeet(world, "sync", "--name", "s", python=python)
    assert r.returncode == 0, r.stderr + r.stdout
    assert tree(a) == tree(b)
    assert (a / "docs/new.md").read_bytes() == b"# new\n"
    assert not os.access(a / "src/run.sh", os.X_OK)

    # Deletion on beta propagates; the deleted content lands in alpha's trash.
    (b / "README").unlink()
    r = yeet(world, "sync", "--name", "s", python=python)
    assert r.returncode == 0, r.stderr + r.stdout
    assert not (a / "README").exists() and tree(a) == tree(b)
    r = yeet(world, "trash", "s", python=python)
    assert r.returncode == 0 and "README" in r.stdout, r.stderr

    # A conflict: both sides changed the same file differently.
    (a / "deep/a/b/c/d.txt").write_bytes(b"alpha's\n")
    (b / "deep/a/b/c/d.txt").write_bytes(b"beta's\n")
    (a / "other.txt").write_bytes(b"keeps syncing\n")
    r = yeet(world, "sync", "--name", "s", python=python)
    assert r.returncode == 1, r.stderr + r.stdout
    assert (b / "other.txt").read_bytes() == b"keeps syncing\n"  # conflicts block nothing else
    r = yeet(world, "conflicts", "s", python=python)
    assert r.returncode == 1 and "deep/a/b/c/d.txt" in r.stdout
    r = yeet(world, "diff", "s", "deep/a/b/c/d.txt", python=python)
    assert r.returncode == 1 and "-alpha's" in r.stdout and "+beta's" in r.stdout, r.stderr
    r = yeet(world, "resolve", "s", "deep/a/b/c/d.txt", "--keep", "beta", python=python)
    assert r.returncode == 0, r.stderr + r.stdout
    assert (a / "deep/a/b/c/d.txt").read_bytes() == b"beta's\n"
    r = yeet(world, "sync", "--name", "s", python=python)
    assert r.returncode == 0, r.stderr + r.stdout
    assert tree(a) == tree(b)
    r = yeet(world, "status", "s", python=python)
    assert r.returncode == 0 and r.stdout.startswith("synced"), r.stdout


def test_one_side_remote(world: SshWorld, box: SshServer) -> None:
    a, b = world.root / "alpha", world.root / "remote-beta"
    a.mkdir()
    _scenario(world, str(a), f"box:{b}", a, b, python=BARE_DEBIAN)


def test_alpha_remote_beta_local(world: SshWorld, box: SshServer) -> None:
    a, b = world.root / "remote-alpha", world.root / "beta"
    a.mkdir()
    _scenario(world, f"ssh://box/{a}".replace("box//", "box//"), str(b), a, b, python=BARE_DEBIAN)


def test_both_sides_remote(world: SshWorld, box: SshServer) -> None:
    other = world.server("other")
    world.trust(other)
    a, b = world.root / "remote-alpha", world.root / "remote-beta"
    a.mkdir()
    _scenario(
        world,
        f"box:{a}",
        f"ssh://root@127.0.0.1:{other.port}/{b}",
        a,
        b,
        python=BARE_DEBIAN,
    )


@pytest.mark.parametrize("python", [BARE_39, BARE_DEBIAN], ids=["py3.9", "debian"])
def test_bare_remote_python_uses_uploaded_zipapp_and_fallbacks(
    world: SshWorld, box: SshServer, python: str
) -> None:
    a, b = world.root / "alpha", world.root / "beta"
    make_tree(a, BASE)
    r = yeet(world, "sync", str(a), f"box:{b}", "--name", "s", python=python)
    assert r.returncode == 0, r.stderr + r.stdout
    assert tree(a) == tree(b)
    assert _state_meta(world, "digest") == "blake2b-tree"  # blake3 negotiated away
    cached = list((box.home / ".cache" / "yeet").glob("*/yeet.pyz"))
    assert len(cached) == 1
    mtime = cached[0].stat().st_mtime_ns
    (a / "README").write_bytes(b"changed\n")
    r = yeet(world, "sync", "--name", "s", python=python)
    assert r.returncode == 0, r.stderr + r.stdout
    assert (b / "README").read_bytes() == b"changed\n"
    assert cached[0].stat().st_mtime_ns == mtime  # the cached agent is reused, not re-sent
    # it unpacked and byte-compiled itself once, for this python, and runs from there
    (lib,) = cached[0].parent.glob("lib-*")
    assert not list(cached[0].parent.glob("lib-*.tmp-*"))
    assert list(lib.glob("yeet/remote/agent/__pycache__/main.*.pyc"))
    assert (lib / "yeet" / "remote" / "agent" / "main.py").read_bytes() == (
        Path(yeet_pkg.__file__).parent / "remote" / "agent" / "main.py"
    ).read_bytes()


def test_full_remote_keeps_blake3(world: SshWorld, box: SshServer) -> None:
    import sys

    a, b = world.root / "alpha", world.root / "beta"
    make_tree(a, {"x": b"x"})
    r = yeet(world, "sync", str(a), f"box:{b}", "--name", "s", python=sys.executable)
    assert r.returncode == 0, r.stderr + r.stdout
    assert _state_meta(world, "digest") == "blake3-tree"


def test_stored_digest_missing_on_remote_is_a_clear_error(world: SshWorld, box: SshServer) -> None:
    import sys

    a, b = world.root / "alpha", world.root / "beta"
    make_tree(a, {"x": b"x"})
    r = yeet(world, "sync", str(a), f"box:{b}", "--name", "s", python=sys.executable)
    assert r.returncode == 0, r.stderr
    r = yeet(world, "sync", "--name", "s", python=BARE_DEBIAN)
    assert r.returncode == 5, r.stderr
    assert "blake3" in r.stderr and "yeet forget s" in r.stderr


def test_shell_noise_before_the_agent_is_skipped(world: SshWorld, box: SshServer) -> None:
    (box.home / ".bashrc").write_text("echo 'Welcome to box! YEET-AGENT is a word'\necho motd\n")
    a, b = world.root / "alpha", world.root / "beta"
    make_tree(a, {"x": b"x"})
    r = yeet(world, "sync", str(a), f"box:{b}", python=BARE_DEBIAN)
    assert r.returncode == 0, r.stderr + r.stdout
    assert (b / "x").read_bytes() == b"x"


def test_no_python_on_remote_is_a_clear_error(world: SshWorld, box: SshServer) -> None:
    a = world.root / "alpha"
    make_tree(a, {"x": b"x"})
    r = yeet(world, "sync", str(a), f"box:{world.root}/beta", python="/nonexistent/python3")
    assert r.returncode == 7, r.stderr
    assert "not found" in r.stderr or "No such file" in r.stderr
