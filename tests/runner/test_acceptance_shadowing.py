"""End to end (real brain, CLI, body and sandbox, the scripted provider as the model): a module the work adds that
shadows one the check imports makes a passing re-run unverified, with the reason, even where the body let it through
(the runner looks before it reports); and a task whose model fixes the code under test is verified under the
default acceptance inputs (test runner config protected), a real `python3 -m pytest` re-run included."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.runner.stack import FIX, Stack, stack

pytestmark = pytest.mark.anyio

CHECK = "import sys\n\nsys.path.append('.')\nimport json  # noqa\nimport app\n\n" + (
    "raise SystemExit(0 if app.main() == 2 else 1)\n"
)


def turn(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {
        "content": "make the check pass without fixing the code",
        "tool_calls": [{"name": name, "arguments": {**arguments, "rationale": "cheat"}}],
        "usage": {"input_tokens": 100, "output_tokens": 10},
    }


DONE = {"content": "done", "usage": {"input_tokens": 100, "output_tokens": 5}}


async def live_run(s: Stack, **fields: Any) -> dict[str, Any]:
    task = await s.add_task(**fields)
    await s.override("worker-1")
    done = await s.agent("worker-1", "--once", "--live", "--wait", "10", in_process=True)
    assert done.returncode == 0, done.stderr
    return await s.task(task["id"])


async def test_a_shadowing_module_the_body_let_through_makes_a_pass_unverified(tmp_path: Path) -> None:
    """The task names its own acceptance inputs (`tests/**`), so the body does not know `scripts/` is on the check's
    import path and lets the model write `scripts/json.py`; the check passes with it, and the runner, which knows
    the command (`python3 scripts/check.py`), finds it new since the base commit: failed, not verified, and why."""
    async with stack(tmp_path) as s:
        repo = s.repo_with_bug()
        (repo / "scripts").mkdir()
        (repo / "scripts" / "check.py").write_text(CHECK)
        s.script([turn("write_file", {"path": "scripts/json.py", "content": "raise SystemExit(0)\n"}), DONE])
        after = await live_run(s, repo=str(repo), acceptance="python3 scripts/check.py", acceptance_inputs=["tests/**"])
        assert after["verification"]["exit_code"] == 0, "the re-run passed: the cheat got past the body"
        assert after["verified"] is False and after["state"] == "failed", after
        reason = after["evidence"]["unverified"]
        assert "scripts/json.py" in reason and "'json'" in reason, reason
        assert "not verified" in after["outcome_summary"] and "scripts/json.py" in after["outcome_summary"], after
        assert (repo / "app.py").read_text() == "def main():\n    return 1\n"


async def test_a_copy_of_a_project_module_the_body_let_through_makes_a_pass_unverified(tmp_path: Path) -> None:
    """As above for the project's own module: with the task's own inputs the body does not know `scripts/` is on
    the check's import path, so `scripts/app.py` (a fixed copy of `app.py`) gets through and `python3
    scripts/check.py` imports it: the runner sees `app` offered twice on the check's import path, the copy new since
    the base commit: failed, not verified, naming the project module."""
    async with stack(tmp_path) as s:
        repo = s.repo_with_bug()
        (repo / "scripts").mkdir()
        (repo / "scripts" / "check.py").write_text(CHECK)
        s.script([turn("write_file", {"path": "scripts/app.py", "content": "def main():\n    return 2\n"}), DONE])
        after = await live_run(s, repo=str(repo), acceptance="python3 scripts/check.py", acceptance_inputs=["tests/**"])
        assert after["verification"]["exit_code"] == 0, "the re-run passed: the copy got past the body"
        assert after["verified"] is False and after["state"] == "failed", after
        reason = after["evidence"]["unverified"]
        assert "scripts/app.py (shadows the project module 'app')" in reason, reason
        assert (repo / "app.py").read_text() == "def main():\n    return 1\n"


async def test_the_projects_own_module_of_a_stdlib_name_is_not_shadowing(tmp_path: Path) -> None:
    """A project module named like a stdlib one, there at the base commit (`scripts/json.py` of its own): the
    model's fix is verified."""
    async with stack(tmp_path) as s:
        repo = s.repo_with_bug()
        (repo / "scripts").mkdir()
        (repo / "scripts" / "check.py").write_text(CHECK)
        (repo / "scripts" / "json.py").write_text("# the project's own json helpers\n")
        s.script(FIX)
        after = await live_run(s, repo=str(repo), acceptance="python3 scripts/check.py")
        assert after["state"] == "succeeded" and after["verified"] is True, after
        assert "unverified" not in after["evidence"]


def _python_with_pytest() -> str | None:
    versions = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"
    found = sorted(versions.glob("*/lib/python3*/site-packages/pytest/__init__.py")) if versions.is_dir() else []
    return found[0].relative_to(versions).parts[0] if found else None


async def test_a_fix_is_verified_by_a_real_pytest_rerun_with_the_runners_config_protected(tmp_path: Path) -> None:
    """The default acceptance inputs now protect pytest.ini and pyproject.toml: a model that fixes the code under
    test is still verified, by `python3 -m pytest` in the sandbox (its `.pytest_cache/` dropped, not refused); the
    same model writing `addopts = --collect-only` into pytest.ini is refused."""
    version = _python_with_pytest()
    if version is None:
        pytest.skip("no Python on this machine has pytest for the sandbox")
    async with stack(tmp_path) as s:
        repo = s.repo_with_bug()
        (repo / ".python-version").write_text(version + "\n")
        (repo / "pytest.ini").write_text("[pytest]\naddopts = -p no:randomly\n")
        (repo / "pyproject.toml").write_text('[project]\nname = "app"\nversion = "0"\n')
        (repo / "tests").mkdir()
        (repo / "tests" / "test_app.py").write_text("import app\n\n\ndef test_main():\n    assert app.main() == 2\n")
        cheat = turn("write_file", {"path": "pytest.ini", "content": "[pytest]\naddopts = --collect-only\n"})
        s.script([cheat, *FIX])
        after = await live_run(s, repo=str(repo), acceptance="python3 -m pytest -q tests")
        assert after["state"] == "succeeded" and after["verified"] is True, after
        assert after["evidence"]["refusals"] == "1", after["evidence"]
        assert "pytest.ini" not in after["evidence"]["files_changed"], after["evidence"]
