"""The brain's own snapshots: an online backup of its state database, on a schedule.

SQLite's backup API copies a consistent image while the daemon keeps writing (WAL), so a
backup never needs the brain stopped. Each backup is written to a temporary name, checked
with `PRAGMA integrity_check`, then renamed into place; the newest `keep` are kept.
Restoring is a file copy while the brain is stopped (`deploy/README.md`).
"""

from __future__ import annotations

import logging
import os
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import anyio
import anyio.to_thread

from .exceptions import BackupFailed

logger = logging.getLogger(__name__)

_PREFIX = "brain-"


def backup_database(db: Path, dest_dir: Path, *, keep: int, now: datetime | None = None) -> Path:
    """Copy `db` (consistently, while it is in use) into `dest_dir`, verify it, and keep the newest `keep`."""
    dest_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S%fZ")
    final = dest_dir / f"{_PREFIX}{stamp}.db"
    tmp = dest_dir / f".{final.name}.tmp"
    try:
        src = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        out = sqlite3.connect(tmp)
        try:
            src.backup(out)
            # A backup is one self-contained file: not WAL (which the copy inherits from the source).
            out.execute("PRAGMA journal_mode = DELETE")
            (verdict,) = out.execute("PRAGMA integrity_check").fetchone()
        finally:
            out.close()
            src.close()
        if verdict != "ok":
            raise BackupFailed(f"backup of {db} did not verify: {verdict}")
        os.replace(tmp, final)
    except sqlite3.Error as exc:
        raise BackupFailed(f"backup of {db} failed: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)
    for old in sorted(dest_dir.glob(f"{_PREFIX}*.db"))[:-keep]:
        old.unlink(missing_ok=True)
    return final


_MIGRATIONS = (
    "SELECT count(*) FROM brain_log WHERE action = 'privacy_migrate' "
    "AND (json_extract(detail, '$.rewritten') IS NOT NULL OR json_extract(detail, '$.records') IS NOT NULL)"
)


def _migrations(db: Path) -> int:
    """How many privacy migrations that changed something `db` has logged; -1 when it cannot be read."""
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            (count,) = conn.execute(_MIGRATIONS).fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return -1
    return int(count)


def drop_backups_before_migration(db: Path, dest_dir: Path, *, keep: int) -> list[str]:
    """`swarm privacy migrate`, after the brain's records are migrated: the backups taken before (they log fewer
    migrations than `db`, so they hold what it rewrote in clear; one that cannot be read cannot be vouched for) are
    deleted, once a backup of the migrated database is written and verified in their place. Returns their names."""
    if not dest_dir.is_dir():
        return []
    live = _migrations(db)
    stale = [b for b in sorted(dest_dir.glob(f"{_PREFIX}*.db")) if _migrations(b) < live]
    if not stale:
        return []
    backup_database(db, dest_dir, keep=keep + len(stale))  # (first: never fewer backups than before)
    for old in stale:
        old.unlink(missing_ok=True)
    return [old.name for old in stale]


async def run_backups(db: Path, dest_dir: Path, *, interval_s: float, keep: int) -> None:
    """Back up every `interval_s` until cancelled; a failed backup is logged, and the next one tried."""
    while True:
        await anyio.sleep(interval_s)
        try:
            path = await anyio.to_thread.run_sync(lambda: backup_database(db, dest_dir, keep=keep))
            logger.info("brain database backed up to %s", path)
        except BackupFailed as exc:
            logger.error("%s", exc)
