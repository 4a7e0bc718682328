"""An outcome's `verified` is checked against the claiming body's audit trail: pending until the body's audit event
of the re-run is ingested (POST /v1/audit), then confirmed, or refuted with the reason."""

from __future__ import annotations

from typing import Any

import pytest

from brain_server import Brain
from shared_protocol import AuditEvent
from shared_protocol.audit import ModelTurn
from shared_protocol.verdict import CheckReport

from .helpers import BrainClient, Clock, batch, ok, refused, registration, rerun_event, verify_key

pytestmark = pytest.mark.anyio

ARGV = ["pytest", "-q", "tests/test_app.py"]
FORGED = CheckReport(
    verdict="failed",
    reason="1 failed and 0 errors of 1 collected though the process exited 0",
    collected=1,
    failed=1,
    session_status=1,
    exit_code=0,
    finished=True,
)
"""A pytest re-run whose process exited 0 while pytest reported a failure (the code under test ended it)."""
ACCEPTANCE = "pytest -q tests/test_app.py"
GENESIS = "genesis"


async def claimed_task(api: BrainClient, *, mode: str = "ide", body_id: str = "body-a") -> tuple[str, str]:
    task = ok(await api.post("/v1/tasks", {"title": "fix it", "acceptance": ACCEPTANCE}, as_="approver"), 201)
    claim = {"body_id": body_id, "agent": "w1", "mode": mode, "task_id": task["id"]}
    who = "body"
    if mode == "shadow":  # an agent's work: claimed with agent w1's own token, which then holds body_id
        claim["logic_version"] = "lv-0123456789abcdef"
        if "w1" not in api.tokens:
            await api.add_token("w1", agent="w1")
        who = "w1"
    ok(await api.post("/v1/bodies/register", registration(body_id), as_=who))
    claimed = ok(await api.post("/v1/tasks/claim", claim, as_=who))
    return task["id"], claimed["claim_token"]


async def report(
    api: BrainClient, task_id: str, token: str, action_id: str = "act_rerun", as_: str = "body", **fields: Any
) -> dict[str, Any]:
    verification = {"command": ACCEPTANCE, "exit_code": 0, "action_id": action_id, "verified": True}
    outcome = {"claim_token": token, "outcome": "succeeded", "summary": "fixed", "verification": verification}
    return ok(await api.post(f"/v1/tasks/{task_id}/outcome", {**outcome, **fields}, as_=as_))


async def ship(api: BrainClient, *events: AuditEvent, as_: str = "body", body_id: str = "body-a") -> None:
    ok(await api.post("/v1/audit", batch(body_id, list(events)), as_=as_))


async def test_a_claimed_verification_is_pending_until_the_bodys_event_arrives_then_confirmed(
    api: BrainClient, clock: Clock
) -> None:
    task_id, token = await claimed_task(api)
    clock.advance(30)
    done = await report(api, task_id, token)
    assert (done["state"], done["verified"]) == ("succeeded", False)
    assert done["verification"]["status"] == "pending" and done["verification"]["verified"] is False
    assert "awaiting the body's audit event act_rerun" in done["verification"]["detail"]
    clock.advance(1)
    await ship(
        api, rerun_event("body-a", 1, GENESIS, action_id="act_rerun", at=clock.now - 5, argv=ARGV, task_id=task_id)
    )
    after = ok(await api.get(f"/v1/tasks/{task_id}", as_="captain"))
    assert (after["verified"], after["verification"]["status"], after["verification"]["verified"]) == (
        True,
        "confirmed",
        True,
    )
    assert "pytest reported all 1 collected tests passed" in after["verification"]["detail"]
    line = after["history"][-1]
    assert (line["kind"], line["by"], line["detail"]["action_id"], line["detail"]["verified"]) == (
        "verification",
        "audit",
        "act_rerun",
        True,
    )


