"""Every session option the command line can give is a setting the session stores."""

from __future__ import annotations

from dataclasses import fields

from yeet.cli.runner import Overrides
from yeet.core.decisions import Mode
from yeet.session.settings import Settings


def test_every_override_is_a_stored_setting() -> None:
    given = {f.name for f in fields(Overrides)} - {"via"}  # (via: stored apart)
    assert given <= {f.name for f in fields(Settings)}


def test_settings_round_trip_through_the_store_meta() -> None:
    s = Settings("n", "/a", "/b", Mode.ONE_WAY_REPLICA, ("*.o",), True, "raw", 7.0,
                 "blake2b", "portable", True, True, "none")  # fmt: skip
    stored = s.meta()
    assert Settings.from_meta("n", "/a", "/b", stored.get) == s
    assert Settings.from_meta("n", "/a", "/b", {}.get) == Settings("n", "/a", "/b")
