"""The eBPF write tracer: which byte ranges of which files were written.

See ``loader.Tracer`` (kernel side: ``bpf/yeet_trace.bpf.c``). Everything here
is a hint that narrows work; when in doubt it widens (whole file, rescan).
"""

from yeet.model.errors import TracerUnavailable
from yeet.tracer.loader import DirtyFiles, FileId, TraceEvent, Tracer
from yeet.tracer.ranges import END, WHOLE, Ranges, RangeSet, Whole, merge

__all__ = [
    "END",
    "WHOLE",
    "DirtyFiles",
    "FileId",
    "RangeSet",
    "Ranges",
    "TraceEvent",
    "Tracer",
    "TracerUnavailable",
    "Whole",
    "merge",
]
