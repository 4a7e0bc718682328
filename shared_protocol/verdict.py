"""The verdict of an acceptance re-run that is a pytest run: taken from pytest's own per-test results, not the exit
code of the process the code under test runs in.

The code under test runs inside the check's process, so it can end that process with any exit code it likes
(`atexit.register(os._exit, 0)`, `os._exit(0)` at import). For a pytest check the body loads a reporter of its own
into pytest (`-p`, a module under a name drawn afresh for each re-run, from a directory outside the workspace) that
writes each event to a pipe the body reads, as it happens: the start of the session, what was collected, each
test's result, the end of the session. `read_report` turns that stream and the exit code into a `CheckReport`: the
check passed only when every collected test (at least one) passed, nothing failed to collect, pytest finished its
session with status 0 and the process exited 0. An exit code that disagrees with the report (0 with failures) is a
failure, named as such.

The `collected` event also says where each test's function is defined (its code's file, relative to the rootdir,
and its module): a test whose function lives in a project file that is no test fails (`_displaced`: code under
test put a function of its own in the test's place, as a profile hook can when the test module finishes loading).

What this does not stop: the verdict is given inside the process the code under test runs in, so it is forgeable
by construction (patching pytest's internals or the reporter, writing made-up events to the pipe before ending the
process, rewriting the locations this module reads). A plain exit-code trick no longer verifies; deliberate code
in the diff is what the tamper screen on the change (`shared_protocol.tamper`) holds for review, and what it does
not recognise is the reviewer's. Checks that are not pytest runs (make, npm, a script) keep an exit-code verdict.

    start = pytest_start(["python3", "-m", "pytest", "-q", "tests"])   # 3: pytest's own arguments start there
    argv = instrumented(argv, "swarm_verdict_ab12")                     # [..., "pytest", "-p", "swarm_verdict_ab12", …]
    report = read_report(data, exit_code=1)                            # CheckReport(verdict="failed", reason=...)
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import PurePosixPath
from typing import Any, Literal, cast

from pydantic import Field

from ._base import ProtocolModel
from .tamper import TEST_FILE_PATTERNS, is_test_path

VERDICT_FD_VARIABLE = "SWARM_VERDICT_FD"
"""Names, in the check's environment, the pipe the reporter writes to (the reporter removes it at once)."""
REPORTER_PREFIX = "swarm_verdict_"
"""The reporter's module is this prefix and random hex: a module the workspace holds cannot be named like it."""
MAX_REPORT_BYTES = 32 * 1024 * 1024
"""More than this is not a report pytest's own run wrote (a test's events are ~200 bytes)."""

_PYTHON = re.compile(r"python(3(\.\d+)?)?")
_PYTEST = ("pytest", "py.test")
_UV_FLAGS = frozenset(("--frozen", "--locked", "--no-sync", "--offline", "--isolated", "--no-dev", "-q", "--quiet"))
_UV_VALUED = frozenset(("--extra", "--group", "--with", "--python", "-p", "--package", "--env-file"))


def pytest_start(argv: Sequence[str]) -> int | None:
    """Where pytest's own arguments begin in `argv` when it is a pytest run Swarm knows how to instrument (`pytest
    …`, `py.test …`, `python3 -m pytest …`, `uv run [flags] pytest …`, `uv run python -m pytest …`), else None.
    Conservative on purpose: any other shape (a shell, `-I`/`-E` that would ignore the reporter's path, an option
    of uv's it does not know) is no pytest run here, and its verdict is the exit code."""
    words = list(argv)
    if not words:
        return None
    head = PurePosixPath(words[0]).name
    if head in _PYTEST:
        return 1
    if _PYTHON.fullmatch(head):
        if words[1:3] == ["-m", "pytest"]:
            return 3
        if words[1:2] == ["-mpytest"]:
            return 2
        if words[1:4] == ["-m", "uv", "run"]:
            return _after_uv_run(words, 4)
        return None
    if head == "uv" and words[1:2] == ["run"]:
        return _after_uv_run(words, 2)
    return None


