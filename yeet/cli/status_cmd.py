"""``yeet status``, ``yeet conflicts``, ``yeet problems``: what sessions are in.

Invariant owned here: these commands only read state (never the trees, and the
database read only: a damaged one is reported as ``damaged`` with the command that
continues, never set aside here), work while a sync runs, and their exit status is
0 exactly when every session named is in sync (``status``) / is known to have no
conflicts (``conflicts``) / no problems. ``status --wait`` waits only while a
process holds a session's lock and its state is pending: a pending session that no
process runs is said so, and the command exits 1 at once; a ``--timeout`` that
expires is exit 9.

``status`` line format (tab-separated, documented in the README)::

    STATE NAME ALPHA BETA CONFLICTS PROBLEMS LAST-SYNC QUEUED QUEUED-BYTES IN-FLIGHT
"""

from __future__ import annotations

import sys
import time
from typing import Any

from yeet.cli.report import iso
from yeet.model.address import ADDRESS_FORMAT, migrate
from yeet.model.entries import Problem
from yeet.model.errors import SessionNotFound, WaitTimeout
from yeet.model.quoting import dumps, quote
from yeet.state import identity
from yeet.state.db import StateDamaged
from yeet.state.sessions import lock_holder, pick_sessions, session_dir
from yeet.state.store import SessionStore

POLL = 0.2


def _warn(text: str) -> None:
    print(f"yeet: warning: {text}", file=sys.stderr)


def _open(name: str) -> SessionStore:
    """The session's database, read only: these commands never repair or create it."""
    db = session_dir(name) / "state.db"
    if not db.exists():
        raise StateDamaged(db, "missing")
    return SessionStore(db, read_only=True)


def _damaged(name: str, err: StateDamaged) -> str:
    known = identity.read(session_dir(name)) is not None
    then = (
        f"`yeet sync --name {name}` moves it aside and continues from an empty ancestor "
        "(nothing is deleted)"
        if known
        else f"its endpoints are not recorded elsewhere: `yeet sync ALPHA BETA --name {name}` "
        "moves it aside and starts the session again"
    )
    what = "is missing" if err.reason == "missing" else f"is damaged ({err.reason})"
    return f"session {name!r}: its state database {err.path} {what}; {then}"


def _addresses(doc: dict[str, Any]) -> tuple[str | None, str | None]:
    a, b = doc.get("alpha"), doc.get("beta")
    if a is None or b is None or doc.get("addresses", 1) >= ADDRESS_FORMAT:
        return a, b
    return migrate(a), migrate(b)  # what the next locked command will store


def _row(name: str, state: str, doc: dict[str, Any], running: bool) -> dict[str, Any]:
    alpha, beta = (_address(x) for x in _addresses(doc))
    return {
        "state": state,
        "name": name,
        "alpha": alpha,
        "beta": beta,
        "alpha_root": doc.get("alpha_root"),
        "beta_root": doc.get("beta_root"),
        "mode": doc.get("mode"),
        "conflicts": 0,
        "problems": 0,
        "last_sync": None,
        "halted": None,
        "running": running,
        "queued": 0,
        "queued_bytes": 0,
        "in_flight": 0,
        "progress": None,
        "note": None,
    }


def _address(value: str | None) -> str | None:
    return quote(value) if isinstance(value, str) else value


def session_status(name: str) -> dict[str, Any] | None:
    """The status of one session (None: an incomplete one, left by a first sync that
    failed before this yeet; it has no endpoints). Reads only; a damaged database is
    reported (state ``damaged``), never repaired here."""
    directory = session_dir(name)
    holder = lock_holder(directory)
    running = holder is not None
    try:
        store = _open(name)
    except StateDamaged as err:
        row = _row(name, "damaged", identity.read(directory) or {}, running)
        row["note"] = _damaged(name, err)
        return row
    try:
        doc = {**(identity.read(directory) or {}), **store.identity()}
        if "alpha" not in doc:
            return None
        row = _row(name, store.get_meta("last_state") or "pending", doc, running)
        progress = store.progress()
        # the live state of the sync that holds the lock (--watch: settled states too);
        # what a killed sync left there is not: while a process holds the lock but has
        # said nothing yet (a sync starting, `yeet diff`), the session is pending
        live = running and bool(progress) and progress.get("pid") == holder
        if running:
            row["state"] = str(progress.get("state") or "pending") if live else "pending"
        row.update(
            conflicts=len(store.conflicts()),
            problems=len(store.problems()),
            last_sync=store.get_meta("last_sync"),
            halted=store.get_meta("halted") or None,
            queued=int(progress.get("queued", 0)) if live else 0,
            queued_bytes=int(progress.get("queued_bytes", 0)) if live else 0,
            in_flight=int(progress.get("in_flight", 0)) if live else 0,
            progress=progress if live else None,
            note=store.set_aside_notice(),
        )
        return row
    finally:
        store.close()


