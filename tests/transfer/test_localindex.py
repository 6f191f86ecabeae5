"""The local-copy index forgets its oldest entries beyond its capacity."""

from __future__ import annotations

from yeet.core.localindex import LocalIndex
from yeet.model.settings import Environment


def test_bounded_oldest_first_and_first_path_wins() -> None:
    idx = LocalIndex(3)
    for i in range(5):
        idx.add(bytes([i]) * 32, f"p{i}")
    idx.add(bytes([4]) * 32, "later")  # a known digest keeps its path
    assert len(idx) == 3
    assert idx.get(bytes([0]) * 32) is None and idx.get(bytes([1]) * 32) is None
    assert idx.get(bytes([4]) * 32) == "p4"
    assert idx.get(b"x" * 32, "default") == "default"


def test_capacity_zero_remembers_nothing() -> None:
    idx = LocalIndex(Environment.read({"YEET_COPY_INDEX": "0"}).copy_index)
    idx.add(b"a" * 32, "p")
    assert len(idx) == 0
    assert Environment.read({"YEET_COPY_INDEX": "nonsense"}).copy_index == 50_000
