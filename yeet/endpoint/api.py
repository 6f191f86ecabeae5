"""The interface between a session and one side of it, local or remote.

Invariant owned here: a session talks to an endpoint only through these calls
and these values (all ``msgspec`` structs, so the same calls cross the wire
unchanged to a remote ``yeet agent``). Nothing assumes that both endpoints share
a process, a filesystem or a clock.

Every mutating call names what the caller planned against (``old``): the
endpoint applies it only if the path still holds exactly that, and otherwise
answers with a problem ("modified since scan") instead of guessing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol

import msgspec

from yeet.delta.signature import Signature
from yeet.engine.entries import Entry, Problem


class EndpointConfig(msgspec.Struct, frozen=True):
    """What the session tells an endpoint when it opens it."""

    session: str
    side: str  # "alpha" | "beta"
    root: str
    ignores: tuple[str, ...] = ()
    ignore_vcs: bool = False
    symlinks: str = "portable"  # portable | raw | ignore
    create_root: bool = False
    digest: str = "blake3"
    trash_days: float = 30.0
    tracer: bool = True
    permissions: str = "preserve"  # preserve | portable (exec bit only)
    owner: bool = False  # sync owner and group (root)
    times: bool = False  # sync modification times of files
    # the root as the session's address names it: keys an agent's state directory, so
    # a root given as resolved (absolute) finds the state an earlier run left (""; root)
    state_key: str = ""


class RootInfo(msgspec.Struct, frozen=True):
    """Where a root is, as the host that holds it sees it (``Endpoint.probe``).

    ``path``: the root made absolute (a home-relative one joined to the home
    directory; symlinks kept), what the session opens from now on. ``real``: the
    same with every symlink resolved (of a root that does not exist yet: of its
    nearest existing ancestor, the rest appended). ``machine``: the identity of the
    kernel that answers (its boot id): two roots with the same one are on one
    machine, whatever address reached them. ``chain``: ``(st_dev, st_ino)`` of the
    real root, when it exists, and of each existing ancestor up to ``/``.
    ``fs``: the mount table's device of the filesystem holding the real path, and
    the path inside that filesystem (a bind mount names the directory it shows;
    ``("", "")`` without a mount table). ``problem``: why the root cannot be used or
    created ("" when it can).
    """

    path: str
    real: str
    exists: bool
    is_dir: bool
    machine: str = ""
    host: str = ""
    chain: tuple[tuple[int, int], ...] = ()
    fs: tuple[str, str] = ("", "")
    problem: str = ""


class EndpointInfo(msgspec.Struct, frozen=True):
    root: str
    root_exists: bool
    root_created: bool = False
    host: str = ""
    version: str = ""
    digest: str = "blake3"
    notes: tuple[str, ...] = ()


class ScanBatch(msgspec.Struct, frozen=True):
    """Some directory listings (parents before children) and problems found."""

    listings: tuple[tuple[str, dict[str, Entry] | None], ...] = ()
    problems: tuple[Problem, ...] = ()
    files: int = 0
    bytes_hashed: int = 0
    root_names: int = -1  # names in the root directory, ignored ones included (-1: not in batch)


class ReadRequest(msgspec.Struct, frozen=True):
    path: str
    expected: Entry


class ReadResult(msgspec.Struct, frozen=True):
    path: str
    data: bytes | None = None
    problem: str | None = None


class StageInfo(msgspec.Struct, frozen=True):
    """A large upload: its handle, and the chunks an earlier attempt already
    delivered durably (``(offset, length)``), which need not be sent again."""

    handle: int
    have: tuple[tuple[int, int], ...] = ()
    # ranges of an abandoned upload of an older version: confirm with stage_keep
    maybe: tuple[tuple[int, int], ...] = ()
    # the resumable upload's file on the agent's host ("" if none): a bulk channel
    # may write its chunks (``BulkAgent``)
    partial: str = ""


class ReadSource(msgspec.Struct, frozen=True):
    """Where a bulk channel may read a large file that the session's agent checked
    (``read_open``): the root on that host, the path in it, and the stat signature
    the file had (inode, size, mtime, ctime, mode). A read of a file that no longer
    has that signature fails, as ``read_range`` does."""

    root: str
    path: str
    sig: tuple[int, int, int, int, int]


class Op(msgspec.Struct, frozen=True):
    """Make ``path`` go from ``old`` to ``new``.

    For files, content comes from ``data`` (small files), from a staged upload
    ``stage`` (large files), or from a local file ``copy_from`` on this endpoint
    that has the same digest (renames and copies are not re-sent).
    """

    path: str
    old: Entry | None
    new: Entry | None
    data: bytes | None = None
    stage: int | None = None
    copy_from: str | None = None


class OpResult(msgspec.Struct, frozen=True):
    path: str
    ok: bool
    problem: str | None = None
    transient: bool = False  # "modified since scan": worth a rescan
    whole: bool = False  # a delta did not produce the new content: send the whole file
    applied: Entry | None = None  # what the path holds now, when it is not the op's ``new``


COPY, DATA, LITERAL = 0, 1, 2


class DeltaOp(msgspec.Struct, frozen=True, array_like=True):
    """One delta operation on the wire (``yeet.delta.ops`` without tagged unions, so
    the stdlib stand-in for msgspec decodes it too).

    ``COPY``: ``b`` bytes of the old file from offset ``a``; ``DATA``: ``data``;
    ``LITERAL`` (plans only): new bytes ``[a, a + b)`` that matched nothing yet.
    """

    kind: int
    a: int = 0
    b: int = 0
    data: bytes = b""

    @property
    def length(self) -> int:
        return len(self.data) if self.kind == DATA else self.b


class SigReply(msgspec.Struct, frozen=True):
    """The receiver's coarse signature of its current (old) version of a file.

    ``problem``: the file is not the old version the plan expects (rescan it);
    ``unsupported``: this end cannot chunk (no ``pyfastcdc``): send whole files.
    """

    sig: Signature | None = None
    problem: str | None = None
    unsupported: bool = False


class PlanReply(msgspec.Struct, frozen=True):
    """The source's first-round delta: ``COPY`` runs and ``LITERAL`` gaps."""

    plan: tuple[DeltaOp, ...] = ()
    problem: str | None = None
    unsupported: bool = False


