"""Linux inotify through libc: directory watches whose events are read without blocking, on demand.

Why not `watchfiles` (or any watcher with its own thread): the workspace scan decides which secrets a command's
sandbox hides, so a command must never start on a list older than itself. The kernel queues an inotify event
before the system call that caused it returns; draining the descriptor when a command arrives therefore sees
every change made before it. A watcher thread that batches and debounces events gives no such point, and
does not say when the kernel's queue overflowed (`IN_Q_OVERFLOW`), which here must force a full rescan.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import fcntl
import os
import struct
import termios
from dataclasses import dataclass

IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_UNMOUNT = 0x00002000
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_DONT_FOLLOW = 0x02000000
IN_ISDIR = 0x40000000
_IN_NONBLOCK = os.O_NONBLOCK
_IN_CLOEXEC = os.O_CLOEXEC
_HEADER = struct.Struct("iIII")  # wd, mask, cookie, len (then the NUL-padded name)
_READ_SIZE = 64 * 1024


class WatchUnavailable(OSError):
    """inotify cannot be used here (no libc symbol, or the kernel refused an instance)."""


@dataclass(frozen=True, slots=True)
class Event:
    wd: int
    mask: int
    name: str


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    for fn in ("inotify_init1", "inotify_add_watch", "inotify_rm_watch"):
        if not hasattr(libc, fn):
            raise WatchUnavailable(errno.ENOSYS, f"libc has no {fn}")
    libc.inotify_init1.argtypes = [ctypes.c_int]
    libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
    libc.inotify_rm_watch.argtypes = [ctypes.c_int, ctypes.c_int]
    return libc


class Inotify:
    """One inotify instance (non-blocking, close-on-exec)."""

    def __init__(self) -> None:
        self._libc = _libc()
        fd = self._libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
        if fd < 0:
            code = ctypes.get_errno()
            raise WatchUnavailable(code, f"inotify_init1: {os.strerror(code)}")
        self.fd: int | None = fd

    def add(self, path: str, mask: int) -> int:
        """Watch `path`; its watch descriptor. OSError (errno set) when the kernel refuses it."""
        assert self.fd is not None
        wd = self._libc.inotify_add_watch(self.fd, os.fsencode(path), mask)
        if wd < 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code), path)
        return wd

    def remove(self, wd: int) -> None:
        """Stop a watch (a watch the kernel dropped already is no error)."""
        if self.fd is not None:
            self._libc.inotify_rm_watch(self.fd, wd)

    def queued(self) -> int:
        """How many bytes of events are queued now (`FIONREAD`: one system call, no read)."""
        assert self.fd is not None
        return struct.unpack("i", fcntl.ioctl(self.fd, termios.FIONREAD, b"\0\0\0\0"))[0]

    def read(self) -> list[Event]:
        """Every event queued now, without waiting (until the queue is empty)."""
        assert self.fd is not None
        events: list[Event] = []
        while True:
            try:
                data = os.read(self.fd, _READ_SIZE)
            except BlockingIOError:
                return events
            offset = 0
            while offset + _HEADER.size <= len(data):
                wd, mask, _cookie, size = _HEADER.unpack_from(data, offset)
                offset += _HEADER.size
                name = os.fsdecode(data[offset : offset + size].rstrip(b"\0"))
                offset += size
                events.append(Event(wd=wd, mask=mask, name=name))

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
