"""The values the endpoint calls take and return (``yeet.contract.endpoint``).

Invariant owned here: every value that crosses between a session and an endpoint is
one of these ``msgspec`` structs (or a plain type), so the same values cross the wire
unchanged to a remote ``yeet agent`` and are validated on arrival; none of them
assumes that both ends share a process, a filesystem or a clock.
"""

from __future__ import annotations

import msgspec

from yeet.delta.ops import PlanOp
from yeet.delta.signature import Signature
from yeet.model import settings as defaults
from yeet.model.entries import Entry, Problem


class EndpointConfig(msgspec.Struct, frozen=True):
    """What the session tells an endpoint when it opens it."""

    session: str
    side: str  # "alpha" | "beta"
    root: str
    ignores: tuple[str, ...] = ()
    ignore_vcs: bool = False
    symlinks: str = defaults.SYMLINKS  # portable | raw | ignore
    create_root: bool = False
    digest: str = defaults.DIGEST
    trash_days: float = defaults.TRASH_DAYS
    tracer: bool = True
    permissions: str = defaults.PERMISSIONS  # preserve | portable (exec bit only)
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
    digest: str = defaults.DIGEST
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


class SigReply(msgspec.Struct, frozen=True):
    """The receiver's coarse signature of its current (old) version of a file.

    ``problem``: the file is not the old version the plan expects (rescan it);
    ``unsupported``: this end cannot chunk (no ``pyfastcdc``): send whole files.
    """

    sig: Signature | None = None
    problem: str | None = None
    unsupported: bool = False


class PlanReply(msgspec.Struct, frozen=True):
    """The source's first-round delta: ``Copy`` runs and ``Literal`` gaps."""

    plan: tuple[PlanOp, ...] = ()
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
