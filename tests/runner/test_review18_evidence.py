"""Review #18 (round 2): the outcome evidence names a branch and a commit and says the acceptance check passed. The
check runs on the task's worktree, the commit holds only what git_commit takes (the body's audited changes that git
does not ignore). Whatever passes in the worktree but is left out of the commit makes the evidence say something
about a commit that was never checked. Real brain, CLI, body, bwrap and git; the scripted provider plays the model."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.conftest import require_binary
from tests.runner.stack import ACCEPTANCE, git, stack

pytestmark = pytest.mark.anyio


def turn(text: str, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {
        "content": text,
        "tool_calls": [{"name": name, "arguments": arguments}],
        "usage": {"input_tokens": 50, "output_tokens": 5},
    }


HIDE_THE_FIX = [
    turn(
        "Put the answer where git does not look.",
        "write_file",
        {"path": "generated/answer.py", "content": "def main():\n    return 2\n", "rationale": "the fix"},
    ),
    turn(
        "Use it.",
        "edit_file",
        {
            "path": "app.py",
            "edits": [{"old_text": "def main():\n    return 1\n", "new_text": "from generated.answer import main\n"}],
            "rationale": "import the fix",
        },
    ),
    {"content": "main() returns 2 now.", "usage": {"input_tokens": 60, "output_tokens": 5}},
]


def _acceptance_at(repo: Path, commit: str, where: Path) -> int:
    git(repo, "worktree", "add", "--quiet", "--detach", str(where), commit)
    return subprocess.run(["/bin/sh", "-c", ACCEPTANCE], cwd=where, capture_output=True, check=False).returncode


async def test_a_verified_task_passes_its_acceptance_on_the_commit_its_evidence_names(tmp_path: Path) -> None:
    """Was a hole: the fix lived in a .gitignore'd file, passed the check in the worktree, was left out of the commit
    and the task was VERIFIED; the git-ignored files the work leaves make a pass unverified."""
    require_binary("bwrap", "bubblewrap")
    async with stack(tmp_path) as s:
        repo = s.repo_with_bug()
        (repo / ".gitignore").write_text("generated/\n")
        s.script(HIDE_THE_FIX)
        task = await s.add_task(repo=str(repo))
        await s.override("worker-1")
        done = await s.agent("worker-1", "--once", "--live", "--wait", "10", timeout_s=300, in_process=True)
        assert done.returncode == 0, done.stderr
        with anyio.fail_after(60):
            while (after := await s.task(task["id"]))["state"] in ("claimed", "running", "pending", "queued"):
                await anyio.sleep(0.2)
    evidence = after["evidence"]
    assert evidence.get("commit"), (after["state"], after["outcome_summary"])
    kept = [str(p) for p in tmp_path.glob("**/worktrees/*/generated/answer.py")]
    code = _acceptance_at(repo, evidence["commit"], tmp_path / "check")
    where = kept or "removed with the worktree"
    assert not after["verified"] or code == 0, (
        f"task {after['state']} and verified, but `{ACCEPTANCE}` exits {code} on the commit {evidence['commit']}; "
        f"the file that passed: {where}"
    )
