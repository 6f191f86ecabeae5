"""What runs next to a root: in the client for a local root, in ``yeet agent`` for a
remote one. Scanning (``scan``), writing, trash and in-place updates (``write``),
watching (``watch``), filesystem helpers (``fs``), and the ``LocalEndpoint`` that
serves the contract over them. Imports ``model``, ``core``, ``delta``, ``contract``
and ``state``; never the session, the remote side or the CLI. Its import closure
must run on a bare ``python3`` 3.9 (checked by ``tests/test_layout.py``).
"""
