"""The verdict of a pytest check comes from what pytest reported, as it happened, not from the exit code of the
process the code under test runs in. Real pytest runs (this interpreter's) with the body's reporter loaded exactly
as the body loads it (`-p`, a pipe named by `SWARM_VERDICT_FD`, plugin autoload off)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from body_mcp.tools._verdict import REPORTER_SOURCE
from shared_protocol.verdict import (
    MAX_REPORT_BYTES,
    VERDICT_FD_VARIABLE,
    CheckReport,
    instrumented,
    pytest_start,
    read_report,
)

MODULE = "swarm_verdict_0123456789abcdef"
APP_FIXED = "def main():\n    return 2\n"
APP_BROKEN = "def main():\n    return 1\n"
TEST = "import app\n\n\ndef test_main():\n    assert app.main() == 2\n\n\ndef test_other():\n    assert True\n"


def run_reported(tmp_path: Path, app: str, test: str = TEST, *args: str) -> tuple[CheckReport, int]:
    """`python -m pytest -q tests` in a project holding `app`, with the reporter: its verdict, and the exit code."""
    project = tmp_path / "project"
    (project / "tests").mkdir(parents=True, exist_ok=True)
    (project / "app.py").write_text(app)
    (project / "tests" / "test_app.py").write_text(test)
    plugin_dir = tmp_path / "reporter"
    plugin_dir.mkdir(exist_ok=True)
    (plugin_dir / f"{MODULE}.py").write_text(REPORTER_SOURCE)
    read_fd, write_fd = os.pipe()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "COV_"))}
    env |= {
        "PYTHONPATH": str(plugin_dir),
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
        VERDICT_FD_VARIABLE: str(write_fd),
    }
    argv = instrumented([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args, "tests"], MODULE)
    try:
        done = subprocess.run(
            argv, cwd=project, env=env, pass_fds=[write_fd], capture_output=True, text=True, timeout=120
        )
    finally:
        os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        data = pipe.read()
    return read_report(data, exit_code=done.returncode), done.returncode


def test_an_honest_passing_run_is_a_pass(tmp_path: Path) -> None:
    report, code = run_reported(tmp_path, APP_FIXED)
    assert code == 0
    assert (report.verdict, report.collected, report.passed, report.failed) == ("passed", 2, 2, 0), report
    assert (report.session_status, report.exit_code, report.finished) == (0, 0, True)


def test_an_honest_failing_run_is_a_failure(tmp_path: Path) -> None:
    report, code = run_reported(tmp_path, APP_BROKEN)
    assert code == 1
    assert (report.verdict, report.collected, report.passed, report.failed) == ("failed", 2, 1, 1), report


@pytest.mark.parametrize(
    "forged",
    [
        "import atexit\nimport os\n\natexit.register(os._exit, 0)\n\n\ndef main():\n    return 1\n",
        "import os\n\n\ndef main():\n    os._exit(0)\n",
        "import os\n\nos._exit(0)\n",
        "import sys\n\n\ndef main():\n    raise SystemExit(0)\n",
    ],
    ids=["atexit-after-a-failure", "os-exit-inside-the-test", "os-exit-at-import", "systemexit-inside-the-test"],
)
def test_code_under_test_that_forges_the_exit_code_does_not_pass(tmp_path: Path, forged: str) -> None:
    report, code = run_reported(tmp_path, forged)
    if "SystemExit" not in forged:
        assert code == 0, "the forgery works on the exit code: the test shows the report is what decides"
    assert report.verdict == "failed", report
    assert report.exit_code == code
    assert report.reason


def test_zero_tests_collected_is_no_pass(tmp_path: Path) -> None:
    report, _ = run_reported(tmp_path, APP_FIXED, "import app\n")
    assert (report.verdict, report.collected) == ("failed", 0)
    assert "no tests" in report.reason


def test_a_skipped_test_is_no_pass(tmp_path: Path) -> None:
    """`pytest.skip()` from inside the code under test would otherwise pass a check whose test never ran."""
    skipping = "import pytest\n\n\ndef main():\n    pytest.skip('not today')\n"
    report, code = run_reported(tmp_path, skipping)
    assert code == 0
    assert (report.verdict, report.skipped, report.passed) == ("failed", 1, 1), report


def test_a_module_skipped_while_it_is_collected_is_no_pass(tmp_path: Path) -> None:
    """The code under test skips at import: pytest skips the test module that imports it at collection, so its
    tests never become items; with another test file passing, only the collection skip tells."""
    skip_at_import = 'import unittest\n\nraise unittest.SkipTest("no display")\n'
    project_test = TEST.replace("def test_other():\n    assert True\n", "")
    other = tmp_path / "project" / "tests" / "test_other.py"
    other.parent.mkdir(parents=True)
    other.write_text("def test_elsewhere():\n    assert True\n")
    report, code = run_reported(tmp_path, skip_at_import, project_test)
    assert code == 0  # (pytest itself calls this run a success)
    assert (report.verdict, report.collected, report.passed, report.skipped) == ("failed", 1, 1, 1), report
    assert "skipped 'tests/test_app.py' while collecting it" in report.reason


def test_a_collection_error_is_no_pass(tmp_path: Path) -> None:
    report, _ = run_reported(tmp_path, "this is not python\n")
    assert report.verdict == "failed" and report.errors >= 1, report


def test_a_workspace_plugin_is_not_autoloaded(tmp_path: Path) -> None:
    """A `pytest11` entry point in a `*.dist-info` on the import path is what autoload would load; with autoload off
    the real tests run (and fail)."""
    project = tmp_path / "project"
    (project / "cheat.dist-info").mkdir(parents=True)
    (project / "cheat.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: cheat\nVersion: 1.0\n")
    (project / "cheat.dist-info" / "entry_points.txt").write_text("[pytest11]\ncheat = cheat_plugin\n")
    (project / "cheat_plugin.py").write_text("import os\nos._exit(0)\n")
    report, code = run_reported(tmp_path, APP_BROKEN)
    assert (code, report.verdict, report.failed) == (1, "failed", 1), report


# -- the stream, as data -------------------------------------------------------------------------------------


def stream(*events: dict[str, object]) -> bytes:
    return b"".join(json.dumps(e).encode() + b"\n" for e in events)


START = {"event": "start", "pytest": "8"}
COLLECTED = {"event": "collected", "ids": ["t::a"]}
PASSED = [{"event": "report", "nodeid": "t::a", "when": w, "outcome": "passed"} for w in ("setup", "call", "teardown")]
FINISH = {"event": "finish", "exitstatus": 0}


def test_a_whole_passing_stream_is_a_pass() -> None:
    assert read_report(stream(START, COLLECTED, *PASSED, FINISH), exit_code=0).verdict == "passed"


@pytest.mark.parametrize(
    ("data", "exit_code", "reason"),
    [
        (b"", 0, "no report"),
        (b"not json\n", 0, "not JSON"),
        (b"[1, 2]\n", 0, "not an event"),
        (stream(COLLECTED, *PASSED, FINISH), 0, "does not begin with pytest's start"),
        (stream(START, START, COLLECTED, *PASSED, FINISH), 0, "two starts"),
        (stream(START, {"event": "collected", "ids": "t::a"}, *PASSED, FINISH), 0, "collection is malformed"),
        (stream(START, COLLECTED, {"event": "report", "nodeid": 3}, FINISH), 0, "result in the report is malformed"),
        (stream(START, COLLECTED, *PASSED, {"event": "finish", "exitstatus": "0"}), 0, "end is malformed"),
        (stream(START, COLLECTED, *PASSED, {"event": "party"}), 0, "unknown event"),
        (stream(START, COLLECTED, *PASSED, FINISH, *PASSED), 0, "goes on after pytest finished"),
        (stream(START), 0, "never finished collecting"),
        (stream(START, {"event": "collected", "ids": []}, FINISH), 0, "collected no tests"),
        (stream(START, COLLECTED, *PASSED), 0, "never finished its session"),
        (stream(START, COLLECTED, *PASSED, {"event": "finish", "exitstatus": 1}), 1, "ended its session with status 1"),
        (stream(START, COLLECTED, *PASSED, FINISH), 3, "process ended with exit code 3"),
        (stream(START, COLLECTED, *[dict(p, nodeid="t::b") for p in PASSED], FINISH), 0, "did not collect"),
    ],
)
def test_a_missing_malformed_or_inconsistent_stream_is_no_pass(data: bytes, exit_code: int, reason: str) -> None:
    report = read_report(data, exit_code=exit_code)
    assert report.verdict == "failed"
    assert reason in report.reason, report.reason


def test_an_oversized_stream_is_no_pass() -> None:
    assert read_report(b"", exit_code=0, truncated=True).verdict == "failed"
    assert "larger than" in read_report(b" " * (MAX_REPORT_BYTES + 1), exit_code=0).reason


def test_a_failure_with_exit_code_0_is_named_a_forged_exit() -> None:
    failed = {"event": "report", "nodeid": "t::a", "when": "call", "outcome": "failed"}
    report = read_report(stream(START, COLLECTED, failed, {"event": "finish", "exitstatus": 1}), exit_code=0)
    assert report.verdict == "failed" and "not pytest's" in report.reason


# -- which commands are pytest runs ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "start"),
    [
        ("pytest -q tests", 1),
        ("/usr/bin/py.test", 1),
        ("python3 -m pytest -q", 3),
        ("python -mpytest", 2),
        ("python3.11 -m pytest", 3),
        ("uv run pytest -q", 3),
        ("uv run --frozen --extra dev pytest", 6),
        ("uv run python -m pytest tests", 5),
        ("python3 -m uv run --no-sync pytest", 6),
        ("python3 check.py", None),
        ("python3 -I -m pytest", None),
        ("python3 -c 'import pytest; pytest.main()'", None),
        ("sh -c 'pytest -q'", None),
        ("make test", None),
        ("uv run --unknown-flag pytest", None),
        ("uv pip list", None),
        ("", None),
    ],
)
def test_pytest_runs_are_detected_conservatively(argv: str, start: int | None) -> None:
    import shlex

    assert pytest_start(shlex.split(argv)) == start


def test_the_reporter_is_loaded_first_and_a_non_pytest_command_is_refused() -> None:
    assert instrumented(["python3", "-m", "pytest", "-q"], "m") == ["python3", "-m", "pytest", "-p", "m", "-q"]
    with pytest.raises(ValueError, match="not a pytest run"):
        instrumented(["make", "test"], "m")


# -- where each collected test's function is defined ------------------------------------------------------------

SWAP_THE_TEST = """import sys


