"""The endpoint contract: every call a session makes to one side of it, defined once.

Invariant owned here: a session talks to an endpoint only through these calls (and the
values of ``yeet.contract.values``). Each call is one definition: its signature and
types (from which the wire table, ``yeet.contract.calls``, is derived), its meaning
(the docstring), what the agent must check before it runs it (``Call``: which
arguments are paths in the root, byte ranges, handles it gave out) and its remote
default (the body: forward it). Nothing assumes that both ends share a process, a
filesystem or a clock.

Every mutating call names what the caller planned against (``old``): the endpoint
applies it only if the path still holds exactly that, and otherwise answers with a
problem ("modified since the scan") instead of guessing.

Implementations: ``yeet.replica.endpoint.LocalEndpoint`` implements every call (a
test checks it); ``yeet.remote.client.endpoint.RemoteEndpoint`` inherits the bodies
(its ``_forward`` is an RPC) and overrides the calls that need more (reconnects,
splitting, the bulk channel); ``yeet.remote.agent.endpoint.AgentEndpoint`` inherits them
too (its ``_forward`` checks the arguments as ``Call`` says, then runs the call on its
``LocalEndpoint``). So a new call is this definition plus its local implementation.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from yeet.contract.values import (
    Changes,
    DirtySet,
    EndpointConfig,
    EndpointInfo,
    Op,
    OpResult,
    PathStat,
    PlanReply,
    ReadRequest,
    ReadResult,
    ReadSource,
    RootInfo,
    ScanBatch,
    SigReply,
    StageInfo,
    TrashItem,
)
from yeet.delta.ops import DeltaOp
from yeet.delta.signature import Signature
from yeet.model.entries import Entry

F = TypeVar("F", bound=Callable[..., Any])

MAX_RANGE = 64 << 20
"""The most bytes one ranged read (or one piece of delta ops) may ask for."""


@dataclass(frozen=True)
class Call:
    """What the wire and the agent must know of one call besides its types.

    ``repeat``: harmless to repeat after a lost link (the remote client retries it).
    ``files``: arguments that must be the relpath of a file (not the root).
    ``paths``: arguments that are relpaths, or sequences of relpaths (the root allowed).
    ``span``: the ``(offset, length)`` arguments of a byte range (``""``: no length),
    neither negative; ``limit``: the most bytes the range may have (0: any).
    ``handle``: the ``handle`` argument must be one the agent gave out, of this kind
    (``stage``, ``patch``, ``bulk``), else the call fails (``EBADF``), or with
    ``missing_ok`` does nothing; ``ends``: the call is its last use; ``gives``: the
    result is (or holds) a new handle of this kind.
    """

    name: str
    repeat: bool = True
    files: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    span: tuple[str, str] | None = None
    limit: int = 0
    handle: str = ""
    ends: bool = False
    missing_ok: bool = False
    gives: str = ""


def call(
    *,
    repeat: bool = True,
    files: tuple[str, ...] = (),
    paths: tuple[str, ...] = (),
    span: tuple[str, str] | None = None,
    limit: int = 0,
    handle: str = "",
    ends: bool = False,
    missing_ok: bool = False,
    gives: str = "",
) -> Callable[[F], F]:
    """Mark a method of the contract as an endpoint call (see ``Call``)."""

    def mark(func: F) -> F:
        func.__yeet_call__ = Call(  # type: ignore[attr-defined]
            func.__name__, repeat, files, paths, span, limit, handle, ends, missing_ok, gives
        )
        return func

    return mark


def calls_of(cls: type) -> list[Call]:
    """The calls a contract class defines, in the order it defines them."""
    return [spec for value in vars(cls).values() if (spec := getattr(value, "__yeet_call__", None))]


class Endpoint:
    """One side of a session (see the module's docstring for who implements what)."""

    async def _forward(self, name: str, *args: Any) -> Any:
        """Carry out call ``name`` elsewhere (remote client: over the wire; agent: on
        its local endpoint, once the arguments are checked)."""
        raise NotImplementedError(f"{type(self).__name__} does not serve {name}")

    @call()
    async def probe(self, root: str) -> RootInfo:
        """Where ``root`` is on this endpoint's host (``RootInfo``); creates nothing,
        needs no ``open``."""
        return cast(RootInfo, await self._forward("probe", root))

    @call()
    async def open(self, config: EndpointConfig) -> EndpointInfo:
        """Start serving the root of ``config`` (every other call but ``probe`` needs it)."""
        return cast(EndpointInfo, await self._forward("open", config))

    @call(paths=("under",))
    def scan(
        self, under: Sequence[str] = ("",), recursive: bool = True, partial_parent: bool = False
    ) -> AsyncIterator[ScanBatch]:
        """Stream listings of the subtrees ``under`` (the whole root by default),
        or of just those directories when not ``recursive``; ``partial_parent``
        first lists each top's parent holding only that top. (A stream: every
        implementation defines it.)"""
        raise NotImplementedError(f"{type(self).__name__} does not serve scan")

    @call()
    def watch(self) -> AsyncIterator[DirtySet]:
        """Report changed directories until cancelled (first item: armed). (A stream:
        every implementation defines it.)"""
        raise NotImplementedError(f"{type(self).__name__} does not serve watch")

    @call()
    async def changes(self, since: bytes | None) -> Changes:
        """Ask this host's change journal what changed under the root since
        ``since`` (a cursor from an earlier answer; ``None``: start journalling
        now, the answer is then incomplete). Asking again after a lost link is
        harmless: an answer for the same cursor only ever grows."""
        return cast(Changes, await self._forward("changes", since))

    @call()
    async def read_files(self, requests: Sequence[ReadRequest]) -> list[ReadResult]:
        """Whole contents of small files, each verified against its expected digest
        (a request for a path that is no file of the root is answered with a problem)."""
        return cast(list[ReadResult], await self._forward("read_files", list(requests)))

    @call(files=("path",), span=("offset", "length"), limit=MAX_RANGE)
    async def read_range(self, path: str, expected: Entry, offset: int, length: int) -> bytes:
        """A byte range of a file that must still match ``expected`` (stat check)."""
        return cast(bytes, await self._forward("read_range", path, expected, offset, length))

    @call(files=("path",))
    async def read_open(self, path: str, expected: Entry) -> ReadSource:
        """Check that ``path`` still matches ``expected`` (as ``read_range`` does)
        and say where a bulk channel can read it (``BulkAgent.bulk_read``)."""
        return cast(ReadSource, await self._forward("read_open", path, expected))

    @call(files=("path",), gives="stage")
    async def stage_open(self, path: str, new: Entry) -> StageInfo:
        """Start (or resume) receiving a large file; the handle is for
        ``stage_write``/``Op.stage``."""
        return cast(StageInfo, await self._forward("stage_open", path, new))

    @call(handle="stage", span=("offset", ""), repeat=False)
    async def stage_write(self, handle: int, offset: int, data: bytes) -> None:
        """Write ``data`` at ``offset`` of an upload (durable, recorded when it returns)."""
        await self._forward("stage_write", handle, offset, data)

    @call(handle="stage", span=("offset", "length"), repeat=False)
    async def stage_keep(self, handle: int, offset: int, length: int, expected: bytes) -> bool:
        """Keep a *maybe* range whose bytes hash (``digest.range_hash``) to ``expected``
        instead of receiving it again; False: send it."""
        return cast(bool, await self._forward("stage_keep", handle, offset, length, expected))

    @call(handle="stage", ends=True, missing_ok=True, repeat=False)
    async def stage_abort(self, handle: int, keep: bool = False) -> None:
        """Drop an upload (``keep``: its partial may be taken over by the next one);
        a handle that is gone already is no error."""
        await self._forward("stage_abort", handle, keep)

    @call()
    async def apply(self, ops: Sequence[Op], trash_pass: int = 0) -> list[OpResult]:
        """Apply ops in order; durable on disk when this returns. What they replace
        or delete goes to the trash marked as trashed by pass ``trash_pass`` (the
        client numbers its passes; 0: the last number this endpoint was given)."""
        return cast(list[OpResult], await self._forward("apply", list(ops), trash_pass))

    # -- deltas (see yeet.session.deltajob for the whole exchange) ----------------------

    @call(files=("path",))
    async def signature(self, path: str, expect: Entry, size_hint: int = 0) -> SigReply:
        """Coarse signature of ``path``, which must still hold ``expect`` (the receiver
        signs its old file, the source its new one, at the same time); chunk
        parameters from ``size_hint`` (default: the file's size), so both match."""
        return cast(SigReply, await self._forward("signature", path, expect, size_hint))

    @call(files=("path",))
    async def region_signatures(
        self, path: str, expect: Entry, regions: list[tuple[int, int]], size_hint: int = 0
    ) -> list[Signature]:
        """Receiver: fine signatures of the old file's ``(offset, length)`` regions."""
        return cast(
            list[Signature],
            await self._forward("region_signatures", path, expect, list(regions), size_hint),
        )

    @call(files=("path",))
    async def delta_plan(self, path: str, expected: Entry, sig: Signature) -> PlanReply:
        """Source: match the new file (still ``expected``) against ``sig``."""
        return cast(PlanReply, await self._forward("delta_plan", path, expected, sig))

    @call(files=("path",), span=("offset", "length"), limit=MAX_RANGE)
    async def delta_ops(
        self, path: str, expected: Entry, offset: int, length: int, fine: list[Signature]
    ) -> list[DeltaOp]:
        """Source: ops (``Copy``/``Data``) for the new bytes ``[offset, offset + length)``,
        matched against the fine signatures; at most ``length`` bytes of data."""
        return cast(
            list[DeltaOp],
            await self._forward("delta_ops", path, expected, offset, length, fine),
        )

    @call(files=("path",), gives="patch", repeat=False)
    async def patch_open(self, path: str, old: Entry, new: Entry, inplace: bool) -> int:
        """Receiver: start turning ``old`` into ``new`` (in place, or into a staged
        copy); the handle is for ``patch_write``/``patch_commit``."""
        return cast(int, await self._forward("patch_open", path, old, new, inplace))

    @call(handle="patch", span=("offset", ""), repeat=False)
    async def patch_write(self, handle: int, offset: int, ops: list[DeltaOp]) -> None:
        """Receiver: ops producing the new bytes from ``offset`` on (any order of calls)."""
        await self._forward("patch_write", handle, offset, ops)

    @call(handle="patch", ends=True, repeat=False)
    async def patch_commit(self, handle: int) -> OpResult:
        """Receiver: check the old version is still there, apply, verify the new
        digest; ``whole`` in the result if the delta did not produce it."""
        return cast(OpResult, await self._forward("patch_commit", handle))

    @call(handle="patch", ends=True, missing_ok=True, repeat=False)
    async def patch_abort(self, handle: int) -> None:
        """Receiver: drop a patch (a handle that is gone already is no error)."""
        await self._forward("patch_abort", handle)

    @call(paths=("paths",))
    async def stat_paths(self, paths: Sequence[str]) -> list[PathStat]:
        """What ``lstat`` says of each path (for ``yeet diff``)."""
        return cast(list[PathStat], await self._forward("stat_paths", list(paths)))

    @call()
    async def trash_list(self) -> list[TrashItem]:
        """What this side's trash holds."""
        return cast(list[TrashItem], await self._forward("trash_list"))

    @call(repeat=False)
    async def trash_restore(
        self, items: Sequence[int], force: bool = False, trash_pass: int = 0
    ) -> list[OpResult]:
        """Put trash items back where they were, in order, one result each (durable
        when this returns). A path that is occupied now is left alone unless
        ``force``: then what is there goes to the trash first (pass ``trash_pass``)."""
        return cast(
            list[OpResult], await self._forward("trash_restore", list(items), force, trash_pass)
        )

    @call()
    async def close(self) -> None:
        """Stop serving; what is durable stays (partial uploads resume later)."""
        await self._forward("close")


class BulkAgent:
    """A second agent process on its own channel, carrying only the bytes of large
    files, so they never queue in front of the session's calls. It opens no
    session: it writes chunks into partial uploads that the session's agent opened
    (``StageInfo.partial``) and will verify and commit, and reads ranges of files
    that the session's agent checked (``Endpoint.read_open``)."""

    async def _forward(self, name: str, *args: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not serve {name}")

    @call(gives="bulk", repeat=False)
    async def bulk_open(self, path: str, size: int) -> int:
        """Attach to the partial upload at ``path`` (absolute, ``size`` bytes)."""
        return cast(int, await self._forward("bulk_open", path, size))

    @call(handle="bulk", span=("offset", ""), repeat=False)
    async def bulk_write(self, handle: int, offset: int, data: bytes) -> None:
        """Write a chunk, durably, and record it in the upload's chunk record."""
        await self._forward("bulk_write", handle, offset, data)

    @call(handle="bulk", ends=True, missing_ok=True, repeat=False)
    async def bulk_close(self, handle: int) -> None:
        """Detach from an upload (a handle that is gone already is no error)."""
        await self._forward("bulk_close", handle)

    @call(span=("offset", "length"), limit=MAX_RANGE)
    async def bulk_read(self, source: ReadSource, offset: int, length: int) -> bytes:
        """A byte range of ``source.path`` in ``source.root`` if it still has ``source.sig``."""
        return cast(bytes, await self._forward("bulk_read", source, offset, length))
