"""The house holds: imports point one way (down the floors of ``layers.FLOORS``), no
module imports itself back through others, the environment is read in one place, and
the endpoint contract is written once (its three implementations derive from it)."""

from __future__ import annotations

import ast
import inspect
import re

from tests.layout.layers import FLOORS, cycles, graph, modules, room, violations
from yeet.contract.calls import CALLS, ENDPOINT
from yeet.contract.endpoint import BulkAgent, Endpoint, calls_of
from yeet.remote.agent.endpoint import AgentEndpoint
from yeet.remote.client.endpoint import RemoteEndpoint
from yeet.replica.endpoint import LocalEndpoint


def test_every_module_has_a_room() -> None:
    for name in modules():
        assert room(name)[0], name


def test_no_import_runs_back_up_or_sideways() -> None:
    assert violations() == []


def test_the_check_sees_a_reverse_import() -> None:
    # the pure model importing the CLI, and the replica importing the session beside it
    found = violations(
        {"yeet.model.paths": {"yeet.cli.main"}, "yeet.replica.x": {"yeet.session.sync"}}
    )
    assert len(found) == 2 and "yeet.model.paths (floor 0)" in found[0]


def test_no_import_cycles() -> None:
    assert cycles() == []
    assert cycles({"yeet.core.a": {"yeet.core.b"}, "yeet.core.b": {"yeet.core.a"}}) == [
        ["yeet.core.a", "yeet.core.b"]
    ]


def test_floors_name_real_rooms() -> None:
    names = set(modules())
    for prefix, _floor in FLOORS:
        assert any(m == prefix or m.startswith(prefix + ".") for m in names), prefix
    assert graph()  # the reader found imports at all


def test_only_the_settings_read_the_environment() -> None:
    readers = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv"):
                readers.append(f"{name}:{node.lineno}")
    assert readers and all(r.startswith("yeet.model.settings:") for r in readers), readers


def test_the_wire_table_is_the_contract() -> None:
    assert ENDPOINT.names() == tuple(c.name for c in calls_of(Endpoint) + calls_of(BulkAgent))
    assert set(CALLS) == set(ENDPOINT.names())


def test_every_check_names_a_real_argument() -> None:
    for spec in CALLS.values():
        params = ENDPOINT.named(spec.name).params
        for arg in (*spec.files, *spec.paths, *(a for a in spec.span or () if a)):
            assert arg in params, (spec.name, arg)
        assert not spec.handle or "handle" in params, spec.name
        assert not (spec.ends or spec.missing_ok) or spec.handle, spec.name


def test_the_local_endpoint_implements_every_call() -> None:
    for spec in calls_of(Endpoint):
        assert spec.name in vars(LocalEndpoint), spec.name
        mine = inspect.signature(getattr(LocalEndpoint, spec.name))
        contract = inspect.signature(getattr(Endpoint, spec.name))
        assert list(mine.parameters) == list(contract.parameters), spec.name


def test_the_agent_and_the_client_derive_from_the_contract() -> None:
    assert issubclass(RemoteEndpoint, Endpoint)
    assert issubclass(AgentEndpoint, Endpoint) and issubclass(AgentEndpoint, BulkAgent)
    for spec in calls_of(BulkAgent):  # the bulk calls run on the agent's own targets
        assert callable(getattr(AgentEndpoint, f"_{spec.name}")), spec.name
    # the calls neither overrides are carried by the contract's forwarding bodies
    inherited = {c.name for c in calls_of(Endpoint)} - set(vars(RemoteEndpoint))
    assert {"probe", "changes", "stat_paths", "trash_list", "trash_restore"} <= inherited


def test_sql_is_written_in_the_state_folder() -> None:
    statement = re.compile(
        r"^\s*(SELECT .* FROM|INSERT (OR \w+ )?INTO|DELETE FROM|UPDATE \w+ SET"
        r"|CREATE (TABLE|INDEX))"
    )
    outside = []
    for name, path in modules().items():
        if name.startswith("yeet.state"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            text = node.value if isinstance(node, ast.Constant) else None
            if isinstance(text, str) and statement.match(text):
                outside.append(f"{name}:{node.lineno}")
    assert outside == []
