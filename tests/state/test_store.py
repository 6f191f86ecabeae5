"""The SQLite ancestor follows exactly the engine's update rule."""

from __future__ import annotations

import os
import sqlite3
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.core.trees import D, F, L
from yeet.core.decisions import Conflict
from yeet.core.trees import apply_ancestor_update
from yeet.model.entries import Entry, Problem, listing_digest
from yeet.model.errors import StateError
from yeet.model.paths import name_of, parent_of
from yeet.state.db import StateDamaged, open_database
from yeet.state.store import SCHEMA, SessionStore, Update

PATHS = ["a", "a/b", "a/b/c", "a/x", "a-b", "a.b", "b", "b/a", "caf\udce9"]
ENTRIES = [None, D, F("1"), F("2"), L("t")]


@st.composite
def update(draw: st.DrawFn) -> Update:
    return Update(draw(st.sampled_from(PATHS)), draw(st.sampled_from(ENTRIES)), draw(st.booleans()))


@settings(max_examples=300, deadline=None)
@given(batches=st.lists(st.lists(update(), max_size=8), max_size=6))
def test_store_matches_engine_rule(batches: list[list[Update]]) -> None:
    with tempfile.TemporaryDirectory() as d:
        store = SessionStore(Path(d) / "state.db")
        model: dict[str, Entry] = {}
        for batch in batches:
            store.record(batch)
            for u in batch:
                apply_ancestor_update(model, u.path, u.entry, applied=u.applied)
            assert store.ancestor_subtree("") == model
            store.refresh_digests()
            for d, digest in store.ancestor_digests().items():
                assert d == "" or (d in model and model[d].is_dir)
                assert digest == listing_digest(
                    {name_of(k): v for k, v in model.items() if parent_of(k) == d}
                )
        for p in PATHS:
            assert store.ancestor_get(p) == model.get(p)
            kids = {name_of(k): v for k, v in model.items() if parent_of(k) == p}
            assert store.ancestor_children(p) == kids
        store.close()


def test_conflicts_and_problems_round_trip(tmp_path: Path) -> None:
    store = SessionStore(tmp_path / "state.db")
    cs = [Conflict("a/b", F("1"), F("2"), None), Conflict("z", None, D, F("x"))]
    store.replace_conflicts(cs)
    assert store.conflicts() == cs
    store.replace_conflicts([], under="a")
    assert store.conflicts() == cs[1:]
    ps = [Problem("p\udce9", "socket", "alpha")]
    store.replace_problems(ps)
    assert store.problems() == ps
    store.close()


def test_unusable_database_is_set_aside(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    db.write_bytes(os.urandom(5000))
    store = SessionStore(db)
    assert store.rebuilt_note and "was damaged" in store.rebuilt_note
    assert store.ancestor_count() == 0
    assert list(tmp_path.glob("state.db.damaged-*"))
    store.close()


def test_state_database_errors_are_classified(tmp_path: Path) -> None:
    """Only integrity failures are damage; a database from a newer yeet is kept."""
    newer = tmp_path / "newer.db"
    conn = sqlite3.connect(newer)
    conn.execute("PRAGMA user_version=99")
    conn.close()
    with pytest.raises(StateError, match="newer yeet") as info:
        open_database(newer, SCHEMA)
    assert not isinstance(info.value, StateDamaged) and newer.exists()
    assert not list(tmp_path.glob("*.damaged-*"))
    bad = tmp_path / "bad.db"
    bad.write_bytes(os.urandom(8192))
    with pytest.raises(StateDamaged):
        open_database(bad, SCHEMA, repair=False)
    assert bad.exists()
