"""What a linked body last knew of its brain, kept in its workspace's state directory for `swarm status`.

A serving linked body writes `brain-link.json` whenever what it knows changes (connected,
unreachable or refused; the brain's kill and its reason; its own failsafe) and, while
nothing changes, at most every `REFRESH_S` to move "last heard" on; it writes it a last time
when it exits cleanly. Another process (the CLI) reads it: the kill switch a linked body
obeys is the local one OR the brain's OR its failsafe, and a record whose body is no longer
running is its last known state, said as such. Written atomically (a reader sees the old
record or the new, whole), fsync'd: it is what a human reads when deciding what to do.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from shared_protocol.tools import LinkState

from .killswitch import KillState

REFRESH_S = 15.0
"""How often an unchanged record is written again while connected, to say the brain is still heard."""


@dataclass(kw_only=True, frozen=True)
class LinkRecord:
    """One linked body's view of its brain at `recorded_at`."""

    brain_url: str
    link: LinkState
    brain_kill: bool
    """The brain's kill switch is engaged (as last heard)."""
    kill_reason: str | None = None
    kill_by: str | None = None
    kill_at: str | None = None
    failsafe: bool = False
    """The body behaves as killed on its own: the brain not reached yet since it started, no word from it for
    `failsafe_s`, or its token refused."""
    failsafe_reason: str | None = None
    failsafe_since: str | None = None
    failsafe_s: float
    last_heard: str | None = None
    """When the brain was last heard from (UTC, ISO 8601); None: never, since this body started."""
    recorded_at: str
    pid: int
    host: str
    serving: bool = True
    """False once the body exited cleanly (it deregistered, if it could reach the brain)."""
    left: bool = False
    """It deregistered: the brain knows it is gone."""

    def same_state(self, other: LinkRecord) -> bool:
        """Whether `other` says the same thing (only the times it was heard and written differ)."""
        return replace(self, last_heard=None, recorded_at="") == replace(other, last_heard=None, recorded_at="")

    def kill(self) -> KillState:
        """The kill this record makes the body obey, besides the local one (released if none)."""
        if self.brain_kill:
            return KillState(engaged=True, reason=self.kill_reason, by=self.kill_by, at=self.kill_at, source="brain")
        if self.failsafe:
            return KillState(engaged=True, reason=self.failsafe_reason, at=self.failsafe_since, source="failsafe")
        return KillState(engaged=False)


@dataclass(kw_only=True, frozen=True)
class LinkView:
    """A record as `swarm status` shows it: with how old it is and whether its body still runs."""

    record: LinkRecord
    age_s: float
    """Seconds since it was written."""
    heard_s: float | None
    """Seconds since the brain was last heard from; None: never."""
    running: bool
    """The body that wrote it is still serving: what it says is current (else: its last known state)."""


def now_iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="microseconds")


def write_link_record(path: Path, record: LinkRecord) -> None:
    """Replace the record atomically (temporary file, fsync, rename)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    with tmp.open("w", encoding="utf-8") as fh:
        json.dump(asdict(record), fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def read_link_record(path: Path) -> LinkRecord | None:
    """The record, or None if there is none (a standalone body) or it cannot be read."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return LinkRecord(**cast(dict[str, Any], data))
    except (OSError, ValueError, TypeError):
        return None


def forget_link_record(path: Path) -> None:
    """A standalone body serves this workspace now: an old linked body's record says nothing about it."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def view_link_record(path: Path, *, now: float) -> LinkView | None:
    """The record with its age, and whether its body still runs (on this host, by its pid)."""
    record = read_link_record(path)
    if record is None:
        return None
    heard = None if record.last_heard is None else now - datetime.fromisoformat(record.last_heard).timestamp()
    age = now - datetime.fromisoformat(record.recorded_at).timestamp()
    return LinkView(record=record, age_s=max(age, 0.0), heard_s=heard, running=_running(record))


def _running(record: LinkRecord) -> bool:
    if not record.serving or record.host != socket.gethostname():
        return False
    try:
        os.kill(record.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process by that pid: alive
    return True


def describe(view: LinkView) -> tuple[str, str]:
    """What `swarm status` prints for the brain and, if the record is not current, the note for the kill switch."""
    record = view.record
    heard = "never heard from" if view.heard_s is None else f"last heard {_ago(view.heard_s)}"
    if view.running:
        return f"{record.link} to {record.brain_url} ({heard}; recorded {_ago(view.age_s)})", ""
    how = "it left cleanly" if record.left else ("it exited" if not record.serving else "it stopped without saying so")
    note = f"last known state, recorded {_ago(view.age_s)}: the body is not running ({how})"
    return f"{record.link} to {record.brain_url} ({note}; {heard})", f" — {note}"


def _ago(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f}s ago"
    if seconds < 5400:
        return f"{seconds / 60:.0f}m ago"
    return f"{seconds / 3600:.1f}h ago"
