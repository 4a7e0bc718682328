"""Adversarial review of #17 (third pass), the brain's side: can a holder of an agent's body token (not its body)
get a key of its own trusted, by registering a fresh body id, by leaving and coming back, or before the body does?"""

from __future__ import annotations

import pytest

from brain_server import Brain, issue_token
from brain_server.auth import new_pairing
from shared_protocol.audit import attestation

from .helpers import BrainClient, Clock, batch, ok, refused, registration, rerun_event, verify_key

pytestmark = pytest.mark.anyio

ACCEPTANCE = "pytest -q tests/test_app.py"
ARGV = ["pytest", "-q", "tests/test_app.py"]
LV = "lv-1111111111111111"


async def test_review17c_an_agent_token_holder_cannot_swap_in_a_key_of_its_own(api: BrainClient, brain: Brain) -> None:
    """Withstood: once the agent's body registered its key, the token cannot register a fresh body id (the token
    speaks for its one body), cannot change the key, and a clean exit (deregister) followed by a registration with
    another key keeps the first key."""
    await api.add_token("w1", agent="w1")
    ok(await api.post("/v1/bodies/register", registration("body-a"), as_="w1"))
    forger = verify_key("forger")
    refused(
        await api.post("/v1/bodies/register", registration("body-z", verify_key=forger), as_="w1"), 403, "forbidden"
    )
    refused(
        await api.post("/v1/bodies/register", registration("body-a", verify_key=forger), as_="w1"),
        409,
        "body_key_mismatch",
    )
    ok(await api.post("/v1/bodies/body-a/deregister", {}, as_="w1"))
    refused(
        await api.post("/v1/bodies/register", registration("body-a", verify_key=forger), as_="w1"),
        409,
        "body_key_mismatch",
    )
    (body,) = [b for b in await brain.state.bodies() if b.body_id == "body-a"]
    assert body.verify_key == verify_key("body-a")
    assert "body-z" not in {b.body_id for b in await brain.state.bodies()}


async def _paired(api: BrainClient, brain: Brain, name: str) -> str:
    """A body token of agent `name`, paired (`swarm brain token create --pair`): its pairing secret."""
    pairing = new_pairing()
    api.tokens[name] = await issue_token(
        brain.state, role="body", label=name, at=brain.now(), agent=name, pairing=pairing
    )
    return pairing


async def test_review17c_a_key_squatted_before_the_body_registers_does_not_confirm_a_hand_made_rerun(
    api: BrainClient, brain: Brain, clock: Clock
) -> None:
    """Was a hole: trust on first use let a holder of the token register its own key first. A paired token's
    registration of a key needs the pairing secret, which the token's holder alone does not have: the squatter's key
    is refused (403 `pairing_required`, nothing written, the token not even bound), so its hand-made, self-attested
    re-run confirms nothing."""
    await _paired(api, brain, "w1")
    squat = registration("body-s", verify_key=verify_key("squatter"))
    answer = refused(await api.post("/v1/bodies/register", squat, as_="w1"), 403, "pairing_required")
    assert answer["field"] == "pairing" and "--pair" in answer["message"]
    wrong = {**squat, "pairing": new_pairing()}
    refused(await api.post("/v1/bodies/register", wrong, as_="w1"), 403, "pairing_required")
    assert "body-s" not in {b.body_id for b in await brain.state.bodies()}
    assert all(t.body_id is None for t in await brain.state.tokens())
    task = ok(await api.post("/v1/tasks", {"title": "t", "acceptance": ACCEPTANCE}, as_="approver"), 201)
    claim = {"body_id": "body-s", "agent": "w1", "mode": "shadow", "task_id": task["id"], "logic_version": LV}
    got = ok(await api.post("/v1/tasks/claim", claim, as_="w1"))
    clock.advance(5)
    forged = rerun_event("body-s", 1, "g", action_id="act_f", at=clock.now, argv=ARGV, task_id=task["id"])
    forged = forged.model_copy(update={"attest": attestation(verify_key("squatter"), forged)})
    ok(await api.post("/v1/audit", batch("body-s", [forged]), as_="w1"))
    verification = {"command": ACCEPTANCE, "exit_code": 0, "action_id": "act_f", "verified": True}
    outcome = {"claim_token": got["claim_token"], "outcome": "succeeded", "verification": verification}
    ok(await api.post(f"/v1/tasks/{task['id']}/outcome", {**outcome, "mode": "shadow"}, as_="w1"))
    (run,) = ok(await api.get(f"/v1/tasks/{task['id']}", as_="captain"))["shadow_runs"]
    assert run["verification"]["status"] != "confirmed", "a squatted key's hand-made re-run confirmed the task"


async def test_review17c_a_paired_tokens_body_registers_its_key_with_the_secret_and_confirms_its_rerun(
    api: BrainClient, brain: Brain, clock: Clock
) -> None:
    """The real body, given the pairing secret ($SWARM_PAIRING), registers its key; its attested re-run confirms the
    task. A registration without a key is not checked (it sets none), and the key stays the body's."""
    pairing = await _paired(api, brain, "w1")
    ok(await api.post("/v1/bodies/register", registration("body-a", pairing=pairing), as_="w1"))
    ok(await api.post("/v1/bodies/register", registration("body-a", verify_key=None), as_="w1"))
    refused(await api.post("/v1/bodies/register", registration("body-a"), as_="w1"), 403, "pairing_required")
    (body,) = [b for b in await brain.state.bodies() if b.body_id == "body-a"]
    assert body.verify_key == verify_key("body-a")
    logged = [e for e in await brain.state.log_entries() if e.action == "body_key"]
    assert ["pairing secret" in e.reason for e in logged] == [True]
    task = ok(await api.post("/v1/tasks", {"title": "t", "acceptance": ACCEPTANCE}, as_="approver"), 201)
    claim = {"body_id": "body-a", "agent": "w1", "mode": "shadow", "task_id": task["id"], "logic_version": LV}
    got = ok(await api.post("/v1/tasks/claim", claim, as_="w1"))
    clock.advance(5)
    rerun = rerun_event("body-a", 1, "g", action_id="act_r", at=clock.now, argv=ARGV, task_id=task["id"])
    rerun = rerun.model_copy(update={"attest": attestation(verify_key("body-a"), rerun)})
    ok(await api.post("/v1/audit", batch("body-a", [rerun]), as_="w1"))
    verification = {"command": ACCEPTANCE, "exit_code": 0, "action_id": "act_r", "verified": True}
    outcome = {"claim_token": got["claim_token"], "outcome": "succeeded", "verification": verification}
    ok(await api.post(f"/v1/tasks/{task['id']}/outcome", {**outcome, "mode": "shadow"}, as_="w1"))
    (run,) = ok(await api.get(f"/v1/tasks/{task['id']}", as_="captain"))["shadow_runs"]
    assert run["verification"]["status"] == "confirmed", run["verification"]


async def test_review17c_a_pairing_secret_that_is_no_secret_is_refused(api: BrainClient, brain: Brain) -> None:
    """Bad input: a `pairing` that is not a pairing secret is 422 naming the field; an unpaired token ignores a
    pairing it does not need (trust on first use, as before)."""
    await _paired(api, brain, "w1")
    for bad in ("", "swb_not-a-pairing-secret-000000000", "swp_short", 7):
        answer = refused(
            await api.post("/v1/bodies/register", registration("body-a", pairing=bad), as_="w1"), 422, "invalid_request"
        )
        assert answer["field"] == "pairing", answer
    await api.add_token("w2", agent="w2")
    ok(await api.post("/v1/bodies/register", registration("body-b", pairing=new_pairing()), as_="w2"))
