"""Table tests for reconcile: every mode x (create, modify, delete, type change,
exec-bit change) on alpha, beta or both. Each row gives the three trees and the
expected outcome: the trees on both sides afterwards and the conflicting paths."""

from __future__ import annotations

import pytest

from tests.core.trees import D, F, L, Tree, X, run_sync, tree
from yeet.core.decisions import Mode

SAFE, RESOLVED, OWS, REPLICA = (
    Mode.TWO_WAY_SAFE,
    Mode.TWO_WAY_RESOLVED,
    Mode.ONE_WAY_SAFE,
    Mode.ONE_WAY_REPLICA,
)
ALL = (SAFE, RESOLVED, OWS, REPLICA)
TWO_WAY = (SAFE, RESOLVED)

E: Tree = {}
f1 = tree(p=F("1"))
f2 = tree(p=F("2"))
f3 = tree(p=F("3"))
fx = tree(p=X("1"))
d1 = tree(p=D, p__c=F("c"))
d2 = tree(p=D, p__c=F("c2"))
dd = tree(p=D, p__c=F("c"), p__n=F("n"))
dempty = tree(p=D)
l1 = tree(p=L("t1"))
l2 = tree(p=L("t2"))

# (name, modes, ancestor, alpha, beta, expected alpha, expected beta, conflicts)
ROWS: list[tuple[str, tuple[Mode, ...], Tree, Tree, Tree, Tree, Tree, list[str]]] = [
    # nothing happened
    ("no-op", ALL, f1, f1, f1, f1, f1, []),
    ("no-op dir", ALL, d1, d1, d1, d1, d1, []),
    # creations
    ("alpha creates file", ALL, E, f1, E, f1, f1, []),
    ("alpha creates dir", ALL, E, d1, E, d1, d1, []),
    ("alpha creates symlink", ALL, E, l1, E, l1, l1, []),
    ("beta creates file", TWO_WAY, E, E, f1, f1, f1, []),
    ("beta creates file, one-way-safe keeps it", (OWS,), E, E, f1, E, f1, []),
    ("beta creates file, replica removes it", (REPLICA,), E, E, f1, E, E, []),
    ("beta creates dir", TWO_WAY, E, E, d1, d1, d1, []),
    ("both create same file", ALL, E, f1, f1, f1, f1, []),
    ("both create same dir tree", ALL, E, d1, d1, d1, d1, []),
    ("both create different files", (SAFE,), E, f1, f2, f1, f2, ["p"]),
    ("both create different files, alpha wins", (RESOLVED, REPLICA), E, f1, f2, f1, f1, []),
    ("both create different files, one-way-safe", (OWS,), E, f1, f2, f1, f2, ["p"]),
    ("file vs dir created", (SAFE, OWS), E, f1, d1, f1, d1, ["p"]),
    ("file vs dir created, alpha wins", (RESOLVED, REPLICA), E, f1, d1, f1, f1, []),
    ("dir vs file created", (SAFE, OWS), E, d1, f1, d1, f1, ["p"]),
    ("dir vs file created, alpha wins", (RESOLVED, REPLICA), E, d1, f1, d1, d1, []),
    (
        "dirs created with different contents merge",
        TWO_WAY,
        E,
        d1,
        tree(p=D, p__n=F("n")),
        dd,
        dd,
        [],
    ),
    # modifications
    ("alpha modifies", ALL, f1, f2, f1, f2, f2, []),
    ("beta modifies", TWO_WAY, f1, f1, f2, f2, f2, []),
    ("beta modifies, one-way-safe conflict", (OWS,), f1, f1, f2, f1, f2, ["p"]),
    ("beta modifies, replica reverts", (REPLICA,), f1, f1, f2, f1, f1, []),
    ("both modify same", ALL, f1, f2, f2, f2, f2, []),
    ("both modify differently", (SAFE, OWS), f1, f2, f3, f2, f3, ["p"]),
    ("both modify differently, alpha wins", (RESOLVED, REPLICA), f1, f2, f3, f2, f2, []),
    ("alpha modifies in dir", ALL, d1, d2, d1, d2, d2, []),
    ("beta modifies in dir", TWO_WAY, d1, d1, d2, d2, d2, []),
    # exec bit
    ("alpha sets exec", ALL, f1, fx, f1, fx, fx, []),
    ("beta sets exec", TWO_WAY, f1, f1, fx, fx, fx, []),
    ("exec vs content", (SAFE,), f1, fx, f2, fx, f2, ["p"]),
    ("exec vs content, alpha wins", (RESOLVED,), f1, fx, f2, fx, fx, []),
    ("both set exec", ALL, f1, fx, fx, fx, fx, []),
    # symlinks
    ("alpha retargets link", ALL, l1, l2, l1, l2, l2, []),
    ("beta retargets link", TWO_WAY, l1, l1, l2, l2, l2, []),
    ("both retarget differently", (SAFE,), l1, l2, tree(p=L("t3")), l2, tree(p=L("t3")), ["p"]),
    # deletions
    ("alpha deletes file", ALL, f1, E, f1, E, E, []),
    ("beta deletes file", TWO_WAY, f1, f1, E, E, E, []),
    ("beta deletes file, one-way restores", (OWS, REPLICA), f1, f1, E, f1, f1, []),
    ("both delete", ALL, f1, E, E, E, E, []),
    ("alpha deletes dir", ALL, d1, E, d1, E, E, []),
    ("beta deletes dir", TWO_WAY, d1, d1, E, E, E, []),
    ("alpha deletes in dir", ALL, dd, d1, dd, d1, d1, []),
    ("alpha deletes, beta modifies: modification wins", TWO_WAY, f1, E, f2, f2, f2, []),
    ("alpha modifies, beta deletes: modification wins", TWO_WAY, f1, f2, E, f2, f2, []),
    ("alpha deletes, beta modifies, one-way-safe leaves beta", (OWS,), f1, E, f2, E, f2, []),
    ("alpha deletes, beta modifies, replica deletes", (REPLICA,), f1, E, f2, E, E, []),
    ("alpha deletes dir, beta modifies inside: subtree comes back", TWO_WAY, d1, E, d2, d2, d2, []),
    ("alpha deletes dir, beta adds inside: subtree comes back", TWO_WAY, d1, E, dd, dd, dd, []),
    ("alpha deletes dir, beta deletes inside", TWO_WAY, dd, E, d1, E, E, []),
    ("alpha empties dir, beta deletes it", TWO_WAY, d1, dempty, E, E, E, []),
    (
        "alpha deletes dir, beta modifies inside, one-way-safe conflict",
        (OWS,),
        d1,
        E,
        d2,
        E,
        d2,
        ["p"],
    ),
    # type changes
    ("alpha file->dir", ALL, f1, d1, f1, d1, d1, []),
    ("alpha dir->file", ALL, d1, f1, d1, f1, f1, []),
    ("alpha file->symlink", ALL, f1, l1, f1, l1, l1, []),
    ("alpha symlink->file", ALL, l1, f1, l1, f1, f1, []),
    ("alpha dir->symlink", ALL, d1, l1, d1, l1, l1, []),
    ("beta file->dir", TWO_WAY, f1, f1, d1, d1, d1, []),
    ("beta dir->file", TWO_WAY, d1, d1, f1, f1, f1, []),
    ("beta dir->file, one-way-safe conflict", (OWS,), d1, d1, f1, d1, f1, ["p"]),
    ("beta dir->file, replica reverts", (REPLICA,), d1, d1, f1, d1, d1, []),
    ("alpha dir->file, beta modifies inside", (SAFE,), d1, f1, d2, f1, d2, ["p"]),
    (
        "alpha dir->file, beta modifies inside, alpha wins",
        (RESOLVED, REPLICA),
        d1,
        f1,
        d2,
        f1,
        f1,
        [],
    ),
    ("alpha file->dir, beta modifies file", (SAFE, OWS), f1, d1, f2, d1, f2, ["p"]),
    ("alpha file->dir, beta deletes file", TWO_WAY, f1, d1, E, d1, d1, []),
    ("alpha deletes file, beta file->dir", TWO_WAY, f1, E, d1, d1, d1, []),
    ("alpha dir->file, beta deletes dir", TWO_WAY, d1, f1, E, f1, f1, []),
    ("both file->dir differently merge", TWO_WAY, f1, d1, tree(p=D, p__n=F("n")), dd, dd, []),
    ("both dir->file same", ALL, d1, f2, f2, f2, f2, []),
]


