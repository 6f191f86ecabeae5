"""The ``yeet`` command. Thin: parse, call one function, map errors to exit codes.

Invariant owned here: every ``YeetError`` is caught once, here, printed as
``yeet: error: ...`` (plus a hint) on stderr, and turned into its exit code;
Ctrl-C exits 130. Exit code 2 is the CLI library's usage error, also for every
numeric option out of its range (never NaN or infinite). Any other exception is
a bug: one line ``yeet: internal error: ...`` saying what to report, exit 3,
and the traceback only with ``YEET_DEBUG=1``. (A closed output pipe is the CLI
library's: a quiet exit 1.)
"""

from __future__ import annotations

import math
import os
import sys
import traceback
from collections.abc import Callable
from typing import Annotated, TypeVar

import typer

from yeet import __version__
from yeet.core.decisions import Mode
from yeet.model.errors import YeetError
from yeet.model.settings import PERMISSION_CHOICES, SYMLINK_CHOICES, environment

MAX_ID = (1 << 63) - 1
N = TypeVar("N", int, float)


def in_range(
    low: float, *, above: bool = False, high: float | None = None, what: str = "number"
) -> Callable[[N | None], N | None]:
    """An option callback: the value must be finite and >= ``low`` (> with ``above``)
    and <= ``high``; else a usage error (exit 2) saying what is allowed."""
    bound = f"> {low:g}" if above else f">= {low:g}"
    if high is not None:
        bound += f" and <= {high:g}"

    def check(value: N | None) -> N | None:
        if value is None:
            return None
        if (
            not math.isfinite(value)
            or value < low
            or (above and value == low)
            or (high is not None and value > high)
        ):
            raise typer.BadParameter(f"{value!r} is out of range: give a {what} {bound}")
        return value

    return check


app = typer.Typer(
    name="yeet",
    help=(
        "Keep directory trees in sync, one way or both ways, and never lose data.\n\n"
        "Start with `yeet sync ALPHA BETA`; `yeet status` tells whether sessions are in "
        "sync (exit 0) or not (exit 1); `yeet conflicts`, `yeet diff` and `yeet resolve` "
        "settle what both sides changed differently."
    ),
    no_args_is_help=True,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)

NameArg = Annotated[str, typer.Argument(help="Session name (see `yeet status`).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def _version(value: bool) -> None:
    if value:
        print(f"yeet {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print version.")
    ] = False,
) -> None:
    pass


