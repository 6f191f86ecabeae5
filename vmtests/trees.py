"""Making, editing and comparing directory trees in multi-host tests."""

from __future__ import annotations

import os
import random
import stat
from pathlib import Path

Tree = dict[str, object]
"""relpath -> ``(bytes, executable)`` | ``"dir"`` | ``("link", target)``"""


def tree(root: Path) -> Tree:
    out: Tree = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
            st = p.lstat()
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = "dir"
            elif stat.S_ISREG(st.st_mode):
                out[rel] = (p.read_bytes(), bool(st.st_mode & 0o100))
            else:
                out[rel] = "special"
        dirnames[:] = [d for d in dirnames if not (Path(dirpath) / d).is_symlink()]
    return out


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
