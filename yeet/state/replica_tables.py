"""The tables a replica keeps for its root: their schema and every statement on them.

Invariant owned here: the directory cache (``dircache``), the block cache
(``blockcache``), the trash index (``trash``) and the record of yeet's temporary names
(``temp_names``) are created and read and written only by the SQL written here
(``yeet.state.db`` creates them with the rest of the schema; the replica's modules run
these statements on their connection, under their lock and transactions). Every row
belongs to one side (``side``), so one database can serve both sides of a local
session.
"""

from __future__ import annotations

SCHEMA = """
CREATE TABLE IF NOT EXISTS dircache (
    side TEXT NOT NULL, path BLOB NOT NULL, entries BLOB NOT NULL,
    PRIMARY KEY (side, path)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS blockcache (
    side TEXT NOT NULL, path BLOB NOT NULL, sig BLOB NOT NULL, leaves BLOB NOT NULL,
    PRIMARY KEY (side, path)
);
CREATE TABLE IF NOT EXISTS trash (
    id INTEGER PRIMARY KEY, side TEXT NOT NULL, path BLOB NOT NULL, stored TEXT NOT NULL,
    kind TEXT NOT NULL, size INTEGER NOT NULL, digest BLOB, trashed REAL NOT NULL,
    pass_id INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS trash_path ON trash (side, path);
CREATE TABLE IF NOT EXISTS temp_names (
    side TEXT NOT NULL, token TEXT NOT NULL, made REAL NOT NULL, PRIMARY KEY (side, token)
);
"""

# -- dircache: one row per directory, its files' stat signatures and digests --------------

DIRCACHE_PATHS = "SELECT path FROM dircache WHERE side=?"
DIRCACHE_ENTRIES = "SELECT entries FROM dircache WHERE side=? AND path=?"
DIRCACHE_PUT = "INSERT OR REPLACE INTO dircache VALUES (?, ?, ?)"
DIRCACHE_DROP = "DELETE FROM dircache WHERE side=? AND path=?"

# -- blockcache: the 64 KiB leaf digests of large files ----------------------------------

BLOCKCACHE_PATHS = "SELECT path FROM blockcache WHERE side=?"
BLOCKCACHE_GET = "SELECT sig, leaves FROM blockcache WHERE side=? AND path=?"
BLOCKCACHE_PUT = "INSERT OR REPLACE INTO blockcache VALUES (?, ?, ?, ?)"
BLOCKCACHE_DROP = "DELETE FROM blockcache WHERE side=? AND path=?"

# -- trash: what a side's trash holds -----------------------------------------------------

TRASH_INSERT = (
    "INSERT INTO trash (side, path, stored, kind, size, digest, trashed, pass_id) "
    "VALUES (?, ?, '', ?, ?, ?, ?, ?)"
)
TRASH_SET_STORED = "UPDATE trash SET stored=? WHERE id=?"
TRASH_DROP = "DELETE FROM trash WHERE id=?"
TRASH_ITEMS = (
    "SELECT id, side, path, kind, size, trashed, stored, pass_id FROM trash "
    "WHERE side=? ORDER BY trashed, id"
)
TRASH_ITEM = "SELECT path, stored FROM trash WHERE id=? AND side=?"
TRASH_AGES = "SELECT id, stored, trashed FROM trash WHERE side=?"
TRASH_COUNT = "SELECT count(*) FROM trash"

# -- temp_names: the tokens of yeet's temporary names, per run ----------------------------

TEMP_TOKENS = "SELECT token FROM temp_names WHERE side=?"
TEMP_ADD = "INSERT INTO temp_names VALUES (?, ?, ?)"
TEMP_DROP = "DELETE FROM temp_names WHERE side=? AND token=?"
