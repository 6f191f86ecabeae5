"""The change journal service (``yeet tracer``), real BPF + fanotify, over its real socket.

Cursor round trips (ranges, creates, renames, deletes), incomplete answers
(restart, drops), and the ``SO_PEERCRED`` check with two real users created here.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.journal_service import REPO, journal_service
from yeet.contract.values import Changes
from yeet.replica.changes import ask

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the journal service needs root")


@pytest.fixture(scope="module")
def sock() -> Iterator[Path]:
    """One service for the module (loading BPF takes a while); tests use their own roots."""
    path = Path(f"/tmp/yeet-journal-{uuid.uuid4().hex[:8]}.sock")
    with journal_service(path):
        yield path


@pytest.fixture
def base() -> Iterator[Path]:
    d = Path(f"/tmp/yeet-svc-{uuid.uuid4().hex[:8]}")  # reachable by the test users
    d.mkdir(mode=0o755)
    os.chmod(d, 0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _write(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def _files(c: Changes) -> dict[str, tuple[tuple[int, int], ...]]:
    return dict(c.files)


def test_cursor_round_trip(base: Path, sock: Path) -> None:
    tree = base / "tree"
    (tree / "sub" / "deep").mkdir(parents=True)
    (tree / "big").write_bytes(b"\0" * 1_000_000)
    (tree / "sub" / "old").write_bytes(b"o" * 100)
    (tree / "sub" / "deep" / "gone").write_bytes(b"g")
    (tree / "still").write_bytes(b"s")
    first = ask(str(tree), None, str(sock))
    assert not first.complete and "starts now" in first.reason
    quiet = ask(str(tree), first.cursor, str(sock))
    assert quiet.complete, quiet.reason
    assert quiet.dirs == () and quiet.files == ()

    _write(tree / "big", 4096, b"x" * 100)
    _write(tree / "big", 900_000, b"y" * 10)
    os.rename(tree / "sub" / "old", tree / "renamed")
    (tree / "sub" / "deep" / "gone").unlink()
    (tree / "newdir").mkdir()
    (tree / "newdir" / "n").write_bytes(b"new")
    c = ask(str(tree), quiet.cursor, str(sock))
    assert c.complete, c.reason
    assert set(c.dirs) == {"", "sub", "sub/deep", "newdir"}
    files = _files(c)
    assert files["big"] == ((4096, 4196), (900_000, 900_010))
    assert files["newdir/n"] == ((0, -1),)  # created: the whole file
    assert "still" not in files

    # the same cursor again: the same answer (nothing is consumed)
    again = ask(str(tree), quiet.cursor, str(sock))
    assert again.complete and set(again.dirs) == set(c.dirs)
    assert _files(again)["big"] == files["big"]
    # the newest cursor: nothing new
    after = ask(str(tree), c.cursor, str(sock))
    assert after.complete and after.dirs == () and after.files == ()
    # another root's cursor, garbage: incomplete, with a reason
    other = ask(str(tree / "sub"), c.cursor, str(sock))
    assert not other.complete and "another root" in other.reason
    junk = ask(str(tree), b"nonsense", str(sock))
    assert not junk.complete and junk.reason

    # another service instance (a restart) cannot vouch for the interval
    with journal_service(base / "restarted.sock"):
        restarted = ask(str(tree), c.cursor, str(base / "restarted.sock"))
        assert not restarted.complete and "restarted" in restarted.reason


def test_no_service_is_incomplete_not_an_error(base: Path) -> None:
    c = ask(str(base), b"whatever", str(base / "nobody.sock"))
    assert not c.complete
    assert "yeet tracer" in c.reason
    assert c.cursor == b"whatever"


CLIENT = textwrap.dedent("""
    import json, os, sys
    sys.path.insert(0, {repo!r})
    from yeet.replica.changes import ask  # imported before dropping root
    uid, gid = int(sys.argv[1]), int(sys.argv[2])
    os.setgroups([gid]); os.setgid(gid); os.setuid(uid)
    out = {{}}
    for name, root, cursor in json.loads(sys.argv[3]):
        c = ask(root, cursor.encode("latin-1") if cursor is not None else None, sys.argv[4])
        out[name] = {{"complete": c.complete, "reason": c.reason, "dirs": list(c.dirs),
                     "files": dict(c.files), "cursor": c.cursor.decode("latin-1")}}
    print(json.dumps(out))
