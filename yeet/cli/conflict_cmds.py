"""``yeet diff`` and ``yeet resolve``: explain and settle one conflict.

Invariant owned here: both run under the Ctrl-C handling of ``yeet sync``
(``interrupt.run``); ``resolve`` is the session's operation
(``yeet.session.resolve``), this module only finds the path and reports.
``diff`` answers 0 (same) or 1 (different) only about a path that exists on at
least one side; a path on neither side is an error (exit 2), never "same".
"""

from __future__ import annotations

import difflib
import sys
from typing import TextIO

from yeet.cli import interrupt
from yeet.cli.pathargs import local_roots, path_argument
from yeet.cli.report import iso, problem_line
from yeet.cli.runner import endpoints, locked_store, stored_settings
from yeet.contract.endpoint import Endpoint
from yeet.contract.values import ReadRequest
from yeet.core.decisions import Side
from yeet.model.entries import Entry, Problem
from yeet.model.errors import UsageError, YeetError
from yeet.model.paths import is_within
from yeet.model.quoting import quote
from yeet.model.units import size_text
from yeet.session.executor import SMALL
from yeet.session.resolve import resolve as session_resolve
from yeet.session.resolve import subtree
from yeet.session.sync import Session
from yeet.state.store import SessionStore

TEXT_LIMIT = 4 << 20


def _relpath(store: SessionStore, text: str) -> str:
    addresses = {Side.ALPHA: store.get_meta("alpha") or "", Side.BETA: store.get_meta("beta") or ""}
    return path_argument(text, local_roots(addresses)).path


async def _read(endpoint: Endpoint, path: str, entry: Entry) -> bytes | None:
    if entry.size > TEXT_LIMIT:
        return None
    if entry.size <= SMALL:
        (r,) = await endpoint.read_files([ReadRequest(path, entry)])
        return r.data
    chunks = []
    for off in range(0, entry.size, SMALL):
        chunks.append(await endpoint.read_range(path, entry, off, min(SMALL, entry.size - off)))
    return b"".join(chunks)


def _bits(entry: Entry) -> str:
    if entry.mode:
        return f"{entry.mode & 0o777:04o}"
    return "executable" if entry.executable else "not executable"


def _as_text(data: bytes | None) -> list[str] | None:
    if data is None or b"\0" in data:
        return None
    try:
        return data.decode().splitlines(keepends=True)
    except UnicodeDecodeError:
        return None


async def _diff(store: SessionStore, name: str, path: str, out: TextIO) -> int:
    settings = stored_settings(store, name)
    async with endpoints(store, settings) as (eps, roots):
        await Session(settings, store, eps, roots).open()
        trees = {s: await subtree(eps[s], path) for s in Side}
        alpha, beta = trees[Side.ALPHA].get(path), trees[Side.BETA].get(path)
        if path and alpha is None and beta is None:
            stats = {s: (await eps[s].stat_paths([path]))[0] for s in Side}
            there = [str(s) for s in Side if stats[s].exists]
            if there:
                raise UsageError(
                    f"{quote(path)} is not synchronised by session {name!r} (ignored by its "
                    f"rules); it exists on {' and '.join(there)}"
                )
            raise UsageError(
                f"{quote(path)} exists on neither side of session {name!r}",
                hint=f"give a path relative to the roots; `yeet conflicts {name}` lists "
                "the conflicting ones",
            )
        if alpha is not None and beta is not None and alpha.is_file and beta.is_file:
            if alpha == beta:
                return 0
            alpha_text = _as_text(await _read(eps[Side.ALPHA], path, alpha))
            beta_text = _as_text(await _read(eps[Side.BETA], path, beta))
            if alpha_text is not None and beta_text is not None and alpha.digest != beta.digest:
                out.writelines(
                    difflib.unified_diff(
                        alpha_text, beta_text, f"alpha/{quote(path)}", f"beta/{quote(path)}"
                    )
                )
                if alpha.mode != beta.mode or alpha.executable != beta.executable:
                    out.write(f"mode: alpha {_bits(alpha)}, beta {_bits(beta)}\n")
                return 1
        stats = {s: (await eps[s].stat_paths([path]))[0] for s in Side}
        paths = sorted(
            p for p in trees[Side.ALPHA].keys() | trees[Side.BETA].keys() if is_within(p, path)
        )
        differ = False
        for p in paths:
            on_alpha, on_beta = trees[Side.ALPHA].get(p), trees[Side.BETA].get(p)
            if on_alpha == on_beta:
                continue
            differ = True
            out.write(f"{quote(p)}\n  alpha: {on_alpha.short() if on_alpha else 'absent'}\n")
            out.write(f"  beta:  {on_beta.short() if on_beta else 'absent'}\n")
        if differ:
            for s in Side:
                st = stats[s]
                if st.exists:
                    out.write(
                        f"{s}: {size_text(st.size)}, modified {iso(st.mtime)}, "
                        f"mode {st.mode & 0o7777:o}\n"
                    )
        return 1 if differ else 0


def diff(name: str, text: str) -> int:
    with locked_store(name, create=False) as store:
        path = _relpath(store, text)
        return interrupt.run(_diff(store, name, path, sys.stdout))


async def _resolve(store: SessionStore, name: str, path: str, keep: Side) -> list[Problem]:
    settings = stored_settings(store, name)
    async with endpoints(store, settings) as (eps, roots):
        return await session_resolve(Session(settings, store, eps, roots), path, keep)


def resolve(name: str, text: str, keep: str) -> int:
    side = Side(keep)
    with locked_store(name, create=False) as store:
        path = _relpath(store, text)
        if path == "":
            raise UsageError("resolve takes a path inside the root, not the root itself")
        known = [c for c in store.conflicts() if is_within(path, c.path) or is_within(c.path, path)]
        if not known:
            raise YeetError(
                f"no conflict recorded at {quote(path)} in session {name!r}",
                hint=f"`yeet conflicts {name}` lists them",
            )
        problems = interrupt.run(_resolve(store, name, path, side))
    for p in problems:
        print(problem_line(p.side, p.path, p.reason))
    if problems:
        return 1
    print(f"resolved\t{name}\t{quote(path)}\tkept {side}")
    return 0
