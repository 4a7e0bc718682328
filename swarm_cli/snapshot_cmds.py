"""`swarm snapshot create|list|restore ID|drill`: workspace snapshots from the command line.

Wired into `swarm` by `add_parsers(sub)`; `python -m swarm_cli.snapshot_cmds snapshot ...` runs
the same commands on their own. Each command audits what it did in the workspace's trail as a
human event. `create` prints the new snapshot's ID as its last line; `drill` is for cron
(its result is also recorded for `swarm readiness`, with its time).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from body_mcp.exceptions import StateUnusable
from body_mcp.snapshots import SnapshotError, SnapshotSettings, Snapshotter
from body_mcp.state import StatePaths, resolve_home

from . import _context, _errors
from ._drill_records import DrillRecord, record_restore
from ._drills import drill_record


class _Subparsers(Protocol):
    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser: ...


def _out(line: str = "") -> None:
    print(line, flush=True)


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


class _TTYProgress:
    """One self-overwriting status line on stderr, only when stderr is a terminal (never in scripts)."""

    def __init__(self) -> None:
        self.enabled = sys.stderr.isatty()
        self._last = 0.0
        self._shown = False

    def __call__(self, phase: str, done: int, total: int) -> None:
        now = time.monotonic()
        if not self.enabled or now - self._last < 0.1:
            return
        self._last, self._shown = now, True
        of = f"/{total}" if total else ""
        sys.stderr.write(f"\r{phase} {done}{of} files…\033[K")
        sys.stderr.flush()

    def clear(self) -> None:
        if self._shown:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()


def _run(
    args: argparse.Namespace,
    action: Callable[[Snapshotter], int],
    *,
    exclude: Sequence[str] = (),
    audited: bool = True,
) -> int:
    """Open the workspace's state (for its audit trail) and a snapshotter on it; turn I/O errors into one line.

    What records nothing (`audited=False`: list, writing a snapshot's state.db or config elsewhere) goes on
    when the state cannot be opened: that is how a damaged state.db is replaced from a snapshot.
    """
    settings = _context.body_settings(workspace=args.workspace, config=args.config)
    progress = _TTYProgress()
    try:
        with contextlib.ExitStack() as stack:
            try:
                admin = stack.enter_context(_context.open_admin(settings))
                snapshotter = admin.snapshotter(exclude=exclude, progress=progress)
            except (StateUnusable, OSError) as exc:
                if audited:
                    raise
                print(f"swarm: note: going on without the audit trail: {_errors.describe(exc)}", file=sys.stderr)
                paths = StatePaths(home=settings.home, workspace=settings.workspace)
                snap_settings = SnapshotSettings.for_workspace(paths, config_file=settings.config_file, exclude=exclude)
                snapshotter = Snapshotter(snap_settings, progress=progress)
                snapshotter.finish_interrupted()
            try:
                return action(snapshotter)
            except OSError as exc:
                raise SnapshotError(f"snapshot failed: {_errors.describe(exc)}") from None
    finally:
        progress.clear()


def cmd_create(args: argparse.Namespace) -> int:
    def create(snapshotter: Snapshotter) -> int:
        info = snapshotter.create(reason=args.reason)
        _out(
            f"snapshot of {snapshotter.settings.workspace}: {info.files} files, {_size(info.bytes)}"
            f" ({info.objects_written} new objects, {_size(info.bytes_written)}) in {info.seconds:.2f} s"
        )
        if not args.no_prune:
            pruned = snapshotter.prune()
            if pruned.deleted or pruned.objects_freed:
                _out(f"pruned {len(pruned.deleted)} old snapshots, freed {_size(pruned.bytes_freed)}")
        _out(info.id)
        return 0

    return _run(args, create, exclude=args.exclude)


def cmd_list(args: argparse.Namespace) -> int:
    def show(snapshotter: Snapshotter) -> int:
        infos = snapshotter.list_snapshots()
        if not infos:
            _out(f"no snapshots yet for {snapshotter.settings.workspace}")
        for info in infos:
            when = info.created_at.astimezone().strftime("%Y-%m-%d %H:%M:%S")
            if info.damaged:
                _out(f"{info.id}  {when}  DAMAGED: {info.damaged}")
            else:
                extras = f" +{','.join(info.extras)}" if info.extras else ""
                _out(f"{info.id}  {when}  {info.files:>7} files  {_size(info.bytes):>9}{extras}  {info.reason}")
        return 0

    return _run(args, show, audited=False)


def cmd_restore(args: argparse.Namespace) -> int:
    def restore(snapshotter: Snapshotter) -> int:
        for name, dest in (("state.db", args.state_db_to), ("config", args.config_to)):
            if dest:
                snapshotter.restore_extra(args.id, name, Path(dest).expanduser().resolve())
                _out(f"wrote the snapshot's {name} to {dest}")
        if args.only_extras:
            return 0
        result = snapshotter.restore(args.id)
        for path in result.dropped:
            print(f"swarm: note: {path} (excluded) had no directory to go to and was removed", file=sys.stderr)
        _out(f"restored {result.snapshot_id}: {result.files} files in {result.seconds:.2f} s")
        _out(f"to undo: swarm snapshot restore {result.undo_snapshot_id}")
        try:
            os.getcwd()
        except FileNotFoundError:  # (the shell ran it from inside the workspace: it still sits in the old tree)
            workspace = snapshotter.settings.workspace
            print(
                f"swarm: note: this shell's directory was swapped out with the old tree: `cd {workspace}`",
                file=sys.stderr,
            )
        return 0

    return _run(args, restore, audited=not args.only_extras)


def cmd_drill(args: argparse.Namespace) -> int:
    def drill(snapshotter: Snapshotter) -> int:
        scratch = Path(args.scratch).expanduser() if args.scratch else None
        home, workspace, at = resolve_home(), snapshotter.settings.workspace, datetime.now(UTC)
        try:
            report = snapshotter.drill(scratch)
        except SnapshotError as exc:  # recorded for `swarm readiness`, then reported as any failure is
            record_restore(home, workspace, DrillRecord(at=at, ok=False, detail=_errors.describe(exc)))
            raise
        total = report.verify_s + report.restore_s + report.check_s
        record_restore(home, workspace, drill_record(at, report.snapshot_id, total))
        extras = f", {' and '.join(report.extras)} checked" if report.extras else ""
        _out(
            f"drill OK: {report.snapshot_id}, {report.files} files, {_size(report.bytes)}{extras};"
            f" verify {report.verify_s:.2f} s, restore {report.restore_s:.2f} s, check {report.check_s:.2f} s,"
            f" total {total:.2f} s"
        )
        return 0

    return _run(args, drill)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workspace", metavar="DIR", help="the workspace (default: the current directory)")
    parser.add_argument("--config", metavar="FILE", help="swarm.toml (default: $SWARM_CONFIG, $SWARM_HOME/swarm.toml)")


def add_parsers(sub: _Subparsers) -> None:
    """Register `snapshot` and its subcommands on `swarm`'s subparsers."""
    help_text = "snapshots of the workspace, its state database and config: create, list, restore, drill"
    snapshot = sub.add_parser("snapshot", help=help_text, description=help_text)
    snap_sub = snapshot.add_subparsers(dest="snapshot_command", required=True, metavar="SUBCOMMAND")

    p = snap_sub.add_parser("create", help="snapshot now (incremental); prints the new ID as its last line")
    p.set_defaults(func=cmd_create)
    p.add_argument("--exclude", action="append", default=[], metavar="PATTERN", help="leave out a name or path glob")
    p.add_argument("--reason", default="manual", help="why (recorded in the snapshot and the audit trail)")
    p.add_argument("--no-prune", action="store_true", help="skip retention (48 newest + one a day for 7 days)")
    _common(p)

    p = snap_sub.add_parser("list", help="every snapshot of the workspace, oldest first")
    p.set_defaults(func=cmd_list)
    _common(p)

    p = snap_sub.add_parser("restore", help="replace the workspace with a snapshot, atomically (undoable)")
    p.set_defaults(func=cmd_restore)
    p.add_argument("id", help="a snapshot ID, or 'latest'")
    p.add_argument("--state-db-to", metavar="FILE", help="also write the snapshot's state.db to FILE (a new file)")
    p.add_argument("--config-to", metavar="FILE", help="also write the snapshot's config file to FILE (a new file)")
    p.add_argument("--only-extras", action="store_true", help="write --state-db-to/--config-to; leave the workspace")
    _common(p)

    p = snap_sub.add_parser("drill", help="restore the newest snapshot into a scratch dir and verify it (for cron)")
    p.set_defaults(func=cmd_drill)
    p.add_argument("--scratch", metavar="DIR", help="where to restore (default: inside the snapshot store)")
    _common(p)


def main(argv: Sequence[str] | None = None) -> int:
    """The snapshot commands on their own (`python -m swarm_cli.snapshot_cmds snapshot ...`)."""
    parser = argparse.ArgumentParser(prog="swarm")
    add_parsers(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    args = parser.parse_args(argv)
    return _errors.run(args.func, args)


if __name__ == "__main__":
    sys.exit(main())
