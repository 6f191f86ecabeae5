"""``python -m yeet.tracer [--ranges] [--duration S] [PATH...]``: ``yeet trace``, by hand."""

from __future__ import annotations

import argparse
import sys

from yeet.model.errors import TracerUnavailable
from yeet.tracer.trace_cmd import run_trace


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m yeet.tracer", description=__doc__)
    ap.add_argument("paths", nargs="*", metavar="PATH")
    ap.add_argument("--ranges", action="store_true", help="print coalesced dirty ranges per file")
    ap.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    args = ap.parse_args(argv)
    try:
        return run_trace(args.paths, args.ranges, sys.stdout, duration=args.duration)
    except TracerUnavailable as e:
        print(f"yeet trace: {e.user_message()}", file=sys.stderr)
        return e.exit_code


if __name__ == "__main__":
    sys.exit(main())
