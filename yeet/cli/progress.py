"""Live progress on a terminal: files, bytes, rate, ETA, the large files in flight.

Invariant owned here: nothing is drawn unless stderr is a terminal and the user
did not ask for quiet; drawing never blocks the work (it runs on the progress
tick the session already has) and the last frame is cleared at the end.
"""

from __future__ import annotations

import sys
from typing import Any

from yeet.model.units import size_text


def _eta(seconds: float) -> str:
    if seconds <= 0 or seconds > 99 * 3600:
        return "-"
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """Renders the session's progress dictionaries with rich, on stderr."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self._live: Any = None

    def __call__(self, progress: dict[str, Any]) -> None:
        if not self.enabled:
            return
        if self._live is None:
            from rich.console import Console
            from rich.live import Live

            self._live = Live(console=Console(stderr=True), transient=True, auto_refresh=False)
            self._live.start()
        self._live.update(self._render(progress), refresh=True)

    def _render(self, p: dict[str, Any]) -> Any:
        from rich.progress_bar import ProgressBar
        from rich.table import Table

        applied = p["applied"]
        files = applied["beta"]["files"] + applied["alpha"]["files"]
        size = applied["beta"]["bytes"] + applied["alpha"]["bytes"]
        rate = float(p.get("rate", 0.0))
        queued_bytes = int(p.get("queued_bytes", 0))
        t = Table.grid(padding=(0, 1))
        t.add_column(justify="right", style="bold")
        t.add_column()
        scanned = p["scanned"]
        t.add_row("scanned", f"alpha {scanned['alpha']} files, beta {scanned['beta']} files")
        t.add_row(
            "applied",
            f"{files} files ({size_text(size)}) at {size_text(rate)}/s, "
            f"ETA {_eta(queued_bytes / rate if rate else 0)}",
        )
        t.add_row(
            "queued",
            f"{p['queued']} items ({size_text(queued_bytes)}), "
            f"{p['deferred']} deletions waiting for the scans",
        )
        for path, sent, total in p.get("uploads", [])[:4]:
            bar = ProgressBar(total=max(total, 1), completed=sent, width=30)
            row = Table.grid(padding=(0, 1))
            row.add_row(bar, f"{size_text(sent)}/{size_text(total)} {path}")
            t.add_row("large", row)
        return t

    def done(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