class PathStat(msgspec.Struct, frozen=True):
    """What ``lstat`` says of a path (for ``yeet diff``); ``exists=False`` if absent."""

    path: str
    exists: bool
    mode: int = 0
    size: int = 0
    mtime: float = 0.0


class DirtySet(msgspec.Struct, frozen=True):
    """Directories whose listings may have changed since the watch began.

    ``overflow``: events were lost; everything must be rescanned. The first item
    of a watch is empty and means "armed": changes from now on are reported.
    """

    dirs: tuple[str, ...] = ()
    overflow: bool = False


class Changes(msgspec.Struct, frozen=True):
    """What changed under an endpoint's root since a cursor (``Endpoint.changes``).

    ``complete``: the host's change journal vouches that ``dirs`` and ``files``
    cover every change since ``since`` was issued; when false the caller must
    rescan (``reason`` says why, to show once). ``dirs``: relpaths of
    directories whose listing may have changed (``""`` is the root). ``files``:
    relpaths of files whose content changed, with dirty byte ranges
    ``(start, end)``; an end of -1 means "to the end of the file", so
    ``(0, -1)`` is the whole file. A changed file's directory is in ``dirs``.
    """

    cursor: bytes  # opaque: pass it back next time
    complete: bool
    dirs: tuple[str, ...] = ()
    files: tuple[tuple[str, tuple[tuple[int, int], ...]], ...] = ()
    reason: str = ""


class TrashItem(msgspec.Struct, frozen=True):
    """One version in a side's trash. ``pass_id``: the pass that trashed it (the
    ``trash_pass`` of the call, 0 when none was given); ``trashed``: when, by the
    clock of the endpoint's host."""

    id: int
    side: str
    path: str
    kind: str
    size: int
    trashed: float
    stored: str
    pass_id: int = 0


