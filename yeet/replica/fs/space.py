"""A full filesystem, said so that the user can act: how much the file needs, how much is free.

Invariants owned here:

* An ``ENOSPC``/``EDQUOT`` raised while writing received content becomes a
  ``NoSpace`` (still an ``OSError`` with the same errno, so it is the ordinary
  per-path failure of that file) whose message gives the space the file needs
  and, when ``statvfs`` can tell, what is free on that filesystem and which
  directory it is (the trash may be on another filesystem than the root).
* A large file is refused before anything of it is written when it cannot fit
  besides the uploads already in progress (``check_room``).
"""

from __future__ import annotations

import errno
import os

from yeet.model.units import size_text

FULL = (errno.ENOSPC, errno.EDQUOT)


class NoSpace(OSError):
    """Out of space (or quota) while writing a file's content."""


def check_room(fd: int, needs: int, held: int, pending: int) -> None:
    """Raise ``NoSpace`` unless the filesystem of ``fd`` has room for a file of
    ``needs`` bytes, ``held`` of which it holds already (an earlier attempt's),
    besides the ``pending`` bytes that uploads in progress still need."""
    try:
        st = os.fstatvfs(fd)
    except OSError:
        return  # cannot tell: writing will
    room = st.f_bavail * st.f_frsize - pending
    if needs - held > room:
        raise NoSpace(
            errno.ENOSPC,
            f"no space left on device: the file needs {size_text(needs)}, "
            f"{size_text(max(0, room + held))} free",
        )


def is_full(err: BaseException) -> bool:
    return isinstance(err, OSError) and err.errno in FULL


def allocated(fd: int) -> int:
    """Bytes the open file ``fd`` occupies on its filesystem (0 if unknown)."""
    try:
        return os.fstat(fd).st_blocks * 512
    except OSError:
        return 0


def explain(
    err: OSError, fd: int | str, needs: int | None, where: str = "", held: int = 0
) -> OSError:
    """``err`` itself unless it says the filesystem of ``fd`` (or of a path) is full; then a
    ``NoSpace`` saying that the file needs ``needs`` bytes (if given), what is free
    there, and ``where`` (e.g. "in /x/trash", when that is not the root). ``held``:
    bytes of the failed file's own temporary copy, which is removed next (they count
    as free: the user compares that figure with what the file needs)."""
    if err.errno not in FULL or isinstance(err, NoSpace):
        return err
    text = "no space left on device" if err.errno == errno.ENOSPC else "disk quota exceeded"
    if needs is not None:
        text += f": the file needs {size_text(needs)}"
    try:
        st = os.statvfs(fd)
    except (OSError, ValueError):
        st = None
    if st is not None:
        text += f", {size_text(st.f_bavail * st.f_frsize + held)} free"
    if where:
        text += f" {where}"
    return NoSpace(err.errno, text)
