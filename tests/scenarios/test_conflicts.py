"""Conflicts: recorded, listed, explained, resolved, never junk in the tree."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli_harness import Yeet, snapshot, write


def make_conflict(yeet: Yeet, a: Path, b: Path) -> None:
    write(a, "doc.txt", "line 1\nline 2\n")
    write(a, "other", "o1")
    yeet.sync(a, b)
    write(a, "doc.txt", "line 1\nalpha's line 2\n")
    write(b, "doc.txt", "line 1\nbeta's line 2\n")
    write(a, "other", "o2")  # an unrelated edit keeps flowing


def test_conflict_is_reported_and_blocks_only_its_path(
    yeet: Yeet, roots: tuple[Path, Path]
) -> None:
    a, b = roots
    make_conflict(yeet, a, b)
    r = yeet.sync(a, b, rc=1)
    assert "conflict\tdoc.txt\talpha modified\tbeta modified" in r.out
    assert (b / "other").read_text() == "o2"
    assert (a / "doc.txt").read_text().endswith("alpha's line 2\n")
    assert (b / "doc.txt").read_text().endswith("beta's line 2\n")
    # no conflict copies anywhere
    assert sorted(snapshot(a)) == sorted(snapshot(b)) == ["doc.txt", "other"]
    c = yeet("conflicts", rc=1)
    assert c.lines() == [["s", "doc.txt", "modified", "modified"]]
    st = yeet("status", rc=1)
    assert st.lines()[0][0] == "conflicts" and st.lines()[0][4] == "1"
    js = json.loads(yeet("conflicts", "--json", rc=1).out)
    assert js[0]["path"] == "doc.txt"


def test_diff_shows_a_unified_diff(yeet: Yeet, roots: tuple[Path, Path]) -> None:
    a, b = roots
    make_conflict(yeet, a, b)
    yeet.sync(a, b, rc=1)
    d = yeet("diff", "s", "doc.txt", rc=1)
    assert "--- alpha/doc.txt" in d.out and "+++ beta/doc.txt" in d.out
    assert "-alpha's line 2" in d.out and "+beta's line 2" in d.out
    assert yeet("diff", "s", "other", rc=0).out == ""


def test_diff_of_binary_compares_sizes_and_digests(yeet: Yeet, roots: tuple[Path, Path]) -> None:
    a, b = roots
    write(a, "img.bin", b"\0\1\2")
    yeet.sync(a, b)
    write(a, "img.bin", b"\0\1\2\3")
    write(b, "img.bin", b"\0\1")
    yeet.sync(a, b, rc=1)
    d = yeet("diff", "s", "img.bin", rc=1)
    assert "alpha: file 4 B" in d.out and "beta:  file 2 B" in d.out
    assert "modified" in d.out


def test_resolve_keep_beta_then_clean_sync(yeet: Yeet, roots: tuple[Path, Path]) -> None:
    a, b = roots
    make_conflict(yeet, a, b)
    yeet.sync(a, b, rc=1)
    r = yeet("resolve", "s", "doc.txt", "--keep", "beta", rc=0)
    assert "kept beta" in r.out
    assert (a / "doc.txt").read_text() == (b / "doc.txt").read_text()
    yeet("conflicts", rc=0)
    again = yeet.sync(a, b, rc=0)
    assert again.rc == 0
    # alpha's losing version is in alpha's trash and can be restored
    trash = [row for row in yeet("trash", "s").lines() if row[5] == "doc.txt"]
    assert trash and trash[-1][0] == "alpha"
    yeet("trash", "s", "--restore", "doc.txt", "--side", "alpha", "--force", rc=0)
    assert (a / "doc.txt").read_text().endswith("alpha's line 2\n")


def test_resolve_keep_alpha_for_type_conflict(yeet: Yeet, roots: tuple[Path, Path]) -> None:
    a, b = roots
    write(a, "p", "file")
    yeet.sync(a, b)
    (a / "p").unlink()
    write(a, "p/inside", "dir now")
    write(b, "p", "modified file")
    r = yeet.sync(a, b, rc=1)
    assert "conflict\tp\talpha became-dir\tbeta modified" in r.out
    yeet("resolve", "s", "p", "--keep", "alpha", rc=0)
    assert snapshot(a) == snapshot(b)
    yeet.sync(a, b, rc=0)


def test_resolve_unknown_path_fails_clearly(yeet: Yeet, roots: tuple[Path, Path]) -> None:
    a, b = roots
    write(a, "x", "1")
    yeet.sync(a, b)
    r = yeet("resolve", "s", "x", "--keep", "alpha", rc=3)
    assert "no conflict recorded" in r.err
    assert yeet("resolve", "s", "x", "--keep", "gamma").rc == 2
    assert yeet("resolve", "nosuch", "x", "--keep", "alpha").rc == 4


def test_both_sides_same_change_is_no_conflict(yeet: Yeet, roots: tuple[Path, Path]) -> None:
    a, b = roots
    write(a, "x", "1")
    yeet.sync(a, b)
    write(a, "x", "same")
    write(b, "x", "same")
    write(a, "new", "n")
    write(b, "new", "n")
    yeet.sync(a, b, rc=0)
