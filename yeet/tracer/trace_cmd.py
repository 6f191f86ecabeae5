"""``yeet trace``: show the writes the kernel tracer sees, live, like strace for writes.

Invariant owned here: every line printed is one operation the kernel recorded
under the traced paths, and anything the kernel could not deliver is
reported as lost - the output never silently omits events. ``--ranges``
prints, per file, exactly what the sync engine would be told (the coalesced
ranges, whole-file marks and rescan reasons).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import TextIO

from yeet.model.quoting import quote
from yeet.tracer import abi
from yeet.tracer.loader import FileId, TraceEvent, Tracer
from yeet.tracer.ranges import END, WHOLE, Ranges, RangeSet, merge


def _fmt_time(ts: float) -> str:
    t = time.localtime(ts)
    return time.strftime("%H:%M:%S", t) + f".{int((ts % 1) * 1e6):06d}"


def format_event(ev: TraceEvent, boot_to_wall: float) -> str:
    """One output line: time pid command path offset length operation."""
    start, end = ev.op_start, ev.op_end
    if ev.flags & abi.F_WHOLE and (start, end) == (0, END):
        off, length = "-", "whole"
    elif end == END:
        off, length = str(start), "to-eof"
    else:
        off, length = str(start), str(end - start)
        if ev.flags & abi.F_WHOLE:
            length += " (whole file)"
    path = ev.path or f"<dev {os.major(ev.file.dev)}:{os.minor(ev.file.dev)} ino {ev.file.ino}>"
    return (
        f"{_fmt_time(ev.ts_ns / 1e9 + boot_to_wall)} {ev.pid:>7} {ev.comm:<15} "
        f"{_quote(path)} {off} {length} {ev.op}"
    )


def format_ranges(path: str, r: Ranges) -> str:
    if r is WHOLE:
        return f"{_quote(path)}: whole file"
    assert isinstance(r, RangeSet)
    parts = [f"{s}-{'EOF' if e == END else e}" for s, e in r]
    total = r.total() if all(e != END for _, e in r) else None
    size = f" ({total} bytes)" if total is not None else ""
    return f"{_quote(path)}: {len(r)} range{'s' if len(r) != 1 else ''}{size}: " + ", ".join(parts)


def _quote(path: str) -> str:
    """yeet's quoting of names (``yeet.model.quoting``); a space forces it too here, where
    the fields of a line are separated by spaces."""
    return quote(path, also=" ")


def _boot_to_wall() -> float:
    return time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)


def run_trace(
    paths: list[str],
    ranges: bool,
    out: TextIO,
    *,
    duration: float | None = None,
    ready: Callable[[], None] | None = None,
    err: TextIO | None = None,
) -> int:
    """``yeet trace [--ranges] [PATH...]``. Runs until SIGINT/SIGTERM (or ``duration``
    seconds); ``ready`` is called once the tracer is attached. Returns the exit code.
    Raises ``TracerUnavailable`` (exit code 8) when the kernel tracer cannot run."""
    err = err if err is not None else sys.stderr
    roots = [os.path.abspath(p) for p in (paths or ["."])]
    for r in roots:
        if not os.path.exists(r):
            print(f"yeet trace: {r}: no such file or directory", file=err)
            return 2
    tracer = Tracer.open(roots, verbose=not ranges, ignore_self=True)
    try:
        return asyncio.run(_run(tracer, roots, ranges, out, err, duration, ready))
    finally:
        tracer.close()


async def _run(
    tracer: Tracer,
    roots: list[str],
    ranges: bool,
    out: TextIO,
    err: TextIO,
    duration: float | None,
    ready: Callable[[], None] | None,
) -> int:
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
            loop.add_signal_handler(sig, done.set)
    if duration is not None:
        loop.call_later(duration, done.set)

    offset = _boot_to_wall()
    lost_seen = 0
    events = 0
    acc: dict[FileId, Ranges] = {}
    names: dict[FileId, str] = {}
    reasons: list[str] = []

    flushing = False

    def flush() -> None:
        nonlocal flushing
        flushing = False
        out.flush()

    def on_event(ev: TraceEvent) -> None:
        nonlocal events, lost_seen, flushing
        out.write(format_event(ev, offset) + "\n")
        if not flushing:  # live even into a pipe: once per batch the kernel handed over
            flushing = True
            loop.call_soon(flush)
        events += 1
        if events % 1024 == 0:
            out.flush()
            lost = tracer.stats()["verbose_lost"]
            if lost != lost_seen:
                out.write(f"# {lost - lost_seen} events lost (the reader fell behind)\n")
                lost_seen = lost

    def drain() -> None:
        # keep the kernel's range map small; in --ranges mode this is the output
        d = tracer.dirty_files()
        reasons.extend(d.reasons)
        if ranges:
            for fid, r in d.items():
                acc[fid] = merge(acc[fid], r) if fid in acc else r
                if fid not in names:
                    names[fid] = tracer.path_of(fid) or ""

    tracer.attach_loop(loop, on_dirty=drain, on_event=None if ranges else on_event)
    what = "dirty ranges" if ranges else "writes"
    print(f"yeet trace: tracing {what} under {', '.join(roots)} (Ctrl-C to stop)", file=err)
    for hook, status in tracer.hooks.items():
        if status != "attached":
            print(f"yeet trace: {hook}: {status}", file=err)
    if ready is not None:
        ready()
    await done.wait()
    tracer.consume()  # whatever arrived meanwhile
    drain()
    out.flush()

    lost = tracer.stats()["verbose_lost"]
    if not ranges and lost != lost_seen:
        out.write(f"# {lost - lost_seen} events lost (the reader fell behind)\n")
    if ranges:
        for fid in sorted(acc, key=lambda f: names.get(f) or ""):
            path = names.get(fid) or tracer.path_of(fid) or f"<ino {fid.ino}>"
            out.write(format_ranges(path, acc[fid]) + "\n")
        for why in dict.fromkeys(reasons):
            out.write(f"# rescan needed: {why}\n")
    out.flush()
    return 0
