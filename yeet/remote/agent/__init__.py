"""``yeet agent``: a replica served over stdin/stdout, on the host that holds the root.

Import-free (see ``yeet.remote``): ``main`` installs the stand-ins first.
"""