async def test_an_event_shipped_before_the_outcome_confirms_it_at_once(api: BrainClient, clock: Clock) -> None:
    task_id, token = await claimed_task(api)
    clock.advance(10)
    await ship(api, rerun_event("body-a", 1, GENESIS, action_id="act_rerun", at=clock.now, argv=ARGV, task_id=task_id))
    done = await report(api, task_id, token)
    assert (done["verified"], done["verification"]["status"]) == (True, "confirmed")
    assert [e["kind"] for e in done["history"]] == ["created", "claimed", "outcome", "verification"]


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"argv": ["true"]}, "not the acceptance command"),
        ({"exit_code": 1}, "exited with 1"),
        ({"tool": "write_file"}, "not a run_command"),
        ({"outcome": "refused", "code": "protected_path"}, "was refused"),
        ({"turn": ModelTurn(step=2, text="all green", tool_call_id="c1")}, "the model made"),
        ({"arguments": {"argv": ARGV, "cwd": "tests", "rationale": "verify"}}, "not the workspace root"),
        ({"task_id": None}, "names no task"),
        ({"task_id": "task_other"}, "was for task 'task_other'"),
        ({"attest": False}, "carries no attestation"),
        ({"report": None}, "carries no pytest report"),
        ({"report": FORGED}, "exited 0, but its pytest report is no pass: 1 failed"),
    ],
    ids=lambda value: str(value)[:40] if isinstance(value, dict) else None,
)
async def test_an_event_that_contradicts_the_claim_refutes_it_with_the_reason(
    api: BrainClient, clock: Clock, changes: dict[str, Any], reason: str
) -> None:
    task_id, token = await claimed_task(api)
    clock.advance(30)
    done = await report(api, task_id, token)
    assert done["verification"]["status"] == "pending"
    changes = dict(changes)  # (shared by every engine's run of this case)
    argv = changes.pop("argv", ARGV)
    exit_code = changes.pop("exit_code", 0)
    changes.setdefault("task_id", task_id)
    event = rerun_event(
        "body-a", 1, GENESIS, action_id="act_rerun", at=clock.now, argv=argv, exit_code=exit_code, **changes
    )
    await ship(api, event)
    after = ok(await api.get(f"/v1/tasks/{task_id}", as_="captain"))
    assert (after["state"], after["verified"], after["verification"]["status"]) == ("succeeded", False, "refuted")
    assert reason in after["verification"]["detail"], after["verification"]["detail"]
    assert after["history"][-1]["kind"] == "verification" and after["history"][-1]["detail"]["verified"] is False


async def test_a_rerun_the_brain_held_before_the_claim_does_not_verify_it(api: BrainClient, clock: Clock) -> None:
    """ "After the claim" is the brain's own order of the body's chain, never the body's clock (which may lie)."""
    ok(await api.post("/v1/bodies/register", registration("body-a"), as_="body"))
    task = ok(await api.post("/v1/tasks", {"title": "fix it", "acceptance": ACCEPTANCE}, as_="approver"), 201)
    task_id = task["id"]
    old = rerun_event("body-a", 1, GENESIS, action_id="act_old", at=clock.now + 3600, argv=ARGV, task_id=task_id)
    await ship(api, old)
    claim = {"body_id": "body-a", "agent": "w1", "mode": "ide", "task_id": task_id}
    token = ok(await api.post("/v1/tasks/claim", claim, as_="body"))["claim_token"]
    claimed = ok(await api.get(f"/v1/tasks/{task_id}", as_="captain"))["history"][-1]
    assert (claimed["kind"], claimed["detail"]["audit_seq"]) == ("claimed", 1)
    done = await report(api, task_id, token, action_id="act_old")
    assert (done["verified"], done["verification"]["status"]) == (False, "refuted")
    assert "came before the claim" in done["verification"]["detail"]
    task_id, token = await claimed_task(api)
    new = rerun_event("body-a", 2, old.mac, action_id="act_new", at=clock.now - 3600, argv=ARGV, task_id=task_id)
    await ship(api, new)
    done = await report(api, task_id, token, action_id="act_new")
    assert (done["verified"], done["verification"]["status"]) == (True, "confirmed")


async def test_another_bodys_event_of_that_id_refutes_the_claim(api: BrainClient, clock: Clock) -> None:
    task_id, token = await claimed_task(api)
    done = await report(api, task_id, token)
    assert done["verification"]["status"] == "pending"
    await api.add_token("other")
    event = rerun_event("body-b", 1, GENESIS, action_id="act_rerun", at=clock.now, argv=ARGV, task_id=task_id)
    await ship(api, event, as_="other", body_id="body-b")
    after = ok(await api.get(f"/v1/tasks/{task_id}", as_="captain"))
    assert (after["verified"], after["verification"]["status"]) == (False, "refuted")
    assert "body 'body-b'" in after["verification"]["detail"]


