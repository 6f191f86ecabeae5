"""The endpoint contract, defined once: the calls a session makes to one side of it
(``endpoint``), their values, and the wire table derived from them (``calls``).
Runs in every process (the agent's included); imports only ``model``, ``delta`` and
``protocol``.
"""
