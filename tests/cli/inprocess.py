"""`swarm ARGS` run in the test's own process: the same `swarm_cli.entry.main` that `python -m swarm_cli` runs, with
its own environment, stdin (empty, not a terminal), stdout and stderr, minus the ~1 s a new Python spends importing
the CLI (a test file that runs the CLI thirty times spent most of its time there). The command runs in a worker
thread, as it runs its own event loop, while the test's loop keeps serving a live brain. Tests of the process
itself (the exit status Python reports, no traceback on a crash at import) start a real `swarm` elsewhere
(tests/cli/test_cli.py)."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

import anyio

from swarm_cli.entry import main
from tests.brain.helpers import LiveBrain

_ONE_AT_A_TIME = threading.Lock()
"""os.environ and sys.stdout are the process's: two commands at once would mix them."""


def _stream() -> io.TextIOWrapper:
    """A text stream with a `buffer`, like the standard streams (`swarm audit output` writes bytes)."""
    return io.TextIOWrapper(io.BytesIO(), encoding="utf-8", write_through=True)


def _text(stream: io.TextIOWrapper) -> str:
    stream.flush()
    buffer = stream.buffer
    assert isinstance(buffer, io.BytesIO)
    return buffer.getvalue().decode()


def run_swarm(args: Sequence[str], env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """`swarm ARGS` with `env` as its whole environment: its exit status, stdout and stderr."""
    argv = ["swarm", *args]
    out, err = _stream(), _stream()
    with _ONE_AT_A_TIME:
        saved = dict(os.environ)
        os.environ.clear()
        os.environ.update(env)
        try:
            with (
                contextlib.redirect_stdout(out),
                contextlib.redirect_stderr(err),
                contextlib.ExitStack() as stack,
            ):
                stack.callback(setattr, sys, "stdin", sys.stdin)
                sys.stdin = io.StringIO("")
                try:
                    code = main(list(args))
                except SystemExit as exc:  # argparse's usage errors, as `sys.exit` would report them
                    if isinstance(exc.code, int) or exc.code is None:
                        code = exc.code or 0
                    else:
                        print(exc.code, file=sys.stderr)
                        code = 1
        finally:
            os.environ.clear()
            os.environ.update(saved)
    return subprocess.CompletedProcess(argv, code, _text(out), _text(err))


async def swarm_in_process(args: Sequence[str], env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """`run_swarm` without blocking the test's event loop (which may be serving the brain the command talks to)."""
    return await anyio.to_thread.run_sync(run_swarm, args, env)


async def swarm_on(
    live: LiveBrain | None, *args: str, home: Path, as_: str = "approver", brain: bool = True
) -> tuple[int, str, str]:
    """`swarm ARGS` with `SWARM_HOME=home` and, given a live brain, `--brain URL` (unless not `brain`) and the token
    of `as_` as `SWARM_TOKEN`; nothing of the environment's SWARM_CONFIG, SWARM_TOKEN or SWARM_BRAIN_URL."""
    env = {k: v for k, v in os.environ.items() if k not in ("SWARM_CONFIG", "SWARM_TOKEN", "SWARM_BRAIN_URL")}
    env["SWARM_HOME"] = str(home)
    flags: list[str] = []
    if live is not None:
        env["SWARM_TOKEN"] = live.tokens[as_]
        flags = ["--brain", live.url] if brain else []
    done = await swarm_in_process([*args, *flags], env)
    return done.returncode, done.stdout, done.stderr


async def swarm_as(*args: str, home: Path, config: Path, token: str) -> subprocess.CompletedProcess[str]:
    """`swarm ARGS` with `SWARM_HOME=home`, `SWARM_CONFIG=config` and `SWARM_TOKEN=token` (no SWARM_BRAIN_URL)."""
    env = {**os.environ, "SWARM_HOME": str(home), "SWARM_CONFIG": str(config), "SWARM_TOKEN": token}
    env.pop("SWARM_BRAIN_URL", None)
    return await swarm_in_process(args, env)


def swarm_here(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    """`test_cli.swarm`'s environment (`SWARM_HOME=home`, no SWARM_CONFIG), in this process."""
    env = {**os.environ, "SWARM_HOME": str(home)}
    env.pop("SWARM_CONFIG", None)
    return run_swarm(args, env)
