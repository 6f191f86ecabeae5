"""Everyday synchronisation through the real CLI: copies, edits, deletions, types."""

from __future__ import annotations

import os
from pathlib import Path

from tests.cli_harness import Yeet, snapshot, write


def test_first_sync_copies_everything_and_creates_beta(
    yeet: Yeet, roots: tuple[Path, Path]
) -> None:
    a, b = roots
    write(a, "top.txt", "top")
    write(a, "empty")
    write(a, "bin/run.sh", "#!/bin/sh\necho hi\n", executable=True)
    write(a, "deep/er/and/deeper/file", "deep")
    (a / "emptydir").mkdir()
    write(a, "ünïcødé/naïve file.txt", "unicode")
    os.symlink("top.txt", a / "link")
    os.symlink("../top.txt", a / "deep/uplink")
    r = yeet.sync(a, b)
    assert r.rc == 0
    assert snapshot(b) == snapshot(a)
    assert (b / "bin/run.sh").stat().st_mode & 0o111


def test_non_utf8_names_survive(yeet: Yeet, roots: tuple[Path, Path]) -> None:
    a, b = roots
    name = b"caf\xe9-latin1.txt"
    with open(os.path.join(os.fsencode(a), name), "wb") as f:
        f.write(b"bytes")
    yeet.sync(a, b)
    with open(os.path.join(os.fsencode(b), name), "rb") as f:
        assert f.read() == b"bytes"
    yeet.sync(a, b)  # and the state can hold it


def test_second_run_is_quiet_and_in_sync(yeet: Yeet, roots: tuple[Path, Path]) -> None:
    a, b = roots
    write(a, "x", "1")
    yeet.sync(a, b)
    r = yeet("sync", str(a), str(b), "--name", "s", rc=0)
    assert r.out.startswith("synced\ts\tno changes")
    st = yeet("status", "s", rc=0)
    assert st.lines()[0][0] == "synced"


def test_edits_flow_both_ways(yeet: Yeet, roots: tuple[Path, Path]) -> None:
    a, b = roots
    write(a, "from-alpha", "a1")
    write(a, "shared", "s1")
    yeet.sync(a, b)
    write(a, "from-alpha", "a2")
    write(b, "from-beta", "b1")
    write(b, "shared", "s2")
    yeet.sync(a, b)
    assert snapshot(a) == snapshot(b)
    assert (a / "from-beta").read_text() == "b1"
    assert (a / "shared").read_text() == "s2"
    assert (b / "from-alpha").read_text() == "a2"


def test_deletions_flow_both_ways_and_land_in_trash(yeet: Yeet, roots: tuple[Path, Path]) -> None:
    a, b = roots
    write(a, "gone-from-alpha", "x")
    write(a, "gone-from-beta", "y")
    write(a, "dir/sub/file", "z")
    yeet.sync(a, b)
    (a / "gone-from-alpha").unlink()
    (b / "gone-from-beta").unlink()
    import shutil

    shutil.rmtree(a / "dir")
    yeet.sync(a, b)
    assert snapshot(a) == snapshot(b) == {}
    trash = yeet("trash", "s", rc=0).lines()
    trashed = {(row[0], row[5]) for row in trash}
    assert ("beta", "gone-from-alpha") in trashed
    assert ("alpha", "gone-from-beta") in trashed
    assert ("beta", "dir/sub/file") in trashed


def test_type_changes(yeet: Yeet, roots: tuple[Path, Path]) -> None:
    a, b = roots
    write(a, "f2d", "file")
    write(a, "d2f/inner", "inner")
    write(a, "f2l", "file")
    os.symlink("f2d", a / "l2f")
    yeet.sync(a, b)
    (a / "f2d").unlink()
    write(a, "f2d/now-a-dir", "x")
    import shutil

    shutil.rmtree(a / "d2f")
    write(a, "d2f", "now a file")
    (a / "f2l").unlink()
    os.symlink("d2f", a / "f2l")
    (a / "l2f").unlink()
    write(a, "l2f", "now a file")
    yeet.sync(a, b)
    assert snapshot(b) == snapshot(a)
    # and the other way round
    (b / "f2d/now-a-dir").unlink()
    (b / "f2d").rmdir()
    write(b, "f2d", "file again")
    yeet.sync(a, b)
    assert snapshot(a) == snapshot(b)


def test_exec_bit_changes_flow(yeet: Yeet, roots: tuple[Path, Path]) -> None:
    a, b = roots
    write(a, "script", "echo")
    yeet.sync(a, b)
    (a / "script").chmod(0o755)
    yeet.sync(a, b)
    assert (b / "script").stat().st_mode & 0o111
    (b / "script").chmod(0o644)
    yeet.sync(a, b)
    assert not (a / "script").stat().st_mode & 0o111


def test_renamed_file_is_copied_locally_not_resent(yeet: Yeet, roots: tuple[Path, Path]) -> None:
    a, b = roots
    write(a, "big.bin", os.urandom(3 << 20))
    yeet.sync(a, b)
    (a / "big.bin").rename(a / "moved.bin")
    r = yeet("sync", str(a), str(b), "--name", "s", "--json", rc=0)
    import json

    doc = json.loads(r.out)
    assert doc["applied"]["beta"]["copied_locally"] == 1
    assert snapshot(a) == snapshot(b)


def test_large_file_goes_through_staging(yeet: Yeet, roots: tuple[Path, Path]) -> None:
    a, b = roots
    data = os.urandom(9 << 20)
    write(a, "large", data)
    yeet.sync(a, b)
    assert (b / "large").read_bytes() == data


def test_names_like_temp_files_are_user_files(yeet: Yeet, roots: tuple[Path, Path]) -> None:
    """Only the temporary names yeet recorded are its own (``yeet.replica.write.tempnames``;
    its crash leftovers: tests/scenarios/test_temp_names.py)."""
    a, b = roots
    write(a, "x", "1")
    yeet.sync(a, b)
    write(b, "sub/.yeet-tmp-0123456789abcdef", "user data")
    write(b, ".yeet-tmp-not-ours", "user data")
    yeet.sync(a, b)
    assert (a / "sub/.yeet-tmp-0123456789abcdef").read_text() == "user data"
    assert (b / "sub/.yeet-tmp-0123456789abcdef").read_text() == "user data"
    assert (a / ".yeet-tmp-not-ours").read_text() == "user data"
