"""`Snapshotter`: create, list, restore, drill and prune one workspace's snapshots; `SnapshotSettings`.

A restore verifies every object first, snapshots the current state (its ID is returned, so the
restore can itself be undone), builds the restored tree beside the workspace, and swaps the
two atomically (see `_build`, `_swap`): a restore killed at any point leaves the old or the new
tree, and whatever opens the workspace next (`finish_interrupted`) finishes or rolls back what
was left. The
workspace directory is a new inode afterwards: whoever holds it open must re-open it
(`on_swap`).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from ..state import StatePaths
from . import _swap as swap
from ._build import Reuse, materialize, repair
from ._manifest import Extra, Manifest
from ._results import DrillReport, PruneResult, RestoreResult, SnapshotAction, SnapshotEvent, SnapshotInfo
from ._schedule import retained
from ._store import ObjectStore, new_snapshot_id, referenced, snapshot_time, sync_filesystem
from ._walk import (
    Progress,
    check_database,
    compare_tree,
    scan_workspace,
    store_database,
    store_file,
    write_extra,
)
from .exceptions import RestoreImpossible, SnapshotDamaged, SnapshotError, SnapshotNotFound


@dataclass(kw_only=True, frozen=True)
class SnapshotSettings:
    """What to snapshot and how long to keep it; `for_workspace` fills it from a body's `StatePaths`."""

    workspace: Path
    state_dir: Path
    """`$SWARM_HOME/workspaces/<key>` (an agent's: `agents/<key>/workspaces/<key>`); snapshots live in its
    `snapshots/`."""
    state_db: Path | None = None
    """Backed up into every snapshot when it exists."""
    config_file: Path | None = None
    exclude: tuple[str, ...] = ()
    """Names or relative paths (fnmatch) left out of snapshots and carried over untouched by a restore."""
    keep_last: int = 48
    """Retention: the newest N snapshots…"""
    keep_daily: int = 7
    """…plus the newest of each of the last N days."""

    @classmethod
    def for_workspace(
        cls, paths: StatePaths, *, config_file: Path | None = None, exclude: Sequence[str] = ()
    ) -> SnapshotSettings:
        return cls(
            workspace=paths.require_workspace(),
            state_dir=paths.snapshot_root,
            state_db=paths.db,
            config_file=config_file,
            exclude=tuple(exclude),
        )


