"""What a rollout's evaluation reads is kept between an agent's claims while nothing it counts changed
(`rollout_inputs.py`), and read again the moment something did: a candidate failing by evidence that came in
without an outcome (the body's audit event refuting its verification), or by time alone (a verification never
confirmed), or rolled back by a captain, is refused on its very next claim. Each test runs on both engines (the
memory engine keeps nothing and reads every time)."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from brain_server import Brain, BrainSettings, StateEngine
from brain_server.rollout import UNSETTLED_GRACE_S
from shared_protocol import AuditEvent

from .helpers import BrainClient, Clock, audit_event, batch, engine_url, ok, refused, rerun_event
from .test_rollout import ACCEPTANCE, AGENT, CONFIG, V2, Version, live_with_history, queue, queue_in, through_shadow

pytestmark = pytest.mark.anyio


@pytest.fixture
def settings(tmp_path: Path) -> BrainSettings:
    return BrainSettings(database_url=engine_url("sqlite", tmp_path), rollout=CONFIG)


async def claimed_verified_unconfirmed(api: BrainClient, clock: Clock, v2: Version) -> tuple[str, str]:
    """The candidate claims a task in its canary share and reports it verified, its body's audit event of the
    re-run not sent yet (the verification pending); (the task id, the re-run's action id)."""
    task_id = await queue_in(api, 0, 10)
    claimed = ok(await v2.claim("live", task_id=task_id))
    assert claimed["task"] is not None
    action = f"act_{v2.body_id}_{len(v2.actions)}"
    v2.actions.append(action)
    clock.advance(1)
    outcome: dict[str, Any] = {
        "claim_token": claimed["claim_token"],
        "outcome": "succeeded",
        "summary": "done",
        "verification": {"command": ACCEPTANCE, "exit_code": 0, "action_id": action, "verified": True},
        "spend": {"usd": 0.1},
        "logic_version": V2,
        "mode": "live",
    }
    done = ok(await api.post(f"/v1/tasks/{task_id}/outcome", outcome, as_=v2.name))
    assert done["verification"]["status"] == "pending"
    return task_id, action


async def canary(api: BrainClient, clock: Clock) -> tuple[Version, Version]:
    v1, v2 = await live_with_history(api, clock)
    await through_shadow(api, clock, v2)
    report = ok(await api.get(f"/v1/agents/{AGENT}/rollout", as_="approver"))
    assert (report["state"]["candidate"], report["state"]["stage"]) == (V2, "canary")
    return v1, v2


async def test_claims_with_nothing_changed_read_the_inputs_once(api: BrainClient, clock: Clock, brain: Brain) -> None:
    v1, _ = await canary(api, clock)
    keeps = await brain.state.rollout_inputs_generation() is not None
    ok(await v1.claim("live"))  # (each claim evaluates the candidate first, whether it finds a task or not)
    reads = brain.rollouts.inputs.reads
    for _ in range(3):
        ok(await v1.claim("live"))
    assert brain.rollouts.inputs.reads == (reads if keeps else reads + 3)
    await queue_in(api, 10, 100)  # (in the live version's share: the candidate's 10% waits for the candidate)
    assert ok(await v1.claim("live"))["task"] is not None  # (a task queued and claimed: nothing an evaluation counts)
    assert brain.rollouts.inputs.reads == (reads if keeps else reads + 4)


async def test_a_refutation_arriving_without_an_outcome_rolls_back_on_the_next_claim(
    api: BrainClient, clock: Clock, brain: Brain
) -> None:
    v1, v2 = await canary(api, clock)
    pending = [await claimed_verified_unconfirmed(api, clock, v2) for _ in range(2)]
    ok(await v1.claim("live"))  # (evaluated: both runs unsettled, neither counted; what was read is kept)
    held = await brain.state.rollout(AGENT)
    assert held is not None and held.candidate == V2
    for task_id, action in pending:  # the body's events: the re-runs failed (no tick of the rollout on ingest)
        v2.seq += 1
        event = rerun_event(
            v2.body_id, v2.seq, v2.prev, action_id=action, at=clock.now, argv=["pytest", "-q"], exit_code=1,
            task_id=task_id, agent=AGENT,
        )  # fmt: skip
        v2.prev = event.mac
        ok(await api.post("/v1/audit", batch(v2.body_id, [event]), as_=v2.name))
    refused(await v2.claim("live"), 403, "not_ready")  # the very next claim
    state = await brain.state.rollout(AGENT)
    assert state is not None and state.candidate is None and state.rolled_back == [V2]


async def test_a_verification_never_confirmed_rolls_back_on_the_next_claim_after_its_grace(
    api: BrainClient, clock: Clock, brain: Brain
) -> None:
    _, v2 = await canary(api, clock)
    for _ in range(2):
        await claimed_verified_unconfirmed(api, clock, v2)
    # evaluated (both runs unsettled: held), what it read kept; no claim holds a lease that would run out below
    report = ok(await api.get(f"/v1/agents/{AGENT}/rollout", as_="approver"))
    assert report["state"]["candidate"] == V2
    generation = await brain.state.rollout_inputs_generation()
    clock.advance(UNSETTLED_GRACE_S + 1)  # nothing written: only time moves
    assert await brain.state.rollout_inputs_generation() == generation
    refused(await v2.claim("live"), 403, "not_ready")
    state = await brain.state.rollout(AGENT)
    assert state is not None and state.rolled_back == [V2]


async def test_a_captains_rollback_refuses_the_very_next_claim(api: BrainClient, clock: Clock) -> None:
    v1, v2 = await canary(api, clock)
    ok(await v2.claim("live"))  # (what the evaluation reads is kept now)
    ok(await v1.claim("live"))
    ok(await api.post(f"/v1/agents/{AGENT}/rollout/rollback", {"reason": "not today"}, as_="captain"))
    refused(await v2.claim("live"), 403, "not_ready")


async def test_the_generation_moves_on_what_an_evaluation_counts_and_not_on_claims(
    api: BrainClient, clock: Clock, brain: Brain
) -> None:
    v1, _ = await live_with_history(api, clock, tasks=1)
    generation = brain.state.rollout_inputs_generation
    if await generation() is None:  # (the memory engine keeps none: its evaluations read every time, the first test)
        assert type(brain.state).__name__ == "MemoryStateEngine"
        return
    task_id = await queue(api)
    before = await generation()
    assert before is not None
    claimed = ok(await v1.claim("live", task_id=task_id))
    ok(await api.post(f"/v1/tasks/{task_id}/renew", {"claim_token": claimed["claim_token"]}, as_=v1.name))
    plain = audit_event(v1.body_id, v1.seq + 1, v1.prev).model_copy(update={"agent": AGENT})
    ok(await api.post("/v1/audit", batch(v1.body_id, [plain]), as_=v1.name))
    v1.seq, v1.prev = plain.seq, plain.mac
    assert await generation() == before  # a claim, a renewal, an event that refused nothing
    refusal = audit_event(v1.body_id, v1.seq + 1, v1.prev).model_copy(update={"outcome": "refused", "agent": AGENT})
    ok(await api.post("/v1/audit", batch(v1.body_id, [refusal]), as_=v1.name))
    v1.seq, v1.prev = refusal.seq, refusal.mac
    after_refusal = await generation()
    assert after_refusal is not None and after_refusal > before
    usage: dict[str, Any] = {
        "id": "use_1", "at": "2030-01-01T00:00:00Z", "agent": AGENT, "logic_version": "lv-1", "task_id": task_id,
        "provider": "openai", "model": "gpt", "input_tokens": 10, "output_tokens": 1, "cache_read_tokens": 0,
        "cache_write_tokens": 0, "usd": 0.01, "outcome": "answered",
    }  # fmt: skip
    ok(await api.post("/v1/usage", {"body_id": v1.body_id, "records": [usage]}, as_=v1.name))
    after_usage = await generation()
    assert after_usage is not None and after_usage > after_refusal
    outcome = {"claim_token": claimed["claim_token"], "outcome": "failed", "summary": "no", "mode": "live"}
    ok(await api.post(f"/v1/tasks/{task_id}/outcome", {**outcome, "logic_version": v1.version}, as_=v1.name))
    after_outcome = await generation()
    assert after_outcome is not None and after_outcome > after_usage


async def test_refused_events_are_an_agents_refused_calls_read_by_an_index(state: StateEngine, tmp_path: Path) -> None:
    events: list[AuditEvent] = []
    prev = "genesis-body-a"
    for seq, (agent, outcome) in enumerate(
        [("w1", "ok"), ("w1", "refused"), ("w2", "refused"), ("w1", "refused"), ("w1", "error")], start=1
    ):
        event = audit_event("body-a", seq, prev).model_copy(
            update={"agent": agent, "outcome": outcome, "logic_version": f"lv-{seq}"}
        )
        events.append(event)
        prev = event.mac
    other = audit_event("body-b", 1, "genesis-body-b").model_copy(update={"agent": "w1", "outcome": "refused"})
    await state.append_audit("body-a", events, at=datetime.now(UTC))
    await state.append_audit("body-b", [other], at=datetime.now(UTC))
    found = await state.refused_events("w1")
    assert [(e.body_id, e.seq) for e in found] == [("body-a", 2), ("body-a", 4), ("body-b", 1)]
    assert [e.seq for e in await state.refused_events("w2")] == [3]
    assert await state.refused_events("w3") == []
    if not (tmp_path / "brain.db").exists():  # (the memory engine: no file, no index)
        return
    conn = sqlite3.connect(tmp_path / "brain.db")
    try:
        plan = " ".join(
            str(row[3])
            for row in conn.execute(
                "EXPLAIN QUERY PLAN SELECT event FROM audit_events WHERE json_extract(event, '$.outcome') = 'refused' "
                "AND json_extract(event, '$.agent') = ? ORDER BY body_id, seq",
                ("w1",),
            )
        )
    finally:
        conn.close()
    assert "USING INDEX audit_events_refused" in plan, plan
