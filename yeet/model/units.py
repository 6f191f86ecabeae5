"""Sizes as people read them: one way of writing them, everywhere in yeet's output.

Invariant owned here: decimal units (kB, MB, ...), a whole number of bytes below
1 kB and one decimal above, so a size reads the same in a message, in ``status``
and in an error naming the space a file needs.
"""

from __future__ import annotations


def size_text(n: float) -> str:
    """``n`` bytes as people read them."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"
