"""``yeet status``, ``yeet conflicts``, ``yeet problems``: what sessions are in.

Invariant owned here: these commands only read state (never the trees), work
while a sync runs, and their exit status is 0 exactly when every session named
is in sync (``status``) / has no conflicts (``conflicts``) / no problems.
``status --wait`` waits only while a process holds a session's lock and its
state is pending: a pending session that no process runs is said so, and the
command exits 1 at once; a ``--timeout`` that expires is exit 9.

``status`` line format (tab-separated, documented in the README)::

    STATE NAME ALPHA BETA CONFLICTS PROBLEMS LAST-SYNC QUEUED QUEUED-BYTES IN-FLIGHT
"""

from __future__ import annotations

import sys
import time
from typing import Any

from yeet.cli.report import iso
from yeet.engine.entries import Problem
from yeet.errors import WaitTimeout
from yeet.quoting import dumps, quote
from yeet.state.sessions import lock_holder, pick_sessions, session_dir
from yeet.state.store import SessionStore

POLL = 0.2


def _open(name: str) -> SessionStore:
    return SessionStore(session_dir(name) / "state.db")


def session_status(name: str) -> dict[str, Any]:
    store = _open(name)
    try:
        holder = lock_holder(session_dir(name))
        running = holder is not None
        state = store.get_meta("last_state") or "pending"
        progress = store.progress()
        # the live state of the sync that holds the lock (--watch: settled states too);
        # what a killed sync left there is not: while a process holds the lock but has
        # said nothing yet (a sync starting, `yeet diff`), the session is pending
        live = running and bool(progress) and progress.get("pid") == holder
        if running:
            state = str(progress.get("state") or "pending") if live else "pending"
        return {
            "state": state,
            "name": name,
            "alpha": _address(store.get_meta("alpha")),
            "beta": _address(store.get_meta("beta")),
            "mode": store.get_meta("mode"),
            "conflicts": len(store.conflicts()),
            "problems": len(store.problems()),
            "last_sync": store.get_meta("last_sync"),
            "halted": store.get_meta("halted") or None,
            "running": running,
            "queued": int(progress.get("queued", 0)) if live else 0,
            "queued_bytes": int(progress.get("queued_bytes", 0)) if live else 0,
            "in_flight": int(progress.get("in_flight", 0)) if live else 0,
            "progress": progress if live else None,
        }
    finally:
        store.close()


def _address(value: object) -> object:
    return quote(value) if isinstance(value, str) else value


def status(names: list[str], as_json: bool, wait: bool, timeout: float | None) -> int:
    deadline = None if timeout is None else time.monotonic() + timeout
    expired = False
    while True:
        rows = [session_status(n) for n in pick_sessions(names)]
        waiting = [r for r in rows if r["running"] and r["state"] == "pending"]
        if not wait or not waiting:
            break
        if deadline is not None and time.monotonic() >= deadline:
            expired = True
            break
        time.sleep(POLL if deadline is None else max(0.0, min(POLL, deadline - time.monotonic())))
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
                    r["alpha"],
                    r["beta"],
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
    for name in pick_sessions(names):
        store = _open(name)
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
    return 1 if found else 0


def problems(names: list[str], as_json: bool) -> int:
    found: list[tuple[str, Problem]] = []
    for name in pick_sessions(names):
        store = _open(name)
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
    return 1 if found else 0
