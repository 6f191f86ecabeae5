"""What a session is: its settings, stored with it, defaults from ``yeet.model.settings``.

Invariant owned here: a session's settings are built in one place (``Settings``, or
``from_meta`` from what its store holds: a value it does not hold is the default),
stored in one place (``meta``), and an endpoint's configuration is derived from them
(``endpoint_config``), so a setting means the same thing everywhere it is used.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from yeet.contract.values import EndpointConfig
from yeet.core.decisions import Mode, Side
from yeet.model import settings as defaults

DEFAULT_MODE = Mode(defaults.MODE)


@dataclass(frozen=True)
class Settings:
    """What a session is: stored at creation, updated by explicit options."""

    name: str
    alpha: str
    beta: str
    mode: Mode = DEFAULT_MODE
    ignores: tuple[str, ...] = ()
    ignore_vcs: bool = False
    symlinks: str = defaults.SYMLINKS
    trash_days: float = defaults.TRASH_DAYS
    digest: str = defaults.DIGEST
    permissions: str = defaults.PERMISSIONS
    owner: bool = False
    times: bool = False
    max_delete: str = defaults.MAX_DELETE

    @classmethod
    def from_meta(cls, name: str, alpha: str, beta: str, get: Callable[[str], Any]) -> Settings:
        """The settings a session's store holds (``get(key)``: None when it holds none)."""
        values: dict[str, Any] = {}
        for f in fields(cls)[3:]:
            raw = get(f.name)
            if raw is None:
                continue
            if f.name == "mode":
                values[f.name] = Mode(raw)
            elif f.name == "ignores":
                values[f.name] = tuple(raw)
            elif f.name in ("ignore_vcs", "owner", "times"):
                values[f.name] = bool(raw)
            elif f.name == "trash_days":
                values[f.name] = float(raw)
            else:
                values[f.name] = str(raw)
        return cls(name, alpha, beta, **values)

    def meta(self) -> dict[str, Any]:
        """The settings as the store keeps them (besides the names of the roots)."""
        out: dict[str, Any] = {}
        for f in fields(self)[3:]:
            value = getattr(self, f.name)
            out[f.name] = (
                value.value if isinstance(value, Mode) else list(value)
                if isinstance(value, tuple) else value
            )  # fmt: skip
        return out

    def endpoint_config(self, side: Side, root: str, create_root: bool) -> EndpointConfig:
        return EndpointConfig(
            session=self.name,
            side=side.value,
            root=root,
            ignores=self.ignores,
            ignore_vcs=self.ignore_vcs,
            symlinks=self.symlinks,
            create_root=create_root,
            digest=self.digest,
            trash_days=self.trash_days,
            permissions=self.permissions,
            owner=self.owner,
            times=self.times,
        )
