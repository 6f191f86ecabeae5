"""The privileged tracer service, with two real (unprivileged) users created here."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

CLIENT = textwrap.dedent("""
    import json, os, sys
    sys.path.insert(0, {repo!r})
    from yeet.tracer.client import Cursor, TracerClient  # before losing /root
    uid, gid = int(sys.argv[1]), int(sys.argv[2])
    os.setgroups([gid]); os.setgid(gid); os.setuid(uid)
    out = []
    for step in json.loads(sys.argv[3]):
        try:
            with TracerClient(sys.argv[4]) as c:
                if step[0] == "watch":
                    cur = c.watch(step[1])
                    out.append({{"cursor": [cur.instance, cur.seq]}})
                else:
                    ch = c.changes(step[1], Cursor(step[2], step[3]))
                    files = {{p: ("whole" if r.__class__.__name__ == "Whole" else list(r))
                             for p, (fid, r) in ch.files.items()}}
                    out.append({{"files": files, "rescan": ch.rescan,
                                "cursor": [ch.cursor.instance, ch.cursor.seq]}})
        except PermissionError as e:
            out.append({{"error": str(e)}})
    print(json.dumps(out))
""").format(repo=str(REPO))


@pytest.fixture
def two_users() -> Iterator[tuple[pwd.struct_passwd, pwd.struct_passwd]]:
    if os.geteuid() != 0 or shutil.which("useradd") is None:
        pytest.skip("needs root and useradd")
    tag = uuid.uuid4().hex[:6]
    names = [f"yeeta{tag}", f"yeetb{tag}"]
    for n in names:
        subprocess.run(["useradd", "-M", "-U", "-s", "/usr/sbin/nologin", n], check=True)
    try:
        yield pwd.getpwnam(names[0]), pwd.getpwnam(names[1])
    finally:
        for n in names:
            subprocess.run(["userdel", n], check=False, capture_output=True)
            subprocess.run(["groupdel", n], check=False, capture_output=True)


@pytest.fixture
def base() -> Iterator[Path]:
    d = Path(f"/tmp/yeet-svc-{uuid.uuid4().hex[:8]}")  # reachable by the test users
    d.mkdir(mode=0o755)
    os.chmod(d, 0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _as(user: pwd.struct_passwd, sock: Path, steps: list[list[object]]) -> list[dict[str, object]]:
    out = subprocess.run(
        [sys.executable, "-c", CLIENT, str(user.pw_uid), str(user.pw_gid), json.dumps(steps),
         str(sock)],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    result = json.loads(out.stdout)
    assert isinstance(result, list)
    return result


def test_two_users_see_only_what_they_may_read(
    two_users: tuple[pwd.struct_passwd, pwd.struct_passwd], base: Path
) -> None:
    a, b = two_users
    tree_a, shared = base / "a", base / "shared"
    tree_a.mkdir()
    shared.mkdir()
    os.chown(tree_a, a.pw_uid, a.pw_gid)
    os.chmod(tree_a, 0o700)
    os.chmod(shared, 0o755)
    fa, public, private_b = tree_a / "f", shared / "public", shared / "private-b"
    for p in (fa, public, private_b):
        p.write_bytes(b"0" * 1000)
    os.chown(fa, a.pw_uid, a.pw_gid)
    os.chown(private_b, b.pw_uid, b.pw_gid)
    os.chmod(private_b, 0o600)
    sock = base / "tracer.sock"

    service = subprocess.Popen(
        [sys.executable, "-m", "yeet.tracer.service", "--socket", str(sock)],
        cwd=REPO, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not sock.exists():
            assert service.poll() is None, service.stderr.read() if service.stderr else ""
            assert time.monotonic() < deadline, "service did not start"
            time.sleep(0.05)

        ra = _as(a, sock, [["watch", str(tree_a)], ["watch", str(shared)]])
        rb = _as(b, sock, [["watch", str(tree_a)], ["watch", str(shared)]])
        assert "cursor" in ra[0] and "cursor" in ra[1]
        assert "permission denied" in str(rb[0]["error"])  # a's tree is private
        (ia, ca), (_, ca_shared) = ra[0]["cursor"], ra[1]["cursor"]  # type: ignore[misc]
        ib, cb_shared = rb[1]["cursor"]  # type: ignore[misc]
        assert ia == ib  # one service instance

        for p, off in ((fa, 100), (public, 200), (private_b, 300)):
            with open(p, "r+b") as f:
                f.seek(off)
                f.write(b"x" * 10)

        ra = _as(a, sock, [["changes", str(tree_a), ia, ca],
                           ["changes", str(shared), ia, ca_shared],
                           ["changes", str(shared), "another-instance", 0]])  # fmt: skip
        rb = _as(b, sock, [["changes", str(shared), ib, cb_shared],
                           ["changes", str(tree_a), ib, 0],
                           ["changes", str(shared), ib, 0]])  # fmt: skip
    finally:
        service.terminate()
        service.wait(timeout=30)

    assert ra[0] == {"files": {str(fa): [[100, 110]]}, "rescan": False, "cursor": ra[0]["cursor"]}
    assert ra[1]["files"] == {str(public): [[200, 210]]}  # not b's private file
    assert ra[1]["rescan"] is False
    assert ra[2]["rescan"] is True  # a cursor from another service instance
    assert rb[0]["files"] == {str(public): [[200, 210]], str(private_b): [[300, 310]]}
    assert "error" in rb[1]  # b may not read a's tree
    assert rb[2]["rescan"] is True  # cursor 0 predates watching the shared tree
