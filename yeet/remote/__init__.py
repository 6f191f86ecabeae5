"""The remote side of an endpoint: the client (``client``: SSH, RPC, the bulk channel,
the agent's upload) and the agent (``agent``: ``yeet agent`` serving a replica), plus
what both ends share (``faults``).

Deliberately import-free: the agent is imported on a bare remote ``python3`` before the
``msgspec`` stand-in is installed, so this package's ``__init__`` must not import
anything that needs it.
"""
