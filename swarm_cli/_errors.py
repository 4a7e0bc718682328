"""The CLI's top-level boundary: every failure of a command becomes one line on stderr and a non-zero exit.

Errors raised on purpose (`SwarmError`) carry their own message; the edges add the file to the
rest (`StateUnusable` for the state database, `OSError.filename` for any other file). Anything
else is a bug, still reported in one line. `SWARM_DEBUG=1` lets tracebacks through.
"""

from __future__ import annotations

import argparse
import errno
import os
import sqlite3
import sys
from collections.abc import Callable

from body_mcp import SwarmError, ToolRefused
from body_mcp.state import resolve_home
from shared_protocol.privacy import PrivacyError

_NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def describe(exc: BaseException) -> str:
    """`exc` as one line that says what failed and, where known, on which file."""
    if isinstance(exc, ToolRefused):
        message = exc.message
    elif isinstance(exc, SwarmError | PrivacyError):
        message = str(exc)
    elif isinstance(exc, OSError):
        message = _os_error(exc)
    elif isinstance(exc, UnicodeEncodeError) and exc.reason == "surrogates not allowed":
        # Only the OS hands Python such a string: an argument, a path or a variable that is not UTF-8.
        message = f"{exc.object!r} is not valid UTF-8: Swarm's ids, names and paths are UTF-8"
    elif isinstance(exc, sqlite3.DatabaseError):
        message = f"database error: {exc}"
    else:
        message = f"unexpected error ({type(exc).__name__}: {exc}); this is a bug, SWARM_DEBUG=1 shows where"
    return " ".join(message.split()) or type(exc).__name__


def _os_error(exc: OSError) -> str:
    reason = exc.strerror or str(exc)
    if exc.filename is not None:
        other = f" -> {os.fsdecode(exc.filename2)}" if exc.filename2 is not None else ""
        return f"{os.fsdecode(exc.filename)}{other}: {reason}"
    if exc.errno in _NO_SPACE:
        # A write through an open file names none; the state is what Swarm writes.
        return f"{reason} (writing Swarm's state under {resolve_home()})"
    return reason


def run(command: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run one parsed command: its exit code, or 1 (130 when interrupted) with one line on stderr."""
    try:
        return int(command(args))
    except KeyboardInterrupt:
        print("swarm: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`swarm audit tail | head`): nothing more to say, and no complaint at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as exc:  # the top-level boundary: fail closed, in one line
        if os.environ.get("SWARM_DEBUG"):
            raise
        print(f"swarm: {describe(exc)}", file=sys.stderr)
        return 1
