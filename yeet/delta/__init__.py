"""Delta sync (pure): content-defined chunking signatures, deltas, patches.

Dsync-style (He, Xiang et al., MSST 2020): FastCDC normalized chunking, a weak
fingerprint computed alongside the chunking, blake3 only to confirm candidate
matches, runs of matches merged into ranges. No ``os``, no sockets, no asyncio:
inputs are values, file objects or iterables handed in by the caller.

* ``chunking``  - cut points and fingerprints; chunk parameters vs. file size.
* ``signature`` - ``Signature`` (wire value) and the sender's ``Index``.
* ``diff``      - ``delta`` / ``match``: new data as copies + literals.
* ``ops``       - ``Copy`` / ``Data``, ``patch``, ``changed_ranges``, ``narrow``.
* ``refine``    - two-round deltas (coarse everywhere, fine where it changed).
* ``local``     - whole-file reuse of local content by digest.
"""

from yeet.delta.chunking import Params, params_for
from yeet.delta.diff import delta, match, match_signatures
from yeet.delta.local import LocalSource, local_sources
from yeet.delta.ops import (
    Copy,
    Data,
    DeltaError,
    DeltaOp,
    Literal,
    PlanOp,
    changed_ranges,
    merge,
    narrow,
    patch,
    target_size,
)
from yeet.delta.refine import Region, fine_params, finish, region_signature, regions
from yeet.delta.signature import Index, Signature, signature

__all__ = [
    "Copy",
    "Data",
    "DeltaError",
    "DeltaOp",
    "Index",
    "Literal",
    "LocalSource",
    "Params",
    "PlanOp",
    "Region",
    "Signature",
    "changed_ranges",
    "delta",
    "fine_params",
    "finish",
    "local_sources",
    "match",
    "match_signatures",
    "merge",
    "narrow",
    "params_for",
    "patch",
    "region_signature",
    "regions",
    "signature",
    "target_size",
]
