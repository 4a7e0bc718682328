"""Calls in flight: reservations shared by every process of one workspace, outside SQLite.

A reservation is worthless after a crash (it expires anyway), so it does not belong in a
database commit. It lives in a small file mapped into every body of the workspace, changed
only under an `flock` of that file: reading what is held and taking a slot is one atomic step
against every other process. The settled usage stays in SQLite, committed with the audit
event; a slot is freed only after that commit, so a reader holding the lock sees a call either
in flight, settled, or (between the two) both — never neither, and never more than the budget.

Layout: `SLOTS` occupancy bytes, then `SLOTS` records of
(token, expires, files, api_calls, usd). A slot whose call outlived its expiry (a crashed
body) is reclaimed by the next reader.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import secrets
import struct
import threading
from dataclasses import dataclass
from pathlib import Path

SLOTS = 256
_RECORD = struct.Struct("<qdqqd")
_SIZE = SLOTS + SLOTS * _RECORD.size
_USED = b"\x01"


@dataclass(frozen=True, slots=True)
class Held:
    """What the calls in flight hold, all processes together."""

    calls: int
    files: int
    api_calls: int
    usd: float


class TooManyInFlight(Exception):
    """Every slot is taken by a live call."""


class InFlight:
    def __init__(self, path: Path) -> None:
        self.path = path
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                if os.fstat(fd).st_size != _SIZE:  # new, or not ours: start empty
                    os.ftruncate(fd, 0)
                    os.ftruncate(fd, _SIZE)
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

    def __enter__(self) -> InFlight:
        """Hold the table against every other process and thread while reading and taking."""
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

    # The methods below run inside `with table:`.

    def held(self, now: float) -> Held:
        """The sum over live slots; slots past their expiry are freed on the way."""
        calls = files = api_calls = 0
        usd = 0.0
        m = self._map
        index = m.find(_USED, 0, SLOTS)
        while index >= 0:
            _, expires, f, a, u = _RECORD.unpack_from(m, SLOTS + index * _RECORD.size)
            if expires < now:
                m[index] = 0
            else:
                calls += 1
                files += f
                api_calls += a
                usd += u
            index = m.find(_USED, index + 1, SLOTS)
        return Held(calls=calls, files=files, api_calls=api_calls, usd=usd)

    def take(self, *, expires: float, files: int, api_calls: int, usd: float) -> tuple[int, int]:
        """Claim a free slot; returns (slot, token)."""
        m = self._map
        index = m.find(b"\x00", 0, SLOTS)
        if index < 0:
            raise TooManyInFlight(f"{SLOTS} calls are already in flight in this workspace")
        token = secrets.randbits(62) + 1
        _RECORD.pack_into(m, SLOTS + index * _RECORD.size, token, expires, files, api_calls, usd)
        m[index] = 1
        return index, token

    def grow(self, slot: int, token: int, *, files: int, api_calls: int, usd: float) -> None:
        """Add to a slot this call holds (its measured impact outgrew the planned one)."""
        offset = SLOTS + slot * _RECORD.size
        held_token, expires, f, a, u = _RECORD.unpack_from(self._map, offset)
        if self._map[slot] and held_token == token:
            _RECORD.pack_into(self._map, offset, token, expires, f + files, a + api_calls, u + usd)

    def free(self, slot: int, token: int) -> None:
        """Give a slot back, unless it expired and another call has it now."""
        (held_token,) = struct.unpack_from("<q", self._map, SLOTS + slot * _RECORD.size)
        if held_token == token:
            self._map[slot] = 0