def _after_uv_run(words: list[str], at: int) -> int | None:
    i = at
    while i < len(words) and words[i].startswith("-"):
        if words[i] in _UV_FLAGS:
            i += 1
        elif words[i] in _UV_VALUED:
            i += 2
        else:
            return None
    rest = pytest_start(words[i:]) if i < len(words) else None
    return None if rest is None else i + rest


def instrumented(argv: Sequence[str], module: str) -> list[str]:
    """`argv` (a pytest run: `pytest_start` is not None) loading the reporter `module` first (`-p MODULE`)."""
    start = pytest_start(argv)
    if start is None:
        raise ValueError(f"not a pytest run Swarm can instrument: {list(argv)!r}")
    return [*argv[:start], "-p", module, *argv[start:]]


CheckVerdict = Literal["passed", "failed"]


class CheckReport(ProtocolModel):
    """What the body's reporter saw of a pytest acceptance re-run, and the verdict it gives (`passed` only when every
    collected test passed, at least one, nothing failed to collect, pytest ended its session with status 0 and the
    process exited 0); `reason` says why not."""

    kind: Literal["pytest"] = "pytest"
    verdict: CheckVerdict
    reason: str = ""
    collected: int = Field(default=0, ge=0)
    passed: int = Field(default=0, ge=0)
    failed: int = Field(default=0, ge=0)
    errors: int = Field(default=0, ge=0)
    """Tests whose setup or teardown failed, and files that failed to collect."""
    skipped: int = Field(default=0, ge=0)
    """Skipped, xfailed or xpassed: proves nothing, so not a pass."""
    session_status: int | None = None
    """The exit status pytest gave its session (None: it never finished one)."""
    exit_code: int | None = None
    """The exit code of the process, as the sandbox saw it (kept as evidence; the verdict is the report's)."""
    finished: bool = False


def read_report(data: bytes, *, exit_code: int | None, truncated: bool = False) -> CheckReport:
    """The verdict of the reporter's stream `data` (JSON lines) and the process's `exit_code`. Never raises: a
    missing, cut or malformed stream is a failed verdict naming the problem."""

    def failed(reason: str, **counts: Any) -> CheckReport:
        return CheckReport(verdict="failed", reason=reason, exit_code=exit_code, **counts)

    if truncated or len(data) > MAX_REPORT_BYTES:
        return failed(f"the report is larger than {MAX_REPORT_BYTES} bytes: not one pytest's own run wrote")
    events: list[dict[str, Any]] = []
    for number, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except ValueError:
            return failed(f"line {number} of the report is not JSON: the report is malformed")
        if not isinstance(event, dict) or not isinstance(cast(dict[str, Any], event).get("event"), str):
            return failed(f"line {number} of the report is not an event: the report is malformed")
        events.append(cast(dict[str, Any], event))
    code = "no exit code" if exit_code is None else f"exit code {exit_code}"
    if not events:
        return failed(
            f"no report: pytest did not load Swarm's reporter, or the process ended before pytest started ({code})"
        )
    if events[0]["event"] != "start":
        return failed("the report does not begin with pytest's start: it is malformed")
    return _judge(events, exit_code, code)


