"""A written file the journal cannot place makes only the roots it may be under incomplete."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from yeet.tracer.paths import HandleResolver, generation
from yeet.tracer.service import TracerService

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="open_by_handle_at needs root")


def test_glimpse_sees_where_a_file_is_unless_it_has_other_names(tmp_path: Path) -> None:
    f = tmp_path / "one" / "f"
    f.parent.mkdir()
    f.write_bytes(b"x")
    st = f.stat()
    r = HandleResolver()
    assert r.learn(str(f), st.st_dev)
    gen = generation(str(f)) or 0
    assert r.glimpse(st.st_dev, st.st_ino, gen) == str(f)
    os.link(f, tmp_path / "other-name")  # a hard link elsewhere: any name may be in a root
    assert r.glimpse(st.st_dev, st.st_ino, gen) is None
    os.unlink(tmp_path / "other-name")
    f.unlink()
    assert r.glimpse(st.st_dev, st.st_ino, gen) is None


def test_only_roots_the_file_may_lie_under_are_held_back() -> None:
    may_hold = TracerService._may_hold
    assert may_hold(set(), ["/srv/a"])  # never seen anywhere: it could be anywhere
    assert may_hold({"/srv/a/x/tmp123"}, ["/srv/a"])
    assert not may_hold({"/var/tmp/build/o.tmp"}, ["/srv/a"])
    assert may_hold({"/var/tmp/o.tmp", "/srv/a/o"}, ["/srv/a", "/srv/b"])  # it moved in
    assert not may_hold({"/srv/ab/o"}, ["/srv/a"])  # a sibling with a longer name
