"""Per-batch durability: one ``syncfs``, or each file and directory (``replica.fs.durable``)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from yeet.replica.fs import durable

GIB = 1 << 30


@pytest.mark.parametrize(
    ("files", "dirs", "dirty", "each"),
    [
        (100, 3, 0, False),  # quiet machine: one syncfs is ~5 ms
        (100, 3, 4 << 20, False),  # a little dirty data: still cheaper
        (100, 3, 512 << 20, True),  # a big file being flushed: sync only ours
        (1, 3, 64 << 20, True),  # one small edit under load
        (100_000, 50, 512 << 20, False),  # a huge batch: syncfs even then
        (5, 3, None, True),  # no syncfs on this system
        (0, 2, GIB, True),
    ],
)
def test_the_cheaper_way_is_chosen(files: int, dirs: int, dirty: int | None, each: bool) -> None:
    assert durable.each_file(files, dirs, dirty) is each


def test_dirty_bytes_reads_the_kernel_counters() -> None:
    dirty = durable.dirty_bytes()
    assert dirty is not None and dirty >= 0  # Linux: syncfs exists


SCRIPT = textwrap.dedent(
    """
    import sys, threading
    from yeet.contract.values import Op
    from yeet.model.entries import DIRECTORY, file_entry, symlink_entry
    from yeet.replica.scan.ignore import IgnoreRules
    from yeet.replica.scan.statcache import StatCache
    from yeet.state.store import SessionStore
    from yeet.replica.write.trash import Trash
    from yeet.replica.write.writer import Writer
    from yeet.model import digest
    from yeet.replica.fs.durable import barrier

    root, state, dirty = sys.argv[1], sys.argv[2], int(sys.argv[3])
    store = SessionStore(__import__("pathlib").Path(state) / "s.db")
    cache = StatCache(store.conn, store.lock, "beta")
    trash = Trash(state + "/trash", store.conn, store.lock, "beta")
    w = Writer(root, state + "/stage", trash, cache, IgnoreRules(), "blake2b",
               dirty=lambda: dirty)

    def file(data):
        return file_entry(digest.of_bytes("blake2b", data), len(data))

    old = open(root + "/d/old", "rb").read()
    ops = [Op(f"d/n{i}", None, file(b"new %d" % i), data=b"new %d" % i) for i in range(20)]
    ops += [
        Op("d/old", file(old), file(b"replaced"), data=b"replaced"),
        Op("gone", file(b"bye"), None),
        Op("e", None, DIRECTORY),
        Op("emptied", DIRECTORY, None),
        Op("l", None, symlink_entry("d/old")),
    ]
    prepared = w.stage(ops)
    print("each" if prepared.each else "syncfs", file=sys.stderr)
    results = w.commit(ops, prepared, lambda: barrier(w.root.fd))
    bad = [r for r in results if not r.ok]
    assert not bad, bad
    print("ok", len(trash.items()), file=sys.stderr)
    """
)


def _calls(trace: str, name: str) -> int:
    """Calls of ``name`` on the tree, staging and trash (not on the state database)."""
    return sum(
        1
        for line in trace.splitlines()
        if f" {name}(" in line and any(f"/{d}" in line for d in ("root", "stage", "trash"))
    )


@pytest.mark.parametrize("each", [True, False])
def test_a_batch_is_made_durable_by_the_chosen_calls(tmp_path: Path, each: bool) -> None:
    """Under writeback load a batch syncs its own files and directories, never the
    whole filesystem; on a quiet machine one syncfs covers it. The tree is the same."""
    root, state = tmp_path / "root", tmp_path / "state"
    (root / "d").mkdir(parents=True)
    (root / "emptied").mkdir()
    (root / "d/old").write_bytes(b"old content")
    (root / "gone").write_bytes(b"bye")
    state.mkdir()
    script = tmp_path / "apply.py"
    script.write_text(SCRIPT)
    trace = tmp_path / "trace"
    strace = ["strace", "-f", "-qq", "-y", "-o", str(trace), "-e", "trace=syncfs,fdatasync,fsync"]
    run = subprocess.run(
        [*strace, sys.executable, str(script), str(root), str(state), str(GIB if each else 0)],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2])),
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert ("each" if each else "syncfs") in run.stderr
    assert "ok 2" in run.stderr  # trashed: the replaced file and the deleted one
    calls = trace.read_text()
    if each:
        assert _calls(calls, "syncfs") == 0, calls
        assert _calls(calls, "fdatasync") >= 21  # every new content
        assert _calls(calls, "fsync") >= 4  # trash, staging, the root and d/
    else:
        assert _calls(calls, "syncfs") >= 1, calls
        assert _calls(calls, "fdatasync") == 0, calls
    got = {str(p.relative_to(root)) for p in root.rglob("*")}
    assert got == {"d", "e", "l", "d/old"} | {f"d/n{i}" for i in range(20)}
    assert (root / "d/old").read_bytes() == b"replaced"
    assert os.readlink(root / "l") == "d/old"
