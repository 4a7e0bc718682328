"""Adversarial review of #17 (second pass): a parked task's saved state (the agent's work dir JSON) is read back
when the runner restarts. Edited to point its workspace at the real repository and call itself live, it must not
turn a shadow claim into writes to the real repository (a real brain on 127.0.0.1, the real CLI and body)."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import anyio
import pytest

from swarm_cli.agent_cmds import work_root
from tests.runner.stack import stack
from tests.runner.test_park import POLICY, SCRIPT, park_one

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("tamper", ["workspace", "mode"])
async def test_review17b_a_tampered_saved_state_does_not_make_a_shadow_claim_write_the_real_repository(
    tmp_path: Path, tamper: str
) -> None:
    async with stack(tmp_path, extra_toml=POLICY) as s:
        work = work_root(s.home) / "worker-1"
        s.script(SCRIPT[:1])
        task_id, decision_id, agent = await park_one(s, "first", "--once")
        agent.send_signal(signal.SIGKILL)
        await agent.wait()
        await agent.aclose()
        real = tmp_path / "first"
        saved_file = work / "parked" / f"{task_id}.json"
        saved = json.loads(saved_file.read_text())
        saved["workspace"] = str(real)
        saved["shadow_copy"] = False
        if tamper == "mode":
            saved["mode"] = "live"
        saved_file.write_text(json.dumps(saved))
        answered = await s.captain.post(f"/v1/decisions/{decision_id}/approve", json={"reason": "go on"})
        assert answered.status_code == 200, answered.text
        s.script(SCRIPT[1:])
        with anyio.fail_after(120):
            done = await s.agent("worker-1", "--once", in_process=True)
        assert "Traceback" not in done.stderr, done.stderr
        assert not (real / "a.txt").exists(), "a shadow claim's held call ran in the real repository"
        after = await s.task(task_id)
        assert after["verified"] is False and after["state"] != "succeeded", json.dumps(after, indent=1)
        assert "saved state" in done.stderr, done.stderr
