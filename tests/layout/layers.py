"""The house: which folder (role) sits on which floor, read from the code's imports.

Rule: a module imports only modules of its own room (its role's folder, acyclic within
it) or of rooms on lower floors; never of a room beside it or above it.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

FLOORS: tuple[tuple[str, int], ...] = (
    # (room: a package or module, floor), the lowest floor first
    ("yeet.model", 0),  # shared values: entries, paths, digests, addresses, errors
    ("yeet.core", 1),  # pure: reconcile, guard, scheduling
    ("yeet.delta", 1),  # pure: chunking, signatures, deltas
    ("yeet.protocol", 1),  # pure: the wire protocol
    ("yeet.compat", 1),  # stand-ins for a bare python3
    ("yeet.contract", 2),  # the endpoint calls, once
    ("yeet.state", 3),  # SQLite: the schema and every table's SQL
    ("yeet.replica", 4),  # next to a root (client or agent)
    ("yeet.tracer", 4),  # the change journal's service
    ("yeet.remote.faults", 4),  # what both ends of a remote endpoint share
    ("yeet.session", 5),  # the client's orchestration
    ("yeet.remote.agent", 5),  # the agent
    ("yeet.remote.client", 5),  # the client half of a remote endpoint
    ("yeet.remote", 5),  # (the package itself)
    ("yeet.cli", 6),  # commands
    ("yeet.__main__", 7),
    ("yeet", 0),  # the package itself (its version)
)


def room(module: str) -> tuple[str, int]:
    for name, floor in FLOORS:
        if module == name or module.startswith(name + "."):
            return name, floor
    raise KeyError(f"{module} is in no room of the house (add it to FLOORS)")


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted((REPO / "yeet").rglob("*.py")):
        rel = path.relative_to(REPO).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def statements(name: str, path: Path) -> list[tuple[str, set[str]]]:
    """Each import statement of module ``name`` (anywhere in it, functions included):
    the module it names and what a ``from`` import takes from it (``module.name``)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: list[tuple[str, set[str]]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.extend((a.name, set()) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.append((mod, {f"{mod}.{a.name}" for a in node.names}))
    return out


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Modules of the tree that ``name`` imports."""
    found: set[str] = set()
    for mod, taken in statements(name, path):
        found.update(taken & known or {mod})
    return {m for m in found if m in known and m != name}


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imports(name, path, known) for name, path in mods.items()}


def violations(imports_of: dict[str, set[str]] | None = None) -> list[str]:
    """Imports that run back up, or sideways into another room."""
    out = []
    for src, targets in sorted((graph() if imports_of is None else imports_of).items()):
        src_room, src_floor = room(src)
        for dst in sorted(targets):
            dst_room, dst_floor = room(dst)
            if dst_room == src_room or dst_floor < src_floor:
                continue
            out.append(f"{src} (floor {src_floor}) imports {dst} (floor {dst_floor})")
    return out


def cycles(imports_of: dict[str, set[str]] | None = None) -> list[list[str]]:
    """Import cycles between modules (strongly connected groups of more than one)."""
    g = graph() if imports_of is None else imports_of
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


if __name__ == "__main__":
    for line in violations():
        print(line)
    for group in cycles():
        print("cycle:", " <-> ".join(group))