@pytest.mark.parametrize(
    ("name", "mode", "anc", "alpha", "beta", "want_alpha", "want_beta", "conflicts"),
    [
        pytest.param(name, mode, *rest, id=f"{mode}: {name}")
        for name, modes, *rest in ROWS
        for mode in modes
    ],
)
def test_table(
    name: str,
    mode: Mode,
    anc: Tree,
    alpha: Tree,
    beta: Tree,
    want_alpha: Tree,
    want_beta: Tree,
    conflicts: list[str],
) -> None:
    a, x, y, found, _plan = run_sync(anc, alpha, beta, mode)
    assert x == want_alpha
    assert y == want_beta
    assert sorted(c.path for c in found) == conflicts
    # A second pass is quiet: nothing left to do but the same conflicts.
    _a2, x2, y2, found2, plan2 = run_sync(a, x, y, mode)
    assert (x2, y2) == (x, y)
    assert not plan2.alpha and not plan2.beta
    assert sorted(c.path for c in found2) == conflicts


def test_conflict_blocks_only_its_path() -> None:
    anc = tree(p=F("1"), q=F("q"))
    alpha = tree(p=F("2"), q=F("q"), r=F("r"))
    beta = tree(p=F("3"), q=F("q2"))
    _a, x, y, conflicts, _ = run_sync(anc, alpha, beta)
    assert [c.path for c in conflicts] == ["p"]
    assert x["q"] == y["q"] == F("q2")
    assert y["r"] == F("r")
    assert x["p"] == F("2") and y["p"] == F("3")


