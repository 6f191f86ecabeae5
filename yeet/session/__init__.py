"""The client's orchestration of a session: passes of scan, reconcile and transfer
(``sync``), the executor that carries out changes, deltas, intents, the change
journals' scope. Speaks to both sides only through ``yeet.contract``; never imports
the replica side, the remote side or the CLI.
"""