class Endpoint(Protocol):
    """One side of a session."""

    async def probe(self, root: str) -> RootInfo:
        """Where ``root`` is on this endpoint's host (``RootInfo``); creates nothing,
        needs no ``open``."""
        ...

    async def open(self, config: EndpointConfig) -> EndpointInfo: ...

    def scan(
        self, under: Sequence[str] = ("",), recursive: bool = True, partial_parent: bool = False
    ) -> AsyncIterator[ScanBatch]:
        """Stream listings of the subtrees ``under`` (the whole root by default),
        or of just those directories when not ``recursive``; ``partial_parent``
        first lists each top's parent holding only that top."""
        ...

    def watch(self) -> AsyncIterator[DirtySet]:
        """Report changed directories until cancelled (first item: armed)."""
        ...

    async def changes(self, since: bytes | None) -> Changes:
        """Ask this host's change journal what changed under the root since
        ``since`` (a cursor from an earlier answer; ``None``: start journalling
        now, the answer is then incomplete)."""
        ...

    async def read_files(self, requests: Sequence[ReadRequest]) -> list[ReadResult]:
        """Whole contents of small files, each verified against its expected digest."""
        ...

    async def read_range(self, path: str, expected: Entry, offset: int, length: int) -> bytes:
        """A byte range of a file that must still match ``expected`` (stat check)."""
        ...

    async def read_open(self, path: str, expected: Entry) -> ReadSource:
        """Check that ``path`` still matches ``expected`` (as ``read_range`` does)
        and say where a bulk channel can read it (``BulkAgent.bulk_read``)."""
        ...

    async def stage_open(self, path: str, new: Entry) -> StageInfo:
        """Start (or resume) receiving a large file; the handle is for
        ``stage_write``/``Op.stage``."""
        ...

    async def stage_write(self, handle: int, offset: int, data: bytes) -> None: ...

    async def stage_keep(self, handle: int, offset: int, length: int, expected: bytes) -> bool:
        """Keep a *maybe* range whose bytes hash (``partial.range_hash``) to ``expected``
        instead of receiving it again; False: send it."""
        ...

    async def stage_abort(self, handle: int, keep: bool = False) -> None:
        """Drop an upload (``keep``: its partial may be taken over by the next one)."""
        ...

    async def apply(self, ops: Sequence[Op], trash_pass: int = 0) -> list[OpResult]:
        """Apply ops in order; durable on disk when this returns. What they replace
        or delete goes to the trash marked as trashed by pass ``trash_pass`` (the
        client numbers its passes; 0: the last number this endpoint was given)."""
        ...

    # -- deltas (see yeet.transfer.deltajob for the whole exchange) ----------------------

    async def signature(self, path: str, expect: Entry, size_hint: int = 0) -> SigReply:
        """Coarse signature of ``path``, which must still hold ``expect`` (the receiver
        signs its old file, the source its new one, at the same time); chunk
        parameters from ``size_hint`` (default: the file's size), so both match."""
        ...

    async def region_signatures(
        self, path: str, expect: Entry, regions: list[tuple[int, int]], size_hint: int = 0
    ) -> list[Signature]:
        """Receiver: fine signatures of the old file's ``(offset, length)`` regions."""
        ...

    async def delta_plan(self, path: str, expected: Entry, sig: Signature) -> PlanReply:
        """Source: match the new file (still ``expected``) against ``sig``."""
        ...

    async def delta_ops(
        self, path: str, expected: Entry, offset: int, length: int, fine: list[Signature]
    ) -> list[DeltaOp]:
        """Source: ops (``COPY``/``DATA``) for the new bytes ``[offset, offset + length)``,
        matched against the fine signatures; at most ``length`` bytes of data."""
        ...

    async def patch_open(self, path: str, old: Entry, new: Entry, inplace: bool) -> int:
        """Receiver: start turning ``old`` into ``new`` (in place through a journal, or
        into a staged copy); the handle is for ``patch_write``/``patch_commit``."""
        ...

    async def patch_write(self, handle: int, offset: int, ops: list[DeltaOp]) -> None:
        """Receiver: ops producing the new bytes from ``offset`` on (any order of calls)."""
        ...

    async def patch_commit(self, handle: int) -> OpResult:
        """Receiver: check the old version is still there, apply, verify the new
        digest; ``whole`` in the result if the delta did not produce it."""
        ...

    async def patch_abort(self, handle: int) -> None: ...

    async def stat_paths(self, paths: Sequence[str]) -> list[PathStat]: ...

    async def trash_list(self) -> list[TrashItem]: ...

    async def trash_restore(
        self, items: Sequence[int], force: bool = False, trash_pass: int = 0
    ) -> list[OpResult]:
        """Put trash items back where they were, in order, one result each (durable
        when this returns). A path that is occupied now is left alone unless
        ``force``: then what is there goes to the trash first (pass ``trash_pass``)."""
        ...

    async def close(self) -> None: ...


class BulkAgent(Protocol):
    """A second agent process on its own channel, carrying only the bytes of large
    files, so they never queue in front of the session's calls. It opens no
    session: it writes chunks into partial uploads that the session's agent opened
    (``StageInfo.partial``) and will verify and commit, and reads ranges of files
    that the session's agent checked (``Endpoint.read_open``)."""

    async def bulk_open(self, path: str, size: int) -> int:
        """Attach to the partial upload at ``path`` (absolute, ``size`` bytes)."""
        ...

    async def bulk_write(self, handle: int, offset: int, data: bytes) -> None:
        """Write a chunk, durably, and record it in the upload's chunk journal."""
        ...

    async def bulk_close(self, handle: int) -> None: ...

    async def bulk_read(self, source: ReadSource, offset: int, length: int) -> bytes:
        """A byte range of ``source.path`` in ``source.root`` if it still has ``source.sig``."""
        ...
