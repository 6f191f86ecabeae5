"""The agent that yeet uploads to a host that has none: a zipapp of the running yeet.

Invariant owned here: the archive holds only pure-Python source (yeet itself,
``pathspec``, ``inotify_simple`` and the pure-Python ``msgpack`` fallback), is byte-for-byte
deterministic for the same sources (sorted names, fixed timestamps), and is
named by the hash of its content, so a cached copy on a remote host is used
exactly when it is the same code, and a half-uploaded copy is never used. On
its first start the agent unpacks and byte-compiles itself next to the
archive (``lib-<cache tag>/``, made aside and renamed), so later starts import
compiled modules instead of compiling every module from the zip again.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import zipfile
from functools import lru_cache
from pathlib import Path

from yeet import __version__

MAIN = """\
import sys

if sys.version_info < (3, 9):
    sys.stderr.write(
        "yeet agent: needs Python 3.9 or newer, this is %s\\n" % sys.version.split()[0]
    )
    sys.exit(1)

import os


def _unpacked():
    # The archive unpacked and byte-compiled next to it, once per python version:
    # modules imported from a zip are compiled again at every start (no .pyc cache).
    # A half-made copy is never used (made aside, then renamed).
    archive = os.path.abspath(sys.argv[0])
    lib = os.path.join(os.path.dirname(archive), "lib-%s" % sys.implementation.cache_tag)
    if os.path.isdir(lib):
        return lib
    tmp = "%s.tmp-%d" % (lib, os.getpid())
    try:
        import compileall
        import shutil
        import zipfile

        with zipfile.ZipFile(archive) as zf:
            zf.extractall(tmp)
        compileall.compile_dir(tmp, quiet=2, workers=1)
        try:
            os.rename(tmp, lib)
        except OSError:  # another agent made it first
            shutil.rmtree(tmp, ignore_errors=True)
        return lib if os.path.isdir(lib) else None
    except Exception:  # read-only cache, full disk: run from the archive
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
        return None


_lib = _unpacked() if os.path.isfile(sys.argv[0]) else None
if _lib is not None:
    sys.path.insert(0, _lib)

from yeet.remote.agent.main import main

sys.exit(main(sys.argv[2:] if sys.argv[1:2] == ["agent"] else sys.argv[1:]))
"""

_MSGPACK_FILES = ("__init__.py", "exceptions.py", "ext.py", "fallback.py")


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise RuntimeError(f"cannot build the yeet agent: package {name!r} is not installed")
    return Path(spec.origin).parent


def _sources() -> list[tuple[str, bytes]]:
    files: list[tuple[str, bytes]] = []
    for name in ("yeet", "pathspec"):
        base = _package_dir(name)
        for path in sorted(base.rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            files.append((f"{name}/{path.relative_to(base).as_posix()}", path.read_bytes()))
    base = _package_dir("msgpack")
    for fname in _MSGPACK_FILES:
        files.append((f"msgpack/{fname}", (base / fname).read_bytes()))
    spec = importlib.util.find_spec("inotify_simple")  # one module, for --watch on Linux
    if spec is not None and spec.origin is not None:
        files.append(("inotify_simple.py", Path(spec.origin).read_bytes()))
    files.append(("__main__.py", MAIN.encode()))
    return sorted(files)


@lru_cache(maxsize=1)
def build() -> tuple[bytes, str]:
    """``(archive bytes, content tag)``; the tag names the remote cache directory."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in _sources():
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)
    data = buf.getvalue()
    tag = f"{__version__}-{hashlib.blake2b(data, digest_size=8).hexdigest()}"
    return data, tag
