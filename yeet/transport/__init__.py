"""Reaching endpoints that live in another process or on another host.

Deliberately import-free: the agent (``yeet.transport.agent``) is imported on a
bare remote ``python3`` before the ``msgspec`` stand-in is installed, so this
package's ``__init__`` must not import anything that needs it. The public entry
points are in ``yeet.transport.connect``.
"""
