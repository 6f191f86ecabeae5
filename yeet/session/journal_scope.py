"""What a one-shot sync asks the change journals, and where the session keeps its cursors.

Invariant owned here: a pass is narrowed to the directories the journals named
only when *both* sides' journals answered ``complete`` for cursors this
session stored after an earlier sync that committed, under the same mode,
roots and scan options; in every other case the answer is "scan everything".
A cursor is stored only by ``commit()``, which the session calls after the
pass's changes were applied and recorded, so an interrupted sync asks about
the same interval again (a wider answer, never a narrower one).

The cursors live in the session's state (``meta`` key ``journal``:
``{"fingerprint", "alpha", "beta"}``, cursors in base64), the last reason
said to the user in ``journal_said`` (a reason is said once, not at every
sync).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from yeet.contract.endpoint import Endpoint
from yeet.contract.values import Changes
from yeet.core.decisions import Side
from yeet.model.errors import YeetError
from yeet.model.paths import is_within, parent_of
from yeet.state.store import SessionStore

if TYPE_CHECKING:
    from yeet.session.settings import Settings

META_KEY = "journal"
SAID_KEY = "journal_said"

# relpath -> dirty byte ranges (start, end), end -1: to the end of the file
Hints = dict[str, tuple[tuple[int, int], ...]]


@dataclass
class JournalScope:
    """The journals' answer for one sync."""

    scope: set[str] | None  # directories to re-list; None: scan everything
    cursors: dict[Side, bytes | None]  # to store once the sync committed
    hints: dict[Side, Hints] = field(default_factory=dict)  # per side, when vouched for
    notes: list[str] = field(default_factory=list)  # to tell the user (once)


def fingerprint(settings: Settings) -> str:
    """What a cursor is valid for: the pair, the mode and everything that shapes a scan."""
    doc = [
        settings.alpha,
        settings.beta,
        settings.mode.value,
        list(settings.ignores),
        settings.ignore_vcs,
        settings.symlinks,
        settings.digest,
    ]
    return hashlib.sha256(json.dumps(doc).encode()).hexdigest()[:32]


def _stored(store: SessionStore, settings: Settings) -> dict[Side, bytes | None]:
    doc = store.get_meta(META_KEY)
    out: dict[Side, bytes | None] = {s: None for s in Side}
    if not isinstance(doc, dict) or doc.get("fingerprint") != fingerprint(settings):
        return out
    for s in Side:
        raw = doc.get(s.value)
        if isinstance(raw, str) and raw:
            out[s] = base64.b64decode(raw)
    return out


async def _ask(endpoint: Endpoint, since: bytes | None) -> Changes:
    try:
        return await endpoint.changes(since)
    except (YeetError, OSError) as err:  # an older agent, a lost link: scan instead
        return Changes(since or b"", False, reason=f"the change journal could not be asked: {err}")


async def ask(
    store: SessionStore,
    settings: Settings,
    endpoints: Mapping[Side, Endpoint],
    since: Mapping[Side, bytes | None] | None = None,
) -> JournalScope:
    """Ask both sides' journals what changed since the stored cursors (before scanning),
    or since ``since`` (continuous mode: the cursors of the previous pass's answer,
    whose changes that pass looked at)."""
    since = dict(since) if since is not None else _stored(store, settings)
    answers = dict(
        zip(Side, await asyncio.gather(*(_ask(endpoints[s], since[s]) for s in Side)), strict=True)
    )
    out = JournalScope(None, {s: answers[s].cursor or None for s in Side})
    vouched = {s for s in Side if since[s] is not None and answers[s].complete}
    # what the last sync could not settle: its ancestor may predate the cursor, so
    # its ranges say nothing (no hint), and it is looked at again, changed or not
    unsettled = {c.path for c in store.conflicts()} | {p.path for p in store.problems()}
    for s in vouched:
        out.hints[s] = {
            f: r
            for f, r in answers[s].files
            if not any(is_within(f, u) or is_within(u, f) for u in unsettled)
        }
    if len(vouched) == 2 and store.ancestor_count() > 0:
        scope = {d for s in Side for d in answers[s].dirs}
        scope |= {parent_of(f) for s in Side for f, _r in answers[s].files}
        scope |= {parent_of(u) for u in unsettled}
        out.scope = scope
        if store.get_meta(SAID_KEY):
            store.set_meta(**{SAID_KEY: ""})
        return out
    said = store.get_meta(SAID_KEY) or ""
    reasons = []
    for s in Side:
        a = answers[s]
        unavailable = not a.cursor  # no journal at all on that host
        if not a.complete and (unavailable or since[s] is not None):
            reasons.append(f"{s}: {a.reason}")
    why = "; ".join(reasons)
    if why and why != said:
        out.notes.append(f"change journal: {why} (scanning everything)")
        store.set_meta(**{SAID_KEY: why})
    return out


def commit(store: SessionStore, settings: Settings, cursors: Mapping[Side, bytes | None]) -> None:
    """The sync committed: later syncs ask from these cursors."""
    doc: dict[str, str] = {"fingerprint": fingerprint(settings)}
    for s in Side:
        c = cursors.get(s)
        doc[s.value] = base64.b64encode(c).decode() if c else ""
    store.set_meta(**{META_KEY: doc})


def forget(store: SessionStore) -> None:
    """The next sync scans everything (and asks from fresh cursors)."""
    store.set_meta(**{META_KEY: None})
