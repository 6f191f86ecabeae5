"""``yeet forget``: remove a session's state.

Invariant owned here: forgetting never touches the synchronised trees, and
never deletes trashed content unless asked to (``--force``).
"""

from __future__ import annotations

import shutil

from yeet.model.errors import YeetError
from yeet.state import replica_tables as sql
from yeet.state.db import StateDamaged
from yeet.state.sessions import SessionLock, existing_session_dir
from yeet.state.store import SessionStore


def resume(name: str) -> int:
    """Mark the session's halt acknowledged: the next sync goes ahead once."""
    from yeet.core.guard import Halt

    directory = existing_session_dir(name)
    with SessionLock(directory):
        store = SessionStore(directory / "state.db")
        try:
            halt = Halt.from_meta(store.get_meta("halt"))
            if halt is None:
                print(f"not halted\t{name}")
                return 0
            acknowledged = Halt(halt.kind, halt.reason, halt.side, acknowledged=True)
            store.set_meta(halt=acknowledged.to_meta())
        finally:
            store.close()
    print(f"resumed\t{name}\tthe next sync goes ahead ({halt.reason})")
    return 0


def forget(name: str, force: bool) -> int:
    directory = existing_session_dir(name)
    with SessionLock(directory):
        db = directory / "state.db"
        try:
            if not db.exists():
                raise StateDamaged(db, "missing")
            store = SessionStore(db, read_only=True)  # forgetting never repairs first
        except StateDamaged as err:
            if not force:
                raise YeetError(
                    f"session {name!r}: {err}, so what its trash holds is unknown",
                    hint=f"look in {directory}/alpha/trash and {directory}/beta/trash, then "
                    "forget with --force",
                ) from None
            trashed = 0
        else:
            try:
                trashed = store.conn.execute(sql.TRASH_COUNT).fetchone()[0]
            finally:
                store.close()
        if trashed and not force:
            raise YeetError(
                f"session {name!r} still has {trashed} item(s) in its trash",
                hint=f"restore what you need (`yeet trash {name}`), then forget with --force",
            )
        shutil.rmtree(directory)
    print(f"forgot\t{name}")
    return 0
