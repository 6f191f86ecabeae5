"""The transfer scheduler: priorities, stealing, fairness, dependencies."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.core.trees import D, F
from yeet.core.decisions import Change, Side
from yeet.core.schedule import Batch, Chunk, Commit, Scheduler, Work, missing
from yeet.model.entries import Entry, file_entry
from yeet.model.paths import depth, is_within, parent_of

B = Side.BETA
MiB = 1 << 20


def big(n: int, tag: str = "x") -> Entry:
    return file_entry(tag.encode().ljust(32, b"\0"), n)


def create(path: str, entry: Entry, side: Side = B) -> Change:
    return Change(side, path, None, entry)


def test_small_item_waits_at_most_one_chunk_behind_a_big_file() -> None:
    s = Scheduler(workers=4, chunk=4 * MiB)
    s.add([create("huge", big(1 << 30))])
    running = [s.next() for _ in range(4)]
    assert all(isinstance(w, Chunk) for w in running)
    s.add([create("small.txt", F("edit"))], generation=1)
    assert s.next() is None  # every worker is busy
    assert running[0] is not None
    s.finished(running[0])  # one chunk time later...
    w = s.next()
    assert isinstance(w, Batch) and [c.path for c in w.changes] == ["small.txt"]


def test_large_file_is_never_starved_by_small_work() -> None:
    s = Scheduler(workers=4, chunk=4 * MiB)
    s.add([create("huge", big(64 * MiB))])
    chunks = 0
    active: list[Work] = []
    for i in range(200):  # a continuous stream of small edits
        s.add([create(f"f{i}", F(str(i)))], generation=i + 1)
        while (w := s.next()) is not None:
            active.append(w)
        assert sum(isinstance(w, Chunk) for w in active) >= 1 or chunks == 16
        done = active.pop(0)
        chunks += isinstance(done, Chunk)
        s.finished(done, done.changes if isinstance(done, Batch) else ())
    assert chunks >= 16 or any(isinstance(w, Commit) for w in active)


def test_idle_workers_steal_chunks_of_the_largest_file_in_flight() -> None:
    s = Scheduler(workers=4, chunk=1 * MiB)
    s.add([create("a", big(8 * MiB, "a")), create("b", big(3 * MiB, "b"))])
    first = s.next()
    assert isinstance(first, Chunk) and first.upload.change.path == "a"
    rest = [s.next() for _ in range(3)]
    assert all(isinstance(w, Chunk) and w.upload.change.path == "a" for w in rest)


def test_recent_passes_go_first() -> None:
    s = Scheduler(workers=2, batch_ops=1)
    s.add([create("old", F("1"))], generation=0)
    s.add([create("new", F("2"))], generation=5)
    w = s.next()
    assert isinstance(w, Batch) and w.changes[0].path == "new"


def test_nothing_lands_under_a_directory_still_being_created() -> None:
    s = Scheduler(workers=4, batch_ops=1)
    s.add([create("d", D), create("d/f", F("x")), create("d/big", big(5 * MiB))])
    w = s.next()
    assert isinstance(w, Batch) and w.changes[0].path == "d"
    assert s.next() is None  # d/f and d/big wait for d
    s.finished(w, w.changes)
    got = [s.next(), s.next()]
    kinds = {type(x) for x in got}
    assert kinds == {Batch, Chunk}


def test_deletions_wait_for_release_and_run_deepest_first_after_creations() -> None:
    s = Scheduler(workers=4, batch_ops=100)
    s.add([Change(B, "d/e/f", F("1"), None), Change(B, "d/e", D, None), Change(B, "d", D, None)])
    s.add([create("new", F("n"))])
    s.add([Change(B, "p", D, F("file now"))])
    w = s.next()
    assert isinstance(w, Batch) and w.changes[0].path == "new"
    assert s.next() is None  # deletions are held until released
    s.release()
    assert s.next() is None  # ... and wait for the creation in flight
    s.finished(w, w.changes)
    order = []
    while (w := s.next()) is not None:
        assert isinstance(w, Batch)
        order.append([c.path for c in w.changes])
        assert s.next() is None  # one level at a time
        s.finished(w, w.changes)
    assert order == [["d/e/f"], ["d/e"], ["d"], ["p"]]


@st.composite
def change_sets(draw: st.DrawFn) -> list[list[Change]]:
    """Passes of changes as the reconciler emits them: parents before children,
    nothing created under a path that is not a directory."""
    names = ["a", "b", "c"]
    dirs: set[str] = {""}
    used: set[str] = set()
    batches = []
    for _ in range(draw(st.integers(1, 4))):
        batch = []
        for _ in range(draw(st.integers(0, 6))):
            parent = draw(st.sampled_from(sorted(dirs)))
            p = (parent + "/" if parent else "") + draw(st.sampled_from(names))
            if p in used or depth(p) > 3:
                continue
            used.add(p)
            kind = draw(st.sampled_from(["dir", "small", "large", "rm", "replace"]))
            if kind == "dir":
                batch.append(create(p, D))
                dirs.add(p)
            elif kind == "small":
                batch.append(create(p, F(p)))
            elif kind == "large":
                batch.append(create(p, big(draw(st.integers(1, 5)) * MiB + 1, p)))
            elif kind == "rm":
                batch.append(Change(B, p, F(p), None))
            else:
                batch.append(Change(B, p, D, F(p)))
        batches.append(batch)
    return batches


@settings(max_examples=300, deadline=None)
@given(batches=change_sets(), workers=st.integers(1, 5), seed=st.randoms())
def test_every_change_is_done_once_and_dependencies_hold(
    batches: list[list[Change]], workers: int, seed: object
) -> None:
    import random

    rng = seed if isinstance(seed, random.Random) else random.Random(0)
    s = Scheduler(workers=workers, chunk=1 * MiB, batch_ops=2)
    done: list[Change] = []
    dirs_done: set[str] = set()
    created_dirs = {c.path for b in batches for c in b if c.new is not None and c.new.is_dir}
    active: list[Work] = []
    for g, b in enumerate(batches):
        s.add(b, generation=g)
    s.release()
    steps = 0
    while True:
        steps += 1
        assert steps < 10_000
        while len(active) < workers and (w := s.next()) is not None:
            active.append(w)
        if not active:
            break
        w = active.pop(rng.randrange(len(active)))
        if isinstance(w, Batch):
            for c in w.changes:
                p = parent_of(c.path)
                assert p not in created_dirs or p in dirs_done, f"{c.path} before its parent"
                done.append(c)
                if c.new is not None and c.new.is_dir:
                    dirs_done.add(c.path)
            s.finished(w, w.changes)
        elif isinstance(w, Commit):
            p = parent_of(w.upload.change.path)
            assert p not in created_dirs or p in dirs_done
            done.append(w.upload.change)
            s.finished(w, [w.upload.change])
        else:
            s.finished(w)
    wanted = [c for b in batches for c in b]
    assert sorted(map(repr, done)) == sorted(map(repr, wanted))
    # deletions: deeper ones first, and all after every creation/update
    removals = [c for c in done if c.new is None]
    for i, c in enumerate(removals):
        for later in removals[i + 1 :]:
            assert not is_within(later.path, c.path) or later.path == c.path
    first_removal = next((i for i, c in enumerate(done) if c.new is None), len(done))
    assert all(c.new is None or (c.old is not None and c.old.is_dir) for c in done[first_removal:])
    assert all(depth(c.path) >= 0 for c in done)


def test_resumed_upload_sends_only_what_the_receiver_lacks() -> None:
    s = Scheduler(workers=1, chunk=4 * MiB)
    s.add([create("f", big(16 * MiB))])
    w = s.next()
    assert isinstance(w, Chunk)
    # an earlier attempt used other chunk sizes: 0-8 MiB and 10-11 MiB arrived
    s.skip(w.upload, [(0, 8 * MiB), (10 * MiB, 1 * MiB)])
    assert w.upload.todo == [(8 * MiB, 2 * MiB), (11 * MiB, 1 * MiB), (12 * MiB, 4 * MiB)]


def test_a_chunk_in_flight_is_held_when_several_journal_records_cover_it() -> None:
    """Regression (vmtests/test_link_cut.py): after a reconnect the journal holds the
    4 MiB chunks of the start of the transfer while the chunks that workers took
    before it arrived are 8 MiB; each was sent again in full although held."""
    s = Scheduler(workers=1, chunk=8 * MiB)
    s.add([create("f", big(128 * MiB))])
    w = s.next()
    assert isinstance(w, Chunk) and (w.offset, w.length) == (0, 8 * MiB)
    s.skip(w.upload, [(0, 4 * MiB), (4 * MiB, 4 * MiB), (8 * MiB, 4 * MiB)])
    assert w.upload.holds(0, 8 * MiB) and w.upload.holds(2 * MiB, 8 * MiB)
    assert not w.upload.holds(8 * MiB, 8 * MiB)


@given(
    st.lists(st.tuples(st.integers(0, 64), st.integers(1, 16)), max_size=8),
    st.integers(0, 80),
    st.integers(0, 24),
)
def test_missing_is_exactly_the_uncovered_bytes(
    have: list[tuple[int, int]], offset: int, length: int
) -> None:
    covered = {b for lo, n in have for b in range(lo, lo + n)}
    gaps = missing(have, offset, length)
    sent = [b for off, n in gaps for b in range(off, off + n)]
    assert sent == sorted(set(range(offset, offset + length)) - covered)
    assert all(n > 0 for _, n in gaps)
    assert all(a[0] + a[1] < b[0] for a, b in itertools.pairwise(gaps))  # merged
