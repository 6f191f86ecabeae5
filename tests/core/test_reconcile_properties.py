"""Properties of reconcile over random trees and random edits on both replicas."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.core.trees import D, F, L, Tree, X, run_sync
from yeet.core.decisions import Change, Conflict, Mode, Side
from yeet.core.trees import reconcile
from yeet.model.entries import Entry
from yeet.model.paths import is_within, join

NAMES = ("a", "b", "c")
LEAVES = (F("1"), F("2"), X("1"), L("t1"), L("t2"))


@st.composite
def subtree(draw: st.DrawFn, prefix: str = "", depth: int = 3) -> Tree:
    out: Tree = {}
    for name in NAMES:
        p = join(prefix, name)
        choice = draw(st.integers(0, 3 if depth > 0 else 2))
        if choice == 0:
            continue
        if choice == 3:
            out[p] = D
            out.update(draw(subtree(p, depth - 1)))
        else:
            out[p] = draw(st.sampled_from(LEAVES))
    return out


@st.composite
def edited(draw: st.DrawFn, base: Tree, prefix: str = "", depth: int = 3) -> Tree:
    """A random edit of ``base``'s subtree below ``prefix``."""
    out: Tree = {}
    for name in NAMES:
        p = join(prefix, name)
        old = base.get(p)
        if draw(st.integers(0, 9)) < 6:  # keep (but edit inside directories)
            if old is None:
                continue
            out[p] = old
            if old.is_dir:
                out.update(draw(edited(base, p, depth - 1)))
            continue
        choice = draw(st.integers(0, 3 if depth > 0 else 2))
        if choice == 0:
            continue
        if choice == 3:
            out[p] = D
            if old is not None and old.is_dir and draw(st.booleans()):
                out.update(draw(edited(base, p, depth - 1)))
            else:
                out.update(draw(subtree(p, depth - 1)))
        else:
            out[p] = draw(st.sampled_from(LEAVES))
    return out


@st.composite
def scenario(draw: st.DrawFn) -> tuple[Tree, Tree, Tree]:
    base = draw(subtree())
    return base, draw(edited(base)), draw(edited(base))


MODES = st.sampled_from(list(Mode))


def key(c: Change) -> tuple[str, str, str, str]:
    return (c.side, c.path, repr(c.old), repr(c.new))


@settings(max_examples=300)
@given(t=subtree(), mode=MODES)
def test_reconcile_of_identical_trees_is_empty(t: Tree, mode: Mode) -> None:
    assert reconcile(t, t, t, mode).empty


@settings(max_examples=300)
@given(t=subtree(), mode=MODES)
def test_fresh_session_between_identical_trees_only_records_ancestor(t: Tree, mode: Mode) -> None:
    plan = reconcile({}, t, t, mode)
    assert not plan.alpha and not plan.beta and not plan.conflicts


def swap(c: Change) -> Change:
    return Change(c.side.other, c.path, c.old, c.new)


def swap_conflict(c: Conflict) -> Conflict:
    return Conflict(c.path, c.ancestor, c.beta, c.alpha)


@settings(max_examples=500)
@given(s=scenario())
def test_swapping_alpha_and_beta_swaps_the_result(s: tuple[Tree, Tree, Tree]) -> None:
    anc, x, y = s
    p = reconcile(anc, x, y, Mode.TWO_WAY_SAFE)
    q = reconcile(anc, y, x, Mode.TWO_WAY_SAFE)
    assert sorted(map(key, p.alpha)) == sorted(key(swap(c)) for c in q.beta)
    assert sorted(map(key, p.beta)) == sorted(key(swap(c)) for c in q.alpha)
    assert sorted(map(repr, p.conflicts)) == sorted(repr(swap_conflict(c)) for c in q.conflicts)
    assert sorted(map(repr, p.ancestor)) == sorted(map(repr, q.ancestor))


def user_edits(anc: Tree, side: Tree) -> dict[str, Entry]:
    """Non-directory content a user created or changed on a side."""
    return {p: e for p, e in side.items() if not e.is_dir and anc.get(p) != e}


def under_conflict(path: str, conflicts: list[Conflict]) -> bool:
    return any(is_within(path, c.path) for c in conflicts)


