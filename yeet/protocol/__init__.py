"""The wire protocol between yeet and a remote ``yeet agent``: pure, sans-IO.

Nothing here does I/O: callers feed received bytes in and get events out, and
ask for the bytes to send (h11's "bring your own I/O"). Modules:

* ``banner``: the magic line that starts an agent's output, found behind shell noise.
* ``frames``: length-prefixed frames with a hard size limit.
* ``codec``: per-frame compression (zstd, zlib, none), bounded decompression.
* ``methods``: the RPC method table, derived from the ``Endpoint`` protocol.
* ``connection``: the per-side state machine (client and agent).
* ``annotations``: evaluating string annotations on Python 3.9+.
"""
