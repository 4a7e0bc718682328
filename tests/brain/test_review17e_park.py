"""Review of issue #17 (pass e): a parked task is taken up again only by the body that parked it, with its own claim
token. The real brain app over HTTP (tests/brain's client), two bodies."""

from __future__ import annotations

import pytest

from brain_server import Brain

from .helpers import BrainClient, decision_request, ok, refused
from .test_agent_tasks import claim, queue

pytestmark = pytest.mark.anyio


async def test_review17e_another_body_holding_the_claim_token_cannot_resume_finish_or_drop_a_parked_task(
    api: BrainClient, brain: Brain
) -> None:
    """Withstood: body-b, which learnt body-a's claim token (a leaked log line), can neither resume body-a's parked
    task, nor report its outcome, nor give it up; body-a itself cannot resume it with a forged token; the task is as
    it was, and body-a's own token still resumes it."""
    task = await queue(api)
    token, task_id = (await claim(api))["claim_token"], task["id"]
    decision = ok(await api.post("/v1/decisions", decision_request("body-a", confidence=0.5), as_="body"), 201)
    park = {"claim_token": token, "decision_id": decision["id"], "reason": "needs a human"}
    ok(await api.post(f"/v1/tasks/{task_id}/park", park, as_="body"))
    await api.add_token("body-b")
    ok(await api.post("/v1/decisions", decision_request("body-b"), as_="body-b"), 201)  # (binds the token to body-b)
    before = await brain.state.task(task_id)
    resume = {"claim_token": token}
    refused(await api.post(f"/v1/tasks/{task_id}/resume", resume, as_="body-b"), 403, "forbidden")
    done = {"claim_token": token, "outcome": "succeeded", "summary": "mine now"}
    refused(await api.post(f"/v1/tasks/{task_id}/outcome", done, as_="body-b"), 403, "forbidden")
    answer = await api.post(f"/v1/tasks/{task_id}/abandon", {"reason": "taking it"}, as_="body-b")
    assert answer.status_code in (403, 404, 409), answer.text
    refused(
        await api.post(f"/v1/tasks/{task_id}/resume", {"claim_token": "clm_forged"}, as_="body"), 409, "stale_claim"
    )
    assert await brain.state.task(task_id) == before
    resumed = ok(await api.post(f"/v1/tasks/{task_id}/resume", resume, as_="body"))
    assert resumed["task"]["state"] == "claimed" and resumed["task"]["claimed_by"]["body_id"] == "body-a"
