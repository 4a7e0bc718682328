"""`TaskStore` for autonomous agents, on every engine: shadow claims, park and resume, outcomes with verification,
evidence and spend, cancel, the history of it all; and `UsageStore` and `ReadinessStore`."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from brain_server import NotFound, StaleClaim
from brain_server.exceptions import InvalidRequest, InvalidTransition, KeyReused, TaskCancelled
from brain_server.state import OutcomeReport, SqliteStateEngine, StateEngine, created
from brain_server.state._rules import TASK_ROW_FIELDS, iso, task_row
from brain_server.state._schema import MIGRATIONS, split_statements
from shared_protocol.brain import (
    ReadinessItem,
    ReadinessOverride,
    ReadinessReport,
    Task,
    TaskSpend,
    UsageRecord,
    Verification,
)

from .records import LATER, NOW, entry, grant, task

pytestmark = pytest.mark.anyio

LV = "lv-0123456789abcdef"
VERIFIED = Verification(command="pytest -q", exit_code=0, action_id="act_9", verified=True)


def with_acceptance(n: int) -> Task:
    return created(task(n).model_copy(update={"acceptance": "pytest -q", "repo": "/srv/repo"}))


async def claim(engine: StateEngine, claim_token: str = "clm_1", **changes: object) -> Task:
    won = await engine.claim_task(replace(grant(claim_token), **changes), lambda t: entry("task_claim"))  # type: ignore[arg-type]
    assert won is not None
    return won


async def test_a_new_task_keeps_its_acceptance_repo_and_first_history_event(engine: StateEngine) -> None:
    await engine.insert_task(with_acceptance(1), entry("task_create"))
    stored = await engine.task("task_1")
    assert stored == with_acceptance(1)
    assert stored is not None and (stored.acceptance, stored.repo) == ("pytest -q", "/srv/repo")
    assert [e.kind for e in stored.history] == ["created"]


async def test_a_claim_records_its_mode_and_logic_version_in_the_task_and_its_history(engine: StateEngine) -> None:
    await engine.insert_task(with_acceptance(1), entry("task_create"))
    won = await claim(engine, mode="live", logic_version=LV, by="body-1")
    assert (won.claim_mode, won.logic_version, won.attempts) == ("live", LV, 1)
    last = won.history[-1]
    assert (last.kind, last.by, last.agent, last.logic_version) == ("claimed", "body-1", "a", LV)
    assert last.detail == {"body_id": "body-a", "mode": "live", "attempt": 1, "audit_seq": 0}
    assert await engine.task("task_1") == won


async def test_a_shadow_outcome_is_a_shadow_run_and_the_task_is_queued_again(engine: StateEngine) -> None:
    await engine.insert_task(with_acceptance(1), entry("task_create"))
    await claim(engine, mode="shadow", logic_version=LV)
    report = OutcomeReport(by="body-1", verification=VERIFIED, spend=TaskSpend(usd=0.4, steps=3, model="m"))
    back = await engine.finish_task(
        "task_1", claim_token="clm_1", outcome="succeeded", summary="green", at=LATER, log=entry(), report=report
    )
    assert (back.state, back.claimed_by, back.verified, back.verification, back.spend) == (
        "queued",
        None,
        False,
        None,
        None,
    )
    (run,) = back.shadow_runs
    assert (run.agent, run.logic_version, run.outcome, run.summary, run.at) == ("a", LV, "succeeded", "green", LATER)
    assert (run.verification, run.spend) == (VERIFIED, TaskSpend(usd=0.4, steps=3, model="m"))
    assert [e.kind for e in back.history] == ["created", "claimed", "shadow_run"]
    assert await engine.task("task_1") == back


async def test_a_shadow_claim_skips_tasks_this_agent_and_logic_version_shadowed_already(engine: StateEngine) -> None:
    await engine.insert_task(with_acceptance(1), entry("task_create"))
    await claim(engine, mode="shadow", logic_version=LV)
    await engine.finish_task("task_1", claim_token="clm_1", outcome="failed", summary="", at=NOW, log=entry())
    shadow = replace(grant("clm_2"), mode="shadow", logic_version=LV)
    assert await engine.claim_task(shadow, lambda t: entry("task_claim")) is None
    assert await engine.claim_task(replace(shadow, task_id="task_1"), lambda t: entry("task_claim")) is None
    other_version = await claim(engine, "clm_3", mode="shadow", logic_version="lv-other")
    assert other_version.id == "task_1", "another logic version has not shadowed it"
    await engine.finish_task("task_1", claim_token="clm_3", outcome="failed", summary="", at=NOW, log=entry())
    assert (await claim(engine, "clm_4", mode="live", logic_version=LV)).id == "task_1", "live work takes it"


async def test_a_claim_for_one_task_takes_only_that_one(engine: StateEngine) -> None:
    for n, value in ((1, 100.0), (2, 1.0)):
        await engine.insert_task(task(n, value_usd=value), entry("task_create"))
    assert (await claim(engine, task_id="task_2")).id == "task_2"
    assert await engine.claim_task(replace(grant("clm_x"), task_id="task_2"), lambda t: entry()) is None


async def test_a_live_outcome_keeps_verification_evidence_and_spend_and_verified_only_when_rerun(
    engine: StateEngine,
) -> None:
    await engine.insert_task(with_acceptance(1), entry("task_create"))
    await engine.insert_task(with_acceptance(2), entry("task_create"))
    await claim(engine, mode="live", logic_version=LV)
    report = OutcomeReport(
        by="body-1",
        verification=VERIFIED,
        evidence={"branch": "swarm/task_1", "commit": "abc123"},
        spend=TaskSpend(usd=1.25, input_tokens=1000, output_tokens=200, steps=7, model="gpt"),
        logic_version=LV,
        mode="live",
    )
    done = await engine.finish_task(
        "task_1", claim_token="clm_1", outcome="succeeded", summary="ok", at=LATER, log=entry(), report=report
    )
    assert (done.state, done.verified, done.verification, done.evidence) == (
        "succeeded",
        True,
        VERIFIED,
        {"branch": "swarm/task_1", "commit": "abc123"},
    )
    assert done.spend is not None and done.spend.usd == 1.25 and await engine.task("task_1") == done
    assert done.history[-1].kind == "outcome" and done.history[-1].detail["verified"] is True

    await claim(engine, "clm_2", mode="live", logic_version=LV)
    unverified = Verification(command="pytest -q", exit_code=1, action_id="act_8")
    self_reported = await engine.finish_task(
        "task_2",
        claim_token="clm_2",
        outcome="succeeded",
        summary="trust me",
        at=LATER,
        log=entry(),
        report=OutcomeReport(verification=unverified),
    )
    assert (self_reported.state, self_reported.verified) == ("succeeded", False)


async def test_an_outcome_naming_another_mode_version_or_command_is_refused_and_changes_nothing(
    engine: StateEngine,
) -> None:
    await engine.insert_task(with_acceptance(1), entry("task_create"))
    claimed = await claim(engine, mode="shadow", logic_version=LV)
    wrong = (
        (OutcomeReport(mode="live"), "mode"),
        (OutcomeReport(logic_version="lv-else"), "logic_version"),
        (OutcomeReport(verification=replace_command(VERIFIED, "true")), "verification.command"),
    )
    for report, field in wrong:
        with pytest.raises(InvalidRequest) as refused:
            await engine.finish_task(
                "task_1", claim_token="clm_1", outcome="succeeded", summary="", at=NOW, log=entry(), report=report
            )
        assert refused.value.field == field
    assert await engine.task("task_1") == claimed


def replace_command(verification: Verification, command: str) -> Verification:
    return verification.model_copy(update={"command": command})


async def test_a_parked_task_has_no_lease_keeps_its_claim_and_resumes_or_finishes(engine: StateEngine) -> None:
    for n in (1, 2):
        await engine.insert_task(task(n), entry("task_create"))
    await claim(engine)
    parked = await engine.park_task(
        "task_1", claim_token="clm_1", decision_id="dec_1", reason="needs a human", at=NOW, log=entry("task_park")
    )
    assert (parked.state, parked.lease_expires, parked.parked_decision_id) == ("waiting_approval", None, "dec_1")
    assert await engine.requeue_expired(NOW + timedelta(days=1), lambda t: entry()) == [], "no lease to run out"
    with pytest.raises(InvalidTransition):
        await engine.renew_lease("task_1", claim_token="clm_1", lease_expires=LATER)
    with pytest.raises(InvalidTransition):
        await engine.park_task("task_1", claim_token="clm_1", decision_id="dec_1", reason="r", at=NOW, log=entry())
    with pytest.raises(StaleClaim):
        await engine.resume_task("task_1", claim_token="clm_forged", lease_expires=LATER, at=NOW, log=entry())
    resumed = await engine.resume_task("task_1", claim_token="clm_1", lease_expires=LATER, at=NOW, log=entry())
    assert (resumed.state, resumed.lease_expires, resumed.parked_decision_id) == ("claimed", LATER, None)
    with pytest.raises(InvalidTransition):
        await engine.resume_task("task_1", claim_token="clm_1", lease_expires=LATER, at=NOW, log=entry())
    assert [e.kind for e in resumed.history] == ["claimed", "parked", "resumed"]
    assert resumed.history[1].detail == {"decision_id": "dec_1", "reason": "needs a human"}

    await claim(engine, "clm_2")
    await engine.park_task("task_2", claim_token="clm_2", decision_id="dec_2", reason="r", at=NOW, log=entry())
    done = await engine.finish_task(
        "task_2", claim_token="clm_2", outcome="abandoned", summary="denied", at=NOW, log=entry()
    )
    assert (done.state, done.parked_decision_id) == ("abandoned", None)


async def test_a_cancelled_task_refuses_its_claim_and_cannot_be_cancelled_twice(engine: StateEngine) -> None:
    for n in (1, 2):
        await engine.insert_task(task(n), entry("task_create"))
    await claim(engine)
    cancelled = await engine.cancel_task("task_1", reason="not needed", at=NOW, log=entry("task_cancel"))
    assert (cancelled.state, cancelled.finished_at, cancelled.lease_expires) == ("cancelled", NOW, None)
    assert cancelled.history[-1].detail == {"reason": "not needed", "from": "claimed"}
    with pytest.raises(TaskCancelled):
        await engine.renew_lease("task_1", claim_token="clm_1", lease_expires=LATER)
    with pytest.raises(TaskCancelled):
        await engine.finish_task("task_1", claim_token="clm_1", outcome="succeeded", summary="", at=NOW, log=entry())
    with pytest.raises(InvalidTransition):
        await engine.cancel_task("task_1", reason="again", at=NOW, log=entry("task_cancel"))
    with pytest.raises(NotFound):
        await engine.cancel_task("task_nope", reason="r", at=NOW, log=entry("task_cancel"))
    assert await engine.task("task_1") == cancelled
    queued = await engine.cancel_task("task_2", reason="dup", at=NOW, log=entry("task_cancel"))
    assert queued.state == "cancelled" and await engine.claim_task(grant("clm_9"), lambda t: entry()) is None
    assert [e.action for e in await engine.log_entries()].count("task_cancel") == 2, "refusals write nothing"


async def test_a_lost_lease_is_in_the_history_and_the_task_lists_filter_by_state_and_agent(engine: StateEngine) -> None:
    for n in (1, 2, 3):
        await engine.insert_task(task(n), entry("task_create"))
    await claim(engine)
    await claim(engine, "clm_2", agent="other")
    requeued = await engine.requeue_expired(LATER, lambda t: entry())
    assert [t.id for t in requeued] == ["task_1", "task_2"]
    lost = requeued[0].history[-1]
    assert (lost.kind, lost.by, lost.agent, lost.detail["body_id"]) == ("lease_lost", "lease", "a", "body-a")
    assert [t.id for t in await engine.tasks()] == ["task_1", "task_2", "task_3"]
    assert [t.id for t in await engine.tasks(state="queued")] == ["task_1", "task_2", "task_3"]
    await claim(engine, "clm_3", agent="other", lease_expires=LATER + timedelta(hours=1))
    assert [t.id for t in await engine.tasks(agent="other")] == ["task_1"]
    assert [t.id for t in await engine.tasks(state="claimed", agent="a")] == []
    listed = await engine.tasks(state="claimed")
    assert listed == [await engine.task("task_1")], "with their history"


def usage(n: int, *, agent: str = "w1", task_id: str | None = "task_1", usd: float = 0.5) -> UsageRecord:
    return UsageRecord(
        id=f"use_{n}",
        at=NOW,
        agent=agent,
        logic_version=LV,
        task_id=task_id,
        provider="openai",
        model="gpt",
        input_tokens=100,
        output_tokens=10,
        usd=usd,
    )


async def test_usage_is_kept_per_body_and_a_resent_record_is_a_duplicate(engine: StateEngine) -> None:
    assert await engine.record_usage("body-a", [usage(1), usage(2), usage(2)]) == (2, 1)
    assert await engine.record_usage("body-a", [usage(1), usage(3)]) == (1, 1)
    assert await engine.record_usage("body-b", [usage(4, agent="w2")]) == (1, 0)
    assert [r.id for r in await engine.usage()] == ["use_1", "use_2", "use_3", "use_4"]
    assert [r.id for r in await engine.usage(body_id="body-b")] == ["use_4"]


async def test_a_record_id_reused_for_another_record_or_body_refuses_the_whole_batch(engine: StateEngine) -> None:
    await engine.record_usage("body-a", [usage(1)])
    for body_id, batch in (("body-a", [usage(5), usage(1, usd=9.0)]), ("body-b", [usage(6), usage(1)])):
        with pytest.raises(KeyReused):
            await engine.record_usage(body_id, batch)
    assert [r.id for r in await engine.usage()] == ["use_1"]


async def test_the_newest_readiness_report_counts_and_overrides_hold_until_they_expire(engine: StateEngine) -> None:
    assert await engine.readiness_report() is None
    items = [ReadinessItem(name="kill drill", ok=True)]
    first = ReadinessReport(at=NOW, by="cap", ready=True, items=items)
    second = ReadinessReport(at=LATER, by="cap", ready=False, items=[ReadinessItem(name="kill drill", ok=False)])
    await engine.add_readiness_report(first, entry("readiness_report"))
    await engine.add_readiness_report(second, entry("readiness_report"))
    assert await engine.readiness_report() == second
    override = ReadinessOverride(
        id="ovr_1", agent="w1", logic_version=LV, reason="r", by="cap", at=NOW, expires_at=LATER
    )
    await engine.add_readiness_override(override, entry("readiness_override"))
    assert await engine.readiness_overrides(at=NOW) == [override]
    assert await engine.readiness_overrides(at=LATER) == []
    assert [e.action for e in await engine.log_entries()] == ["readiness_report"] * 2 + ["readiness_override"]


@pytest.mark.sqlite
async def test_task_history_and_overrides_are_append_only_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "brain.db"
    state = await SqliteStateEngine.open(path)
    await state.insert_task(created(task(1)), entry("task_create"))
    override = ReadinessOverride(id="o", agent="w", logic_version=LV, reason="r", by="c", at=NOW, expires_at=LATER)
    await state.add_readiness_override(override, entry("readiness_override"))
    await state.close()
    conn = sqlite3.connect(path)
    try:
        for statement in (
            "UPDATE task_events SET event = '{}'",
            "DELETE FROM task_events",
            "UPDATE readiness_overrides SET expires_at = 'x'",
            "DELETE FROM readiness_overrides",
        ):
            with pytest.raises(sqlite3.IntegrityError):
                conn.execute(statement)
    finally:
        conn.close()


@pytest.mark.sqlite
async def test_a_database_from_before_agents_keeps_its_tasks_and_reverses_their_old_records(tmp_path: Path) -> None:
    """A v9 file: its tasks read with the new fields' defaults and an empty history, work on as any task, and a
    compensating record written before v10 (whose rows lack the new fields) reverses without a false conflict."""
    path = tmp_path / "brain.db"
    conn = sqlite3.connect(path)
    try:
        for migration in MIGRATIONS[:9]:  # before autonomous agents
            for statement in split_statements(migration):
                conn.execute(statement)
        conn.execute("PRAGMA user_version = 9")
        old_fields = TASK_ROW_FIELDS[: TASK_ROW_FIELDS.index("finished_at") + 1]
        queued = {name: value for name, value in task_row(task(1), None).items() if name in old_fields}
        claimed = {
            **queued,
            "state": "claimed",
            "claimed_body": "body-a",
            "claimed_agent": "a",
            "claimed_at": iso(NOW),
            "lease_expires": iso(LATER),
            "claim_token": "clm_old",
            "attempts": 1,
        }
        conn.execute(
            f"INSERT INTO tasks ({', '.join(old_fields)}) VALUES ({', '.join('?' for _ in old_fields)})",
            tuple(claimed[name] for name in old_fields),
        )
        conn.execute(
            "INSERT INTO compensations (action_id, body_id, kind, target, before, after, created_at) "
            "VALUES ('act_old', 'body-a', 'task_claim', 'task_1', ?, ?, ?)",
            (json.dumps(queued), json.dumps(claimed), iso(NOW)),
        )
        conn.commit()
    finally:
        conn.close()

    state = await SqliteStateEngine.open(path)
    try:
        old = await state.task("task_1")
        assert old is not None and (old.state, old.acceptance, old.repo, old.history, old.shadow_runs) == (
            "claimed",
            "",
            "",
            [],
            [],
        )
        assert (old.claim_mode, old.verified, old.evidence, old.spend) == (None, False, {}, None)
        reversal = await state.reverse("act_old", force=False, at=LATER, log=lambda c: entry("reverse"))
        assert reversal.conflicts == [] and len(reversal.reversed) == 1
        back = await state.task("task_1")
        assert back is not None and (back.state, back.claimed_by) == ("queued", None)
        assert [e.kind for e in back.history] == ["reversed"]
        again = await claim(state, "clm_new", mode="shadow", logic_version=LV)
        assert (again.state, again.claim_mode, again.attempts) == ("claimed", "shadow", 1)
    finally:
        await state.close()
