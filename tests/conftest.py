"""Tests that load the BPF tracer share the kernel (its programs see every write
on the filesystem): they run one after another on one xdist worker
(``--dist loadgroup``, see scripts/test), so one test's write storm is not
another's noise."""

from __future__ import annotations

import pytest

KERNEL_TESTS = ("tests/tracer/", "test_journal.py", "test_journal_remote.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        path = item.nodeid.split("::")[0]
        if path.startswith(KERNEL_TESTS[0]) or path.endswith(KERNEL_TESTS[1:]):
            item.add_marker(pytest.mark.xdist_group("kernel"))
