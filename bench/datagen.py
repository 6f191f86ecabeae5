"""Deterministic test trees for benchmarks: many small files, nested."""

from __future__ import annotations

import os
import random
import sys


def small_files(root: str, count: int = 100_000, seed: int = 1, max_size: int = 8192) -> int:
    """``count`` files of 0..max_size bytes in a nested tree (~ 20 files per dir,
    3 levels). Returns total bytes."""
    rng = random.Random(seed)
    total = 0
    os.makedirs(root, exist_ok=True)
    per_dir = 20
    ndirs = (count + per_dir - 1) // per_dir
    made = 0
    for d in range(ndirs):
        sub = os.path.join(root, f"d{d % 10}", f"e{(d // 10) % 50}", f"f{d}")
        os.makedirs(sub, exist_ok=True)
        for i in range(per_dir):
            if made == count:
                break
            size = rng.randint(0, max_size)
            data = rng.randbytes(size // 2) * 2 + rng.randbytes(size % 2)
            with open(os.path.join(sub, f"file{i}.dat"), "wb") as f:
                f.write(data)
            total += size
            made += 1
    return total


if __name__ == "__main__":
    n = small_files(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 100_000)
    print(n)