@settings(max_examples=1000)
@given(s=scenario(), mode=MODES)
def test_random_edits_converge_or_conflict(s: tuple[Tree, Tree, Tree], mode: Mode) -> None:
    anc, x0, y0 = s
    a, x, y, conflicts, _ = run_sync(anc, x0, y0, mode)
    # Outside conflicts both sides agree (one-way-safe may keep beta-only content).
    for p in x.keys() | y.keys():
        if under_conflict(p, conflicts):
            continue
        if mode is Mode.ONE_WAY_SAFE and p not in x:
            continue
        assert x.get(p) == y.get(p), p
    if mode is Mode.ONE_WAY_REPLICA:
        assert x == x0 and y == x0
    # Alpha never changes in one-way modes.
    if mode in (Mode.ONE_WAY_SAFE, Mode.ONE_WAY_REPLICA):
        assert x == x0
    # A second round has nothing to do.
    _a2, _x2, _y2, conflicts2, plan2 = run_sync(a, x, y, mode)
    assert not plan2.alpha and not plan2.beta and not plan2.ancestor
    assert sorted(c.path for c in conflicts2) == sorted(c.path for c in conflicts)


@settings(max_examples=1000)
@given(s=scenario(), mode=MODES)
def test_no_edit_is_lost(s: tuple[Tree, Tree, Tree], mode: Mode) -> None:
    anc, x0, y0 = s
    _a, x, y, _c, _ = run_sync(anc, x0, y0, mode)
    survivors = set(x.items()) | set(y.items())
    protected = []
    if mode is not Mode.ONE_WAY_REPLICA:
        protected.append(x0)  # alpha's edits always survive
    if mode in (Mode.TWO_WAY_SAFE, Mode.ONE_WAY_SAFE):
        protected.append(y0)  # so do beta's, where beta is not overruled by design
    for side in protected:
        for item in user_edits(anc, side).items():
            assert item in survivors, item


@settings(max_examples=500)
@given(s=scenario(), mode=MODES, order=st.lists(st.sampled_from(list(Side)), max_size=30))
def test_listing_arrival_order_does_not_matter(
    s: tuple[Tree, Tree, Tree], mode: Mode, order: list[Side]
) -> None:
    anc, x, y = s
    p = reconcile(anc, x, y, mode)
    q = reconcile(anc, x, y, mode, order=order)
    for attr in ("alpha", "beta", "ancestor", "conflicts"):
        assert sorted(map(repr, getattr(p, attr))) == sorted(map(repr, getattr(q, attr)))


@settings(max_examples=500)
@given(s=scenario(), mode=MODES, order=st.lists(st.sampled_from(list(Side)), max_size=30))
def test_ancestor_digests_change_nothing_but_speed(
    s: tuple[Tree, Tree, Tree], mode: Mode, order: list[Side]
) -> None:
    anc, x, y = s
    p = reconcile(anc, x, y, mode)
    q = reconcile(anc, x, y, mode, order=order, use_digests=True)
    for attr in ("alpha", "beta", "ancestor", "conflicts"):
        assert sorted(map(repr, getattr(p, attr))) == sorted(map(repr, getattr(q, attr)))


def test_unchanged_directories_are_passed_over() -> None:
    from yeet.core.reconcile import Reconciler
    from yeet.core.trees import answer

    t = {"d": D, "d/a": F("1"), "d/e": D, "d/e/b": F("2")}
    rec = Reconciler(Mode.TWO_WAY_SAFE, None)
    asked: list[str] = []
    from yeet.core.trees import children_of, listings_of
    from yeet.model.entries import listing_digest

    digests = {p: listing_digest(children_of(t, p)) for p in ("", "d", "d/e")}
    rec = Reconciler(Mode.TWO_WAY_SAFE, digests)
    for side in Side:
        for path, entries in listings_of(t):
            rec.listing(side, path, entries)
        rec.finish(side)
    while wants := rec.wants():
        asked.extend(w.path for w in wants)
        answer(rec, t)
    assert asked == [] and rec.take() == [] and rec.done


@settings(max_examples=1000)
@given(s=scenario(), mode=MODES)
def test_scoped_reconcile_of_dirty_directories_equals_full(
    s: tuple[Tree, Tree, Tree], mode: Mode
) -> None:
    """Re-deciding only what a watcher reports dirty gives the full pass's result."""
    from yeet.core.trees import dirty_dirs, reconcile_scoped

    anc, x, y = s
    full = reconcile(anc, x, y, mode)
    scope = dirty_dirs(anc, x) | dirty_dirs(anc, y)
    scoped = reconcile_scoped(anc, x, y, mode, scope)
    for attr in ("alpha", "beta", "ancestor", "conflicts"):
        assert sorted(map(repr, getattr(full, attr))) == sorted(map(repr, getattr(scoped, attr)))


def test_scoped_reconcile_with_empty_scope_does_nothing() -> None:
    from yeet.core.trees import reconcile_scoped

    t = {"d": D, "d/a": F("1")}
    assert reconcile_scoped(t, t, t, Mode.TWO_WAY_SAFE, set()).empty
