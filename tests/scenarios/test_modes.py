"""The four modes, as a user meets them."""

from __future__ import annotations

from pathlib import Path

from tests.cli_harness import Yeet, snapshot, write


def test_two_way_resolved_alpha_wins(yeet: Yeet, roots: tuple[Path, Path]) -> None:
    a, b = roots
    write(a, "x", "0")
    yeet.sync(a, b, "--mode", "two-way-resolved")
    write(a, "x", "alpha")
    write(b, "x", "beta")
    write(b, "only-beta", "b")
    yeet.sync(a, b)  # the mode is remembered
    assert (b / "x").read_text() == "alpha"
    assert (a / "only-beta").read_text() == "b"


def test_one_way_safe_protects_beta_edits(yeet: Yeet, roots: tuple[Path, Path]) -> None:
    a, b = roots
    write(a, "x", "0")
    write(a, "y", "0")
    yeet.sync(a, b, "--mode", "one-way-safe")
    write(b, "x", "beta's own edit")
    write(b, "beta-only", "kept")
    (b / "y").unlink()
    write(a, "z", "new")
    r = yeet.sync(a, b, rc=1)
    assert "conflict\tx" in r.out
    assert (b / "x").read_text() == "beta's own edit"
    assert (b / "beta-only").read_text() == "kept"
    assert (b / "y").read_text() == "0"  # a deletion on beta is restored
    assert not (a / "beta-only").exists()  # nothing flows back
    assert (b / "z").read_text() == "new"


def test_one_way_replica_mirrors(yeet: Yeet, roots: tuple[Path, Path]) -> None:
    a, b = roots
    write(a, "x", "0")
    yeet.sync(a, b, "--mode", "one-way-replica")
    write(b, "x", "beta edit")
    write(b, "extra/file", "extra")
    yeet.sync(a, b, rc=0)
    assert snapshot(b) == snapshot(a)
    # what was overwritten or removed on beta is in beta's trash
    trashed = {row[5] for row in yeet("trash", "s").lines() if row[0] == "beta"}
    assert {"x", "extra/file"} <= trashed


def test_mode_change_is_stored(yeet: Yeet, roots: tuple[Path, Path]) -> None:
    a, b = roots
    write(a, "x", "0")
    yeet.sync(a, b, "--mode", "one-way-replica")
    import json

    st = json.loads(yeet("status", "--json").out)
    assert st[0]["mode"] == "one-way-replica"