def test_conflict_reports_actions() -> None:
    _a, _x, _y, conflicts, _ = run_sync(f1, f2, E)
    assert conflicts == []
    _a, _x, _y, conflicts, _ = run_sync(f1, fx, f2)
    (c,) = conflicts
    assert (c.alpha_action, c.beta_action) == ("exec-changed", "modified")
    _a, _x, _y, conflicts, _ = run_sync(f1, d1, f2)
    (c,) = conflicts
    assert (c.alpha_action, c.beta_action) == ("became-dir", "modified")


def test_special_content_blocks_deletion_of_its_directory() -> None:
    from yeet.model.entries import special_entry

    anc = tree(p=D, p__c=F("c"))
    alpha: Tree = {}
    beta = tree(p=D, p__c=F("c"), p__sock=special_entry("socket"))
    _a, x, y, conflicts, _ = run_sync(anc, alpha, beta)
    assert [c.path for c in conflicts] == ["p"]
    assert y == beta and x == {}


def test_special_entry_itself_is_left_alone() -> None:
    from yeet.model.entries import special_entry

    sock = special_entry("socket")
    _a, x, y, conflicts, plan = run_sync({}, tree(s=sock), {})
    assert plan.empty and y == {} and x == tree(s=sock) and conflicts == []


def test_unreadable_directory_is_never_taken_for_deleted() -> None:
    from yeet.core.decisions import Side
    from yeet.core.reconcile import Reconciler
    from yeet.core.trees import Plan, answer

    anc = tree(p=D, p__c=F("c"))
    rec = Reconciler(Mode.TWO_WAY_SAFE)
    plan = Plan()
    answer(rec, anc)
    rec.listing(Side.ALPHA, "", {"p": D})
    rec.listing(Side.ALPHA, "p", None)  # unreadable on alpha
    rec.listing(Side.BETA, "", {"p": D})
    rec.listing(Side.BETA, "p", {})  # beta deleted the file
    for s in Side:
        rec.finish(s)
    answer(rec, anc)
    plan.add(rec.take())
    assert plan.empty and rec.done


def test_decisions_stream_before_scans_finish() -> None:
    """A new directory on alpha flows to beta listing by listing."""
    from yeet.core.decisions import Change, Side
    from yeet.core.reconcile import Reconciler
    from yeet.core.trees import answer

    rec = Reconciler(Mode.TWO_WAY_SAFE)
    answer(rec, {})
    rec.listing(Side.ALPHA, "", {"new": D})
    rec.listing(Side.BETA, "", {})
    answer(rec, {})
    first = rec.take()
    assert first == [Change(Side.BETA, "new", None, D)]
    rec.listing(Side.ALPHA, "new", {"a": F("a"), "sub": D})
    assert rec.take() == [
        Change(Side.BETA, "new/a", None, F("a")),
        Change(Side.BETA, "new/sub", None, D),
    ]
    assert not rec.done
    rec.listing(Side.ALPHA, "new/sub", {})
    rec.finish(Side.ALPHA)
    rec.finish(Side.BETA)
    assert rec.done
