"""Driving the real ``yeet`` command on real directories, as a user would."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent  # run this checkout's yeet, whatever is installed


@dataclass
class Result:
    rc: int
    out: str
    err: str

    def lines(self) -> list[list[str]]:
        return [line.split("\t") for line in self.out.splitlines() if line]


@dataclass
class Yeet:
    """Runs ``python -m yeet`` with its own state directory."""

    home: Path
    extra_env: dict[str, str] | None = None
    # local root -> how the CLI names it (``box:/path``: the same directory reached
    # through a real sshd), so one scenario runs with local and remote endpoints
    remote: dict[str, str] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["XDG_STATE_HOME"] = str(self.home / "state")
        env["HOME"] = str(self.home)
        env.pop("YEET_DEBUG", None)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        if self.extra_env:
            env.update(self.extra_env)
        return env

    def __call__(self, *args: str, rc: int | None = None, timeout: float = 300) -> Result:
        proc = subprocess.run(
            [sys.executable, "-m", "yeet", *(self.remote.get(a, a) for a in args)],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        result = Result(proc.returncode, proc.stdout, proc.stderr)
        if rc is not None:
            assert result.rc == rc, (
                f"yeet {' '.join(args)} -> {result.rc}\n{result.out}\n{result.err}"
            )
        return result

    def start(
        self, *args: str, output: bool = True, new_session: bool = False
    ) -> subprocess.Popen[str]:
        """``yeet ARGS`` in the background, roots named as ``__call__`` names them;
        its output piped as text (``output``) or dropped; ``new_session``: in a process
        group of its own (a test's kill takes its local agents too)."""
        pipe = subprocess.PIPE if output else subprocess.DEVNULL
        return subprocess.Popen(
            [sys.executable, "-m", "yeet", *(self.remote.get(a, a) for a in args)],
            env=self.env,
            stdout=pipe,
            stderr=pipe,
            text=True,
            start_new_session=new_session,
        )

    def names(self, *roots: Path) -> list[str]:
        """How the CLI names these roots (``box:/path`` for a remote one)."""
        return [self.remote.get(str(r), str(r)) for r in roots]

    def sync(self, alpha: Path, beta: Path, *opts: str, rc: int | None = 0) -> Result:
        return self("sync", "--quiet", str(alpha), str(beta), "--name", "s", *opts, rc=rc)

    def session_dir(self, name: str = "s") -> Path:
        return self.home / "state" / "yeet" / "sessions" / name


def write(root: Path, rel: str, content: str | bytes = "", executable: bool = False) -> Path:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    data = content.encode() if isinstance(content, str) else content
    p.write_bytes(data)
    if executable:
        p.chmod(0o755)
    return p


Tree = dict[str, object]
"""relpath -> ``(bytes, executable)`` | ``"dir"`` | ``("link", target)`` | ``"special"``"""


def tree(root: Path) -> Tree:
    """Everything below ``root``, exactly (symlinks are not followed)."""
    out: Tree = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = Path(dirpath) / name
            rel = full.relative_to(root).as_posix()
            st = full.lstat()
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(full))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = "dir"
            elif stat.S_ISREG(st.st_mode):
                out[rel] = (full.read_bytes(), bool(st.st_mode & 0o100))
            else:
                out[rel] = "special"
    return out


def snapshot(root: Path) -> dict[str, str]:
    """``tree`` as text: ``file:<content>[+x]``, ``dir``, ``link:<target>``, ``special``."""
    out: dict[str, str] = {}
    for rel, what in tree(root).items():
        if isinstance(what, tuple) and what[0] == "link":
            out[rel] = f"link:{what[1]}"
        elif isinstance(what, tuple):
            data, executable = what
            assert isinstance(data, bytes)
            out[rel] = f"file:{data.decode(errors='replace')}{'+x' if executable else ''}"
        else:
            out[rel] = str(what)
    return out
