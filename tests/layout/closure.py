"""What the bare remote ``python3`` imports: the import closure of ``yeet agent``.

Computed from the code (every ``import`` statement, also those inside functions, that
names a module of this tree), starting at the agent's entry point. ``python3 -m
tests.layout.closure`` prints it as the ``[tool.ruff.per-file-target-version]`` block
that pyproject.toml must hold (``--write`` puts it there; ``tests/layout/test_closure.py``
checks that it does).
"""

from __future__ import annotations

import sys
from pathlib import Path

from tests.layout.layers import statements

REPO = Path(__file__).resolve().parents[2]
ENTRY = "yeet.remote.agent.main"
# imported by the agent only where the optional part is present (checked on import):
# the tracer needs root and libbpf, which a bare remote does not have
OPTIONAL = ("yeet.tracer",)


def module_file(name: str) -> Path | None:
    base = REPO / Path(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imports(name: str, path: Path) -> set[str]:
    found: set[str] = set()
    for mod, taken in statements(name, path):
        found |= {mod} | taken
    out = set()
    for mod in found:
        if mod.startswith("yeet") and module_file(mod) is not None:
            out.add(mod)
            parts = mod.split(".")
            for i in range(1, len(parts)):  # importing a.b.c runs a/__init__ and a/b/__init__
                parent = ".".join(parts[:i])
                if module_file(parent) is not None:
                    out.add(parent)
    return out


def closure(entry: str = ENTRY) -> list[str]:
    """Every module of this tree that ``entry`` can import, sorted."""
    seen: set[str] = set()
    todo = [entry, "yeet"]
    while todo:
        name = todo.pop()
        if name in seen or name.startswith(OPTIONAL):
            continue
        seen.add(name)
        path = module_file(name)
        assert path is not None, name
        todo.extend(_imports(name, path) - seen)
    return sorted(seen)


def files(entry: str = ENTRY) -> list[str]:
    out = []
    for name in closure(entry):
        path = module_file(name)
        assert path is not None
        out.append(path.relative_to(REPO).as_posix())
    return sorted(out)


def pyproject_block() -> str:
    lines = ["[tool.ruff.per-file-target-version]"]
    lines += [f'"{f}" = "py39"' for f in files()]
    lines.append('"tests/protocol/fuzz_driver.py" = "py39"')
    return "\n".join(lines)


def write_pyproject() -> None:
    """Replace the block in pyproject.toml by the computed one."""
    path = REPO / "pyproject.toml"
    text = path.read_text()
    head = "[tool.ruff.per-file-target-version]\n"
    start = text.index(head)
    end = start + len(head)
    while end < len(text) and text[end] == '"':
        end = text.index("\n", end) + 1
    path.write_text(text[:start] + pyproject_block() + "\n" + text[end:])


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        write_pyproject()
    else:
        sys.stdout.write(pyproject_block() + "\n")