""").format(repo=str(REPO))


def _as(
    user: pwd.struct_passwd, sock: Path, asks: list[tuple[str, str, str | None]]
) -> dict[str, dict[str, object]]:
    out = subprocess.run(
        [sys.executable, "-c", CLIENT, str(user.pw_uid), str(user.pw_gid), json.dumps(asks),
         str(sock)],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    result = json.loads(out.stdout)
    assert isinstance(result, dict)
    return result


@pytest.fixture
def two_users() -> Iterator[tuple[pwd.struct_passwd, pwd.struct_passwd]]:
    assert shutil.which("useradd"), "useradd is part of Debian's passwd package"
    tag = uuid.uuid4().hex[:6]
    names = [f"yeeta{tag}", f"yeetb{tag}"]
    made = []
    try:
        for n in names:
            subprocess.run(["useradd", "-M", "-U", "-s", "/usr/sbin/nologin", n], check=True)
            made.append(n)
        yield pwd.getpwnam(names[0]), pwd.getpwnam(names[1])
    finally:
        for n in made:
            subprocess.run(["userdel", n], check=False, capture_output=True)
            subprocess.run(["groupdel", n], check=False, capture_output=True)


def test_two_users_learn_only_what_they_may_read(
    two_users: tuple[pwd.struct_passwd, pwd.struct_passwd], base: Path, sock: Path
) -> None:
    a, b = two_users
    tree_a, shared = base / "a", base / "shared"
    tree_a.mkdir()
    shared.mkdir()
    (shared / "closed").mkdir()
    os.chown(tree_a, a.pw_uid, a.pw_gid)
    os.chmod(tree_a, 0o700)
    os.chmod(shared, 0o755)
    os.chown(shared / "closed", b.pw_uid, b.pw_gid)
    os.chmod(shared / "closed", 0o700)  # only b may look inside
    fa, public, private_b = tree_a / "f", shared / "public", shared / "private-b"
    for p in (fa, public, private_b):
        p.write_bytes(b"0" * 1000)
    os.chown(fa, a.pw_uid, a.pw_gid)
    os.chown(private_b, b.pw_uid, b.pw_gid)
    os.chmod(private_b, 0o600)

    ra = _as(a, sock, [("a", str(tree_a), None), ("shared", str(shared), None)])
    rb = _as(b, sock, [("a", str(tree_a), None), ("shared", str(shared), None)])
    assert "permission denied" in str(rb["a"]["reason"])  # a's tree is private

    for p, off in ((fa, 100), (public, 200), (private_b, 300)):
        _write(p, off, b"x" * 10)
    (shared / "closed" / "secret-name").write_bytes(b"s")

    ca = _as(a, sock, [("a", str(tree_a), str(ra["a"]["cursor"])),
                       ("shared", str(shared), str(ra["shared"]["cursor"]))])  # fmt: skip
    cb = _as(b, sock, [("a", str(tree_a), str(ra["a"]["cursor"])),
                       ("shared", str(shared), str(rb["shared"]["cursor"]))])  # fmt: skip

    def covers(ranges: list[list[int]], lo: int, hi: int) -> bool:
        """The journal may report more than was written (never less)."""
        return any(s <= lo and (e == -1 or hi <= e) for s, e in ranges)

    assert ca["a"]["complete"], ca["a"]["reason"]
    assert set(ca["a"]["files"]) == {"f"} and covers(ca["a"]["files"]["f"], 100, 110)
    assert ca["shared"]["complete"], ca["shared"]["reason"]
    assert set(ca["shared"]["files"]) == {"public"}  # not b's private file
    assert covers(ca["shared"]["files"]["public"], 200, 210)
    assert "closed" in ca["shared"]["dirs"]  # a may lstat it, so may see its mtime move
    assert "closed/secret-name" not in ca["shared"]["files"]
    assert not cb["a"]["complete"] and "permission denied" in str(cb["a"]["reason"])
    assert cb["shared"]["complete"], cb["shared"]["reason"]
    assert set(cb["shared"]["files"]) == {"public", "private-b", "closed/secret-name"}
    assert covers(cb["shared"]["files"]["public"], 200, 210)
    assert covers(cb["shared"]["files"]["private-b"], 300, 310)
