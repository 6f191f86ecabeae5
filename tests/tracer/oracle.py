"""The test oracle: which bytes changed, and did the tracer report them?"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from yeet.tracer import WHOLE, FileId, Ranges, RangeSet, merge

BLOCK = 4096


def _block_diff(a: bytes, b: bytes) -> tuple[int, int, int]:
    """(first differing offset, last + 1, number of differing bytes) of equal-length blocks."""
    x = (int.from_bytes(a, "little") ^ int.from_bytes(b, "little")).to_bytes(len(a), "little")
    first = len(x) - len(x.lstrip(b"\0"))
    last = len(x.rstrip(b"\0"))
    return first, last, len(x) - x.count(0)


def changed_runs(old: bytes, new: bytes, exact: bool = False) -> tuple[list[tuple[int, int]], int]:
    """Runs of byte offsets where ``new`` differs from ``old`` (a length change
    counts every byte between the two lengths) and the number of changed bytes.

    Runs are per 4 KiB block from the first to the last differing byte, so they
    may include unchanged bytes in between - unless ``exact``."""
    runs: list[tuple[int, int]] = []
    changed = 0
    common = min(len(old), len(new))

    def add(s: int, e: int) -> None:
        if runs and runs[-1][1] == s:
            runs[-1] = (runs[-1][0], e)
        else:
            runs.append((s, e))

    for blk in range(0, common, BLOCK):
        e = min(blk + BLOCK, common)
        a, b = old[blk:e], new[blk:e]
        if a == b:
            continue
        first, last, n = _block_diff(a, b)
        changed += n
        if not exact:
            add(blk + first, blk + last)
            continue
        for i in range(first, last):
            if a[i] != b[i]:
                add(blk + i, blk + i + 1)
    if len(old) != len(new):
        add(common, max(len(old), len(new)))
        changed += max(len(old), len(new)) - common
    return runs, changed


@dataclass
class Verdict:
    files: int = 0
    changed_files: int = 0
    changed_bytes: int = 0
    reported_bytes: int = 0
    whole_files: int = 0
    missed_bytes: int = 0
    misses: list[str] = field(default_factory=list)


def file_id(path: str) -> FileId:
    from yeet.tracer.paths import generation

    st = os.stat(path)
    return FileId(st.st_dev, st.st_ino, generation(path) or 0)


def judge(shadow: dict[str, bytes], dirty: dict[FileId, Ranges]) -> Verdict:
    """Every changed byte of every file in ``shadow`` must be covered by ``dirty``."""
    v = Verdict()
    for path, old in shadow.items():
        with open(path, "rb") as f:
            new = f.read()
        v.files += 1
        runs, changed = changed_runs(old, new)
        got = dirty.get(file_id(path), RangeSet())
        size = max(len(old), len(new))
        if got is WHOLE:
            v.whole_files += 1
            v.reported_bytes += size
        else:
            assert isinstance(got, RangeSet)
            v.reported_bytes += got.total(size)
        if not runs:
            continue
        v.changed_files += 1
        v.changed_bytes += changed
        if all(got.covers(s, e) for s, e in runs):
            continue
        # something looks uncovered: look at every byte
        for s, e in changed_runs(old, new, exact=True)[0]:
            if not got.covers(s, e):
                missed = sum(1 for i in range(s, e) if not got.covers(i, i + 1))
                if missed:
                    v.missed_bytes += missed
                    v.misses.append(f"{path}: [{s}, {e}) not covered by {got!r}")
    return v


def accumulate(into: dict[FileId, Ranges], more: dict[FileId, Ranges]) -> None:
    for k, r in more.items():
        into[k] = merge(into[k], r) if k in into else r
