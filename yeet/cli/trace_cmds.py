"""``yeet trace`` and ``yeet tracer``: the kernel write tracer, by hand and as a service.

Invariant owned here: both commands only parse and delegate (``yeet.tracer.trace_cmd``
and ``yeet.tracer.service``); when the kernel tracer cannot run they raise
``TracerUnavailable`` (exit 8) saying why, which ``main`` prints once.
"""

from __future__ import annotations

import sys


def trace(paths: list[str], ranges: bool, duration: float | None) -> int:
    from yeet.tracer.trace_cmd import run_trace

    return run_trace(paths, ranges, sys.stdout, duration=duration)


def tracer(socket: str | None) -> int:
    from yeet.tracer.service import run

    return run(socket)
