"""The bare remote ``python3`` (3.9+) runs the agent's import closure: it is computed
from the code, checked against Python 3.9 by vermin, and ruff checks the same files
with a 3.9 target (pyproject.toml holds exactly the computed list)."""

from __future__ import annotations

import subprocess
import sys
import tomllib

from tests.layout.closure import REPO, closure, files, pyproject_block


def test_the_closure_reaches_what_the_agent_runs() -> None:
    mods = closure()
    for must in (
        "yeet.remote.agent.serve",
        "yeet.replica.endpoint",
        "yeet.replica.write.inplace",
        "yeet.delta.chunking",
        "yeet.compat.msgspec_lite",
    ):
        assert must in mods
    for never in ("yeet.session.sync", "yeet.cli.main", "yeet.remote.client.ssh"):
        assert never not in mods


def test_the_closure_runs_on_python_3_9() -> None:
    run = subprocess.run(
        [sys.executable, "-c", "import sys; from vermin.main import main; sys.exit(main())",
         "--target=3.9-", "--no-tips", "--violations",
         "--eval-annotations", "--no-parse-comments", *files()],
        cwd=REPO, capture_output=True, text=True,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr


def test_ruff_checks_the_closure_with_a_3_9_target() -> None:
    doc = tomllib.loads((REPO / "pyproject.toml").read_text())
    declared = doc["tool"]["ruff"]["per-file-target-version"]
    wanted = tomllib.loads(pyproject_block())["tool"]["ruff"]["per-file-target-version"]
    assert declared == wanted, "run `python3 -m tests.layout.closure --write`"
