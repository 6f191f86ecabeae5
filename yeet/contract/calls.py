"""The endpoint calls on the wire: the table, derived from the contract.

Invariant owned here: the table is exactly the calls that ``yeet.contract.endpoint``
defines (``Endpoint``, then ``BulkAgent``), in their order, with their own types; a new
call there is a new entry here, with nothing to add.
"""

from __future__ import annotations

from yeet.contract.endpoint import BulkAgent, Call, Endpoint, calls_of
from yeet.protocol.registry import Registry

CALLS: dict[str, Call] = {c.name: c for c in calls_of(Endpoint) + calls_of(BulkAgent)}
"""Every call by name, with what the wire and the agent must know of it."""

ENDPOINT = Registry(
    [(Endpoint, c.name) for c in calls_of(Endpoint)]
    + [(BulkAgent, c.name) for c in calls_of(BulkAgent)]
)
