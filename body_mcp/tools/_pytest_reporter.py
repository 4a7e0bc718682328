"""Swarm's pytest reporter, loaded into the acceptance re-run of a pytest check (`-p swarm_verdict_<hex>`).

The body copies this file, under a module name drawn afresh for the re-run, into a directory of its own mounted in
the sandbox, and gives the pytest run a pipe (`SWARM_VERDICT_FD`). Each event is written to the pipe as it happens,
one JSON object a line: `start`, `collect_error`, `collect_skip` (a module skipped as it was collected), `collected`
(the test ids, and `where` each test's function is defined: its code's file, relative to the rootdir, and its
module), `report` (each phase of each test), `finish` (the session's exit status). The body reads the pipe
and judges (`shared_protocol.verdict.read_report`): whatever the process's exit code, what pytest reported is
already out of the process.

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
    elif report.skipped:  # (a module skipped as it was imported: its tests never become items)
        _send({"event": "collect_skip", "nodeid": report.nodeid})


def _relative(filename: str, root: str) -> str:
    """`filename` relative to the rootdir (`/`-separated), or absolute when it is outside it."""
    path = os.path.realpath(filename)
    if os.path.commonpath([path, root]) != root:
        return path
    return os.path.relpath(path, root).replace(os.sep, "/")


def _where(item: Any, root: str) -> Any:
    """Where `item`'s test function is defined (`file`, `module`) and, for a function that wraps another
    (`__wrapped__`: a library's decorator), where the innermost one is (`inner`); None for an item with no
    function (a doctest, a plugin's item)."""
    try:
        function = getattr(item, "obj", None)
        function = getattr(function, "__func__", function)
        code = getattr(function, "__code__", None)
        if code is None:
            return None
        inner = function
        for _ in range(32):
            wrapped = getattr(inner, "__wrapped__", None)
            if wrapped is None:
                break
            inner = getattr(wrapped, "__func__", wrapped)
        inner_code = getattr(inner, "__code__", None)
        where = {"file": _relative(code.co_filename, root), "module": str(getattr(function, "__module__", ""))}
        if inner is not function and inner_code is not None:
            where["inner"] = _relative(inner_code.co_filename, root)
        return where
    except Exception:  # noqa: BLE001 - an item whose object cannot be read has no location to send
        return None


def pytest_collection_finish(session: Any) -> None:
    config = session.config
    root = os.path.realpath(str(getattr(config, "rootpath", None) or config.rootdir))
    where: dict[str, Any] = {}
    for item in session.items:
        found = _where(item, root)
        if found is not None:
            where[item.nodeid] = found
    try:
        patterns = [str(p) for p in config.getini("python_files")]
    except (ValueError, TypeError):
        patterns = []
    _send(
        {
            "event": "collected",
            "ids": [item.nodeid for item in session.items],
            "where": where,
            "python_files": patterns,
        }
    )


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
