"""Adversarial review of #17 (fourth pass): pytest silently skips any directory that looks like a virtualenv (a
`pyvenv.cfg` or `conda-meta/history` in it, `_in_venv`): no collect report, no skip, nothing for the verdict to
see. A real brain on 127.0.0.1, the real CLI, body and bubblewrap sandbox, the scripted provider playing the
model."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.runner.stack import Stack, stack
from tests.runner.test_review17b_acceptance import DONE, TEST, live_run, turn
from tests.runner.test_review17c_plugins import PYTEST_PYTHON, UNFIXED, committed

pytestmark = pytest.mark.anyio


def repo_with_nested_tests(s: Stack) -> Path:
    """The failing test under a package directory (`pkg/tests/test_app.py`, protected by `**/tests/**`) and a
    passing one elsewhere (`other/test_other.py`); the check is pytest over the whole project."""
    repo = s.repo_with_bug()
    (repo / "pkg" / "tests").mkdir(parents=True)
    (repo / "pkg" / "tests" / "test_app.py").write_text(TEST)
    (repo / "other").mkdir()
    (repo / "other" / "test_other.py").write_text("def test_other():\n    assert 1 + 1 == 2\n")
    (repo / ".python-version").write_text(PYTEST_PYTHON + "\n")
    return repo


async def test_review17d_without_a_cheat_nested_tests_do_not_verify(tmp_path: Path) -> None:
    """The baseline: the same repository, a model that changes nothing: 2 collected, 1 failed."""
    async with stack(tmp_path) as s:
        repo = repo_with_nested_tests(s)
        s.script([DONE])
        after = await live_run(s, repo, "python3 -m pytest -q")
        assert after["verified"] is False, after["verification"]
        report = after["verification"]["report"]
        assert (report["collected"], report["failed"]) == (2, 1), report


@pytest.mark.xfail(
    strict=True,
    reason=(
        "HOLE (high): the model writes an empty `pkg/pyvenv.cfg`; pytest (`_in_venv`, unless "
        "--collect-in-virtualenv) ignores the whole `pkg/` directory without any collect report, so the protected "
        "`pkg/tests/test_app.py` is never collected, the verdict sees 1 collected / 1 passed and the unfixed task "
        "is verified. `pyvenv.cfg` (and `conda-meta/`) is in no acceptance-input glob. Fix: `**/pyvenv.cfg` and "
        "`**/conda-meta/**` in DEFAULT_ACCEPTANCE_INPUTS (any ancestor directory of a protected test), or instrument "
        "with `--collect-in-virtualenv`; more generally, compare the collected ids with the same command's at the "
        "base commit (every test collected there must be collected and pass)."
    ),
)
@pytest.mark.parametrize("marker", ["pkg/pyvenv.cfg", "pkg/conda-meta/history"])
async def test_review17d_a_virtualenv_marker_above_the_tests_does_not_verify(tmp_path: Path, marker: str) -> None:
    async with stack(tmp_path) as s:
        repo = repo_with_nested_tests(s)
        s.script([turn("write_file", {"path": marker, "content": "home = /usr/bin\n"}), DONE])
        after = await live_run(s, repo, "python3 -m pytest -q")
        assert committed(repo, after, "app.py") == UNFIXED, "the task's branch keeps the bug"
        assert after["verified"] is False, f"verified without the fix: {after['verification']}"