def _passing():
    return None


def _swap(frame, event, arg):
    name = frame.f_globals.get("__name__", "")
    if event == "return" and frame.f_code.co_name == "<module>" and name.endswith("test_app"):
        frame.f_globals["test_main"] = _passing
        sys.setprofile(None)


sys.setprofile(_swap)


def main():
    return 1
"""


def test_code_under_test_that_swaps_the_test_function_does_not_pass(tmp_path: Path) -> None:
    """A profile hook in app.py replaces `test_main` with its own function when the test module's body returns:
    pytest runs app.py's function under the test's id, and it passes; the reporter says where it is defined."""
    report, code = run_reported(tmp_path, SWAP_THE_TEST)
    assert code == 0, "the swap works on pytest: the test shows the location is what decides"
    assert report.verdict == "failed", report
    assert "'tests/test_app.py::test_main' runs a function defined in app.py (module app)" in report.reason


LEGIT_SHAPES = """import unittest

import pytest

import app
from tests.base import Inherited
from tests.helpers import test_shared


class TestClass:
    def test_method(self):
        assert app.main() == 2

    @pytest.mark.parametrize("n", [1, 2])
    def test_param(self, n):
        assert n


class TestCase(unittest.TestCase):
    def test_unittest(self):
        self.assertEqual(app.main(), 2)