def _judge(events: list[dict[str, Any]], exit_code: int | None, code: str) -> CheckReport:
    collected: list[str] | None = None
    where: dict[str, Any] = {}
    patterns: list[str] = list(TEST_FILE_PATTERNS)
    collect_errors = 0
    collect_skips: list[str] = []
    outcomes: dict[str, list[tuple[str, str, bool]]] = {}
    status: int | None = None
    for index, event in enumerate(events):
        kind = event["event"]
        if status is not None:
            return CheckReport(
                verdict="failed",
                reason=f"the report goes on after pytest finished its session ({kind}): not pytest's own run wrote it",
                exit_code=exit_code,
            )
        if kind == "start":
            if index:
                return CheckReport(
                    verdict="failed", reason="the report has two starts: it is malformed", exit_code=exit_code
                )
        elif kind == "collect_error":
            collect_errors += 1
        elif kind == "collect_skip":
            nodeid = event.get("nodeid")
            collect_skips.append(nodeid if isinstance(nodeid, str) else "?")
        elif kind == "collected":
            ids: object = event.get("ids")
            if collected is not None or not isinstance(ids, list):
                return CheckReport(verdict="failed", reason="the report's collection is malformed", exit_code=exit_code)
            if not all(isinstance(i, str) for i in cast(list[object], ids)):
                return CheckReport(verdict="failed", reason="the report's collection is malformed", exit_code=exit_code)
            collected = cast(list[str], ids)
            raw_where: object = event.get("where", {})
            raw_patterns: object = event.get("python_files", [])
            if not isinstance(raw_where, dict) or not isinstance(raw_patterns, list):
                return CheckReport(verdict="failed", reason="the report's collection is malformed", exit_code=exit_code)
            where = cast(dict[str, Any], raw_where)
            patterns += [p for p in cast(list[object], raw_patterns) if isinstance(p, str)]
        elif kind == "report":
            nodeid, when, outcome = event.get("nodeid"), event.get("when"), event.get("outcome")
            if not (isinstance(nodeid, str) and isinstance(when, str) and isinstance(outcome, str)):
                return CheckReport(
                    verdict="failed", reason="a test's result in the report is malformed", exit_code=exit_code
                )
            outcomes.setdefault(nodeid, []).append((when, outcome, event.get("xfail") is True))
        elif kind == "finish":
            raw = event.get("exitstatus")
            if not isinstance(raw, int) or isinstance(raw, bool):
                return CheckReport(verdict="failed", reason="the report's end is malformed", exit_code=exit_code)
            status = raw
        else:
            return CheckReport(
                verdict="failed", reason=f"the report has an unknown event {kind!r}", exit_code=exit_code
            )
    ids = collected or []
    passed = [n for n in ids if _passed(outcomes.get(n, []))]
    failed = [n for n in ids if any(o == "failed" and w == "call" for w, o, _ in outcomes.get(n, []))]
    errors = collect_errors + sum(
        1 for n in ids if any(o == "failed" and w != "call" for w, o, _ in outcomes.get(n, []))
    )
    skipped = [n for n in ids if n not in passed and n not in failed and _skipped(outcomes.get(n, []))]
    counts: dict[str, Any] = {
        "collected": len(ids),
        "passed": len(passed),
        "failed": len(failed),
        "errors": errors,
        "skipped": len(skipped) + len(collect_skips),
        "session_status": status,
        "exit_code": exit_code,
        "finished": status is not None,
    }
    if displaced := _displaced(ids, where, patterns):
        return CheckReport(verdict="failed", reason=displaced, **counts)
    if collect_skips:
        reason = (
            f"pytest skipped {collect_skips[0]!r} while collecting it ({len(collect_skips)} skipped at collection): "
            "its tests never ran, and a skip proves nothing"
        )
        return CheckReport(verdict="failed", reason=reason, **counts)
    reason = _why_not(ids, passed, failed, errors, skipped, outcomes, collected is not None, status, exit_code, code)
    return CheckReport(verdict="failed" if reason else "passed", reason=reason, **counts)


