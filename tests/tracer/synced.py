"""Syncing through the real CLI with the change journal: the steps the journal tests share."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.cli_harness import Yeet, snapshot


def sync(y: Yeet, a: Path, b: Path) -> dict[str, Any]:
    """``yeet sync --json`` (exit 0 required); the report, with ``stderr`` added."""
    r = y("sync", "--json", str(a), str(b), "--name", "s", rc=0)
    doc = json.loads(r.out)
    assert isinstance(doc, dict)
    doc["stderr"] = r.err
    return doc


def journalled(y: Yeet, a: Path, b: Path) -> None:
    """Copy alpha to beta, and sync until the journal vouches for an interval."""
    sync(y, a, b)
    said = []
    for _ in range(5):
        doc = sync(y, a, b)
        if doc["scan"]["journal"]:
            return
        said.append(doc["stderr"])
    raise AssertionError(f"the journal never vouched for an interval: {said}")


def same(a: Path, b: Path) -> None:
    assert snapshot(a) == snapshot(b)


def settled(y: Yeet, a: Path, b: Path) -> None:
    """Sync a change over, then once more: beta's journal reports our own writes to
    beta once, and a pass that re-lists their directory on both sides would find
    alpha's change by its stat - not what these tests are about."""
    sync(y, a, b)
    same(a, b)
    sync(y, a, b)
