"""Address parsing: one meaning per address (git's and OpenSSH's), canonical text that
reads back to the same place, and the old meaning of stored texts."""

from __future__ import annotations

import pytest

from yeet.model.address import Location, legacy_canonical, migrate, parse
from yeet.model.errors import UsageError

CASES = [
    # typed, location, canonical
    ("ssh://me@h:2222/srv/p", Location("/srv/p", "h", "me", 2222), "ssh://me@h:2222/srv/p"),
    ("ssh://h/srv/p", Location("/srv/p", "h"), "h:/srv/p"),
    ("ssh://h//srv/p", Location("/srv/p", "h"), "h:/srv/p"),
    ("ssh://h/~/x", Location("x", "h"), "h:x"),
    ("ssh://h:22/~/x", Location("x", "h", None, 22), "ssh://h:22/~/x"),
    ("ssh://h:22/~", Location(".", "h", None, 22), "ssh://h:22/~"),
    ("ssh://h:9/~bob/x", Location("~bob/x", "h", None, 9), "ssh://h:9/~bob/x"),
    ("ssh://h/", Location("/", "h"), "h:/"),
    ("h:rel", Location("rel", "h"), "h:rel"),
    ("h:/abs", Location("/abs", "h"), "h:/abs"),
    ("h:", Location(".", "h"), "h:."),
    ("u@[::1]:x", Location("x", "::1", "u"), "u@[::1]:x"),
    ("ssh://[::1]:22/a%20b?c#d", Location("/a b?c#d", "::1", None, 22), None),
    ("/local/x", Location("/local/x"), "/local/x"),
]


@pytest.mark.parametrize(("typed", "location", "canonical"), CASES)
def test_parse_and_canonical_round_trip(
    typed: str, location: Location, canonical: str | None
) -> None:
    got = parse(typed)
    assert got == location
    if canonical is not None:
        assert got.canonical() == canonical
    assert parse(got.canonical()) == got  # the printed form reads back to the same place


@pytest.mark.parametrize("typed", ["ssh://h", "ssh://h:x/a", "ssh:///a", ""])
def test_bad_addresses(typed: str) -> None:
    with pytest.raises(UsageError):
        parse(typed)


def test_stored_texts_keep_their_old_meaning() -> None:
    assert migrate("ssh://h:22/srv/p") == "ssh://h:22/~/srv/p"  # was home-relative
    assert migrate("ssh://h:22//srv/p") == "ssh://h:22/srv/p"  # was absolute
    assert migrate("ssh://u@h:22/.") == "ssh://u@h:22/~"
    assert migrate("ssh://h:22/~/x") == "ssh://h:22/~/x"
    assert migrate("box:x") == "box:x" and migrate("/local") == "/local"
    assert legacy_canonical("ssh://box/srv/p") == "box:srv/p"
    assert legacy_canonical("ssh://box:2/srv/p") == "ssh://box:2/srv/p"
