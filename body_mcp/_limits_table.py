"""The limits of one workspace in a small file every body of it maps: windows, breaker, calls in flight.

Budgets are checked on every call, by every process of the workspace, and must be one atomic
step against all of them (two callers racing for the last unit get it once). A SQLite write
transaction per call did that at the price of a commit; this table does it under an `flock`
with plain memory reads and writes. The file is a regular file under `$SWARM_HOME`, so it
survives restarts; what the limits count is also in the audit trail, which stays the record.

Contents (little-endian, fixed size, written out in full when created so that a full disk
cannot fault a write through the mapping):

- a header of single 8-byte fields: magic, the newest second and minute the windows have moved
  to, the breaker (state, opened_at, consecutive failures) and the breach ring's next index;
- 60 per-second call counts and 60 per-minute counts of files, API calls and micro-dollars:
  sliding windows. A bucket is either inside its window or zero (sliding zeroes what falls
  out), so a window's sum is the sum of its buckets; there is no running total to fall out of
  step if a process dies halfway through an update;
- the times of the last `BREACHES` limit breaches;
- `SLOTS` calls in flight: an occupancy byte each, then (token, expires, files, API calls,
  micro-dollars, flags, pid, process start time); flags: 1 the breaker's trial, 2 money only (a
  model call's spend: counted in the money window, never as a tool call). A slot whose process is gone (the pid is free,
  or now names a process started at another time; failing that, once its expiry has passed) is
  reclaimed by the next reader and counted as done with everything it had reserved.

Every change that spans two places is ordered so that dying in between counts a call twice,
never zero times. A clock that steps back holds the windows where they were until it catches
up (errs towards counting, as the timestamps in a database would).
"""

from __future__ import annotations

import errno
import fcntl
import math
import mmap
import os
import random
import struct
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

FILE_NAME = "limits-v4"
"""The layout's version is in the name: bodies of two versions never map one file two ways."""
SLOTS = 256
BREACHES = 256
LOCK_TIMEOUT_S = 10.0
_WINDOW = 60
_MAGIC = b"SWLIMIT4"
_UNSET = -(1 << 62)
_Q = struct.Struct("<q")
_D = struct.Struct("<d")
_SLOT = struct.Struct("<qdqqqqqq")
_BUCKETS = struct.Struct(f"<{_WINDOW}q")
# Header: one 8-byte field each.
_SECOND_AT, _MINUTE_AT, _STATE_AT, _OPENED_AT, _FAILURES_AT, _BREACH_NEXT_AT = 8, 16, 24, 32, 40, 48
_CALLS_AT = 56
_FILES_AT = _CALLS_AT + _WINDOW * 8
_API_AT = _FILES_AT + _WINDOW * 8
_USD_AT = _API_AT + _WINDOW * 8
_BREACHES_AT = _USD_AT + _WINDOW * 8
_OCCUPANCY_AT = _BREACHES_AT + BREACHES * 8
_SLOTS_AT = _OCCUPANCY_AT + SLOTS
_SIZE = _SLOTS_AT + SLOTS * _SLOT.size
_USED = b"\x01"
_FREE = b"\x00"

BreakerState = Literal["closed", "open", "half_open"]
_STATES: tuple[BreakerState, ...] = ("closed", "open", "half_open")
_TRIAL = 1
_SPEND_ONLY = 2
"""Slot flags (see the module docstring)."""


