"""Shared helpers for benchmarks: timing, fresh destinations, tables."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

GRAVEYARD = "graveyard"


def run(cmd: Sequence[str], env: dict[str, str] | None = None, ok: Sequence[int] = (0,)) -> float:
    """Wall-clock seconds of a command (which must exit with a code in ``ok``)."""
    t = time.perf_counter()
    proc = subprocess.run(list(cmd), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    dt = time.perf_counter() - t
    if proc.returncode not in ok:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.decode()[-2000:]}")
    return dt


def drop_caches() -> None:
    """Flush dirty data and drop the page cache, so every tool starts equal."""
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        pass


def bury(path: Path, work: Path) -> None:
    """Move a tree aside (deleting a large tree slows file creation for minutes)."""
    if path.exists() or path.is_symlink():
        grave = work / GRAVEYARD
        grave.mkdir(exist_ok=True)
        os.rename(path, grave / f"{path.name}-{time.monotonic_ns()}")


def clear_graveyard(work: Path) -> None:
    shutil.rmtree(work / GRAVEYARD, ignore_errors=True)


def yeet_cmd() -> list[str]:
    compiled()
    return [sys.executable, "-m", "yeet"]


def compiled() -> None:
    """Byte-compile this checkout's yeet once, as an install does: with
    PYTHONDONTWRITEBYTECODE set (as on the project machines) every run would
    otherwise compile every module again (~0.7 s of CPU per command)."""
    import compileall

    compileall.compile_dir(str(Path(__file__).resolve().parent.parent / "yeet"), quiet=1)


def table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [list(map(str, header))] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = [title, "  ".join(h.ljust(w) for h, w in zip(cells[0], widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    for r in cells[1:]:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
    return "\n".join(lines)


def median(xs: Sequence[float]) -> float:
    s = sorted(xs)
    return s[len(s) // 2]
