"""What commands print and answer: odd names, paths that do not exist, option
values out of range, `status --wait`, and internal errors (never a traceback)."""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cli_harness import Yeet, write
from yeet.model.quoting import quote, unquote

# a tab, a newline, a byte that is not UTF-8, a leading dash, a leading quote
ODD = ["tab\there", "new\nline", "caf" + os.fsdecode(b"\xe9"), "-dash", '"quoted']


def _conflicting(a: Path, b: Path, names: list[str]) -> None:
    for n in names:
        write(a, n, f"alpha {n!r}\n")
        write(b, n, f"beta {n!r}\n")


def test_odd_names_stay_one_record_per_line_and_can_be_given_back(
    yeet: Yeet, roots: tuple[Path, Path]
) -> None:
    a, b = roots
    b.mkdir()
    _conflicting(a, b, ODD)
    os.mkfifo(a / "fifo\tname")  # a problem whose path holds a tab
    r = yeet.sync(a, b, rc=1)
    conflicts = [line for line in r.lines() if line[0] == "conflict"]
    assert sorted(unquote(line[1]) for line in conflicts) == sorted(ODD), r.out
    assert all(len(line) == 4 for line in conflicts), r.out
    problems = [line for line in r.lines() if line[0] == "problem"]
    assert [(p[1], unquote(p[2])) for p in problems] == [("alpha", "fifo\tname")], r.out
    # every hint that names a PATH puts -- before it
    assert "yeet diff s -- PATH" in r.out and "--keep alpha|beta -- PATH" in r.out

    listed = yeet("conflicts", "s", rc=1).lines()
    assert len(listed) == len(ODD) and all(len(line) == 4 for line in listed), listed
    assert [len(line) for line in yeet("problems", "s", rc=1).lines()] == [4]
    printed = [line[1] for line in listed]
    assert sorted(map(unquote, printed)) == sorted(ODD)

    # --json: valid UTF-8, no lone surrogates, the same form as the text output
    raw = yeet("conflicts", "s", "--json", rc=1).out
    raw.encode("utf-8")
    assert "\\ud" not in raw
    assert sorted(c["path"] for c in json.loads(raw)) == sorted(printed)

    # what yeet printed is what it takes back: diff, resolve, and restoring the loser
    for shown in printed:
        assert yeet("diff", "s", "--", shown, rc=1).out
    for shown in printed:
        done = yeet("resolve", "s", "--keep", "beta", "--", shown, rc=0)
        assert done.lines() == [["resolved", "s", shown, "kept beta"]]
    for n in ODD:
        assert (a / n).read_text() == f"beta {n!r}\n"
    trash = [line for line in yeet("trash", "s", rc=0).lines() if line[0] == "alpha"]
    assert sorted(unquote(line[5]) for line in trash) == sorted(ODD)
    for line in trash:
        yeet("trash", "s", "--restore", line[5], "--side", "alpha", "--force", rc=0)
    for n in ODD:
        assert (a / n).read_text() == f"alpha {n!r}\n"
    # the plain form works too where a shell can pass it
    assert "-alpha '-dash'" in yeet("diff", "s", "--", "-dash", rc=1).out


@pytest.mark.local_only  # the roots' own names are odd
def test_status_quotes_an_odd_root_address(yeet: Yeet, tmp_path: Path) -> None:
    a, b = tmp_path / "al\tpha", tmp_path / "beta"
    write(a, "x", "1")
    yeet.sync(a, b)
    (line,) = yeet("status", rc=0).lines()
    assert unquote(line[2]) == str(a) and line[3] == str(b)
    yeet("sync", "-q", line[2], line[3], "--name", "s", rc=0)  # the printed form is taken


def test_diff_of_a_path_on_neither_side_is_an_error(
    yeet: Yeet, roots: tuple[Path, Path], roots_at: str
) -> None:
    a, b = roots
    write(a, "same", "1")
    write(a, "d/x", "2")
    yeet.sync(a, b)
    for missing in ("no-such-path", "d/nope", "/etc/passwd", "/no/such/root/x"):
        r = yeet("diff", "s", missing, rc=2)
        assert quote(missing.lstrip("/")) in r.err or missing in r.err, r.err
    yeet("diff", "s", "d", rc=0)
    yeet("diff", "s", "same", rc=0)
    # an absolute path inside a local root is that root's relpath; no root is local
    # when both are remote: then it is refused
    if roots_at == "both-remote":
        r = yeet("diff", "s", str(a / "same"), rc=2)
        assert "outside the session's local roots" in r.err
        write(a, "same", "changed")
    else:
        yeet("diff", "s", str(a / "same"), rc=0)
        write(a, "same", "changed")
        r = yeet("diff", "s", str(a / "same"), rc=1)
        assert "alpha/same" in r.out
    yeet("diff", "s", ".", rc=1)


def _stored_trash(yeet: Yeet) -> list[list[str]]:
    return yeet("trash", "s", rc=0).lines()