def _rows(names: list[str]) -> tuple[list[dict[str, Any]], list[str]]:
    rows, notes = [], []
    for n in pick_sessions(names):
        row = session_status(n)
        if row is not None:
            rows.append(row)
        elif names:
            raise SessionNotFound(
                f"session {n!r} was never created completely (a first sync that failed)",
                hint=f"`yeet sync ALPHA BETA --name {n}` creates it; `yeet forget {n}` "
                "removes what is left",
            )
        else:
            notes.append(
                f"{n!r} is what a failed first sync of an older yeet left (not a session); "
                f"`yeet forget {n}` removes it"
            )
    return rows, notes


def status(names: list[str], as_json: bool, wait: bool, timeout: float | None) -> int:
    deadline = None if timeout is None else time.monotonic() + timeout
    expired = False
    while True:
        rows, notes = _rows(names)
        waiting = [r for r in rows if r["running"] and r["state"] == "pending"]
        if not wait or not waiting:
            break
        if deadline is not None and time.monotonic() >= deadline:
            expired = True
            break
        time.sleep(POLL if deadline is None else max(0.0, min(POLL, deadline - time.monotonic())))
    for r in rows:
        if r["note"]:
            _warn(r["note"])
    for note in notes:
        print(f"yeet: note: {note}", file=sys.stderr)
    _print_rows(rows, as_json)
    if expired:
        raise WaitTimeout(
            f"gave up waiting after {timeout:g} s: "
            + ", ".join(r["name"] for r in waiting)
            + " still pending",
            hint="wait longer (--timeout SECONDS) or look at it with `yeet status`",
        )
    if wait:
        for r in rows:
            if r["state"] == "pending" and not r["running"]:
                print(
                    f"yeet: {r['name']} is pending but no yeet process runs it (its last "
                    f"sync did not finish): nothing to wait for; `yeet sync --name {r['name']}` "
                    "continues it",
                    file=sys.stderr,
                )
    return 0 if rows and all(r["state"] == "synced" for r in rows) else 1


def _print_rows(rows: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        print(dumps(rows))
        return
    for r in rows:
        print(
            "\t".join(
                str(x)
                for x in (
                    r["state"],
                    r["name"],
                    r["alpha"] or "-",
                    r["beta"] or "-",
                    r["conflicts"],
                    r["problems"],
                    iso(r["last_sync"]),
                    r["queued"],
                    r["queued_bytes"],
                    r["in_flight"],
                )
            )
        )


def conflicts(names: list[str], as_json: bool) -> int:
    found = []
    unreadable = False
    for name in pick_sessions(names):
        try:
            store = _open(name)
        except StateDamaged as err:
            _warn(_damaged(name, err))
            unreadable = True  # not known to be free of conflicts
            continue
        try:
            for c in store.conflicts():
                found.append((name, c))
        finally:
            store.close()
    if as_json:
        print(
            dumps(
                [
                    {
                        "session": n,
                        "path": quote(c.path),
                        "alpha": c.alpha_action,
                        "beta": c.beta_action,
                        "alpha_entry": c.alpha.short() if c.alpha else None,
                        "beta_entry": c.beta.short() if c.beta else None,
                    }
                    for n, c in found
                ]
            )
        )
    else:
        for n, c in found:
            print(f"{n}\t{quote(c.path)}\t{c.alpha_action}\t{c.beta_action}")
    return 1 if found or unreadable else 0


def problems(names: list[str], as_json: bool) -> int:
    found: list[tuple[str, Problem]] = []
    unreadable = False
    for name in pick_sessions(names):
        try:
            store = _open(name)
        except StateDamaged as err:
            _warn(_damaged(name, err))
            unreadable = True
            continue
        try:
            found.extend((name, p) for p in store.problems())
        finally:
            store.close()
    if as_json:
        print(
            dumps(
                [
                    {"session": n, "side": p.side, "path": quote(p.path), "reason": p.reason}
                    for n, p in found
                ]
            )
        )
    else:
        for n, p in found:
            print(f"{n}\t{p.side or '-'}\t{quote(p.path)}\t{quote(p.reason)}")
    return 1 if found or unreadable else 0