def _displaced(ids: list[str], where: dict[str, Any], patterns: list[str]) -> str:
    """Why a collected test is not the test its node id names ("" when each is): its function is defined in a
    project file that is not a test (code under test put its own function in the test's place: a profile hook, an
    import of the test module). A test's function may be defined in the file its id names, in another test file
    (a base class's method, a test imported from a helper), or in a library outside the rootdir when it wraps one
    of those (`__wrapped__`: a decorator's). An item with no function (a doctest, a plugin's item) has no location
    to judge; a location that is malformed is one."""
    for nodeid in ids:
        raw: object = where.get(nodeid)
        if raw is None:
            continue
        if not isinstance(raw, dict):
            return f"the report's location of {nodeid!r} is malformed"
        found = cast(dict[str, Any], raw)
        file, module, inner = found.get("file"), found.get("module", ""), found.get("inner")
        if not isinstance(file, str) or not isinstance(module, str) or not isinstance(inner, str | None):
            return f"the report's location of {nodeid!r} is malformed"
        named = nodeid.split("::", 1)[0]
        if _test_code(file, named, patterns):
            continue
        if _outside(file) and inner is not None and _test_code(inner, named, patterns):
            continue
        return (
            f"the test {nodeid!r} runs a function defined in {file} (module {module or '?'}), not in {named} or "
            "another test file: code under test put it in the test's place"
        )
    return ""


def _outside(file: str) -> bool:
    return file.startswith(("/", "../")) or file == ".."


def _test_code(file: str, named: str, patterns: list[str]) -> bool:
    return file == named or (not _outside(file) and is_test_path(file, patterns))


def _why_not(
    ids: list[str],
    passed: list[str],
    failed: list[str],
    errors: int,
    skipped: list[str],
    outcomes: dict[str, list[tuple[str, str, bool]]],
    collection_done: bool,
    status: int | None,
    exit_code: int | None,
    code: str,
) -> str:
    """Why the report is no pass ("" when it is one)."""
    forged = (
        " though the process exited 0: the exit code is not pytest's (code under test ending the process?)"
        if exit_code == 0
        else ""
    )
    if not collection_done:
        return f"pytest never finished collecting the tests: the process ended during collection ({code}){forged}"
    if not ids:
        return f"pytest collected no tests: a check that runs none proves nothing ({code})"
    if strangers := sorted(set(outcomes) - set(ids)):
        return f"the report has results for tests pytest did not collect ({strangers[0]!r}…): it is not pytest's own"
    if failed or errors:
        return f"{len(failed)} failed and {errors} errors of {len(ids)} collected{forged}"
    if status is None:
        unrun = len(ids) - len(passed) - len(skipped)
        return (
            f"pytest never finished its session: the process ended ({code}) with {unrun} of {len(ids)} tests not "
            f"run to the end{forged}"
        )
    if skipped:
        return (
            f"{len(skipped)} of {len(ids)} collected tests were skipped or xfailed: a skipped test proves nothing "
            "(make the acceptance command select the tests that must pass)"
        )
    if len(passed) != len(ids):
        return f"only {len(passed)} of {len(ids)} collected tests ran and passed{forged}"
    if status != 0:
        return f"every test passed, but pytest ended its session with status {status}"
    if exit_code != 0:
        return f"pytest reported every test passed, but the process ended with {code}: its end is not pytest's"
    return ""


def _passed(results: list[tuple[str, str, bool]]) -> bool:
    """A test passed: its call passed (not an xpass) and no phase of it failed or was skipped."""
    return any(w == "call" and o == "passed" and not x for w, o, x in results) and all(
        o == "passed" and not x for _, o, x in results
    )


def _skipped(results: list[tuple[str, str, bool]]) -> bool:
    return any(o == "skipped" or x for _, o, x in results)


def event_report(detail: dict[str, Any]) -> CheckReport | None:
    """The `CheckReport` an audit event's `detail` holds (`report`), or None (none, or not a report)."""
    raw = detail.get("report")
    if not isinstance(raw, dict):
        return None
    try:
        return CheckReport.model_validate(raw)
    except ValueError:
        return None


__all__ = [
    "MAX_REPORT_BYTES",
    "REPORTER_PREFIX",
    "VERDICT_FD_VARIABLE",
    "CheckReport",
    "CheckVerdict",
    "event_report",
    "instrumented",
    "pytest_start",
    "read_report",
]