def test_out_of_range_option_values_are_usage_errors(yeet: Yeet, roots: tuple[Path, Path]) -> None:
    a, b = roots
    write(a, "keep", "0")
    write(a, "x", "1")
    yeet.sync(a, b)
    (a / "x").unlink()
    yeet.sync(a, b)
    assert len(_stored_trash(yeet)) == 1
    bad = [
        ("sync", "--name", "s", "--trash-days", "-5"),
        ("sync", "--name", "s", "--trash-days", "nan"),
        ("sync", "--name", "s", "--trash-days", "inf"),
        ("sync", "--name", "s", "--trash-days", "1e400"),
        ("status", "s", "--wait", "--timeout", "0"),
        ("status", "s", "--wait", "--timeout", "-1"),
        ("status", "s", "--wait", "--timeout", "nan"),
        ("status", "s", "--timeout", "5"),
        ("trash", "s", "--id", "0"),
        ("trash", "s", "--id", "-3"),
        ("trash", "s", "--id", str(2**70)),
        ("trash", "s", "--pass", "0"),
        ("trash", "s", "--pass", "soon"),
        ("trash", "s", "--side", "gamma"),
        ("trace", "--duration", "0"),
        ("trace", "--duration", "nan"),
        ("trace", "--duration", "-1"),
    ]
    for args in bad:
        r = yeet(*args)
        assert r.rc == 2, (args, r.rc, r.out, r.err)
        assert "Traceback" not in r.err
    assert len(_stored_trash(yeet)) == 1  # nothing was emptied

    # a nonsense value already stored (by an older yeet) never empties the trash either
    db = sqlite3.connect(yeet.session_dir() / "state.db")
    with db:
        db.execute("UPDATE meta SET value='-5' WHERE key='trash_days'")
    db.close()
    yeet.sync(a, b)
    assert len(_stored_trash(yeet)) == 1


def _pending_and_not_running(yeet: Yeet, a: Path, b: Path) -> None:
    """A sync that failed after it began leaves the session pending."""
    write(a, "x", "1")
    yeet.sync(a, b)
    (a / "x").unlink()
    a.rmdir()
    a.write_text("a file where the root was")
    yeet.sync(a, b, rc=5)
    assert yeet("status", "s", rc=1).lines()[0][0] == "pending"


def test_status_wait_never_waits_for_a_session_nothing_runs(
    yeet: Yeet, roots: tuple[Path, Path]
) -> None:
    a, b = roots
    _pending_and_not_running(yeet, a, b)
    start = time.monotonic()
    r = yeet("status", "--wait", "s", rc=1, timeout=60)
    assert time.monotonic() - start < 30
    assert r.lines()[0][0] == "pending"
    assert "no yeet process runs it" in r.err and "yeet sync --name s" in r.err


@pytest.mark.local_only  # holds the session's lock from here
def test_status_wait_waits_while_the_lock_is_held_and_a_timeout_is_exit_9(
    yeet: Yeet, roots: tuple[Path, Path]
) -> None:
    a, b = roots
    _pending_and_not_running(yeet, a, b)
    fd = os.open(yeet.session_dir() / "lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        start = time.monotonic()
        r = yeet("status", "--wait", "--timeout", "1", "s", rc=9, timeout=60)
        assert time.monotonic() - start >= 1
        assert "gave up waiting after 1 s" in r.err and "s still pending" in r.err
        assert r.lines()[0][0] == "pending"
        waiter = subprocess.Popen(
            [sys.executable, "-m", "yeet", "status", "--wait", "s"],
            env=yeet.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(1)
        assert waiter.poll() is None  # waits while a process holds the lock
    finally:
        os.close(fd)  # ... and answers once nothing runs the session any more
    out, err = waiter.communicate(timeout=60)
    assert waiter.returncode == 1 and "no yeet process runs it" in err, (out, err)


@pytest.mark.local_only  # runs a --watch sync in the background
def test_status_wait_returns_when_a_running_watch_has_synced(
    yeet: Yeet, roots: tuple[Path, Path]
) -> None:
    a, b = roots
    for i in range(200):
        write(a, f"d/{i}", str(i))
    watch = subprocess.Popen(
        [sys.executable, "-m", "yeet", "sync", "--watch", "-q", str(a), str(b), "--name", "s"],
        env=yeet.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not (yeet.session_dir() / "state.db").exists() or yeet("status", "s").rc == 4:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        yeet("status", "--wait", "--timeout", "120", "s", rc=0, timeout=150)
        assert len(list((b / "d").iterdir())) == 200
    finally:
        watch.terminate()
        watch.wait(timeout=60)


@pytest.mark.local_only
def test_an_internal_error_is_one_line_and_exit_3(yeet: Yeet, tmp_path: Path) -> None:
    """Any exception that is not a YeetError: a bug, reported in one line."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import yeet.cli.status_cmd as m\n"
        "def broken(*args):\n"
        "    raise RuntimeError('a bug\\nover two lines')\n"
        "m.status = broken\n"
    )
    env = dict(yeet.extra_env or {})
    env["PYTHONPATH"] = os.pathsep.join([str(hook), yeet.env["PYTHONPATH"]])
    buggy = Yeet(yeet.home, extra_env=env)
    r = buggy("status", rc=3)
    assert "Traceback" not in r.err
    (line,) = r.err.splitlines()
    assert line.startswith("yeet: internal error: RuntimeError: a bug over two lines"), line
    assert "YEET_DEBUG=1" in line
    debug = Yeet(yeet.home, extra_env={**env, "YEET_DEBUG": "1"})
    r = debug("status", rc=3)
    assert "Traceback" in r.err and "yeet: internal error" in r.err
