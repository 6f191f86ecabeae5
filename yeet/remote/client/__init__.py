"""The client half of a remote endpoint, in the process that runs the session.

Import-free (see ``yeet.remote``): the public entry points are in ``connect``.
"""