class TestInherited(Inherited):
    pass


@pytest.fixture
def two():
    return 2


def test_fixture(two):
    assert app.main() == two


@pytest.mark.parametrize("x", ["a", "b"])
def test_parametrized(x):
    assert x


@outside.decorated
def test_decorated():
    assert app.main() == 2
"""


def test_the_shapes_pytest_collects_legitimately_pass(tmp_path: Path) -> None:
    """Methods, parametrized tests, unittest cases, fixtures, a test method inherited from a base class in another
    test file, a test imported from a test helper, and one wrapped by a library's decorator (outside the rootdir,
    `functools.wraps`) are each defined where a test may be."""
    project = tmp_path / "project" / "tests"
    project.mkdir(parents=True)
    (project / "__init__.py").write_text("")
    (project / "base.py").write_text("class Inherited:\n    def test_inherited(self):\n        assert True\n")
    (project / "helpers.py").write_text("def test_shared():\n    assert True\n")
    (tmp_path / "reporter").mkdir()
    (tmp_path / "reporter" / "outside.py").write_text(
        "import functools\n\n\ndef decorated(f):\n    @functools.wraps(f)\n    def wrapper(*a, **k):\n"
        "        return f(*a, **k)\n\n    return wrapper\n"
    )
    report, code = run_reported(tmp_path, APP_FIXED, "import outside\n" + LEGIT_SHAPES)
    assert code == 0
    assert (report.verdict, report.collected, report.passed) == ("passed", 10, 10), report


def test_a_project_decorator_around_a_test_does_not_pass(tmp_path: Path) -> None:
    """The wrapper's code is in a project file that is no test: it is what pytest runs, whatever it wraps
    (`functools.wraps` would let code under test claim any test's place)."""
    decorator = (
        APP_FIXED
        + "\n\nimport functools\n\n\ndef wrap(f):\n    @functools.wraps(f)\n"
        + ("    def wrapper():\n        return None\n\n    return wrapper\n")
    )
    test = "import app\n\n\n@app.wrap\ndef test_main():\n    assert app.main() == 3\n"
    report, _ = run_reported(tmp_path, decorator, test)
    assert report.verdict == "failed"
    assert "runs a function defined in app.py" in report.reason


def collected(where: dict[str, object], ids: tuple[str, ...] = ("tests/test_a.py::t",)) -> dict[str, object]:
    return {"event": "collected", "ids": list(ids), "where": where, "python_files": ["check_*.py"]}


def passed(nodeid: str = "tests/test_a.py::t") -> list[dict[str, object]]:
    phases = ("setup", "call", "teardown")
    return [{"event": "report", "nodeid": nodeid, "when": w, "outcome": "passed"} for w in phases]


@pytest.mark.parametrize(
    ("where", "verdict"),
    [
        ({"file": "tests/test_a.py", "module": "tests.test_a"}, "passed"),
        ({"file": "tests/base.py", "module": "tests.base"}, "passed"),
        ({"file": "other/test_b.py", "module": "other.test_b"}, "passed"),
        ({"file": "pkg/check_c.py", "module": "pkg.check_c"}, "passed"),  # (the project's `python_files`)
        ({"file": "/usr/lib/hypothesis/core.py", "module": "x", "inner": "tests/test_a.py"}, "passed"),
        ({"file": "../lib/deco.py", "module": "deco", "inner": "tests/conftest.py"}, "passed"),
        ({"file": "app.py", "module": "app"}, "failed"),
        ({"file": "src/pkg/core.py", "module": "pkg.core", "inner": "tests/test_a.py"}, "failed"),
        ({"file": "/usr/lib/python3/logging/__init__.py", "module": "logging"}, "failed"),
        ({"file": "/usr/lib/deco.py", "module": "deco", "inner": "app.py"}, "failed"),
        ({"file": "../outside/test_x.py", "module": "x"}, "failed"),
    ],
)
def test_a_test_defined_outside_the_tests_does_not_pass(where: dict[str, object], verdict: str) -> None:
    data = stream(START, collected({"tests/test_a.py::t": where}), *passed(), FINISH)
    report = read_report(data, exit_code=0)
    assert report.verdict == verdict, report.reason
    if verdict == "failed":
        assert "runs a function defined in" in report.reason


@pytest.mark.parametrize(
    "where",
    [
        {"tests/test_a.py::t": "tests/test_a.py"},
        {"tests/test_a.py::t": {"file": 3}},
        {"tests/test_a.py::t": {"file": "tests/test_a.py", "module": None}},
        {"tests/test_a.py::t": {"file": "tests/test_a.py", "module": "m", "inner": 1}},
    ],
)
def test_a_malformed_location_is_no_pass(where: dict[str, object]) -> None:
    report = read_report(stream(START, collected(where), *passed(), FINISH), exit_code=0)
    assert (report.verdict, "location" in report.reason) == ("failed", True), report.reason


def test_a_collection_with_a_malformed_where_is_no_pass() -> None:
    data = stream(START, {"event": "collected", "ids": ["t::a"], "where": []}, *PASSED, FINISH)
    assert "collection is malformed" in read_report(data, exit_code=0).reason


def test_an_item_with_no_function_is_not_judged_by_location() -> None:
    """A doctest or a plugin's item has no function: the reporter sends no location for it."""
    assert read_report(stream(START, collected({}), *passed(), FINISH), exit_code=0).verdict == "passed"
