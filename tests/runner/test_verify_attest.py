"""A runner's verification, end to end with the brain's checks on: the real CLI, its `swarm body --agent`
subprocess (which registers its verification key and attests the events it ships), a real brain on 127.0.0.1 over a
real SQLite file. The body's re-run names its task and is confirmed; the same re-run replayed for another task, and
a hand-made event POSTed with the agent's own token, are refuted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from brain_server import SqliteStateEngine
from shared_protocol import AuditEvent
from shared_protocol.agents import agent_logic_version
from shared_protocol.audit import attestation
from shared_protocol.config import load_config
from tests.runner.stack import ACCEPTANCE, FIX, Stack, stack

pytestmark = pytest.mark.anyio


async def post(s: Stack, path: str, body: dict[str, Any], *, token: str) -> dict[str, Any]:
    answer = await s.captain.post(path, json=body, headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code in (200, 201), answer.text
    return answer.json()


async def claim_live(s: Stack, body_id: str, **task: Any) -> tuple[str, str]:
    """A second task, claimed live by worker-1's own token for its body, as its runner would."""
    queued = await s.add_task(**task)
    version = agent_logic_version(load_config(s.config), "worker-1")
    claim = {"body_id": body_id, "agent": "worker-1", "mode": "live", "logic_version": version, "task_id": queued["id"]}
    got = await post(s, "/v1/tasks/claim", claim, token=s.tokens["worker-1"])
    return queued["id"], got["claim_token"]


async def report(s: Stack, task_id: str, claim_token: str, action_id: str) -> dict[str, Any]:
    verification = {"command": ACCEPTANCE, "exit_code": 0, "action_id": action_id, "verified": True}
    outcome = {"claim_token": claim_token, "outcome": "succeeded", "verification": verification}
    return await post(s, f"/v1/tasks/{task_id}/outcome", outcome, token=s.tokens["worker-1"])


async def test_a_runners_rerun_is_confirmed_by_its_attested_event_and_a_replayed_or_forged_one_is_refused(
    tmp_path: Path,
) -> None:
    state = await SqliteStateEngine.open(tmp_path / "brain.db")
    try:
        async with stack(tmp_path, state=state) as s:
            repo = s.repo_with_bug()
            s.script(FIX)
            task = await s.add_task(repo=str(repo))
            await s.override("worker-1")
            done = await s.agent("worker-1", "--once", "--live", "--wait", "10", in_process=True)
            assert done.returncode == 0, done.stderr
            after = await s.task(task["id"])
            verification = after["verification"]
            assert (after["state"], after["verified"], verification["status"]) == ("succeeded", True, "confirmed")
            body_id, action_id = verification["body_id"], verification["action_id"]

            # What the brain holds: the key the body registered, and the re-run naming its task, attested with it.
            (body,) = [b for b in await state.bodies() if b.body_id == body_id]
            assert body.verify_key is not None and len(body.verify_key) == 64
            events = await state.audit_events(body_id)
            (rerun,) = [e for e in events if e.id == action_id]
            assert (rerun.tool, rerun.task_id, rerun.turn) == ("run_command", task["id"], None)
            assert rerun.attest == attestation(body.verify_key, rerun)
            assert all(e.attest == attestation(body.verify_key, e) for e in events), "every shipped event attested"

            # Replayed: the same re-run claimed as the evidence of another task.
            other, claim_token = await claim_live(s, body_id, title="another", repo=str(repo))
            replayed = await report(s, other, claim_token, action_id)
            assert (replayed["verified"], replayed["verification"]["status"]) == (False, "refuted")
            assert f"was for task {task['id']!r}" in replayed["verification"]["detail"]

            # Forged: a hand-made event naming the task, linked to the body's chain as the brain holds it, POSTed
            # with the agent's own token, attested with a key that is not the body's.
            third, claim_token = await claim_live(s, body_id, title="a third", repo=str(repo))
            head = (await state.audit_events(body_id))[-1]
            forged = AuditEvent.model_validate(
                {
                    **rerun.model_dump(mode="json"),
                    "seq": head.seq + 1,
                    "id": "act_forged",
                    "prev_mac": head.mac,
                    "mac": "0" * 64,
                    "task_id": third,
                }
            )
            forged = forged.model_copy(update={"attest": attestation("ab" * 32, forged)})
            batch = {"body_id": body_id, "events": [forged.model_dump(mode="json")]}
            await post(s, "/v1/audit", batch, token=s.tokens["worker-1"])
            refuted = await report(s, third, claim_token, "act_forged")
            assert (refuted["verified"], refuted["verification"]["status"]) == (False, "refuted")
            assert "attestation that is not the body's" in refuted["verification"]["detail"]
    finally:
        await state.close()
