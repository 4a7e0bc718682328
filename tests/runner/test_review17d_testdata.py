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
