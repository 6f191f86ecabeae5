"""``yeet status``, ``yeet conflicts``, ``yeet problems``: what sessions are in.

Invariant owned here: these commands only read state (never the trees), work
while a sync runs, and their exit status is 0 exactly when every session named
is in sync (``status``) / has no conflicts (``conflicts``) / no problems.

``status`` line format (tab-separated, documented in the README)::

    STATE NAME ALPHA BETA CONFLICTS PROBLEMS LAST-SYNC QUEUED QUEUED-BYTES IN-FLIGHT
"""

from __future__ import annotations

import json
import time
from typing import Any

from yeet.cli.report import iso
from yeet.engine.entries import Problem
from yeet.state.sessions import is_locked, pick_sessions, session_dir
from yeet.state.store import SessionStore


def _open(name: str) -> SessionStore:
    return SessionStore(session_dir(name) / "state.db")


def session_status(name: str) -> dict[str, Any]:
    store = _open(name)
    try:
        running = is_locked(session_dir(name))
        state = store.get_meta("last_state") or "pending"
        progress = store.progress()
        if running:
            # a running sync keeps its live state there (--watch: settled states too)
            state = str(progress.get("state") or "pending")
        return {
            "state": state,
            "name": name,
            "alpha": store.get_meta("alpha"),
            "beta": store.get_meta("beta"),
            "mode": store.get_meta("mode"),
            "conflicts": len(store.conflicts()),
            "problems": len(store.problems()),
            "last_sync": store.get_meta("last_sync"),
            "halted": store.get_meta("halted") or None,
            "running": running,
            "queued": int(progress.get("queued", 0)) if running else 0,
            "queued_bytes": int(progress.get("queued_bytes", 0)) if running else 0,
            "in_flight": int(progress.get("in_flight", 0)) if running else 0,
            "progress": progress if running else None,
        }
    finally:
        store.close()


def status(names: list[str], as_json: bool, wait: bool, timeout: float | None) -> int:
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        rows = [session_status(n) for n in pick_sessions(names)]
        in_sync = all(r["state"] == "synced" for r in rows)
        settled = all(r["state"] != "pending" for r in rows)
        if not wait or settled or (deadline is not None and time.monotonic() > deadline):
            break
        time.sleep(0.2)
    if as_json:
        print(json.dumps(rows, indent=2))
    else:
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
    return 0 if rows and in_sync else 1


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
            json.dumps(
                [
                    {
                        "session": n,
                        "path": c.path,
                        "alpha": c.alpha_action,
                        "beta": c.beta_action,
                        "alpha_entry": c.alpha.short() if c.alpha else None,
                        "beta_entry": c.beta.short() if c.beta else None,
                    }
                    for n, c in found
                ],
                indent=2,
            )
        )
    else:
        for n, c in found:
            print(f"{n}\t{c.path}\t{c.alpha_action}\t{c.beta_action}")
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
            json.dumps(
                [
                    {"session": n, "side": p.side, "path": p.path, "reason": p.reason}
                    for n, p in found
                ],
                indent=2,
            )
        )
    else:
        for n, p in found:
            print(f"{n}\t{p.side or '-'}\t{p.path}\t{p.reason}")
    return 1 if found else 0
