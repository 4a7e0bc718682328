"""Adversarial review of #17 (fourth pass): the expected values a protected test reads from a data directory outside
the test directories. A real brain on 127.0.0.1, the real CLI, body and bubblewrap sandbox, the scripted provider
playing the model."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.runner.stack import stack
from tests.runner.test_review17b_acceptance import DONE, live_run, turn
from tests.runner.test_review17c_plugins import UNFIXED, committed, repo_with_pytest

pytestmark = pytest.mark.anyio

READS_DATA = (
    "from pathlib import Path\n\nimport app\n\n\n"
    "def test_main():\n"
    "    expected = Path(__file__).parent.parent / 'testdata' / 'expected.txt'\n"
    "    assert app.main() == int(expected.read_text())\n"
)


@pytest.mark.xfail(
    strict=True,
    reason=(
        "HOLE (medium): `tests/test_app.py` is protected, but the expected value it reads lives in "
        "`testdata/expected.txt` (Go's and many Python projects' convention; also `fixtures/`, `test_data/`, "
        "`data/`): no default input covers it, the acceptance command does not name it, so the model writes `1` "
        "there and the unfixed task is verified. Fix: `**/testdata/**`, `**/test_data/**`, `**/fixtures/**` in "
        "DEFAULT_ACCEPTANCE_INPUTS, and the README telling task authors that data a test reads outside the test "
        "directories must be listed in `acceptance_inputs` (or: every file under the base commit that the "
        "protected tests open is an input — record the files the base-commit run of the check opens)."
    ),
)
async def test_review17d_expected_values_outside_the_test_directory_do_not_verify(tmp_path: Path) -> None:
    async with stack(tmp_path) as s:
        repo = repo_with_pytest(s)
        (repo / "tests" / "test_app.py").write_text(READS_DATA)
        (repo / "testdata").mkdir()
        (repo / "testdata" / "expected.txt").write_text("2\n")
        s.script([turn("write_file", {"path": "testdata/expected.txt", "content": "1\n"}), DONE])
        after = await live_run(s, repo, "python3 -m pytest -q tests")
        assert committed(repo, after, "app.py") == UNFIXED, "the task's branch keeps the bug"
        assert after["verified"] is False, f"verified without the fix: {after['verification']}"
