"""Retention and pruning, the restore drill, and the hourly schedule."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import anyio.from_thread
import pytest

from body_mcp.snapshots import SnapshotDamaged, SnapshotEvent, SnapshotNotFound, retained, run_hourly, seconds_until_due
from body_mcp.snapshots._store import new_snapshot_id

from ._support import snapshotter

NOW = datetime(2025, 6, 30, 12, 0, tzinfo=UTC)


def test_retention_keeps_the_newest_n_plus_the_newest_of_each_of_the_last_days() -> None:
    hourly = [new_snapshot_id(NOW - timedelta(hours=h)) for h in range(24 * 10)]
    kept = retained(hourly, now=NOW, keep_last=48, keep_daily=7)
    newest_48 = set(sorted(hourly)[-48:])
    assert newest_48 <= kept
    older_days = kept - newest_48
    days = sorted({i[5:13] for i in older_days})
    # 06-24 … 06-30 are the 7 days; the 48 newest already reach back into 06-28.
    assert days == ["20250624", "20250625", "20250626", "20250627"]
    for day in days:
        newest_that_day = max(i for i in hourly if i[5:13] == day)
        assert newest_that_day in older_days
    assert len(kept) == 48 + 4


def test_prune_deletes_old_manifests_and_the_objects_only_they_used(ws: Path, state_dir: Path) -> None:
    snap = snapshotter(ws, state_dir, keep_last=2, keep_daily=0)
    ids: list[str] = []
    for round_ in range(4):
        (ws / "churn.txt").write_text(f"version {round_}\n")
        ids.append(snap.create().id)
    result = snap.prune()
    assert set(result.deleted) == set(ids[:2])
    assert snap.store.ids() == ids[2:]
    assert result.objects_freed == 2  # churn.txt versions 0 and 1
    for snapshot_id in ids[2:]:
        for entry in snap.store.read_manifest(snapshot_id).entries:
            assert entry.sha256 is None or snap.store.has(entry.sha256)


def test_prune_keeps_every_object_while_a_manifest_is_damaged(ws: Path, state_dir: Path) -> None:
    snap = snapshotter(ws, state_dir, keep_last=1, keep_daily=0)
    snap.create()
    (ws / "churn.txt").write_text("new\n")
    latest = snap.create()
    snap.store.manifest_path(latest.id).write_text("{}")
    result = snap.prune()
    assert not result.swept
    assert result.objects_freed == 0


def test_a_drill_restores_the_latest_snapshot_elsewhere_and_verifies_it(ws: Path, state_dir: Path) -> None:
    snap = snapshotter(ws, state_dir)
    with pytest.raises(SnapshotNotFound):
        snap.drill()
    info = snap.create()
    report = snap.drill()
    assert (report.snapshot_id, report.files) == (info.id, info.files)
    assert os.listdir(snap.store.tmp) == []

    entry = next(e for e in snap.store.read_manifest(info.id).entries if e.type == "file")
    obj = snap.store.path(str(entry.sha256))
    os.chmod(obj, 0o600)
    obj.write_bytes(b"rot")
    with pytest.raises(SnapshotDamaged):
        snap.drill()


@pytest.mark.anyio
async def test_the_hourly_loop_snapshots_when_due_and_stops_on_request(ws: Path, state_dir: Path) -> None:
    created = anyio.Event()
    events: list[SnapshotEvent] = []

    def record(event: SnapshotEvent) -> None:
        events.append(event)
        if event.action == "snapshot_create":
            anyio.from_thread.run_sync(created.set)

    snap = snapshotter(ws, state_dir, record=record)
    stop = anyio.Event()
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: run_hourly(snap, stop=stop, interval_s=3600))
            await created.wait()  # no snapshot yet: the first one is due at once
            stop.set()
    assert [e.action for e in events] == ["snapshot_create"]
    assert len(snap.store.ids()) == 1
    assert 3500 < seconds_until_due(snap.store.ids(), 3600) <= 3600
