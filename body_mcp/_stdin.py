"""The wire's read side: MCP messages read from stdin on the event loop, not a worker thread per line.

The SDK reads stdin with `anyio.wrap_file`: each line a trip to a worker thread and back (two thread switches and
a wake-up of the loop through its self-pipe), which a loaded machine makes a scheduling round each, on every call.
A pipe or socket (what an MCP client gives its server) is read here instead when the loop says it is readable:
one `read` of what is there, never a blocking one. Anything else (a regular file, a terminal) keeps the SDK's
threaded reader. As with the SDK, fd 0 itself is pointed at the null device while serving (a command the body runs
reads end-of-file, never the client's messages), the wire served from a private duplicate; lines are text as the
SDK's `TextIOWrapper` makes them (`\\r\\n` and `\\r` read as `\\n`) but for bytes that are not UTF-8: the SDK
replaces them with U+FFFD, so a `write_file` would write characters the client never sent; here they are kept as lone
surrogates (`surrogateescape`), which the SDK's parser refuses and `server.recover_message` hands to the guard, which
refuses the call naming the argument, as it does a lone surrogate sent as a JSON escape.

`pipe_fd` is the one check of what the client gave for either side of the wire: this reader's stdin, and the
server's stdout, written on the loop when it is a pipe.
"""

from __future__ import annotations

import codecs
import contextlib
import fcntl
import io
import os
import stat
import sys
from collections.abc import AsyncIterator, Generator
from contextlib import contextmanager
from typing import IO, Any, TextIO

import anyio

_CHUNK = 256 * 1024


class LoopLineReader(anyio.AsyncFile[str]):
    """Lines from a pipe or socket `fd`, read on the event loop as they arrive (`async for line in reader`)."""

    def __init__(self, fd: int, fp: TextIO) -> None:
        super().__init__(fp)  # (`fp` for what `AsyncFile` answers besides lines; it is never read from)
        self._fd = fd

    async def __aiter__(self) -> AsyncIterator[str]:  # pyright: ignore[reportIncompatibleMethodOverride]
        decoder = codecs.getincrementaldecoder("utf-8")(errors="surrogateescape")
        pending = ""
        while True:
            await anyio.wait_readable(self._fd)
            try:
                data = os.read(self._fd, _CHUNK)  # (readable: returns what is there without blocking)
            except BlockingIOError:
                continue
            text = decoder.decode(data, final=not data)
            if text:
                pending += text
                held = pending.endswith("\r")  # (a "\r\n" split across two reads is one line end)
                if held:
                    pending = pending[:-1]
                pending = pending.replace("\r\n", "\n").replace("\r", "\n")
                *lines, pending = pending.split("\n")
                for line in lines:
                    yield line + "\n"
                if held:
                    pending += "\r"
            if not data:
                if pending:
                    yield pending.replace("\r", "\n")
                return


def pipe_fd(file: int | IO[Any], *, or_socket: bool = False) -> int | None:
    """The descriptor of `file` (a descriptor, or a file object) when it is a pipe, or with `or_socket` a socket;
    None for anything else (a regular file, a terminal) or a file object with no descriptor."""
    try:
        fd = file if isinstance(file, int) else file.fileno()
        mode = os.fstat(fd).st_mode
    except (OSError, ValueError, io.UnsupportedOperation):
        return None
    return fd if stat.S_ISFIFO(mode) or (or_socket and stat.S_ISSOCK(mode)) else None


@contextmanager
def claimed_stdin() -> Generator[LoopLineReader | None]:
    """A reader of the wire on the event loop while fd 0 points at the null device, restored on exit; None when
    stdin is no pipe or socket, or its descriptors cannot be moved (the SDK's own reader serves it then)."""
    if sys.platform == "win32" or pipe_fd(0, or_socket=True) is None:  # pragma: no cover - (Windows: the SDK's reader)
        yield None
        return
    try:
        wire = fcntl.fcntl(0, fcntl.F_DUPFD_CLOEXEC, 3)
    except OSError:
        yield None
        return
    try:
        null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.dup2(null, 0)
        finally:
            os.close(null)
    except OSError:
        os.close(wire)
        yield None
        return
    try:
        # closefd=False: the reader reads `wire` itself; the text object only answers what `AsyncFile` may be asked.
        yield LoopLineReader(wire, open(wire, encoding="utf-8", closefd=False))  # noqa: SIM115
    finally:
        with contextlib.suppress(OSError):
            os.dup2(wire, 0)
        with contextlib.suppress(OSError):
            os.close(wire)
