"""A kill noted beside the brain's database ahead of its commit, so that a crash cannot un-kill the bodies.

The brain publishes a kill to every event stream before its commit (which queues behind every body's audit batches,
`Brain.set_kill`). A brain that died in between would restart with the kill released, and the bodies that heard it
would be released as they registered again. So the kill is first written to `<database>.kill` (one small file,
rewritten in place: its directory entry is made durable once, when the engine opens), then published; under
`power_loss` durability the note is synced right after, before the kill's commit is queued. A process's crash keeps
the note without its sync (the page cache outlives the process); a power loss in the milliseconds between the
publication and the note's sync can still release the bodies that heard the kill: the sync is kept off the
publication's path, where a disk busy with every body's journal syncs would hold every body's kill.

As the engine opens, a note newer than the database's kill state (by its `at`) is committed, with its log line: the
kill the bodies heard holds. A note as old as the database's kill state or older (the kill committed, or released
since: a release is later) is spent and changes nothing. A note is only ever written before anything is told of its
kill: one that cannot be read back (a crash mid-write) was told to nobody, and is dropped (logged). Once its kill
is committed the note is emptied (`clear`): it holds the kill's reason, which erasure and migration never read here.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import datetime
from pathlib import Path
from typing import Any, cast

from shared_protocol.brain import KillState

from ._records import LogEntry
from ._rules import iso, parse_time

logger = logging.getLogger(__name__)

SUFFIX = ".kill"


def note_path(database: Path) -> Path:
    return database.with_name(database.name + SUFFIX)


def prepare(path: Path) -> None:
    """Make sure the note's file exists and its directory entry is durable (once, as the engine opens)."""
    if path.exists():
        return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def write(path: Path, state: KillState, log: LogEntry, *, sync: bool) -> None:
    """Note `state` (a kill) and its log line, synced when `sync` (power-loss durability; a process crash keeps
    what was written without it)."""
    payload = json.dumps(
        {
            "state": state.model_dump(mode="json"),
            "log": {
                "at": iso(log.at),
                "action": log.action,
                "by": log.by,
                "token_id": log.token_id,
                "role": log.role,
                "reason": log.reason,
                "target": log.target,
                "detail": log.detail,
            },
        },
        separators=(",", ":"),
    ).encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        os.pwrite(fd, payload, 0)
        os.ftruncate(fd, len(payload))
        if sync:
            os.fdatasync(fd)
    finally:
        os.close(fd)


def clear(path: Path) -> None:
    """The note spent (its kill committed): emptied, so no kill's reason (personal data, in a brain that keeps it in
    the clear) outlives its commit in a file that erasure and migration do not read. Not synced: a note that comes
    back after a power loss is as old as the kill state committed, so spent (`pending`), and emptied again."""
    try:
        fd = os.open(path, os.O_WRONLY)
    except FileNotFoundError:
        return
    try:
        os.ftruncate(fd, 0)
    finally:
        os.close(fd)


def sync(path: Path) -> None:
    """Make the note at `path` durable against a power loss (the kill it holds was published already)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        os.fdatasync(fd)
    finally:
        os.close(fd)


def read(path: Path) -> tuple[KillState, LogEntry] | None:
    """The kill noted at `path` and its log line; None when there is none (or one that cannot be read back: never
    told to anyone, it is dropped, and logged)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    if not data:
        return None
    try:
        found = cast("dict[str, Any]", json.loads(data))
        state = KillState.model_validate(found["state"])
        line = cast("dict[str, Any]", found["log"])
        at = parse_time(line["at"])
        assert at is not None
        log = LogEntry(
            at=at,
            action=line["action"],
            by=line["by"],
            token_id=line["token_id"],
            role=line["role"],
            reason=line["reason"],
            target=line["target"],
            detail={**line["detail"], "noted_ahead": "committed as the brain opened: it stopped before the commit"},
        )
    except (ValueError, KeyError, TypeError, AssertionError) as exc:
        logger.warning(
            "the kill note %s cannot be read back (%s): written as the brain stopped, told to nobody", path, exc
        )
        return None
    return state, log


def pending(noted: KillState, stored: KillState) -> bool:
    """Whether the noted kill is newer than the database's kill state (so it was never committed)."""
    if not noted.engaged or noted.at is None:
        return False
    return stored.at is None or _utc(stored.at) < _utc(noted.at)


def _utc(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.astimezone()
