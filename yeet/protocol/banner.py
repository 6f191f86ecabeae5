"""The agent's magic line, and finding it behind whatever a remote shell prints.

Invariant owned here: before the banner, the client reads at most
``NOISE_LIMIT`` bytes of noise (motd, rc files, errors) and never takes any of
it for protocol; the banner is a line starting with ``YEET-AGENT/`` at the
beginning of a line, of at most ``LINE_LIMIT`` bytes; a protocol number other
than ours is an error that names both versions. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from yeet.model.errors import ProtocolError

PROTOCOL = 1
MAGIC = b"YEET-AGENT/"
NOISE_LIMIT = 64 << 10
LINE_LIMIT = 1024


@dataclass(frozen=True)
class Banner:
    protocol: int
    version: str
    caps: tuple[str, ...]


def banner_line(version: str, caps: Sequence[str] = ()) -> bytes:
    text = f"YEET-AGENT/{PROTOCOL} {version} {','.join(caps) or '-'}\n"
    return text.encode()


def _excerpt(noise: bytes) -> str:
    text = noise.decode("utf-8", "replace").strip()
    if len(text) > 400:
        text = text[:200] + " ... " + text[-200:]
    return text or "(nothing)"


class BannerScanner:
    """Feed bytes until ``banner`` is set; ``rest`` then holds the bytes after it."""

    def __init__(self, version: str, noise_limit: int = NOISE_LIMIT) -> None:
        self.version = version
        self.noise_limit = noise_limit
        self._buf = b""
        self.banner: Banner | None = None
        self.rest = b""

    def feed(self, data: bytes) -> Banner | None:
        if self.banner is not None:
            raise ProtocolError("banner already received", local=True)
        self._buf += data
        buf = self._buf
        if buf.startswith(MAGIC):
            start = 0
        else:
            at = buf.find(b"\n" + MAGIC)
            start = at + 1 if at >= 0 else -1
        if start < 0:
            # Keep scanning, but only within the noise budget.
            if len(buf) > self.noise_limit + len(MAGIC):
                raise self._no_banner()
            return None
        if start > self.noise_limit:
            raise self._no_banner()
        end = buf.find(b"\n", start)
        if end < 0:
            if len(buf) - start > LINE_LIMIT:
                raise ProtocolError("the agent's banner line is too long")
            return None
        if end - start > LINE_LIMIT:
            raise ProtocolError("the agent's banner line is too long")
        self.banner = self._parse(buf[start:end])
        self.rest = buf[end + 1 :]
        self._buf = b""
        return self.banner

    def noise(self) -> str:
        """What the remote printed so far (for an error message)."""
        return _excerpt(self._buf)

    def eof_error(self) -> ProtocolError:
        return ProtocolError(
            "the remote end closed before a yeet agent started; it printed: " + _excerpt(self._buf),
            hint="check that python3 (3.9 or newer) runs on the remote host",
        )

    def _no_banner(self) -> ProtocolError:
        return ProtocolError(
            f"no yeet agent banner within {self.noise_limit} bytes of remote output; it printed: "
            + _excerpt(self._buf[: self.noise_limit]),
            hint="make the remote shell quiet for non-interactive sessions (no output in rc files)",
        )

    def _parse(self, line: bytes) -> Banner:
        try:
            text = line.decode("ascii").rstrip("\r")
            head, version, caps = text.split(" ")
            proto = int(head[len(MAGIC) :])
        except (UnicodeDecodeError, ValueError):
            raise ProtocolError(f"malformed agent banner: {_excerpt(line)}") from None
        if proto != PROTOCOL:
            raise ProtocolError(
                f"the remote yeet agent speaks protocol {proto} (yeet {version}), "
                f"this yeet speaks protocol {PROTOCOL} (yeet {self.version})",
                hint="use the same yeet version on both ends (yeet uploads its own agent "
                "unless one of its version is found)",
            )
        return Banner(proto, version, tuple(c for c in caps.split(",") if c and c != "-"))