@app.command()
def sync(
    alpha: Annotated[str | None, typer.Argument(help="Alpha root: a directory.")] = None,
    beta: Annotated[
        str | None, typer.Argument(help="Beta root (created on the first sync if missing).")
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", "-n", help="Session name (default: from the pair).")
    ] = None,
    mode: Annotated[
        Mode | None,
        typer.Option(
            help="two-way-safe (default): apply what loses nothing, else conflict; "
            "two-way-resolved: alpha wins conflicts; one-way-safe: alpha to beta, never "
            "overwriting beta's own edits; one-way-replica: beta mirrors alpha."
        ),
    ] = None,
    ignore: Annotated[
        list[str] | None,
        typer.Option(
            "--ignore",
            "-i",
            help="Gitignore-style pattern to skip (repeatable; replaces stored ones).",
        ),
    ] = None,
    ignore_vcs: Annotated[
        bool | None,
        typer.Option(
            "--ignore-vcs/--no-ignore-vcs", help="Skip .git, .hg, .svn, ... (default: sync them)."
        ),
    ] = None,
    symlinks: Annotated[
        str | None,
        typer.Option(
            help="portable (default): sync links that stay inside the root, report others; "
            "raw: sync every link as is; ignore: skip links."
        ),
    ] = None,
    trash_days: Annotated[
        float | None,
        typer.Option(
            help="Keep replaced/deleted content this many days (30; 0: until the next run).",
            callback=in_range(0, high=36500, what="number of days"),
        ),
    ] = None,
    permissions: Annotated[
        str | None,
        typer.Option(
            help="preserve (default): sync the permission bits (rwx for user, group, "
            "others), never widening them; portable: sync only the exec bit, for "
            "filesystems without modes (new files get this side's defaults, never more "
            "open than their source). setuid/setgid/sticky are never synced."
        ),
    ] = None,
    owner: Annotated[
        bool | None,
        typer.Option(
            "--owner/--no-owner",
            help="Also sync owner and group, by name (needs root on the receiving side).",
        ),
    ] = None,
    times: Annotated[
        bool | None,
        typer.Option(
            "--times/--no-times",
            help="Also sync files' modification times (default: a file that arrives "
            "is new, so make rebuilds what depends on it).",
        ),
    ] = None,
    allow_empty: Annotated[
        bool,
        typer.Option(
            help="Go ahead once although a root became empty or vanished (normally that "
            "halts the session until acknowledged: an unmounted disk looks empty)."
        ),
    ] = False,
    allow_deletions: Annotated[
        bool,
        typer.Option(
            help="Go ahead once with more deletions than --max-delete allows (such a "
            "pass halts the session until acknowledged)."
        ),
    ] = False,
    max_delete: Annotated[
        str | None,
        typer.Option(
            metavar="N|P%|none",
            help="Halt instead of deleting more than N files, or more than P% of a "
            "side's files (default 50%, and only when more than 10 files would go), in "
            "one pass; none: no limit. Stored with the session.",
        ),
    ] = None,
    via: Annotated[
        list[str] | None,
        typer.Option(
            "--via",
            help="Reach the remote side through this SSH jump host, [user@]host[:port] "
            "(repeatable, in order; stored with the session; like ssh -J).",
        ),
    ] = None,
    watch: Annotated[
        bool,
        typer.Option(
            "--watch",
            "-w",
            help="Keep running: after the first sync, synchronise every change as it "
            "happens (inotify; no polling). A line is printed each time both sides agree "
            "again; `yeet status` shows the live state. Stop with Ctrl-C.",
        ),
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress; print only problems.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Synchronise ALPHA and BETA until both agree, then exit (or, with --watch, keep going).

    ALPHA and BETA are directories: local paths, [user@]host:path (relative to the
    remote home unless it starts with /), ssh://[user@]host[:port]/abs/path (absolute)
    or ssh://[user@]host[:port]/~/path (in the home) (SSH: ~/.ssh/config, known_hosts
    and ssh-agent are honoured; the remote needs only python3 3.9+, yeet uploads its
    own agent). Roots that are, or lie inside, one another are refused.

    Exit status: 0 in sync; 1 not in sync (conflicts, problems or halted: the output
    says which); 3 and up: the command itself failed. Running it again continues the
    same session (stored under its name), so edits and deletions on either side are
    told apart correctly.
    """
    from yeet.cli.runner import Overrides
    from yeet.cli.sync_cmd import sync as run_sync
    from yeet.model.quoting import unquote

    alpha = None if alpha is None else unquote(alpha)  # as `yeet status` prints it
    beta = None if beta is None else unquote(beta)
    if symlinks is not None and symlinks not in SYMLINK_CHOICES:
        raise typer.BadParameter("must be portable, raw or ignore", param_hint="--symlinks")
    if permissions is not None and permissions not in PERMISSION_CHOICES:
        raise typer.BadParameter("must be preserve or portable", param_hint="--permissions")
    if max_delete is not None:
        from yeet.core.guard import parse_limit

        try:
            parse_limit(max_delete)
        except ValueError as err:
            raise typer.BadParameter(str(err), param_hint="--max-delete") from None
    overrides = Overrides(
        mode=mode,
        ignores=tuple(ignore) if ignore is not None else None,
        ignore_vcs=ignore_vcs,
        symlinks=symlinks,
        trash_days=trash_days,
        via=tuple(via) if via else None,
        permissions=permissions,
        owner=owner,
        times=times,
        max_delete=max_delete,
    )
    raise typer.Exit(
        run_sync(
            alpha,
            beta,
            name,
            overrides,
            allow_empty=allow_empty,
            allow_deletions=allow_deletions,
            quiet=quiet,
            as_json=as_json,
            watch=watch,
        )
    )


@app.command()
def status(
    names: Annotated[list[str] | None, typer.Argument(help="Sessions (default: all).")] = None,
    as_json: JsonOpt = False,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait",
            "-w",
            help="Wait while a yeet process runs a pending session (never for one that "
            "nothing runs: that is said, and the exit status is 1 at once).",
        ),
    ] = False,
    timeout: Annotated[
        float | None,
        typer.Option(
            help="With --wait: give up after SECONDS (exit 9).",
            callback=in_range(0, above=True, what="number of seconds"),
        ),
    ] = None,
) -> None:
    """One line per session: STATE NAME ALPHA BETA CONFLICTS PROBLEMS LAST-SYNC QUEUED
    QUEUED-BYTES IN-FLIGHT (tab-separated; QUEUED..IN-FLIGHT are 0 unless a sync runs).

    STATE is synced, pending, conflicts, problems or halted. Exit 0 when every session
    named is synced, 1 otherwise; 9 when --timeout ran out while waiting.
    """
    from yeet.cli.status_cmd import status as run

    if timeout is not None and not wait:
        raise typer.BadParameter("--timeout only applies with --wait", param_hint="--timeout")
    raise typer.Exit(run(names or [], as_json, wait, timeout))


@app.command()
def conflicts(
    names: Annotated[list[str] | None, typer.Argument(help="Sessions (default: all).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """One line per conflict: SESSION PATH ALPHA-DID BETA-DID. Exit 1 if there are any."""
    from yeet.cli.status_cmd import conflicts as run

    raise typer.Exit(run(names or [], as_json))


@app.command()
def problems(
    names: Annotated[list[str] | None, typer.Argument(help="Sessions (default: all).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """One line per problem of the last sync: SESSION SIDE PATH REASON. Exit 1 if any."""
    from yeet.cli.status_cmd import problems as run

    raise typer.Exit(run(names or [], as_json))


PATH_HELP = (
    "relative to the roots, as yeet prints it (plain or in double quotes with C escapes); "
    "put -- before a PATH that starts with -"
)


@app.command()
def diff(
    name: NameArg,
    path: Annotated[str, typer.Argument(help=f"Path {PATH_HELP}.")],
) -> None:
    """Show how alpha and beta differ at PATH: a unified diff for text, else sizes and digests.

    Exit 0 when both sides hold the same, 1 when they differ, 2 when PATH is on
    neither side (or is an absolute path outside the session's local roots).
    """
    from yeet.cli.conflict_cmds import diff as run

    raise typer.Exit(run(name, path))


@app.command()
def resolve(
    name: NameArg,
    path: Annotated[str, typer.Argument(help=f"Conflicting path {PATH_HELP}.")],
    keep: Annotated[str, typer.Option(help="Which side's content to keep: alpha or beta.")],
) -> None:
    """Settle a conflict by making both sides hold KEEP's content at PATH.

    The other side's content goes to that side's trash (see `yeet trash`).
    """
    from yeet.cli.conflict_cmds import resolve as run

    if keep not in ("alpha", "beta"):
        raise typer.BadParameter("must be alpha or beta", param_hint="--keep")
    raise typer.Exit(run(name, path, keep))


@app.command()
def trash(
    name: NameArg,
    restore: Annotated[
        str | None,
        typer.Option(
            help="Put the newest trashed version of PATH back; for a directory (or "
            "PATH/, or . for everything) the newest version of everything trashed "
            "under it, on both sides unless --side. PATH as yeet prints it; the "
            "next argument is taken whatever it starts with.",
        ),
    ] = None,
    side: Annotated[str | None, typer.Option(help="Only this side: alpha or beta.")] = None,
    item: Annotated[
        int | None,
        typer.Option(
            "--id", help="Restore the item with this id.", callback=in_range(1, high=MAX_ID)
        ),
    ] = None,
    pass_: Annotated[
        str | None,
        typer.Option(
            "--pass",
            help="Only what pass N put in the trash (the PASS column; `last`: the newest "
            "pass that trashed anything): lists it, or with --restore restores it.",
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option(help="If PATH exists now, trash it and restore anyway.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """List what the session replaced or deleted (SIDE ID TIME KIND SIZE PATH PASS), or
    restore it.

    Undo everything the last sync deleted: `yeet trash NAME --pass last --restore .`.
    Exit 0 when all was restored; 1 when a bulk restore left some paths alone (occupied:
    see --force).
    """
    from yeet.cli.trash_cmd import Request
    from yeet.cli.trash_cmd import trash as run

    if side is not None and side not in ("alpha", "beta"):
        raise typer.BadParameter("must be alpha or beta", param_hint="--side")
    if item is not None and restore is not None:
        raise typer.BadParameter("give --restore PATH or --id N, not both", param_hint="--id")
    raise typer.Exit(run(name, Request(restore, side, item, _pass_number(pass_), force, as_json)))


def _pass_number(text: str | None) -> int | str | None:
    if text is None or text == "last":
        return text
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_ID:
        raise typer.BadParameter(
            f"{text!r} is not a pass: give a number >= 1 (the PASS column) or last",
            param_hint="--pass",
        )
    return value


@app.command()
def resume(name: NameArg) -> None:
    """Acknowledge a halted session: its next sync goes ahead once.

    A session halts instead of deleting when a root vanished or became empty, or a
    pass would delete more than --max-delete allows; it stays halted, whatever
    appears meanwhile, until acknowledged. Check the roots first: the next sync
    propagates the deletions that the halt held back (into the trash).
    """
    from yeet.cli.admin_cmds import resume as run

    raise typer.Exit(run(name))


@app.command()
def forget(
    name: NameArg,
    force: Annotated[bool, typer.Option(help="Also delete the session's trash.")] = False,
) -> None:
    """Delete a session's state (never its trees). Its next sync starts afresh."""
    from yeet.cli.admin_cmds import forget as run

    raise typer.Exit(run(name, force))


@app.command()
def trace(
    paths: Annotated[
        list[str] | None, typer.Argument(help="Files or directories to watch (default: .).")
    ] = None,
    ranges: Annotated[
        bool,
        typer.Option(
            "--ranges", help="At the end, print the coalesced dirty ranges per file instead."
        ),
    ] = False,
    duration: Annotated[
        float | None,
        typer.Option(
            help="Stop after SECONDS (default: at Ctrl-C).",
            callback=in_range(0, above=True, what="number of seconds"),
        ),
    ] = None,
) -> None:
    """Show writes under PATH as they happen, like strace for writes (Linux, root).

    One line per write: TIME PID COMMAND PATH OFFSET LENGTH OPERATION (LENGTH
    "to-eof": everything from OFFSET on, e.g. a truncate; "- whole": the whole file).
    With --ranges, one line per file when stopped: PATH: N ranges (B bytes):
    START-END, ... or PATH: whole file. Exit 8 when the kernel tracer cannot run
    here (the message says why).
    """
    from yeet.cli.trace_cmds import trace as run

    raise typer.Exit(run(paths or [], ranges, duration))


@app.command()
def tracer(
    socket: Annotated[
        str | None,
        typer.Option(help="Unix socket to serve on (default: /run/yeet/tracer.sock)."),
    ] = None,
) -> None:
    """Run this host's change journal for every yeet session on it (Linux, root).

    Keeps, per watched tree, the dirty byte ranges of every written file (eBPF) and the
    directories whose entries changed (fanotify); `yeet sync` of any user asks it what
    changed since its last sync instead of scanning. Answers name only what the asking
    user may read. Runs until SIGTERM/Ctrl-C; meant as a systemd service (docs/TRACER.md).
    """
    from yeet.cli.trace_cmds import tracer as run

    raise typer.Exit(run(socket))


@app.command(hidden=True)
def agent(
    state: Annotated[
        str | None, typer.Option(help="Keep this side's state in DIR (default: XDG state).")
    ] = None,
) -> None:
    """Serve one side of a session on stdin/stdout (started by yeet, over SSH or pipes)."""
    from yeet.remote.agent.main import main as agent_main

    raise typer.Exit(agent_main(["--state", state] if state else []))


def main() -> None:
    try:
        environment()  # read once, now: a bad value is a usage error before anything runs
        app()  # standalone: the CLI library handles usage errors (exit 2) and exits
    except YeetError as err:
        print(f"yeet: error: {err.user_message()}", file=sys.stderr)
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        print("yeet: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as err:  # a bug: say so once, in one line, never a traceback
        if environment().debug:
            traceback.print_exc()
        text = " ".join(str(err).split())  # one line, whatever the message holds
        print(
            f"yeet: internal error: {type(err).__name__}: {text}{_where(err)} "
            f"(yeet {__version__}). This is a bug in yeet: please report it with this line, "
            "the command, and its output when run again with YEET_DEBUG=1 (which adds the "
            "traceback)",
            file=sys.stderr,
        )
        sys.exit(3)


def _where(err: BaseException) -> str:
    frames = traceback.extract_tb(err.__traceback__)
    if not frames:
        return ""
    last = frames[-1]
    return f" at {os.path.basename(last.filename)}:{last.lineno}"
