"""The local kill switch: a file under `$SWARM_HOME` that every body on the machine honours.

Engaged = the file exists. Bodies check it at the start of every call (one `stat`, the
contents re-read only when it changed), so a kill takes effect from the next call. The
brain's kill (for linked bodies) is a second source combined with this one: killed if
either is engaged, and a local resume lifts only the local one.
"""

from __future__ import annotations

import errno
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, Protocol

HeardBy = Literal["stream", "heartbeat", "registration"]


@dataclass(kw_only=True, frozen=True)
class Heard:
    """How a linked body heard its brain's kill state: on the event stream, in a heartbeat's answer or its
    registration's, and when (ISO time on the body's clock)."""

    by: HeardBy
    at: str


@dataclass(kw_only=True, frozen=True)
class KillState:
    engaged: bool
    reason: str | None = None
    by: str | None = None
    at: str | None = None
    source: Literal["local", "brain", "failsafe"] | None = None
    """`failsafe`: a linked body that has not heard from its brain in time behaves as killed."""
    heard: Heard | None = None
    """The brain's kill: how and when (`heard.at`, this body's clock) this body heard it."""


RELEASED = KillState(engaged=False)


class KillSwitch(Protocol):
    def state(self) -> KillState: ...


class LocalKillSwitch:
    """The machine-wide kill file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = str(path)
        self._dir = str(path.parent)
        self._cached_key: tuple[int, int, int] | None = None
        self._cached: KillState = RELEASED

    def state(self) -> KillState:
        # `access` answers without raising (this runs on every mutating call); when it says no, the file is
        # absent only if its directory can still be searched: anything else must not read as "not killed".
        if not os.access(self._file, os.F_OK) and os.access(self._dir, os.X_OK):
            # (`access` follows symlinks: a dangling one or a loop put where the file goes is not "no file")
            try:
                os.lstat(self._file)
            except FileNotFoundError:
                return RELEASED
            except OSError:
                pass
            return KillState(engaged=True, reason="kill file unreadable", source="local")
        try:
            st = os.stat(self._file)
        except FileNotFoundError:
            return RELEASED
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        if key != self._cached_key:
            self._cached = self._read()
            self._cached_key = key
        return self._cached

    def _read(self) -> KillState:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return RELEASED
        except (OSError, ValueError):
            # An unreadable kill file still means killed: fail closed.
            return KillState(engaged=True, reason="kill file unreadable", source="local")
        return KillState(engaged=True, reason=data.get("reason"), by=data.get("by"), at=data.get("at"), source="local")

    def engage(self, *, reason: str, by: str) -> KillState:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        at = datetime.now(UTC).isoformat()
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        try:
            tmp.write_text(json.dumps({"reason": reason, "by": by, "at": at}))
            os.replace(tmp, self.path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                raise
            # A full disk (a runaway agent's, perhaps) must not stop a kill: an empty file needs no data block
            # and reads as engaged, for want of a reason.
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
            reason = f"{reason} (not written down: the disk is full)"
        return KillState(engaged=True, reason=reason, by=by, at=at, source="local")

    def release(self) -> bool:
        """Lift the local kill; returns whether it was engaged."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        return True


class CombinedKillSwitch:
    """Killed when any source is engaged (local file, brain link)."""

    def __init__(self, *sources: KillSwitch) -> None:
        self._sources = sources

    def state(self) -> KillState:
        for source in self._sources:
            state = source.state()
            if state.engaged:
                return state
        return RELEASED


class MemoryKillSwitch:
    """In-memory kill switch for tests and in-process embedding."""

    def __init__(self) -> None:
        self.current: KillState = RELEASED

    def state(self) -> KillState:
        return self.current
