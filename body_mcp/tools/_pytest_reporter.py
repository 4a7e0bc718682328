"""Swarm's pytest reporter, loaded into the acceptance re-run of a pytest check (`-p swarm_verdict_<hex>`).

The body copies this file, under a module name drawn afresh for the re-run, into a directory of its own mounted in
the sandbox, and gives the pytest run a pipe (`SWARM_VERDICT_FD`). Each event is written to the pipe as it happens,
one JSON object a line: `start`, `collect_error`, `collected` (the test ids), `report` (each phase of each test),
`finish` (the session's exit status). The body reads the pipe and judges (`shared_protocol.verdict.read_report`):
whatever the process's exit code, what pytest reported is already out of the process.

Runs on the check's interpreter, not Swarm's: the standard library only, and no syntax newer than Python 3.8.
"""

from __future__ import annotations

import json
import os
from typing import Any

_VARIABLE = "SWARM_VERDICT_FD"


def _take_fd() -> int | None:
    """The pipe, taken out of the environment (the tests' subprocesses neither see it nor inherit it)."""
    raw = os.environ.pop(_VARIABLE, None)
    if raw is None:
        return None
    try:
        fd = int(raw)
        os.set_inheritable(fd, False)
    except (ValueError, OSError):
        return None
    return fd


_fd = _take_fd()


def _send(event: dict[str, Any]) -> None:
    global _fd
    if _fd is None:
        return
    data = (json.dumps(event) + "\n").encode()
    try:
        while data:
            data = data[os.write(_fd, data) :]
    except OSError:
        _fd = None


def pytest_configure(config: Any) -> None:
    if hasattr(config, "workerinput"):  # (an xdist worker: its controller reports)
        return
    import pytest

    _send({"event": "start", "pytest": pytest.__version__})


def pytest_collectreport(report: Any) -> None:
    if report.failed:
        _send({"event": "collect_error", "nodeid": report.nodeid})


def pytest_collection_finish(session: Any) -> None:
    _send({"event": "collected", "ids": [item.nodeid for item in session.items]})


def pytest_runtest_logreport(report: Any) -> None:
    _send(
        {
            "event": "report",
            "nodeid": report.nodeid,
            "when": report.when,
            "outcome": report.outcome,
            "xfail": hasattr(report, "wasxfail"),
        }
    )


def pytest_sessionfinish(session: Any, exitstatus: Any) -> None:
    _send({"event": "finish", "exitstatus": int(exitstatus)})
