"""Tests that load the BPF tracer share the kernel (its programs see every write
on the filesystem): they run one after another on one xdist worker
(``--dist loadgroup``, see scripts/test), so one test's write storm is not
another's noise."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from yeet.model import settings

KERNEL_TESTS = ("tests/tracer/", "test_journal.py", "test_journal_remote.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        path = item.nodeid.split("::")[0]
        if path.startswith(KERNEL_TESTS[0]) or path.endswith(KERNEL_TESTS[1:]):
            item.add_marker(pytest.mark.xdist_group("kernel"))


@pytest.fixture(autouse=True)
def _environment_read_afresh() -> Iterator[None]:
    """yeet reads its environment once (``yeet.model.settings``): a test that changes
    it in-process reads it again (``settings.reload()``); afterwards it is read from
    the restored environment, so nothing leaks into the next test."""
    yield
    settings.reload()
