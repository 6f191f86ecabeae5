"""Making, editing and comparing directory trees in multi-host tests."""

from __future__ import annotations

import random
from pathlib import Path

from tests.cli_harness import Tree, tree

__all__ = ["Tree", "tree"]


def files(root: Path) -> dict[str, bytes]:
    """Regular files only: relpath -> content."""
    return {
        k: v[0] for k, v in tree(root).items() if isinstance(v, tuple) and isinstance(v[0], bytes)
    }


def write(root: Path, rel: str, data: bytes, executable: bool = False) -> Path:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    p.chmod(0o755 if executable else 0o644)
    return p


def diff(a: Tree, b: Tree) -> str:
    """A short description of how two trees differ (for assertion messages)."""
    only_a = sorted(set(a) - set(b))
    only_b = sorted(set(b) - set(a))
    changed = sorted(k for k in set(a) & set(b) if a[k] != b[k])
    return f"only in first: {only_a[:10]}; only in second: {only_b[:10]}; differ: {changed[:10]}"


def random_bytes(rng: random.Random, n: int) -> bytes:
    return rng.randbytes(n)


def temp_names(root: Path) -> list[str]:
    """Names that look like yeet's temporary files (none may be left in a tree)."""
    return sorted(
        rel
        for rel in tree(root)
        if any(part.startswith((".yeet-tmp", ".yeet-", "partial-")) for part in rel.split("/"))
    )
