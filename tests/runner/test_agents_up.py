"""`swarm agents up` supervises every configured agent (workers, reviewers, the captain agent): each runs as its own
`swarm agent run` process, one that dies (kill -9) is restarted and says so on stderr, and SIGTERM stops them all."""

from __future__ import annotations

import os
import re
import signal
from datetime import UTC, datetime
from pathlib import Path

import anyio
import pytest

from brain_server import MemoryStateEngine, issue_token
from tests.cli.inprocess import swarm_in_process
from tests.runner.stack import FIX, Stack, stack, token_var

pytestmark = pytest.mark.anyio

QUICK = ("--restart-pause", "0.1")
"""A dead agent's first restart after 0.1 s (1 s by default: the tests need not wait it out)."""


def alive(pid: int) -> bool:
    """Running (a zombie nobody reaped yet is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def started(s: Stack, agent: str, *, after: int = 0, timeout_s: float = 60) -> int:
    """The pid of the `after`-th (0: first) start of `agent` the supervisor announced."""
    with anyio.fail_after(timeout_s):
        while True:
            found = re.findall(rf"started {agent} \(pid (\d+)", s.log("up").read_text())
            if len(found) > after:
                return int(found[after])
            await anyio.sleep(0.1)


async def test_agents_up_restarts_an_agent_that_dies_and_sigterm_stops_all(tmp_path: Path) -> None:
    async with stack(tmp_path, agents=["worker-1", "worker-2"]) as s:
        s.script(FIX)
        for odd in ("0", "-1", "nan", "inf"):  # (in the test's process: refused before any agent starts)
            refused = await s.swarm("agents", "up", "--restart-pause", odd)
            assert refused.returncode == 1, refused.stderr
            assert "--restart-pause must be a positive number of seconds" in refused.stderr, refused.stderr
        # No brain: said once, not by each agent's child restarted every minute for ever (review 22).
        unlinked = {k: v for k, v in s.env().items() if k != "SWARM_BRAIN_URL"}
        no_brain = await swarm_in_process(["agents", "up"], unlinked)
        assert no_brain.returncode == 1 and "agents take their tasks from a brain" in no_brain.stderr, no_brain.stderr
        assert "started" not in no_brain.stderr
        with s.log("up").open("w") as log:
            up = await anyio.open_process(s.cli_argv("agents", "up", *QUICK), env=s.env(), stderr=log)
            async with up:
                one, two = await started(s, "worker-1"), await started(s, "worker-2")
                # Both are up and listening to the brain before one is shot.
                with anyio.fail_after(60):
                    while "works for" not in s.log("up").read_text() or s.log("up").read_text().count("works for") < 2:
                        await anyio.sleep(0.2)
                os.kill(one, signal.SIGKILL)
                again = await started(s, "worker-1", after=1)
                assert again != one and alive(again) and alive(two)
                assert re.search(r"worker-1 exited with -9; restarting in 0.1 s", s.log("up").read_text())

                up.send_signal(signal.SIGTERM)
                with anyio.fail_after(30):
                    code = await up.wait()
        assert code == 0, s.log("up").read_text()
        with anyio.fail_after(10):
            while alive(again) or alive(two):
                await anyio.sleep(0.1)
        assert "worker-2 exited" not in s.log("up").read_text(), "only the one killed was restarted"


async def test_agents_up_runs_reviewers_and_the_captain_agent_too_and_restarts_them(tmp_path: Path) -> None:
    """Every [[agents]] entry runs, whatever its role: the reviewer and the captain agent review (their runners have
    no mode, so `--live` goes to the worker only) and one that dies is restarted like a worker."""
    state = MemoryStateEngine()
    now = datetime.now(UTC)
    tokens = {
        token_var(name): await issue_token(state, role="reviewer", label=name, at=now, agent=name)
        for name in ("rev-a", "cap-1")
    }
    extra = '\n[models.judge]\nprovider = "scripted"\nmodel = "gpt-4o-mini"\nscript = "judge.jsonl"\n' + "".join(
        f'\n[[agents]]\nname = "{name}"\nrole = "{role}"\nmodel = "judge"\nprompt = "You review."\n'
        f'tools = ["read_text_file"]\n'
        f'token = "env:{token_var(name)}"\n'
        for name, role in (("rev-a", "reviewer"), ("cap-1", "captain"))
    )
    async with stack(tmp_path, extra_toml=extra, extra_env=tokens, state=state) as s:
        s.script(FIX)
        s.script([{"content": "{}"}], name="judge.jsonl")  # (nothing to review: no model call is made)
        await s.override("worker-1")  # its --live claims are let through
        with s.log("up").open("w") as log:
            up = await anyio.open_process(s.cli_argv("agents", "up", "--live", *QUICK), env=s.env(), stderr=log)
            async with up:
                try:
                    pids = {name: await started(s, name) for name in ("worker-1", "rev-a", "cap-1")}
                    # The three announce themselves in any order: wait for all of them, not the first two.
                    with anyio.fail_after(60):
                        while (
                            s.log("up").read_text().count("reviews decisions") < 2
                            or "live) works for" not in s.log("up").read_text()
                        ):
                            await anyio.sleep(0.2)
                    text = s.log("up").read_text()
                    assert "worker-1 (" in text and "live) works for" in text, text
                    assert "cap-1 (" in text and "captain) reviews decisions and breaks deadlocks" in text, text
                    assert "rev-a (" in text and "reviewer) reviews decisions for" in text, text
                    for name in ("rev-a", "cap-1"):
                        os.kill(pids[name], signal.SIGKILL)
                    again = {name: await started(s, name, after=1) for name in ("rev-a", "cap-1")}
                    assert all(again[name] != pids[name] and alive(again[name]) for name in again)
                    assert alive(pids["worker-1"])
                    with anyio.fail_after(60):
                        while s.log("up").read_text().count("reviews decisions") < 4:
                            await anyio.sleep(0.2)
                finally:
                    up.send_signal(signal.SIGTERM)
                    with anyio.fail_after(30):
                        code = await up.wait()
        assert code == 0, s.log("up").read_text()
        with anyio.fail_after(10):
            while any(alive(pid) for pid in [pids["worker-1"], *again.values()]):
                await anyio.sleep(0.1)
        text = s.log("up").read_text()
        assert re.search(r"rev-a exited with -9; restarting", text) and re.search(r"cap-1 exited with -9", text)
        assert "worker-1 exited" not in text and "--live means nothing" not in text, text
