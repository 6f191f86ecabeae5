"""Permission bits travel with content and are never widened (issue: a 0600 key file
arrived as 0644, a 0700 directory as 0755); owner and times are opt-in."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

import msgspec
import pytest

from tests.cli_harness import Yeet, write


def bits(p: Path) -> int:
    return stat.S_IMODE(p.lstat().st_mode)


def test_private_file_and_directory_arrive_private(yeet: Yeet, roots: tuple[Path, Path]) -> None:
    a, b = roots
    key = write(a, "secrets/id_ed25519", "private key")
    key.chmod(0o600)
    (a / "secrets").chmod(0o700)
    write(a, "shared.txt", "hello").chmod(0o640)
    write(a, "run.sh", "#!/bin/sh\n").chmod(0o750)
    write(a, "nobits", "x").chmod(0o000)
    yeet.sync(a, b)
    assert bits(b / "secrets") == 0o700
    assert bits(b / "secrets/id_ed25519") == 0o600
    assert bits(b / "shared.txt") == 0o640
    assert bits(b / "run.sh") == 0o750
    assert bits(b / "nobits") == 0o000
    # and the other way round
    write(b, "back/token", "t").chmod(0o600)
    (b / "back").chmod(0o711)
    yeet.sync(a, b)
    assert bits(a / "back") == 0o711
    assert bits(a / "back/token") == 0o600


def test_chmod_travels_both_ways(yeet: Yeet, roots: tuple[Path, Path]) -> None:
    a, b = roots
    write(a, "f", "1").chmod(0o644)
    write(a, "d/g", "2").chmod(0o644)
    yeet.sync(a, b)
    (a / "f").chmod(0o600)
    (b / "d").chmod(0o750)
    yeet.sync(a, b)
    assert bits(b / "f") == 0o600 and bits(a / "d") == 0o750
    assert (a / "d/g").read_text() == (b / "d/g").read_text() == "2"
    # an edit keeps the bits the file has on the source
    (a / "f").write_text("new")
    yeet.sync(a, b)
    assert (b / "f").read_text() == "new" and bits(b / "f") == 0o600


def test_bits_changed_differently_conflict(yeet: Yeet, roots: tuple[Path, Path]) -> None:
    a, b = roots
    write(a, "f", "1").chmod(0o644)
    write(a, "other", "o")
    yeet.sync(a, b)
    (a / "f").chmod(0o640)
    (b / "f").chmod(0o604)
    (a / "other").write_text("o2")
    r = yeet.sync(a, b, rc=1)
    assert "conflict\tf\talpha mode-changed\tbeta mode-changed" in r.out
    assert (b / "other").read_text() == "o2"  # everything else still syncs
    assert bits(a / "f") == 0o640 and bits(b / "f") == 0o604
    yeet("resolve", "s", "f", "--keep", "beta", rc=0)
    assert bits(a / "f") == 0o604


def test_both_created_with_other_bits_narrower_wins(yeet: Yeet, roots: tuple[Path, Path]) -> None:
    a, b = roots
    b.mkdir()
    write(a, "key", "k").chmod(0o644)
    write(b, "key", "k").chmod(0o600)
    yeet.sync(a, b)
    assert bits(a / "key") == bits(b / "key") == 0o600


@pytest.mark.local_only
def test_sessions_recorded_without_bits_never_widen(yeet: Yeet, tmp_path: Path) -> None:
    """A session whose ancestor was recorded before bits were synced (an older yeet):
    beta still holds the widened 0644 copy of a 0600 file; the next sync narrows it
    instead of widening alpha or reporting conflicts, and a one-sided edit flows."""
    a, b = tmp_path / "alpha", tmp_path / "beta"
    write(a, "key", "k").chmod(0o600)
    write(a, "notes", "n").chmod(0o644)
    yeet.sync(a, b)
    (b / "key").chmod(0o644)  # what the old yeet made of it
    db = sqlite3.connect(yeet.session_dir() / "state.db")
    rows = db.execute("SELECT parent, name, entry FROM ancestor").fetchall()
    for parent, name, blob in rows:
        old = msgspec.msgpack.decode(blob)
        db.execute(
            "UPDATE ancestor SET entry=? WHERE parent=? AND name=?",
            (msgspec.msgpack.encode(old[:6]), parent, name),  # the old six fields
        )
    db.commit()
    db.close()
    (a / "notes").write_text("n2")
    yeet.sync(a, b)
    assert bits(a / "key") == bits(b / "key") == 0o600
    assert (b / "notes").read_text() == "n2"


def test_portable_syncs_only_the_exec_bit(yeet: Yeet, roots: tuple[Path, Path]) -> None:
    a, b = roots
    write(a, "key", "k").chmod(0o600)
    write(a, "tool", "t").chmod(0o755)
    yeet.sync(a, b, "--permissions", "portable")
    assert bits(b / "key") == 0o600  # never more open than its source
    assert bits(b / "tool") & 0o100
    (b / "key").chmod(0o640)  # not a change in portable mode
    (a / "tool").chmod(0o644)  # the exec bit is
    r = yeet.sync(a, b)
    assert "conflict" not in r.out
    assert bits(a / "key") == 0o600 and not bits(b / "tool") & 0o111


def test_times_are_opt_in(yeet: Yeet, roots: tuple[Path, Path]) -> None:
    a, b = roots
    old = 1_500_000_000
    write(a, "default", "d")
    os.utime(a / "default", (old, old))
    yeet.sync(a, b)
    assert (b / "default").stat().st_mtime > old + 1000  # arrival time: make rebuilds
    write(a, "artifact", "x")
    os.utime(a / "artifact", (old, old))
    yeet.sync(a, b, "--times")
    assert (b / "artifact").stat().st_mtime == old
    os.utime(a / "artifact", (old + 60, old + 60))  # a touch travels as a change
    yeet.sync(a, b)
    assert (b / "artifact").stat().st_mtime == old + 60


def test_owner_is_opt_in_for_root(yeet: Yeet, roots: tuple[Path, Path]) -> None:
    a, b = roots
    f = write(a, "owned", "o")
    os.chown(f, 65534, 65534)
    yeet.sync(a, b)
    assert (b / "owned").stat().st_uid == os.getuid()  # not synced by default
    yeet.sync(a, b, "--owner")
    st = (b / "owned").stat()
    assert (st.st_uid, st.st_gid) == (65534, 65534)


def test_no_setuid_ever(yeet: Yeet, roots: tuple[Path, Path]) -> None:
    a, b = roots
    f = write(a, "suid", "#!/bin/sh\n")
    f.chmod(0o4755)
    (a / "sticky").mkdir()
    (a / "sticky").chmod(0o1777)
    yeet.sync(a, b)
    assert stat.S_IMODE((b / "suid").stat().st_mode) == 0o755
    assert stat.S_IMODE((b / "sticky").stat().st_mode) == 0o777


def test_read_only_directory_with_contents(yeet: Yeet, roots: tuple[Path, Path]) -> None:
    a, b = roots
    write(a, "ro/inside", "i")
    (a / "ro").chmod(0o555)
    try:
        yeet.sync(a, b)
        assert (b / "ro/inside").read_text() == "i"
        yeet.sync(a, b)  # the owner's write bit, needed to fill it, is taken away now
        assert bits(b / "ro") == 0o555
    finally:
        for root in (a, b):
            if (root / "ro").exists():
                (root / "ro").chmod(0o755)