def _start_time(pid: int) -> int:
    """When the process started (clock ticks since boot, from /proc); 0 where that cannot be read."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
        return int(stat[stat.rindex(b")") + 2 :].split()[19])
    except (OSError, ValueError, IndexError):
        return 0


def micro_usd(usd: float) -> int:
    """Whole micro-dollars, rounded up: a fraction of one still counts."""
    return math.ceil(usd * 1_000_000 - 1e-6) if usd > 0 else 0


@dataclass(frozen=True, slots=True)
class Usage:
    """The windows as a call sees them: settled usage plus everything in flight (API calls are kept,
    but no window limits them: only the blast radius per action does)."""

    calls: int
    files: int
    usd: float


@dataclass(frozen=True, slots=True)
class Breaker:
    state: BreakerState
    opened_at: float
    failures: int


class TooManyInFlight(Exception):
    """Every slot is taken by a live call."""


def _lock_within(fd: int, path: Path) -> None:
    """`flock` the table, or raise `TimeoutError` once another process has held it for `LOCK_TIMEOUT_S`."""
    deadline, pause = 0.0, 0.0001
    while not _try_lock(fd):
        now = time.monotonic()
        if not deadline:
            deadline = now + LOCK_TIMEOUT_S
        elif now > deadline:
            raise TimeoutError(
                f"the limits table {path} has been held by another process for over {LOCK_TIMEOUT_S:.0f} s"
            )
        time.sleep(pause)
        pause = min(pause * 2, 0.01)


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno not in (errno.EAGAIN, errno.EWOULDBLOCK):
            raise
        return False
    return True


class LimitsTable:
    def __init__(self, path: Path) -> None:
        self.path = path
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            _lock_within(fd, path)
            try:
                if os.fstat(fd).st_size != _SIZE or os.pread(fd, len(_MAGIC), 0) != _MAGIC:
                    # New (or damaged): start empty, the windows unset, the breaker closed.
                    header = _MAGIC + _Q.pack(_UNSET) + _Q.pack(_UNSET)
                    os.pwrite(fd, header + bytes(_SIZE - len(header)), 0)
                    os.ftruncate(fd, _SIZE)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
            self._map = mmap.mmap(fd, _SIZE)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self._pid = os.getpid()
        self._started = _start_time(self._pid)
        # Tokens tell holders apart; they need not be secret, only not shared with anyone's random.seed().
        self._random = random.Random(os.urandom(16))
        # flock does not exclude threads of one process sharing the descriptor.
        self._thread_lock = threading.Lock()

    def close(self) -> None:
        self._map.close()
        os.close(self._fd)

    def __enter__(self) -> LimitsTable:
        """Hold the table against every other process and thread; every method below runs inside.

        Holders keep it for microseconds; one that keeps it for `LOCK_TIMEOUT_S` (a stopped
        process) makes this raise `TimeoutError` rather than hang the body.
        """
        self._thread_lock.acquire()
        try:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # (the usual case, inline)
            except BlockingIOError:
                _lock_within(self._fd, self.path)
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
        calls = files = usd = 0
        index = m.find(_USED, _OCCUPANCY_AT, _SLOTS_AT)
        while index >= 0:
            slot = index - _OCCUPANCY_AT
            _, expires, f, a, u, flags, pid, started = _SLOT.unpack_from(m, _SLOTS_AT + slot * _SLOT.size)
            if expires < now or not self._alive(pid, started):
                self._reclaim(slot, now, f, a, u, flags)
            else:
                calls, files, usd = calls + (0 if flags & _SPEND_ONLY else 1), files + f, usd + u
            index = m.find(_USED, index + 1, _SLOTS_AT)
        buckets = _BUCKETS.unpack_from
        return Usage(
            calls=calls + sum(buckets(m, _CALLS_AT)),
            files=files + sum(buckets(m, _FILES_AT)),
            usd=(usd + sum(buckets(m, _USD_AT))) / 1_000_000,
        )

    def move_to(self, now: float) -> None:
        """Slide both windows forward to `now`, zeroing the buckets that fall out of them."""
        m = self._map
        if int(now) <= _Q.unpack_from(m, _SECOND_AT)[0] and int(now // 60) <= _Q.unpack_from(m, _MINUTE_AT)[0]:
            return  # the common case: calls come in bursts, within one second
        for head_at, unit, columns in (
            (_SECOND_AT, 1, (_CALLS_AT,)),
            (_MINUTE_AT, 60, (_FILES_AT, _API_AT, _USD_AT)),
        ):
            head = _Q.unpack_from(m, head_at)[0]
            target = int(now // unit)
            if target <= head:
                continue  # same bucket, or the clock stepped back: hold until it catches up
            if target - head >= _WINDOW:
                for column in columns:
                    m[column : column + _WINDOW * 8] = bytes(_WINDOW * 8)
            else:
                for t in range(head + 1, target + 1):
                    for column in columns:
                        _Q.pack_into(m, column + (t % _WINDOW) * 8, 0)
            _Q.pack_into(m, head_at, target)  # last: dying before it only means zeroing again

    def count(self, now: float, *, second: int, calls: int, files: int, api_calls: int, usd_micro: int) -> None:
        """Add settled usage: the calls to `second`'s bucket, the rest to the current minute's (after `move_to`).

        A second already out of the window is dropped, unless the clock stepped back (then it is
        counted in the newest bucket, as is anything stamped earlier than the window by a late clock).
        """
        m = self._map
        head = _Q.unpack_from(m, _SECOND_AT)[0]
        if calls and (
            second > head - _WINDOW or int(now) < head - 1
        ):  # (a second of skew between bodies is not a step)
            # Older than the window: a call that ran for over a minute is past counting, but a clock behind
            # the window's newest second counts it in the newest bucket. A second ahead of it: the newest too.
            at = _CALLS_AT + ((second if head - _WINDOW < second <= head else head) % _WINDOW) * 8
            _Q.pack_into(m, at, _Q.unpack_from(m, at)[0] + calls)
        if files or api_calls or usd_micro:
            # The current minute (held where it was if the clock stepped back).
            offset = (_Q.unpack_from(m, _MINUTE_AT)[0] % _WINDOW) * 8
            pack, unpack = _Q.pack_into, _Q.unpack_from
            if files:
                pack(m, _FILES_AT + offset, unpack(m, _FILES_AT + offset)[0] + files)
            if api_calls:
                pack(m, _API_AT + offset, unpack(m, _API_AT + offset)[0] + api_calls)
            if usd_micro:
                pack(m, _USD_AT + offset, unpack(m, _USD_AT + offset)[0] + usd_micro)

    # -- breaker -----------------------------------------------------------------------

    def breaker_closed(self) -> bool:
        return not _Q.unpack_from(self._map, _STATE_AT)[0]

    def failures(self) -> int:
        """Consecutive failed calls (what `breaker().failures` says, without building the rest)."""
        return int(_Q.unpack_from(self._map, _FAILURES_AT)[0])

    def breaker(self) -> Breaker:
        m = self._map
        state = int(_Q.unpack_from(m, _STATE_AT)[0])
        return Breaker(
            # A damaged state reads as open: refused until its cool-down, then a trial, as after any opening.
            state=_STATES[state] if 0 <= state < len(_STATES) else "open",
            opened_at=float(_D.unpack_from(m, _OPENED_AT)[0]),
            failures=int(_Q.unpack_from(m, _FAILURES_AT)[0]),
        )

    def set_breaker(
        self, *, state: BreakerState | None = None, opened_at: float | None = None, failures: int | None = None
    ) -> None:
        m = self._map
        if opened_at is not None:
            _D.pack_into(m, _OPENED_AT, opened_at)
        if failures is not None:
            _Q.pack_into(m, _FAILURES_AT, failures)
        if state is not None:
            _Q.pack_into(m, _STATE_AT, _STATES.index(state))

    def breach(self, now: float, window_s: float) -> int:
        """Note a breach; returns how many happened within the last `window_s` (at most `BREACHES`)."""
        m = self._map
        index = _Q.unpack_from(m, _BREACH_NEXT_AT)[0] % BREACHES
        _D.pack_into(m, _BREACHES_AT + index * 8, now)
        _Q.pack_into(m, _BREACH_NEXT_AT, (index + 1) % BREACHES)
        since = now - window_s
        return sum(1 for at in memoryview(m)[_BREACHES_AT:_OCCUPANCY_AT].cast("d") if at and at >= since)

    def forget_breaches(self) -> None:
        self._map[_BREACHES_AT:_OCCUPANCY_AT] = bytes(_OCCUPANCY_AT - _BREACHES_AT)

    # -- calls in flight ---------------------------------------------------------------

    def take(
        self, *, expires: float, files: int, api_calls: int, usd_micro: int, trial: bool, spend_only: bool = False
    ) -> tuple[int, int]:
        """Claim a free slot for this process; returns (slot, token). `spend_only`: it holds money, not a call."""
        m = self._map
        index = m.find(_FREE, _OCCUPANCY_AT, _SLOTS_AT)
        if index < 0:
            raise TooManyInFlight(f"{SLOTS} calls are already in flight in this workspace")
        slot = index - _OCCUPANCY_AT
        token = self._random.getrandbits(62) + 1
        flags = (_TRIAL if trial else 0) | (_SPEND_ONLY if spend_only else 0)
        record = (token, expires, files, api_calls, usd_micro, flags, self._pid, self._started)
        _SLOT.pack_into(m, _SLOTS_AT + slot * _SLOT.size, *record)
        m[index] = 1
        return slot, token

    def holds(self, slot: int, token: int) -> bool:
        """Whether `slot` is still this call's (not reclaimed and taken by another)."""
        m = self._map
        return bool(m[_OCCUPANCY_AT + slot]) and _Q.unpack_from(m, _SLOTS_AT + slot * _SLOT.size)[0] == token

    def grow(self, slot: int, token: int, *, files: int, api_calls: int, usd_micro: int) -> bool:
        """Add to a slot this call holds (its measured impact outgrew the planned one); False if it holds none."""
        if not self.holds(slot, token):
            return False
        at = _SLOTS_AT + slot * _SLOT.size
        _, expires, f, a, u, flags, pid, started = _SLOT.unpack_from(self._map, at)
        _SLOT.pack_into(self._map, at, token, expires, f + files, a + api_calls, u + usd_micro, flags, pid, started)
        return True

    def free(self, slot: int, token: int) -> bool:
        """Give a slot back, unless another call has it now; whether it did."""
        if not self.holds(slot, token):
            return False
        self._map[_OCCUPANCY_AT + slot] = 0
        return True

    def _alive(self, pid: int, started: int) -> bool:
        if pid == self._pid and started == self._started:
            return True
        if pid <= 0:
            return False  # (a damaged slot; kill() would mean a process group)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass  # someone else's process: alive, if it is the same one
        # The pid is taken: by the slot's process, or by a later one (a restarted container's pid 1).
        return _start_time(pid) in (started, 0)

    def _reclaim(self, slot: int, now: float, files: int, api_calls: int, usd_micro: int, flags: int) -> None:
        """A call whose body died: count all it reserved as done, then free it; a lost trial re-opens."""
        calls = 0 if flags & _SPEND_ONLY else 1
        self.count(now, second=int(now), calls=calls, files=files, api_calls=api_calls, usd_micro=usd_micro)
        if flags & _TRIAL:
            self.set_breaker(state="open", opened_at=now)
        self._map[_OCCUPANCY_AT + slot] = 0
