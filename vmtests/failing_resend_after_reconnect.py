"""FAILING (a yeet bug, found by test_link_cut.py): a resumed large upload re-sends
chunks the receiver already holds.

Not collected by default (the name does not start with ``test_``); run it with
``python3 -m pytest vmtests/failing_resend_after_reconnect.py -s``.

Issue 3 asks that a cut connection costs "no duplicate work beyond one chunk".
Measured on the wire (``test_link_cut.py``, 200 MiB, the connection reset while
the cable is out): 33–41 MiB cross the link twice, where one chunk is 4–8 MiB.

Cause (``yeet/transfer/schedule.py``, ``Upload.holds``)::

    def holds(self, offset: int, length: int) -> bool:
        return any(lo <= offset and offset + length <= lo + n for lo, n in self.have)

A chunk counts as delivered only when *one* range of the receiver's journal covers
it. The journal records the chunks as they were written — 4 MiB at the start of a
transfer — but the chunk size adapts to the link (``Executor._adapt_chunk``, up to
``MAX_CHUNK`` = 8 MiB), so after the reconnect the resumed upload's chunks are
8 MiB, each covered by *two* journal records, never by one. The chunks that the
workers took before ``Executor._open`` had returned the journal (one per worker,
``WORKERS`` = 4, 8 MiB each: 32 MiB) are therefore sent again in full although the
nas holds every byte of them (``Scheduler.skip`` merges ranges correctly for the
chunks still queued; ``holds`` does not). Fix: test coverage against the union of
the ranges (sort and sweep, as ``skip`` does), or trim in-flight chunks the same
way ``skip`` trims queued ones.
"""

from __future__ import annotations

from pathlib import Path

from vmtests.test_link_cut import (  # noqa: F401 - net: the module's topology fixture
    ONE_PIECE,
    OVERHEAD,
    TOTAL,
    CutNet,
    cut_during_transfer,
    net,
)
from yeet.engine.entries import file_entry
from yeet.engine.reconcile import Change, Side
from yeet.transfer.schedule import Upload

MiB = 1 << 20


def test_a_chunk_covered_by_two_journal_records_is_held() -> None:
    new = file_entry(b"\0" * 32, 128 * MiB)
    up = Upload(Change(Side.BETA, "vm/disk.img", None, new), new.size, (0, 0))
    up.have = ((0, 4 * MiB), (4 * MiB, 4 * MiB), (8 * MiB, 4 * MiB))  # three 4 MiB chunks
    assert up.holds(0, 4 * MiB)
    assert up.holds(0, 8 * MiB), "bytes 0-8 MiB are all on the receiver, yet not 'held'"
    assert up.holds(2 * MiB, 8 * MiB)
    assert not up.holds(8 * MiB, 8 * MiB)


def test_connection_reset_costs_at_most_one_chunk(
    net: CutNet,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    cut = cut_during_transfer(net, tmp_path / "beta", "reset", drop_state=True)
    assert cut.sent <= TOTAL * (1 + OVERHEAD) + ONE_PIECE, (
        f"{cut.extra / MiB:.1f} MiB more than the data crossed the link "
        f"(one chunk or batch is {ONE_PIECE / MiB:.0f} MiB)"
    )
