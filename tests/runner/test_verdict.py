"""A pytest check's verdict is what pytest reported to the body as each test ran (the body's reporter,
`shared_protocol.verdict`), not the exit code of the process the code under test runs in. A real brain on 127.0.0.1,
the real CLI, body and bubblewrap sandbox, the scripted provider playing the model; the brain confirms or refutes
from the body's audit event."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.runner.stack import FIX, stack
from tests.runner.test_review17b_acceptance import DONE, live_run, repo_with_test, turn
from tests.runner.test_review17c_plugins import committed, repo_with_pytest

pytestmark = pytest.mark.anyio

PYTEST_CHECK = "python3 -m pytest -q -p no:cacheprovider tests"


async def test_an_honest_passing_pytest_run_is_verified_from_its_report(tmp_path: Path) -> None:
    async with stack(tmp_path) as s:
        repo = repo_with_pytest(s)
        s.script(FIX)
        after = await live_run(s, repo, PYTEST_CHECK)
        verification = after["verification"]
        assert (after["state"], after["verified"], verification["status"]) == ("succeeded", True, "confirmed"), after
        report = verification["report"]
        assert (report["verdict"], report["collected"], report["passed"], report["exit_code"]) == ("passed", 1, 1, 0)
        assert "pytest reported all 1 collected tests passed" in verification["detail"]
        assert after["evidence"]["acceptance_verdict"] == "pytest report: passed, 1 of 1 collected passed"
        assert after["evidence"]["acceptance_screen"] == "nothing held: 1 Python or native of 1 changed file screened"


async def test_code_under_test_that_ends_the_process_at_import_does_not_verify(tmp_path: Path) -> None:
    """`os._exit(0)` when the tests import the code: pytest never finishes collecting, whatever the exit code."""
    async with stack(tmp_path) as s:
        repo = repo_with_pytest(s)
        s.script([turn("write_file", {"path": "app.py", "content": "import os\n\nos._exit(0)\n"}), DONE])
        after = await live_run(s, repo, PYTEST_CHECK)
        assert committed(repo, after, "app.py").startswith("import os"), "the model's change is what was checked"
        verification = after["verification"]
        assert (after["verified"], verification["exit_code"]) == (False, 0), verification
        assert "never finished collecting" in verification["report"]["reason"], verification["report"]
        assert "never finished collecting" in after["outcome_summary"]


async def test_code_under_test_that_skips_its_test_does_not_verify(tmp_path: Path) -> None:
    """`pytest.skip()` from inside main(): the check exits 0 with the test never run; a skip proves nothing."""
    async with stack(tmp_path) as s:
        repo = repo_with_pytest(s)
        skipping = "import pytest\n\n\ndef main():\n    pytest.skip('later')\n"
        s.script([turn("write_file", {"path": "app.py", "content": skipping}), DONE])
        after = await live_run(s, repo, PYTEST_CHECK)
        verification = after["verification"]
        assert (after["verified"], verification["exit_code"]) == (False, 0), verification
        assert (verification["report"]["skipped"], verification["report"]["passed"]) == (1, 0)


async def test_a_pytest_check_without_pytest_has_no_report_and_does_not_verify(tmp_path: Path) -> None:
    """The sandbox's system python3 has no pytest here (no `.python-version`): nothing reported, so no pass."""
    async with stack(tmp_path) as s:
        repo = repo_with_test(s)
        s.script(FIX)
        after = await live_run(s, repo, PYTEST_CHECK)
        verification = after["verification"]
        assert after["verified"] is False, verification
        if verification["exit_code"] == 0:
            pytest.fail(f"the system python3 has pytest: this test shows nothing ({verification})")
        assert "no report" in verification["report"]["reason"], verification["report"]


async def test_a_check_that_is_no_pytest_run_keeps_its_exit_code_verdict(tmp_path: Path) -> None:
    async with stack(tmp_path) as s:
        repo = s.repo_with_bug()
        s.script(FIX)
        after = await live_run(s, repo, "python3 -c 'import app, sys; sys.exit(0 if app.main() == 2 else 1)'")
        assert (after["verified"], after["verification"]["report"]) == (True, None), after["verification"]
        assert after["evidence"]["acceptance_verdict"].startswith("exit code")
