"""The limits of one workspace in a small file every body of it maps: windows, breaker, calls in flight.

Budgets are checked on every call, by every process of the workspace, and must be one atomic
step against all of them (two callers racing for the last unit get it once). A SQLite write
transaction per call did that at the price of a commit; this table does it under an `flock`
with plain memory reads and writes. The file is a regular file under `$SWARM_HOME`, so it
survives restarts; what the limits count is also in the audit trail, which stays the record.

Contents (little-endian, fixed size, blocks allocated up front so a full disk cannot fault a write):

- header: magic, the newest second and minute the windows have moved to, the window sums,
  the breaker (state, opened_at, consecutive failures) and the breach ring's next index;
- 60 buckets of calls per second and 60 buckets of (files, API calls, micro-dollars) per
  minute: sliding windows whose sums move on as time does, a bucket at a time;
- the times of the last `BREACHES` limit breaches;
- `SLOTS` calls in flight: an occupancy byte each, then (token, expires, files, API calls,
  micro-dollars, trial). A slot whose call outlived its expiry (its body crashed) is
  reclaimed by the next reader and counted as done, with everything it had reserved.

Money is kept in whole micro-dollars so that sums which go up and down stay exact.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import random
import struct
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

SLOTS = 256
BREACHES = 256
_WINDOW = 60
_MAGIC = b"SWLIMIT1"
_HEADER = struct.Struct("<8sqqqqqqqdqq")
_SECOND = struct.Struct("<qq")
_MINUTE = struct.Struct("<qqqq")
_BREACH = struct.Struct("<d")
_SLOT = struct.Struct("<qdqqqq")
_SECONDS_AT = _HEADER.size
_MINUTES_AT = _SECONDS_AT + _WINDOW * _SECOND.size
_BREACHES_AT = _MINUTES_AT + _WINDOW * _MINUTE.size
_OCCUPANCY_AT = _BREACHES_AT + BREACHES * _BREACH.size
_SLOTS_AT = _OCCUPANCY_AT + SLOTS
_SIZE = _SLOTS_AT + SLOTS * _SLOT.size
_USED = b"\x01"
_FREE = b"\x00"

BreakerState = Literal["closed", "open", "half_open"]
_STATES: tuple[BreakerState, ...] = ("closed", "open", "half_open")


def _step(head: int, now: int, *, back_limit: int) -> Literal["stay", "slide", "reset"]:
    """How a window whose newest bucket is `head` moves to `now`.

    A clock that steps back stays put (the window errs towards counting), unless it stepped back
    further than `back_limit`: then, as after a long pause, the window starts over.
    """
    if head and now <= head:
        return "reset" if head - now > back_limit else "stay"
    if not head or now - head >= _WINDOW:
        return "reset"
    return "slide"


def micro_usd(usd: float) -> int:
    return round(usd * 1_000_000)


@dataclass(frozen=True, slots=True)
class Usage:
    """The windows as a call sees them: settled usage plus everything in flight."""

    calls: int
    files: int
    api_calls: int
    usd: float


@dataclass(frozen=True, slots=True)
class Breaker:
    state: BreakerState
    opened_at: float
    failures: int


class TooManyInFlight(Exception):
    """Every slot is taken by a live call."""


class LimitsTable:
    def __init__(self, path: Path) -> None:
        self.path = path
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                if os.fstat(fd).st_size != _SIZE or os.pread(fd, len(_MAGIC), 0) != _MAGIC:
                    # New, or not a table of this layout: start empty (the windows forget, the breaker closes).
                    os.ftruncate(fd, 0)
                    os.posix_fallocate(fd, 0, _SIZE)
                    os.pwrite(fd, _HEADER.pack(_MAGIC, 0, 0, 0, 0, 0, 0, 0, 0.0, 0, 0), 0)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
            self._map = mmap.mmap(fd, _SIZE)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        # flock does not exclude threads of one process sharing the descriptor.
        self._thread_lock = threading.Lock()

    def close(self) -> None:
        self._map.close()
        os.close(self._fd)

    def __enter__(self) -> LimitsTable:
        """Hold the table against every other process and thread; every method below runs inside."""
        self._thread_lock.acquire()
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except BaseException:
            self._thread_lock.release()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._thread_lock.release()

    # -- windows -----------------------------------------------------------------------

    def usage(self, now: float) -> Usage:
        """Calls in the last minute, files, API calls and money in the last hour, in flight included."""
        m = self._map
        self.move_to(now)
        calls = files = api_calls = usd = 0
        index = m.find(_USED, _OCCUPANCY_AT, _SLOTS_AT)
        while index >= 0:
            slot = index - _OCCUPANCY_AT
            _, expires, f, a, u, trial = _SLOT.unpack_from(m, _SLOTS_AT + slot * _SLOT.size)
            if expires < now:
                self._reclaim(slot, now, f, a, u, trial)
            else:
                calls, files, api_calls, usd = calls + 1, files + f, api_calls + a, usd + u
            index = m.find(_USED, index + 1, _SLOTS_AT)
        _, _, settled_calls, _, settled_files, settled_api, settled_usd, *_ = _HEADER.unpack_from(m, 0)
        return Usage(
            calls=settled_calls + calls,
            files=settled_files + files,
            api_calls=settled_api + api_calls,
            usd=(settled_usd + usd) / 1_000_000,
        )

    def move_to(self, now: float) -> None:
        """Slide both windows forward to `now`, dropping the buckets that fell out of them."""
        m = self._map
        magic, second, calls, minute, files, api_calls, usd, *rest = _HEADER.unpack_from(m, 0)
        now_second, now_minute = int(now), int(now // 60)
        if now_second == second and now_minute == minute:
            return  # (the common case: calls come in bursts)
        step = _step(second, now_second, back_limit=3600)
        if step == "reset":
            for s in range(now_second - _WINDOW + 1, now_second + 1):
                _SECOND.pack_into(m, _SECONDS_AT + (s % _WINDOW) * _SECOND.size, s, 0)
            second, calls = now_second, 0
        elif step == "slide":
            for s in range(second + 1, now_second + 1):
                at = _SECONDS_AT + (s % _WINDOW) * _SECOND.size
                calls -= _SECOND.unpack_from(m, at)[1]
                _SECOND.pack_into(m, at, s, 0)
            second = now_second
        step = _step(minute, now_minute, back_limit=60)
        if step == "reset":
            for s in range(now_minute - _WINDOW + 1, now_minute + 1):
                _MINUTE.pack_into(m, _MINUTES_AT + (s % _WINDOW) * _MINUTE.size, s, 0, 0, 0)
            minute, files, api_calls, usd = now_minute, 0, 0, 0
        elif step == "slide":
            for s in range(minute + 1, now_minute + 1):
                at = _MINUTES_AT + (s % _WINDOW) * _MINUTE.size
                _, f, a, u = _MINUTE.unpack_from(m, at)
                files, api_calls, usd = files - f, api_calls - a, usd - u
                _MINUTE.pack_into(m, at, s, 0, 0, 0)
            minute = now_minute
        _HEADER.pack_into(m, 0, magic, second, calls, minute, files, api_calls, usd, *rest)

    def count(self, *, second: int, minute: int, calls: int, files: int, api_calls: int, usd_micro: int) -> None:
        """Add settled usage to the buckets of `second` and `minute`, if they are still inside the windows."""
        m = self._map
        magic, head_second, total_calls, head_minute, total_files, total_api, total_usd, *rest = _HEADER.unpack_from(
            m, 0
        )
        at = _SECONDS_AT + (second % _WINDOW) * _SECOND.size
        tag, bucket = _SECOND.unpack_from(m, at)
        if calls and tag == second and second > head_second - _WINDOW:
            _SECOND.pack_into(m, at, second, bucket + calls)
            total_calls += calls
        at = _MINUTES_AT + (minute % _WINDOW) * _MINUTE.size
        tag, f, a, u = _MINUTE.unpack_from(m, at)
        if (files or api_calls or usd_micro) and tag == minute and minute > head_minute - _WINDOW:
            _MINUTE.pack_into(m, at, minute, f + files, a + api_calls, u + usd_micro)
            total_files, total_api, total_usd = total_files + files, total_api + api_calls, total_usd + usd_micro
        _HEADER.pack_into(m, 0, magic, head_second, total_calls, head_minute, total_files, total_api, total_usd, *rest)

    # -- breaker -----------------------------------------------------------------------

    def breaker(self) -> Breaker:
        values = _HEADER.unpack_from(self._map, 0)
        return Breaker(state=_STATES[int(values[7])], opened_at=float(values[8]), failures=int(values[9]))

    def set_breaker(
        self, *, state: BreakerState | None = None, opened_at: float | None = None, failures: int | None = None
    ) -> None:
        values = list(_HEADER.unpack_from(self._map, 0))
        if state is not None:
            values[7] = _STATES.index(state)
        if opened_at is not None:
            values[8] = opened_at
        if failures is not None:
            values[9] = failures
        _HEADER.pack_into(self._map, 0, *values)

    def breach(self, now: float, window_s: float) -> int:
        """Note a breach; returns how many happened within the last `window_s` (at most `BREACHES`)."""
        m = self._map
        values = list(_HEADER.unpack_from(m, 0))
        _BREACH.pack_into(m, _BREACHES_AT + (values[10] % BREACHES) * _BREACH.size, now)
        values[10] = (values[10] + 1) % BREACHES
        _HEADER.pack_into(m, 0, *values)
        return sum(1 for (at,) in _BREACH.iter_unpack(m[_BREACHES_AT:_OCCUPANCY_AT]) if at and at > now - window_s)

    def forget_breaches(self) -> None:
        self._map[_BREACHES_AT:_OCCUPANCY_AT] = bytes(_OCCUPANCY_AT - _BREACHES_AT)

    # -- calls in flight ---------------------------------------------------------------

    def take(self, *, expires: float, files: int, api_calls: int, usd_micro: int, trial: bool) -> tuple[int, int]:
        """Claim a free slot; returns (slot, token)."""
        m = self._map
        index = m.find(_FREE, _OCCUPANCY_AT, _SLOTS_AT)
        if index < 0:
            raise TooManyInFlight(f"{SLOTS} calls are already in flight in this workspace")
        slot = index - _OCCUPANCY_AT
        token = random.getrandbits(62) + 1  # tells holders apart; not a secret (no syscall per call)
        _SLOT.pack_into(m, _SLOTS_AT + slot * _SLOT.size, token, expires, files, api_calls, usd_micro, int(trial))
        m[index] = 1
        return slot, token

    def holds(self, slot: int, token: int) -> bool:
        """Whether `slot` is still this call's (not reclaimed after expiring and taken by another)."""
        return (
            bool(self._map[_OCCUPANCY_AT + slot])
            and _SLOT.unpack_from(self._map, _SLOTS_AT + slot * _SLOT.size)[0] == token
        )

    def grow(self, slot: int, token: int, *, files: int, api_calls: int, usd_micro: int) -> None:
        """Add to a slot this call holds (its measured impact outgrew the planned one)."""
        if self.holds(slot, token):
            at = _SLOTS_AT + slot * _SLOT.size
            _, expires, f, a, u, trial = _SLOT.unpack_from(self._map, at)
            _SLOT.pack_into(self._map, at, token, expires, f + files, a + api_calls, u + usd_micro, trial)

    def free(self, slot: int, token: int) -> None:
        """Give a slot back, unless it expired and another call has it now."""
        if self.holds(slot, token):
            self._map[_OCCUPANCY_AT + slot] = 0

    def _reclaim(self, slot: int, now: float, files: int, api_calls: int, usd_micro: int, trial: int) -> None:
        """A call that outlived its expiry: its body died. Count all it reserved as done; a lost trial re-opens."""
        self._map[_OCCUPANCY_AT + slot] = 0
        self.count(
            second=int(now), minute=int(now // 60), calls=1, files=files, api_calls=api_calls, usd_micro=usd_micro
        )
        if trial:
            self.set_breaker(state="open", opened_at=now)
