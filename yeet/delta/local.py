"""Whole-file reuse of local content by digest (renames, copies, reverts).

Invariant owned here: a ``LocalSource`` is only proposed for a target whose
wanted digest equals the digest the caller says the source holds; nothing is
proposed for a target that already holds its wanted content. The caller still
verifies the copy's digest before committing it (the source may have changed
since it was hashed) and falls back to a transfer if it differs.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

import msgspec


class LocalSource(msgspec.Struct, frozen=True):
    """Build ``target`` by copying the local file ``source`` (same ``digest``).

    ``source_doomed``: the source itself is replaced or deleted in the same
    batch, so this copy must complete before that happens (or, if nothing else
    copies from it and it is being deleted, the caller may move it instead).
    """

    target: str
    source: str
    digest: bytes
    source_doomed: bool = False


def local_sources(
    wanted: Mapping[str, bytes],
    have: Mapping[bytes, Sequence[str]],
    doomed: Collection[str] = (),
) -> list[LocalSource]:
    """Which wanted files can be copied from local files with the same digest.

    ``wanted`` maps each target path to the digest it must get; ``have`` maps
    digests to the local paths currently holding them; ``doomed`` lists the
    paths replaced or deleted in this batch. Sources that survive the batch are
    preferred; among equals the smallest path wins (deterministic).
    """
    doomed_set = set(doomed)
    out: list[LocalSource] = []
    for target in sorted(wanted):
        digest = wanted[target]
        paths = have.get(digest, ())
        if target in paths and target not in doomed_set:
            continue  # already there
        candidates = sorted(p for p in paths if p != target)
        if not candidates:
            continue
        safe = [p for p in candidates if p not in doomed_set]
        source = safe[0] if safe else candidates[0]
        out.append(LocalSource(target, source, digest, source_doomed=not safe))
    return out