async def test_a_shadow_runs_verification_is_settled_the_same_way(api: BrainClient, clock: Clock) -> None:
    task_id, token = await claimed_task(api, mode="shadow")
    clock.advance(5)
    back = await report(api, task_id, token, as_="w1", mode="shadow", logic_version="lv-0123456789abcdef")
    (run,) = back["shadow_runs"]
    assert (back["state"], run["verification"]["status"], run["verification"]["verified"]) == (
        "queued",
        "pending",
        False,
    )
    rerun = rerun_event("body-a", 1, GENESIS, action_id="act_rerun", at=clock.now, argv=ARGV, task_id=task_id)
    await ship(api, rerun, as_="w1")
    after = ok(await api.get(f"/v1/tasks/{task_id}", as_="captain"))
    (run,) = after["shadow_runs"]
    assert (run["verification"]["status"], run["verification"]["verified"]) == ("confirmed", True)
    assert (after["state"], after["verified"]) == ("queued", False), "a shadow run never verifies the task itself"
    assert after["history"][-1]["kind"] == "verification" and after["history"][-1]["detail"]["shadow_run"] is True


async def test_an_unverified_report_is_kept_as_it_is_and_its_brain_fields_are_not_the_callers(
    api: BrainClient, brain: Brain
) -> None:
    task_id, token = await claimed_task(api)
    claimed_status = {
        "command": ACCEPTANCE,
        "exit_code": 1,
        "action_id": "act_rerun",
        "verified": False,
        "status": "confirmed",
        "detail": "trust me",
    }
    outcome = {"claim_token": token, "outcome": "failed", "summary": "red", "verification": claimed_status}
    done = ok(await api.post(f"/v1/tasks/{task_id}/outcome", outcome, as_="body"))
    assert (done["verified"], done["verification"]["status"], done["verification"]["detail"]) == (False, None, "")
    stored = await brain.state.task(task_id)
    assert stored is not None and stored.verification is not None and stored.verification.status is None


async def test_a_body_keeps_the_verification_key_it_first_registered(api: BrainClient, brain: Brain) -> None:
    """Trust on first use: the first key is kept (and logged), the same one or none changes nothing, another is
    refused (409, naming the captain's reset) with nothing changed, and a malformed one is a 422 naming the field."""
    ok(await api.post("/v1/bodies/register", registration("body-a"), as_="body"))
    ok(await api.post("/v1/bodies/register", registration("body-a", workspace="/again"), as_="body"))
    ok(await api.post("/v1/bodies/register", registration("body-a", verify_key=None), as_="body"))
    other = registration("body-a", workspace="/elsewhere", verify_key="cd" * 32)
    error = refused(await api.post("/v1/bodies/register", other, as_="body"), 409, "body_key_mismatch")
    assert "swarm brain body rebind body-a" in error["message"]
    for bad in ("AB" * 32, "ab" * 31, "zz" * 32, 7, ""):
        error = refused(
            await api.post("/v1/bodies/register", registration("body-b", verify_key=bad), as_="body"),
            422,
            "invalid_request",
        )
        assert error["field"] == "verify_key", error
    (body,) = [b for b in await brain.state.bodies() if b.body_id == "body-a"]
    assert (body.verify_key, body.workspace) == (verify_key("body-a"), "/w"), "the refused registration changed it"
    assert "body-b" not in {b.body_id for b in await brain.state.bodies()}
    keyed = [e for e in await brain.state.log_entries() if e.action == "body_key"]
    assert [(e.target, e.by) for e in keyed] == [("body-a", "body-1")]


async def test_a_captains_rebind_of_a_body_forgets_its_key(api: BrainClient, brain: Brain) -> None:
    ok(await api.post("/v1/bodies/register", registration("body-a"), as_="body"))
    (token,) = [t for t in await brain.state.tokens() if t.body_id == "body-a"]
    ok(await api.post("/v1/bodies/body-a/rebind", {"token_id": token.id, "reason": "reinstalled"}, as_="captain"))
    ok(await api.post("/v1/bodies/register", registration("body-a", verify_key="cd" * 32), as_="body"))
    (body,) = [b for b in await brain.state.bodies() if b.body_id == "body-a"]
    assert body.verify_key == "cd" * 32
