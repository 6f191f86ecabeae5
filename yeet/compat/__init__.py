"""Stand-ins for compiled extras on a bare remote ``python3``.

Invariant owned here: the stand-ins are installed only where the real package
cannot be imported, so a machine that has the real thing always uses it.
"""

from __future__ import annotations

import sys


def install_msgspec_fallback() -> bool:
    """Make ``import msgspec`` work without msgspec; True if the stand-in was installed."""
    try:
        import msgspec  # noqa: F401
    except ImportError:
        pass
    else:
        return False
    from yeet.compat import msgspec_lite
    from yeet.compat.msgspec_lite import msgpack as lite_msgpack
    from yeet.compat.msgspec_lite import structs as lite_structs

    sys.modules["msgspec"] = msgspec_lite
    sys.modules["msgspec.msgpack"] = lite_msgpack
    sys.modules["msgspec.structs"] = lite_structs
    return True
