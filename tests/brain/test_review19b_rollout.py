"""Adversarial review of #19's shadow → canary rollout of an agent's logic version, over the brain's HTTP API on
every state engine (SQLite on a real file), with a clock the test moves.

Each test is an attack: "Withstood" when the rollout held, "Was a hole … fixed by …" when it did not and was fixed
here, a strict xfail "HOLE" when it did not and is left for its owner (the reason says how to reproduce it and the
fix)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from brain_server import Brain, BrainSettings
from brain_server.canary import bucket
from brain_server.rollout import UNSETTLED_GRACE_S
from shared_protocol import AuditEvent

from .helpers import BrainClient, Clock, batch, engine_url, ok, refused, registration, rerun_event
from .test_rollout import (
    ACCEPTANCE,
    AGENT,
    CONFIG,
    SHADOW_S,
    V1,
    V2,
    Version,
    live_with_history,
    queue,
    queue_in,
    status,
    through_shadow,
)

pytestmark = pytest.mark.anyio

V3 = "lv-3333333333333333"
OTHER_REPO = "/srv/other"


@pytest.fixture
def settings(tmp_path: Path) -> BrainSettings:
    return BrainSettings(database_url=engine_url("sqlite", tmp_path), rollout=CONFIG)


async def queue_other(api: BrainClient) -> str:
    """A task of a kind (repository) the live version never worked."""
    task = ok(
        await api.post("/v1/tasks", {"title": "t", "acceptance": ACCEPTANCE, "repo": OTHER_REPO}, as_="approver"), 201
    )
    return task["id"]


async def work_late(
    v: Version, mode: str, *, task_id: str | None = None, exit_code: int = 0, sent: bool = True
) -> tuple[dict[str, Any], AuditEvent]:
    """Claim and finish a task as `v`, reported verified, but with the outcome in before the body's audit event of
    the re-run (the body ships its chain on its own: it may arrive a moment later). Returns the outcome and the
    event, unsent (`sent=False`: one that will never be, so the body's chain goes on without it)."""
    claimed = ok(await v.claim(mode, task_id))
    task = claimed["task"]
    assert task is not None
    v.clock.advance(1)
    action = f"act_{v.body_id}_{len(v.actions)}"
    v.actions.append(action)
    event = rerun_event(
        v.body_id,
        v.seq + 1,
        v.prev,
        action_id=action,
        at=v.clock.now,
        argv=["pytest", "-q"],
        task_id=task["id"],
        agent=AGENT,
        exit_code=exit_code,
    )
    if sent:
        v.seq, v.prev = v.seq + 1, event.mac
    outcome = {
        "claim_token": claimed["claim_token"],
        "outcome": "succeeded",
        "summary": "done",
        "verification": {"command": ACCEPTANCE, "exit_code": 0, "action_id": action, "verified": True},
        "spend": {"usd": 0.1},
        "logic_version": v.version,
        "mode": mode,
    }
    done = ok(await v.api.post(f"/v1/tasks/{task['id']}/outcome", outcome, as_=v.name))
    v.clock.advance(1)
    return done, event


# -- getting a new logic version live without its shadow period ---------------------------------------------------


async def test_a_version_changed_after_readiness_passed_does_not_go_live_without_its_shadow(
    api: BrainClient, clock: Clock
) -> None:
    """Was a hole (high): the brain made the first version of an agent to claim live its live version on the global
    `ready` flag of the latest report, computed by the CLI for the version configured then: V2 (a prompt changed
    after readiness passed for V1) went live unshadowed. Fixed in `Rollouts.route`: the first live version needs the
    brain's own record of its shadow period (min_shadow_tasks over shadow_days) or a captain's override naming it."""
    v1 = await Version(api, clock, V1, "v1", "body-1").start()
    v2 = await Version(api, clock, V2, "v2", "body-2").start()
    for _ in range(3):
        await queue(api)
        await v1.work("shadow")
    clock.advance(SHADOW_S)
    item = {"name": f"shadow_period:{AGENT}", "ok": True, "detail": f"{V1}: 3 shadow tasks over 1 days", "fix": ""}
    drill = {"name": "kill_drill", "ok": True, "detail": "0.1 s", "fix": ""}
    ok(await api.post("/v1/readiness", {"ready": True, "items": [drill, item]}, as_="captain"), 201)
    await queue(api)
    refused(await v2.claim("live"), 403, "not_ready")


async def test_a_new_version_with_a_live_one_cannot_claim_live_whatever_readiness_or_task_it_names(
    api: BrainClient, clock: Clock
) -> None:
    """Withstood: with a live version, a new version (V2, or a one-character change of V1's string) is a candidate in
    shadow: a live claim by it is refused even with a captain's readiness override for it and naming a task."""
    _, v2 = await live_with_history(api, clock, tasks=2)
    near = await Version(api, clock, V1[:-1] + "2", "near", "body-3").start()
    override = {"agent": AGENT, "logic_version": V2, "reason": "let it", "for_s": 3600}
    ok(await api.post("/v1/readiness/overrides", override, as_="captain"), 201)
    task_id = await queue(api)
    refused(await v2.claim("live", task_id), 403, "not_ready")
    refused(await near.claim("live", task_id), 403, "not_ready")
    report = await status(api)
    assert report["state"]["live_version"] == V1 and report["state"]["stage"] == "shadow"
    assert (await api.get(f"/v1/tasks/{task_id}", as_="approver")).json()["state"] == "queued"


async def test_shadow_tasks_count_once_per_task_and_only_for_their_own_agent_and_version(
    api: BrainClient, clock: Clock
) -> None:
    """Withstood: a version cannot shadow the same task twice (a claim naming it gets nothing), and the shadow runs
    of another version of the agent, or of another agent at the same version string, do not count toward
    min_shadow_tasks."""
    _, v2 = await live_with_history(api, clock, tasks=4)
    task_id = await queue(api)
    await v2.work("shadow", task_id=task_id)
    again = ok(await v2.claim("shadow", task_id))
    assert again["task"] is None
    v3 = await Version(api, clock, V3, "v3", "body-3").start()
    await api.add_token("other", agent="w2")
    ok(await api.post("/v1/bodies/register", registration("body-4"), as_="other"))
    for _ in range(3):
        await queue(api)
        await v3.work("shadow")  # (V3 replaces V2 as the candidate, then V2 comes back below)
    for _ in range(3):
        claimed = ok(
            await api.post(
                "/v1/tasks/claim",
                {"body_id": "body-4", "agent": "w2", "mode": "shadow", "logic_version": V2},
                as_="other",
            )
        )
        assert claimed["task"] is not None
        finished = {"claim_token": claimed["claim_token"], "outcome": "failed", "summary": "x", "mode": "shadow"}
        ok(await api.post(f"/v1/tasks/{claimed['task']['id']}/outcome", finished, as_="other"))
    await queue(api)
    await v2.work("shadow")  # V2 is the candidate again: its own two tasks only
    clock.advance(SHADOW_S)
    report = await status(api)
    assert report["state"]["candidate"] == V2 and report["state"]["stage"] == "shadow", report
    assert report["shadow_tasks"] == 2


async def test_shadow_successes_the_runner_only_claims_never_count_and_unsent_evidence_is_a_failure(
    api: BrainClient, clock: Clock
) -> None:
    """Withstood: shadow runs reported verified with no audit event of the re-run count for nothing while the event
    may still come (UNSETTLED_GRACE_S), and as failures after: evidence never sent hides no failure, and the
    candidate (0/3 against 8/8) is rolled back."""
    _, v2 = await live_with_history(api, clock, tasks=8)
    for _ in range(3):
        await queue(api)
        await work_late(v2, "shadow", sent=False)  # (the runner's word only)
    report = await status(api)
    assert report["state"]["candidate"] == V2 and report["shadow_tasks"] == 0, report
    clock.advance(UNSETTLED_GRACE_S)
    after = await status(api)
    assert after["state"]["rolled_back"] == [V2], after


async def test_shadow_runs_whose_re_run_failed_are_failures(api: BrainClient, clock: Clock) -> None:
    """Withstood: a runner's verified claim refuted by the body's own event of the re-run (exit 1) is a failure: two
    of them (0/2 against 8/8) roll the candidate back."""
    _, v2 = await live_with_history(api, clock, tasks=8)
    for _ in range(2):
        await queue(api)
        _, failing = await work_late(v2, "shadow", exit_code=1)
        ok(await api.post("/v1/audit", batch(v2.body_id, [failing]), as_=v2.name))
    after = await status(api)
    assert after["state"]["rolled_back"] == [V2], after


# -- promotion on bad or missing evidence -------------------------------------------------------------------------


async def test_a_candidate_with_no_task_the_live_version_can_be_compared_with_is_not_promoted(
    api: BrainClient, clock: Clock
) -> None:
    """Was a hole (medium): a candidate whose tasks were all of kinds the live version never finished had every metric
    "hold" on no evidence (p = 1), so three failed shadow runs, then three failed canary tasks, promoted it through
    the canary to live. Fixed by `rollout.evaluate`: a promotion needs the minimum of tasks (min_shadow_tasks,
    min_tasks_per_step) on kinds the live version worked too, and the report says the others are not compared."""
    _, v2 = await live_with_history(api, clock, tasks=8)
    for _ in range(3):
        await queue_other(api)
        await v2.work("shadow", verified=False)
    clock.advance(SHADOW_S)
    report = await status(api)
    assert report["state"]["stage"] == "shadow" and report["candidate_tasks"] == 0, report
    assert "not compared" in report["next"]
    promoted = ok(await api.post(f"/v1/agents/{AGENT}/rollout/promote", {"reason": "try it"}, as_="captain"))
    assert promoted["state"]["stage"] == "canary"
    for _ in range(3):
        mine = await queue_other(api)
        while bucket(mine) >= 10:
            mine = await queue_other(api)
        await v2.work("live", task_id=mine, verified=False)
    after = await status(api)
    assert (after["state"]["stage"], after["percent"]) == ("canary", 10), after


async def test_an_outcome_in_before_its_audit_event_is_not_a_failure(api: BrainClient, clock: Clock) -> None:
    """Was a hole (medium): a run whose verification was still pending (the outcome posted, the body's audit event of
    the re-run a moment behind it, as the body ships its chain on its own) counted as a failure at the outcome's
    evaluation, so two such shadow runs of a good candidate (0/2 against 8/8: p = 1/45) rolled it back for good.
    Fixed by `rollout.live_runs`/`shadow_runs`: an unsettled run is neither until its evidence is in, for
    UNSETTLED_GRACE_S (then a failure: see the test above)."""
    _, v2 = await live_with_history(api, clock, tasks=8)
    late: list[AuditEvent] = []
    for _ in range(2):
        await queue(api)
        _, event = await work_late(v2, "shadow")
        late.append(event)
    assert (await status(api))["state"]["candidate"] == V2
    ok(await api.post("/v1/audit", batch(v2.body_id, late), as_=v2.name))
    await queue(api)
    await v2.work("shadow")
    clock.advance(SHADOW_S)
    report = await status(api)
    assert (report["state"]["stage"], report["shadow_tasks"]) == ("canary", 3), report


async def test_a_candidate_that_lets_its_canary_leases_run_out_is_rolled_back(
    api: BrainClient, clock: Clock, brain: Brain
) -> None:
    """Was a hole (medium): a candidate's live claims that ended with the lease running out were recorded nowhere in
    its metrics: it kept its canary share however many it lost. Fixed by `rollout._lost_leases`: each is a failed
    run of the version that held it."""
    _, v2 = await live_with_history(api, clock, tasks=8)
    await through_shadow(api, clock, v2)
    assert (await status(api))["state"]["stage"] == "canary"
    lost = 0
    while not (await status(api))["state"]["rolled_back"]:
        assert lost < 3, "three lost leases against 8/8 and the candidate is still in"
        task_id = await queue_in(api, 0, 10)
        assert ok(await v2.claim("live", task_id))["task"] is not None
        clock.advance(brain.settings.lease_s + 1)
        assert (await api.get(f"/v1/tasks/{task_id}", as_="approver")).json()["state"] == "queued"
        ok(await api.post(f"/v1/tasks/{task_id}/cancel", {"reason": "lost"}, as_="approver"))
        lost += 1
    after = await status(api)
    assert after["state"]["rolled_back"] == [V2] and lost >= 1, after


async def test_a_rolled_back_version_never_comes_back_by_shadow_or_live(api: BrainClient, clock: Clock) -> None:
    """Withstood: once rolled back, the same version string shadows (recorded) but never becomes the candidate again,
    and its live claims are refused, even after a newer candidate came and went."""
    _, v2 = await live_with_history(api, clock, tasks=2)
    await queue(api)
    await v2.work("shadow")
    ok(await api.post(f"/v1/agents/{AGENT}/rollout/rollback", {"reason": "no"}, as_="captain"))
    v3 = await Version(api, clock, V3, "v3", "body-3").start()
    await queue(api)
    await v3.work("shadow")
    ok(await api.post(f"/v1/agents/{AGENT}/rollout/rollback", {"reason": "no"}, as_="captain"))
    for _ in range(3):
        await queue(api)
        await v2.work("shadow")
    clock.advance(SHADOW_S)
    report = await status(api)
    assert report["state"]["candidate"] is None and report["state"]["rolled_back"] == [V2, V3], report
    refused(await v2.claim("live"), 403, "not_ready")
    promote = await api.post(f"/v1/agents/{AGENT}/rollout/promote", {"reason": "bring it back"}, as_="captain")
    refused(promote, 409, "invalid_transition")


# -- the canary's share --------------------------------------------------------------------------------------------


async def test_neither_version_takes_the_others_bucket_by_naming_a_task_and_no_one_picks_a_task_id(
    api: BrainClient, clock: Clock
) -> None:
    """Withstood: at a canary step a claim naming a task in the other version's buckets gets nothing (shadow aside);
    a task's id is the brain's (a creator's `id` is refused), so its bucket cannot be chosen."""
    v1, v2 = await live_with_history(api, clock, tasks=3)
    await through_shadow(api, clock, v2)
    assert (await status(api))["percent"] == 10
    mine, theirs = await queue_in(api, 0, 10), await queue_in(api, 10, 100)
    assert ok(await v2.claim("live", theirs))["task"] is None
    assert ok(await v1.claim("live", mine))["task"] is None
    chosen = await api.post(
        "/v1/tasks", {"id": "task_mine", "title": "t", "acceptance": ACCEPTANCE, "repo": "/srv/app"}, as_="approver"
    )
    refused(chosen, 422, "invalid_request")


async def test_a_task_in_the_candidates_buckets_is_not_left_queued_forever(api: BrainClient, clock: Clock) -> None:
    """Was a hole (medium): a live task in the candidate's canary buckets waited for the candidate alone, however
    long (a candidate's runner that stops, or names the tasks it wants, starved them). Fixed: the live version's
    claim also takes a task of the candidate's share created more than a lease ago (`ClaimGrant.waited_before`);
    a fresh one stays the candidate's."""
    v1, v2 = await live_with_history(api, clock, tasks=3)
    await through_shadow(api, clock, v2)
    assert (await status(api))["percent"] == 10
    waiting = await queue_in(api, 0, 10)
    assert ok(await v1.claim("live", waiting))["task"] is None, "a fresh task of the candidate's share is its own"
    clock.advance(3600)
    claimed = ok(await v1.claim("live", waiting))
    assert claimed["task"] is not None, claimed


# -- who may promote or roll back, and bad input -------------------------------------------------------------------


async def test_the_captain_agents_token_cannot_promote_or_roll_back_and_bad_bodies_change_nothing(
    api: BrainClient, clock: Clock, brain: Brain
) -> None:
    """Withstood: the captain agent (a reviewer token) is refused 403; a reason of blanks, a body that is not an
    object, not JSON, or with a field it does not know, is refused 422 (a reason past the request limit 413), and
    the rollout is as it was."""
    _, v2 = await live_with_history(api, clock, tasks=1)
    await queue(api)
    await v2.work("shadow")
    await api.add_token("cap-agent", "reviewer", agent="cap")
    url = f"/v1/agents/{AGENT}/rollout"
    for verb in ("promote", "rollback"):
        refused(await api.post(f"{url}/{verb}", {"reason": "I lead"}, as_="cap-agent"), 403, "forbidden")
        for body in ({"reason": "   "}, ["reason"], {"reason": 5}, {"reason": "x", "percent": 100}):
            refused(await api.post(f"{url}/{verb}", body, as_="captain"), 422, "invalid_request")
        huge = await api.post(f"{url}/{verb}", {"reason": "x" * 100_000}, as_="captain")
        assert huge.status_code == 413, huge.text
        raw = await api.client.post(
            f"{url}/{verb}",
            content=b"{not json",
            headers={"Authorization": f"Bearer {api.tokens['captain']}", "Content-Type": "application/json"},
        )
        assert raw.status_code in (400, 422), raw.text
    report = await status(api)
    assert (report["state"]["candidate"], report["state"]["stage"]) == (V2, "shadow")
    changes = ("rollout_promote", "rollout_rollback")
    assert not [e for e in await brain.state.log_entries(limit=500) if e.action in changes]