class Snapshotter:
    """Snapshots of one workspace. Thread- and process-safe: every operation holds the store's flock."""

    def __init__(
        self,
        settings: SnapshotSettings,
        *,
        record: Callable[[SnapshotEvent], object] | None = None,
        on_swap: Callable[[Path], object] | None = None,
        progress: Progress | None = None,
        exchange: bool = True,
    ) -> None:
        """`record` audits each operation; `on_swap(workspace)` runs right after a restore replaced the
        workspace directory; `exchange=False` forces the two-rename fallback (tests)."""
        self.settings = settings
        self.store = ObjectStore(settings.state_dir / "snapshots")
        self._record = record
        self._on_swap = on_swap
        self._progress = progress
        self._exchange = exchange

    # -- create ------------------------------------------------------------------------

    def create(self, *, reason: str = "manual") -> SnapshotInfo:
        """Snapshot the workspace now; incremental against the newest readable snapshot."""
        try:
            with self.store.locked():
                self.recover()
                info, _ = self._create_locked(reason)
        except (SnapshotError, OSError) as exc:
            self._emit("snapshot_create", "failed", f"snapshot ({reason})", {"error": str(exc)})
            raise
        self._emit("snapshot_create", "ok", f"snapshot ({reason})", _detail(info))
        return info

    def _create_locked(self, reason: str, *, also_exclude: Sequence[str] = ()) -> tuple[SnapshotInfo, Manifest]:
        started = time.perf_counter()
        s = self.settings
        exclude = tuple(dict.fromkeys((*s.exclude, *also_exclude)))
        previous = self._latest_readable()
        files = {e.path: e for e in previous.entries if e.type == "file"} if previous else {}
        scan = scan_workspace(s.workspace, self.store, exclude=exclude, previous=files, progress=self._progress)
        extras: list[Extra] = []
        written, written_bytes = scan.objects_written, scan.bytes_written
        if s.state_db is not None and s.state_db.is_file():
            before = previous.extra("state.db") if previous else None
            extra, w, b = store_database(self.store, "state.db", s.state_db, before)
            extras.append(extra)
            written, written_bytes = written + w, written_bytes + b
        if s.config_file is not None and s.config_file.is_file():
            extra, w, b = store_file(self.store, "config", s.config_file)
            extras.append(extra)
            written, written_bytes = written + w, written_bytes + b
        now = datetime.now(UTC)
        ids = self.store.ids()
        last = snapshot_time(ids[-1]) if ids else None
        if last is not None and now <= last:
            now = last + timedelta(microseconds=1)  # the clock stepped back: IDs must still sort by age
        manifest = Manifest(
            id=new_snapshot_id(now),
            created_at=now.isoformat(),
            workspace=str(s.workspace),
            reason=reason,
            root_mode=scan.root_mode,
            exclude=exclude,
            entries=tuple(scan.entries),
            skipped=tuple(scan.skipped),
            extras=tuple(extras),
        )
        if written:
            self.store.sync()  # every object durable before a manifest names it
        self.store.write_manifest(manifest)
        info = _info(
            manifest,
            now,
            files_read=scan.files_read,
            objects_written=written,
            bytes_written=written_bytes,
            seconds=time.perf_counter() - started,
        )
        return info, manifest

    def _latest_readable(self) -> Manifest | None:
        for snapshot_id in reversed(self.store.ids()[-5:]):
            with contextlib.suppress(SnapshotDamaged):
                return self.store.read_manifest(snapshot_id)
        return None

    # -- list --------------------------------------------------------------------------

    def list_snapshots(self) -> list[SnapshotInfo]:
        """Every snapshot, oldest first; a damaged one is listed with `damaged` set."""
        out: list[SnapshotInfo] = []
        with self.store.locked(exclusive=False):
            for snapshot_id in self.store.ids():
                created = snapshot_time(snapshot_id) or datetime.fromtimestamp(0, UTC)
                try:
                    out.append(_info(self.store.read_manifest(snapshot_id), created))
                except SnapshotDamaged as exc:
                    out.append(
                        SnapshotInfo(id=snapshot_id, created_at=created, reason="", files=0, bytes=0, damaged=str(exc))
                    )
        return out

    def resolve(self, snapshot_id: str) -> str:
        """`latest` names the newest snapshot; any other ID is returned as given."""
        if snapshot_id != "latest":
            return snapshot_id
        ids = self.store.ids()
        if not ids:
            raise SnapshotNotFound(f"no snapshots yet for {self.settings.workspace} (run `swarm snapshot create`)")
        return ids[-1]

    # -- restore -----------------------------------------------------------------------

    def restore(self, snapshot_id: str) -> RestoreResult:
        """Replace the workspace with a snapshot, atomically; see the module docstring."""
        started = time.perf_counter()
        try:
            with self.store.locked():
                self.recover()
                target = self.resolve(snapshot_id)
                manifest = self.store.read_manifest(target)
                if os.path.ismount(self.settings.workspace):
                    raise RestoreImpossible(f"{self.settings.workspace} is a mount point: a restore cannot swap it")
                self._verify(manifest)
                swap.checkpoint("verified")
                # What the target left out (excluded) is left alone now too: carried over, not deleted.
                undo_info, undo = self._create_locked(f"before restoring {target}", also_exclude=manifest.exclude)
                swap.checkpoint("undo_snapshot")
                dropped = self._replace(manifest, current=undo)
        except (SnapshotError, OSError) as exc:
            self._emit("snapshot_restore", "failed", f"restore {snapshot_id}", {"id": snapshot_id, "error": str(exc)})
            raise
        result = RestoreResult(
            snapshot_id=target,
            undo_snapshot_id=undo_info.id,
            files=manifest.files,
            seconds=time.perf_counter() - started,
            dropped=tuple(dropped),
        )
        detail = {"id": target, "undo_snapshot_id": undo_info.id, "files": result.files, "dropped": list(dropped)}
        self._emit("snapshot_restore", "ok", f"restore {target}", detail)
        return result

    def _verify(self, manifest: Manifest) -> None:
        objects = {(e.sha256, e.size) for e in manifest.entries if e.sha256 is not None}
        for done, (sha, size) in enumerate(sorted(objects), start=1):
            self.store.verify(sha, size)
            if self._progress is not None and done % 500 == 0:
                self._progress("verifying", done, len(objects))

    def _replace(self, manifest: Manifest, *, current: Manifest) -> list[str]:
        workspace = self.settings.workspace
        journal = swap.plan(workspace, manifest.id, [s.path for s in current.skipped])
        swap.write_journal(self.store.journal, journal)
        reuse = Reuse.from_manifest(workspace, current)
        try:
            os.mkdir(journal.new_tree, 0o700)
            materialize(manifest, self.store, Path(journal.new_tree), reuse=reuse, progress=self._progress)
            sync_filesystem(Path(journal.new_tree))
        except BaseException as exc:
            swap.abandon(self.store.journal, journal)
            if isinstance(exc, OSError):
                raise RestoreImpossible(f"could not build the restored tree beside {workspace}: {exc}") from exc
            raise
        swap.checkpoint("built")
        try:
            dropped = swap.swap(
                self.store.journal, journal, exchange=self._exchange, after=lambda: repair(reuse, self.store, workspace)
            )
        except RestoreImpossible:
            swap.recover(self.store.journal)  # nothing was moved: this rolls the half-done restore back
            raise
        if self._on_swap is not None:
            self._on_swap(workspace)
        return dropped

    def recover(self) -> Literal["rolled_back", "completed"] | None:
        """Finish or roll back a killed restore (audited) and remove leftovers. Call with the exclusive lock held."""
        recovered = swap.recover(self.store.journal)
        self.store.clean_tmp()
        if recovered is None:
            return None
        outcome, journal = recovered
        if outcome == "completed" and self._on_swap is not None:
            self._on_swap(self.settings.workspace)
        done = "finished" if outcome == "completed" else "rolled back"
        detail = {"id": journal.snapshot_id, "outcome": outcome}
        self._emit("snapshot_recover", "ok", f"{done} a restore of {journal.snapshot_id} that was interrupted", detail)
        return outcome

    def finish_interrupted(self) -> Literal["rolled_back", "completed"] | None:
        """Finish or roll back a restore that was killed part way, so no hidden copy stays beside the workspace.

        For whatever opens the workspace (a body starting, `Admin.open`): one `stat` when there is nothing to
        do, and a restore running now (its process holds the lock) is left alone.
        """
        if not self.store.journal.exists():
            return None
        with self.store.locked(wait=False) as held:
            return self.recover() if held else None

    def reinstate_workspace(self) -> bool:
        """Put the restored tree at the workspace path if a restore was killed between its two fallback renames.

        That leaves no directory at the path, so call this before checking that the workspace exists;
        `finish_interrupted` does the rest. A restore running now is left alone.
        """
        if not self.store.journal.exists():
            return False
        with self.store.locked(wait=False) as held:
            return held and swap.reinstate(self.store.journal)

    def restore_extra(self, snapshot_id: str, name: str, dest: Path) -> None:
        """Write a snapshot's copy of `state.db` or `config` to `dest`, which must not exist yet."""
        with self.store.locked(exclusive=False):
            manifest = self.store.read_manifest(self.resolve(snapshot_id))
            extra = manifest.extra(name)
            if extra is None:
                raise SnapshotNotFound(f"snapshot {manifest.id} holds no {name}")
            if dest.exists():
                raise SnapshotError(f"{dest} already exists; choose a new path")
            write_extra(self.store, extra, dest)

    # -- drill and prune ---------------------------------------------------------------

    def drill(self, scratch: Path | None = None) -> DrillReport:
        """Restore the newest snapshot into a scratch directory and check it; `SnapshotError` if it fails."""
        try:
            report = self._drill(scratch)
        except (SnapshotError, OSError) as exc:
            self._emit("snapshot_drill", "failed", "restore drill", {"error": str(exc)})
            raise
        total = round(report.verify_s + report.restore_s + report.check_s, 3)
        self._emit("snapshot_drill", "ok", f"drill {report.snapshot_id}", {"id": report.snapshot_id, "seconds": total})
        return report

    def _drill(self, scratch: Path | None) -> DrillReport:
        with self.store.locked(exclusive=False):
            target = self.resolve("latest")
            manifest = self.store.read_manifest(target)
            t0 = time.perf_counter()
            self._verify(manifest)
            for extra in manifest.extras:
                for sha, size in extra.chunks:
                    self.store.verify(sha, size)
            t1 = time.perf_counter()
            work = Path(tempfile.mkdtemp(prefix="drill-", dir=scratch or self.store.tmp))
            try:
                (work / "tree").mkdir()
                materialize(manifest, self.store, work / "tree", progress=self._progress)
                t2 = time.perf_counter()
                problems = compare_tree(work / "tree", manifest)
                for extra in manifest.extras:
                    write_extra(self.store, extra, work / extra.name)
                    if extra.name == "state.db":
                        problems += check_database(work / extra.name)
                t3 = time.perf_counter()
            finally:
                swap.remove_tree(work)
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise SnapshotDamaged(f"drill of {target} failed: {problems[0]}{more}")
        return DrillReport(
            snapshot_id=target,
            files=manifest.files,
            bytes=manifest.bytes,
            verify_s=t1 - t0,
            restore_s=t2 - t1,
            check_s=t3 - t2,
            extras=tuple(x.name for x in manifest.extras),
        )

    def prune(self, *, now: datetime | None = None) -> PruneResult:
        """Apply retention, then delete objects no remaining manifest references (mark and sweep)."""
        s = self.settings
        with self.store.locked():
            self.recover()
            ids = self.store.ids()
            keep = retained(ids, now=now or datetime.now(UTC), keep_last=s.keep_last, keep_daily=s.keep_daily)
            deleted = tuple(i for i in ids if i not in keep)
            for snapshot_id in deleted:
                self.store.delete_manifest(snapshot_id)
            try:
                live = referenced(self.store.read_manifest(i) for i in ids if i in keep)
            except SnapshotDamaged:
                # A damaged manifest's objects are unknown: keep every object rather than guess.
                return PruneResult(deleted=deleted, kept=len(keep), swept=False)
            freed, freed_bytes = self.store.sweep(live)
        result = PruneResult(deleted=deleted, kept=len(keep), objects_freed=freed, bytes_freed=freed_bytes)
        if deleted or freed:
            detail = {"deleted": list(deleted), "objects_freed": freed, "bytes_freed": freed_bytes}
            self._emit("snapshot_prune", "ok", "snapshot retention", detail)
        return result

    def _emit(
        self, action: SnapshotAction, outcome: Literal["ok", "failed"], rationale: str, detail: dict[str, Any]
    ) -> None:
        if self._record is not None:
            self._record(SnapshotEvent(action=action, outcome=outcome, rationale=rationale, detail=detail))


def _info(manifest: Manifest, created: datetime, **counts: Any) -> SnapshotInfo:
    return SnapshotInfo(
        id=manifest.id,
        created_at=created,
        reason=manifest.reason,
        files=manifest.files,
        bytes=manifest.bytes,
        skipped=len(manifest.skipped),
        extras=tuple(x.name for x in manifest.extras),
        **counts,
    )


def _detail(info: SnapshotInfo) -> dict[str, Any]:
    return {
        "id": info.id,
        "files": info.files,
        "bytes": info.bytes,
        "objects_written": info.objects_written,
        "seconds": round(info.seconds, 3),
    }
