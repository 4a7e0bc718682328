"""Adversarial review of #17 (second pass): a live agent works in a git worktree of the real repository, whose
`.git` file names the real repository's git directory. The model's commands must not reach it: a hook or a config
written there would run on the host the next time a human uses git (a real brain on 127.0.0.1, the real CLI, body
and sandbox)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.runner.stack import stack
from tests.runner.test_review17b_acceptance import DONE, turn

pytestmark = pytest.mark.anyio

REACH = (
    'gd=$(sed -n "s/^gitdir: //p" .git); echo "gitdir=$gd"; common="$gd/$(cat "$gd/commondir")"; '
    'echo "#!/bin/sh" > "$common/hooks/post-checkout"; chmod +x "$common/hooks/post-checkout"; '
    'printf "[core]\\n\\thooksPath = /tmp\\n" >> "$common/config"; '
    'echo pwned > "$gd/HEAD.pwned"; ls -la "$common" 2>&1; true'
)


async def test_review17b_a_live_models_command_cannot_write_the_real_repositorys_git_directory(tmp_path: Path) -> None:
    async with stack(tmp_path) as s:
        repo = s.repo_with_bug()  # a git repository with one commit (a live task works in a worktree of it)
        config_before = (repo / ".git" / "config").read_text()
        hooks_before = sorted(p.name for p in (repo / ".git" / "hooks").iterdir())
        direct = f"echo pwned > {repo}/.git/hooks/pre-commit; echo pwned >> {repo}/.git/config; true"
        s.script(
            [
                turn("run_command", {"argv": ["sh", "-c", REACH]}),
                turn("run_command", {"argv": ["sh", "-c", direct]}),
                DONE,
            ]
        )
        task = await s.add_task(repo=str(repo))
        await s.override("worker-1")
        done = await s.agent("worker-1", "--once", "--live", "--wait", "10", in_process=True)
        assert done.returncode == 0, done.stderr
        after = await s.task(task["id"])
        assert after["state"] in ("succeeded", "failed"), after
        assert (repo / ".git" / "config").read_text() == config_before, "the model rewrote the real git config"
        assert sorted(p.name for p in (repo / ".git" / "hooks").iterdir()) == hooks_before, "a hook was planted"
        assert not list((repo / ".git").rglob("HEAD.pwned")), "the model wrote the real git directory"
        trail = s.here("audit", "tail", "--agent", "worker-1", "-n", "50").stdout
        action = next(line.split()[2] for line in trail.splitlines() if line.endswith("cheat"))
        shown = s.here("audit", "output", action, "--agent", "worker-1")
        # A worktree's `.git` is a file naming the real gitdir; inside the sandbox that directory is not there.
        out = shown.stdout
        assert shown.returncode == 0 and ("gitdir=\n" in out or "No such file or directory" in out), out
