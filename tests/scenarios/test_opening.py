"""Opening a session safely: overlapping roots, nothing created by a first sync that
cannot work, damaged and full state databases.

Each scenario runs local, beta-remote and both-remote (``box:`` is this machine
through a real sshd), except the ones marked ``local_only``, which look at the
client's own state directory.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.cli_harness import Yeet, snapshot, write
from tests.diskfull import fill, small_tmpfs


def _at(path: Path, remote: bool) -> str:
    return f"box:{path}" if remote else str(path)


def _pair(roots_at: str, alpha: Path, beta: Path) -> tuple[str, str]:
    return _at(alpha, roots_at == "both-remote"), _at(beta, roots_at != "local")


def _sessions(yeet: Yeet) -> list[str]:
    d = yeet.home / "state" / "yeet" / "sessions"
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


@pytest.mark.parametrize(
    "layout", ["link-to-alpha", "link-into-alpha", "through-symlinked-parent", "alpha-inside"]
)
def test_overlapping_roots_are_refused(
    yeet: Yeet, tmp_path: Path, roots_at: str, layout: str
) -> None:
    """A root that is, or lies inside, the other through a symlink (or another address
    of the same machine) is a usage error naming both real paths; nothing is copied
    and nothing is created."""
    alpha = tmp_path / "alpha"
    write(alpha, "inner/f", "1")
    write(alpha, "g", "2")
    before = snapshot(alpha)
    if layout == "link-to-alpha":
        (tmp_path / "link").symlink_to("alpha")
        a, b, inner = alpha, tmp_path / "link", alpha
    elif layout == "link-into-alpha":
        (tmp_path / "link").symlink_to("alpha/inner")
        a, b, inner = alpha, tmp_path / "link", alpha / "inner"
    elif layout == "through-symlinked-parent":
        (tmp_path / "p").symlink_to("alpha")
        a, b, inner = alpha, tmp_path / "p" / "new" / "beta", alpha / "new" / "beta"
    else:  # alpha lies inside beta, which is a symlink to alpha's parent
        (tmp_path / "up").symlink_to("alpha")
        a, b, inner = alpha / "inner", tmp_path / "up", alpha
    r = yeet("sync", "--quiet", *_pair(roots_at, a, b))
    assert r.rc == 2, r.err
    outer = alpha if layout != "alpha-inside" else alpha / "inner"
    assert str(outer) in r.err and str(inner) in r.err, r.err
    assert snapshot(alpha) == before  # no copy of the tree into itself, no new directory
    assert _sessions(yeet) == []


def test_overlap_through_a_bind_mount_is_refused(yeet: Yeet, tmp_path: Path, roots_at: str) -> None:
    """Real paths differ, the directory is the same: device and inode tell."""
    alpha, view = tmp_path / "alpha", tmp_path / "view"
    write(alpha, "inner/f", "1")
    view.mkdir()
    subprocess.run(["mount", "--bind", str(alpha / "inner"), str(view)], check=True)
    try:
        r = yeet("sync", "--quiet", *_pair(roots_at, alpha, view))
        assert r.rc == 2 and "inside the other" in r.err, r.err
        assert str(view) in r.err and str(alpha) in r.err
        assert snapshot(alpha) == {"inner": "dir", "inner/f": "file:1"}
    finally:
        subprocess.run(["umount", str(view)], check=True)
    assert _sessions(yeet) == []


def test_existing_session_refuses_a_root_that_now_overlaps(
    yeet: Yeet, tmp_path: Path, roots_at: str
) -> None:
    alpha, beta = tmp_path / "alpha", tmp_path / "beta"
    write(alpha, "inner/f", "1")
    pair = _pair(roots_at, alpha, beta)
    yeet("sync", "--quiet", *pair, "--name", "s", rc=0)
    beta.rename(tmp_path / "old-beta")
    beta.symlink_to(alpha / "inner")
    before = snapshot(alpha)
    r = yeet("sync", "--quiet", "--name", "s")
    assert r.rc == 2 and "inside the other" in r.err, r.err
    assert snapshot(alpha) == before


def test_failed_first_sync_creates_nothing(yeet: Yeet, tmp_path: Path, roots_at: str) -> None:
    """A missing alpha, a beta that cannot be created, or overlapping roots: no beta
    directory, no parents, no session; and ``yeet status`` keeps telling the truth
    about the sessions that exist."""
    good_a, good_b = tmp_path / "good-alpha", tmp_path / "good-beta"
    write(good_a, "x", "1")
    yeet("sync", "--quiet", *_pair(roots_at, good_a, good_b), "--name", "good", rc=0)
    write(tmp_path, "plainfile", "not a directory")
    cases = [
        (tmp_path / "missing", tmp_path / "b1" / "deep" / "beta", 5, "does not exist"),
        (good_a, tmp_path / "plainfile" / "beta", 5, "not a directory"),
        (good_a, good_a / "sub" / "beta", 2, "inside the other"),
    ]
    for a, b, rc, words in cases:
        r = yeet("sync", "--quiet", *_pair(roots_at, a, b))
        assert r.rc == rc and words in r.err.lower(), (a, b, r.err)
    assert not (tmp_path / "b1").exists()
    assert not (good_a / "sub").exists()
    assert _sessions(yeet) == ["good"]
    r = yeet("status", rc=0)
    assert [line[:2] for line in r.lines()] == [["synced", "good"]]


@pytest.mark.local_only  # looks at the client's state directory
def test_damaged_state_is_reported_set_aside_and_continued(
    yeet: Yeet, roots: tuple[Path, Path]
) -> None:
    a, b = roots
    write(a, "keep", "1")
    write(a, "deleted-on-alpha", "2")
    yeet.sync(a, b)
    (a / "deleted-on-alpha").unlink()
    db = yeet.session_dir() / "state.db"
    for suffix in ("-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    db.write_bytes(b"this is not a database" * 100)

    # status only reads: it says what is wrong and which command continues
    r = yeet("status", rc=1)
    assert r.lines() == [["damaged", "s", str(a), str(b), "0", "0", "-", "0", "0", "0"]]
    assert "damaged" in r.err and "yeet sync --name s" in r.err, r.err
    assert db.read_bytes().startswith(b"this is not") and not list(db.parent.glob("*.damaged-*"))
    r = yeet("conflicts", rc=1)
    assert "damaged" in r.err
    r = yeet("forget", "s")
    assert r.rc == 3 and "--force" in r.err and db.exists()

    # the first command that holds the session sets it aside, and says where
    r = yeet("trash", "s", rc=0)
    (aside,) = db.parent.glob("state.db.damaged-*")
    assert str(aside) in r.err and "yeet sync --name s" in r.err, r.err
    # until a sync completed, every command that meets the session says so
    r = yeet("status", rc=1)
    assert r.lines()[0][:4] == ["pending", "s", str(a), str(b)]
    assert str(aside) in r.err and "yeet sync --name s" in r.err, r.err
    r = yeet("sync", "--quiet", "--name", "s", rc=0)
    assert str(aside) in r.err
    # with no ancestor nothing can be deleted: the file comes back instead
    assert (a / "deleted-on-alpha").read_text() == "2"
    r = yeet("status", rc=0)
    assert r.lines()[0][:4] == ["synced", "s", str(a), str(b)] and r.err == ""


@pytest.mark.local_only
def test_empty_state_file_is_damage_not_a_new_session(yeet: Yeet, roots: tuple[Path, Path]) -> None:
    a, b = roots
    write(a, "x", "1")
    yeet.sync(a, b)
    db = yeet.session_dir() / "state.db"
    for suffix in ("-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    db.write_bytes(b"")
    r = yeet("status", rc=1)
    assert r.lines()[0][:4] == ["damaged", "s", str(a), str(b)]
    assert "empty" in r.err and "yeet sync --name s" in r.err, r.err
    r = yeet("sync", "--quiet", "--name", "s", rc=0)
    assert "empty" in r.err and "moved to" in r.err
    assert list(db.parent.glob("state.db.damaged-*"))


@pytest.mark.local_only
def test_damaged_state_of_a_session_without_identity_file(
    yeet: Yeet, roots: tuple[Path, Path]
) -> None:
    """A session from before the identity file: its endpoints are lost with the
    database; every message says how to start it again, none prints None."""
    a, b = roots
    write(a, "x", "1")
    yeet.sync(a, b)
    (yeet.session_dir() / "session.json").unlink()
    db = yeet.session_dir() / "state.db"
    for suffix in ("-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    db.write_bytes(b"\0" * 4096)
    r = yeet("status", rc=1)
    assert r.lines() == [["damaged", "s", "-", "-", "0", "0", "-", "0", "0", "0"]]
    assert "yeet sync ALPHA BETA --name s" in r.err, r.err
    r = yeet("sync", "--name", "s")
    assert r.rc == 3 and "yeet sync ALPHA BETA --name s" in r.err and "None" not in r.err
    yeet.sync(a, b, rc=0)
    assert list(db.parent.glob("state.db.damaged-*"))


@pytest.mark.local_only  # the client's state directory is the full one
def test_full_state_directory_keeps_the_state(yeet: Yeet, roots: tuple[Path, Path]) -> None:
    """A full disk under the state directory fails the command (exit 3) and moves
    nothing; once space is freed, one-sided edits are just synced (the ancestor was
    kept), not turned into conflicts."""
    a, b = roots
    with small_tmpfs(yeet.home / "state", "2m") as state:
        for i in range(12):
            write(a, f"f{i}", f"old {i}")
        yeet.sync(a, b)
        db = yeet.session_dir() / "state.db"
        fillers = fill(state)
        for i in range(12):
            write(a, f"f{i}", f"new {i}")
        for _ in range(2):
            r = yeet.sync(a, b, rc=None)
            assert r.rc == 3, (r.rc, r.err)
            assert "Traceback" not in r.err and str(db) in r.err, r.err
            assert "is full" in r.err.replace(str(db), ""), r.err
        assert db.exists() and not list(db.parent.glob("state.db.damaged-*"))
        for f in fillers:
            f.unlink()
        r = yeet.sync(a, b, rc=0)
        assert yeet("conflicts").lines() == []
        assert snapshot(b) == {f"f{i}": f"file:new {i}" for i in range(12)}
        assert not list(db.parent.glob("state.db.damaged-*"))
