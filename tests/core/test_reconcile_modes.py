"""Table tests for permission bits in reconcile: a chmod is a change, updates never
widen, bits changed differently on both sides conflict, an ancestor that does not
know the bits (a new path, a session recorded before bits were synced) lets the
narrower bits win, and a directory's own bits are decided without blocking its
children. Same row format as ``test_reconcile_table``."""

from __future__ import annotations

import pytest

from tests.core.trees import DM, FM, F, Tree, run_sync, tree
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
f644 = tree(p=FM("1", 0o644))
f600 = tree(p=FM("1", 0o600))
f640 = tree(p=FM("1", 0o640))
f604 = tree(p=FM("1", 0o604))
g644 = tree(p=FM("2", 0o644))
g600 = tree(p=FM("2", 0o600))
unknown = tree(p=F("1"))  # recorded before permission bits were synced
d755 = tree(p=DM(0o755), p__c=FM("c", 0o644))
d700 = tree(p=DM(0o700), p__c=FM("c", 0o644))
d750 = tree(p=DM(0o750), p__c=FM("c", 0o644))
d700_new = tree(p=DM(0o700), p__c=FM("c", 0o644), p__n=FM("n", 0o600))
d750_new = tree(p=DM(0o750), p__c=FM("c", 0o644), p__n=FM("n", 0o600))

# (name, modes, ancestor, alpha, beta, expected alpha, expected beta, conflicts)
ROWS: list[tuple[str, tuple[Mode, ...], Tree, Tree, Tree, Tree, Tree, list[str]]] = [
    ("alpha chmods a file", ALL, f644, f600, f644, f600, f600, []),
    ("beta chmods a file", TWO_WAY, f644, f644, f600, f600, f600, []),
    ("beta chmods a file, one-way-safe conflict", (OWS,), f644, f644, f600, f644, f600, ["p"]),
    ("beta chmods a file, replica reverts", (REPLICA,), f644, f644, f600, f644, f644, []),
    ("both chmod the same", ALL, f644, f600, f600, f600, f600, []),
    ("both chmod differently", (SAFE,), f644, f640, f604, f640, f604, ["p"]),
    ("both chmod differently, alpha wins", (RESOLVED,), f644, f640, f604, f640, f640, []),
    ("chmod vs content", (SAFE,), f644, f600, g644, f600, g644, ["p"]),
    ("an edit carries its bits along", ALL, f600, g600, f600, g600, g600, []),
    ("alpha edits, beta chmods", (SAFE,), f644, g644, f600, g644, f600, ["p"]),
    # the ancestor does not know the bits: the narrower bits win
    ("unknown bits, beta narrower", TWO_WAY, unknown, f644, f600, f600, f600, []),
    ("unknown bits, alpha narrower", TWO_WAY, unknown, f600, f644, f600, f600, []),
    ("unknown bits, incomparable", (SAFE,), unknown, f640, f604, f640, f604, ["p"]),
    ("unknown bits, incomparable, alpha wins", (RESOLVED,), unknown, f640, f604, f640, f640, []),
    ("unknown bits, alpha edits", TWO_WAY, unknown, g644, f644, g644, g644, []),
    ("unknown bits, beta edits", TWO_WAY, unknown, f600, g600, g600, g600, []),
    ("both create with other bits: narrower wins", TWO_WAY, E, f644, f600, f600, f600, []),
    ("both create with incomparable bits", (SAFE,), E, f640, f604, f640, f604, ["p"]),
    # directories: the bits are the directory's own; children keep flowing
    ("alpha chmods a dir", ALL, d755, d700, d755, d700, d700, []),
    ("beta chmods a dir", TWO_WAY, d755, d755, d700, d700, d700, []),
    ("both chmod a dir differently", (SAFE,), d755, d700, d750, d700, d750, ["p"]),
    (
        "a dir's bits conflict, a new child still flows",
        (SAFE,),
        d755,
        d700_new,
        d750,
        d700_new,
        d750_new,
        ["p"],
    ),
    ("alpha chmods a dir, beta deletes it: it comes back", TWO_WAY, d755, d700, E, d700, d700, []),
    ("both create a dir with other bits", TWO_WAY, E, d755, d700, d700, d700, []),
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


def test_conflict_actions_name_the_bits() -> None:
    *_, found, _plan = run_sync(f644, f640, f604)
    (c,) = found
    assert (c.alpha_action, c.beta_action) == ("mode-changed", "mode-changed")


def test_directory_bits_keep_the_recorded_children() -> None:
    """A dir's own bits changing is recorded as an agreement: its children stay in
    the ancestor (otherwise a deletion inside would come back as a creation)."""
    a, _x, y, _found, _plan = run_sync(d755, d700, d755)
    assert a["p/c"] == FM("c", 0o644)
    gone = {"p": DM(0o700)}
    _a2, x2, y2, found2, _ = run_sync(a, gone, y)
    assert x2 == y2 == gone and not found2


@pytest.mark.parametrize("mode", TWO_WAY)
def test_portable_compares_only_the_exec_bit(mode: Mode) -> None:
    # a filesystem without modes shows 0666 on one side: no change, no conflict
    loose = tree(p=FM("1", 0o666))
    _a, _x, _y, found, plan = run_sync(f644, f644, loose, mode, portable_modes=True)
    assert not found and not plan.alpha and not plan.beta
    # content still travels; the exec bit too
    _a, x, y, found, _ = run_sync(f644, g644, loose, mode, portable_modes=True)
    assert not found and y["p"].digest == x["p"].digest
