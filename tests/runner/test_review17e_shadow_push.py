"""Review of issue #17 (pass e): nothing a shadow agent does leaves its throwaway copy, even with `[git] push = true`.
The real brain, the real `swarm agent run` (shadow, the default), its real body and sandbox, the scripted model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .stack import TOOLS, git, stack

pytestmark = pytest.mark.anyio


async def test_review17e_a_shadow_agent_cannot_push_its_copy_back_into_the_real_repository(tmp_path: Path) -> None:
    """Withstood: the shadow clone has no remote (the runner removes `origin`), and its model, with git_push in its
    tools and `[git] push = true`, tries to give it one — `git remote add` through run_command, `git config` through
    run_command, an edit of `.git/config` — and then pushes its branch: the copy's `.git` is read-only to it, so
    git_push finds no remote, and the real repository gets no branch and no commit."""
    tools = [*TOOLS, "git_push", "git_commit"]
    async with stack(tmp_path, extra_toml="[git]\npush = true\n", tools=tools) as s:
        repo = s.repo_with_bug()
        target = str(repo)
        why = "publish the work"

        def step(name: str, arguments: dict[str, object]) -> dict[str, object]:
            call = {"name": name, "arguments": {**arguments, "rationale": why}}
            return {"content": f"try {name}", "tool_calls": [call]}

        s.script(
            [
                step("run_command", {"argv": ["git", "remote", "add", "origin", target]}),
                step("run_command", {"argv": ["git", "config", "remote.origin.url", target]}),
                step("write_file", {"path": ".git/config", "content": f'[remote "origin"]\n\turl = {target}\n'}),
                step("edit_file", {"path": "app.py", "edits": [{"old_text": "return 1", "new_text": "return 2"}]}),
                step("git_commit", {"message": "fix"}),
                step("git_push", {"remote": "origin"}),
                {"content": "pushed"},
            ]
        )
        before = git(repo, "for-each-ref", "--format=%(refname) %(objectname)")
        task = await s.add_task(repo=target)
        done = await s.agent("worker-1", "--once", "--wait", "10", in_process=True)
        assert done.returncode == 0, done.stderr
        (run,) = (await s.task(task["id"]))["shadow_runs"]
        assert run["summary"], run
        assert git(repo, "for-each-ref", "--format=%(refname) %(objectname)") == before, "the real repository changed"
        assert (repo / "app.py").read_text() == "def main():\n    return 1\n"
        trail = s.here("audit", "tail", "--agent", "worker-1", "--json").stdout
        events = [json.loads(line) for line in trail.splitlines() if line.strip()]
        pushes = [(e["outcome"], e.get("code") or e.get("refusal_code")) for e in events if e.get("tool") == "git_push"]
        assert pushes == [("refused", "no_remote")], pushes
        writes = [
            (e["outcome"], e.get("code") or e.get("refusal_code")) for e in events if e.get("tool") == "write_file"
        ]
        assert writes == [("refused", "protected_path")], writes
