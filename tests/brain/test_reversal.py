"""Reversal: a body's task updates keep compensating records, and `POST /v1/undo/{id}` puts the tasks back."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import anyio
import pytest

from brain_server import Brain, SqliteStateEngine
from brain_server.state import Compensation, LogEntry, sqlite_path

from .helpers import BrainClient, Clock, ok, refused, row_of

pytestmark = pytest.mark.anyio


async def queue(api: BrainClient, title: str = "t") -> str:
    task = ok(await api.post("/v1/tasks", {"title": title, "description": "d"}, as_="approver"), 201)
    return str(task["id"])


async def claim(api: BrainClient, body_id: str = "body-a", **caused_by: str) -> dict[str, Any]:
    """Claimed by `body_id` with its own token (the `body` token speaks for body-a)."""
    as_ = "body" if body_id == "body-a" else body_id
    if as_ not in api.tokens:
        await api.add_token(as_)
    return ok(await api.post("/v1/tasks/claim", {"body_id": body_id, "agent": "claude", **caused_by}, as_=as_))


async def finish(api: BrainClient, claimed: dict[str, Any], **caused_by: str) -> dict[str, Any]:
    body = {"claim_token": claimed["claim_token"], "outcome": "succeeded", "summary": "done", **caused_by}
    return ok(await api.post(f"/v1/tasks/{claimed['task']['id']}/outcome", body, as_="body"))


async def undo(api: BrainClient, target: str, *, force: bool = False, as_: str = "approver") -> Any:
    return await api.post(f"/v1/undo/{target}", {"reason": "wrong turn", "force": force}, as_=as_)


async def test_undoing_a_decision_reverses_its_outcome_then_its_claim(api: BrainClient, brain: Brain) -> None:
    task_id = await queue(api)
    queued = await brain.state.task(task_id)
    claimed = await claim(api, action_id="act_claim", decision_id="dec_1")
    await finish(api, claimed, action_id="act_done", decision_id="dec_1")

    result = ok(await undo(api, "dec_1"))
    assert result["target_id"] == "dec_1" and result["conflicts"] == []
    assert [(r["kind"], r["task_id"], r["action_id"]) for r in result["reversed"]] == [
        ("task_outcome", task_id, "act_done"),
        ("task_claim", task_id, "act_claim"),
    ]
    back = await brain.state.task(task_id)
    assert row_of(back) == row_of(queued), "the task is exactly as it was before the decision"
    assert back is not None and [e.kind for e in back.history] == [
        "created",
        "claimed",
        "outcome",
        "reversed",
        "reversed",
    ]
    records = await brain.state.compensations("dec_1")
    assert [r.action_id for r in records] == ["act_claim", "act_done"]
    assert all(r.reversed_at == brain.now() and r.reversed_by == "approver-1" for r in records)
    lines = [e for e in await brain.state.log_entries() if e.action == "reverse"]
    assert [(e.by, e.reason, e.detail["kind"], e.detail["undo"]) for e in lines] == [
        ("approver-1", "wrong turn", "task_outcome", "dec_1"),
        ("approver-1", "wrong turn", "task_claim", "dec_1"),
    ]
    refused(await undo(api, "dec_1"), 404, "nothing_to_reverse")
    again = await claim(api)
    assert again["task"]["id"] == task_id and again["task"]["attempts"] == 1


async def test_undoing_an_outcome_gives_the_body_its_claim_back(api: BrainClient, brain: Brain) -> None:
    await queue(api)
    claimed = await claim(api, action_id="act_claim")
    await finish(api, claimed, action_id="act_done")
    result = ok(await undo(api, "act_done"))
    assert [r["kind"] for r in result["reversed"]] == ["task_outcome"]
    task = await brain.state.task(claimed["task"]["id"])
    assert task is not None and task.state == "claimed" and task.outcome_summary is None
    assert task.lease_expires is not None, "the old lease again: the sweeper requeues the task once it passes"
    redo = await finish(api, claimed)
    assert redo["state"] == "succeeded", "the claim token is the current one again"


async def test_a_task_changed_since_is_a_conflict_and_nothing_is_reversed(
    api: BrainClient, brain: Brain, clock: Clock
) -> None:
    task_id = await queue(api)
    await claim(api, action_id="act_claim", decision_id="dec_1")
    clock.advance(brain.settings.lease_s + 1)
    await brain.sweep()
    await claim(api, body_id="body-b")
    taken = await brain.state.task(task_id)

    conflict = refused(await undo(api, "dec_1"), 409, "reverse_conflict")
    assert f"task {task_id} changed since act_claim" in conflict["message"]
    assert "claimed by body-b, attempt 2" in conflict["message"] and "force" in conflict["message"]
    assert await brain.state.task(task_id) == taken
    assert all(r.reversed_at is None for r in await brain.state.compensations("dec_1"))

    forced = ok(await undo(api, "dec_1", force=True))
    assert len(forced["conflicts"]) == 1 and [r["action_id"] for r in forced["reversed"]] == ["act_claim"]
    task = await brain.state.task(task_id)
    assert task is not None and (task.state, task.claimed_by, task.attempts) == ("queued", None, 0)


async def test_undo_asks_an_approver_a_reason_and_an_id_with_something_to_reverse(api: BrainClient) -> None:
    await queue(api)
    await claim(api)  # names no action: nothing is kept to undo it
    refused(await undo(api, "act_unknown"), 404, "nothing_to_reverse")
    refused(await undo(api, "act_unknown", as_="body"), 403, "forbidden")
    missing = refused(await api.post("/v1/undo/act_x", {"force": True}, as_="captain"), 422, "invalid_request")
    assert missing["field"] == "reason"
    orphan = {"body_id": "body-a", "agent": "claude", "decision_id": "dec_1"}
    bad = refused(await api.post("/v1/tasks/claim", orphan, as_="body"), 422, "invalid_request")
    assert "decision_id needs the action_id" in bad["message"]


async def test_a_reversal_that_fails_part_way_changes_nothing(api: BrainClient, brain: Brain) -> None:
    task_id = await queue(api)
    claimed = await claim(api, action_id="act_claim", decision_id="dec_1")
    await finish(api, claimed, action_id="act_done", decision_id="dec_1")
    finished = await brain.state.task(task_id)
    seen: list[str] = []

    def log(record: Compensation) -> LogEntry:
        seen.append(record.action_id)
        if len(seen) == 2:
            raise RuntimeError("disk full")
        return LogEntry(at=brain.now(), by="approver-1", role="approver", action="reverse", target=record.target)

    with pytest.raises(RuntimeError, match="disk full"):
        await brain.state.reverse("dec_1", force=False, at=brain.now(), log=log)
    assert seen == ["act_done", "act_claim"]
    assert await brain.state.task(task_id) == finished
    assert all(r.reversed_at is None for r in await brain.state.compensations("dec_1"))
    assert not [e for e in await brain.state.log_entries() if e.action == "reverse"]


@pytest.mark.sqlite
@pytest.mark.parametrize("state", ["sqlite"], indirect=True)
async def test_sqlite_refuses_to_delete_or_rewrite_a_compensating_record(api: BrainClient, brain: Brain) -> None:
    assert isinstance(brain.state, SqliteStateEngine)
    await queue(api)
    await claim(api, action_id="act_claim")
    ok(await undo(api, "act_claim"))
    db = sqlite_path(brain.settings.database_url)
    assert db is not None
    with sqlite3.connect(db) as conn:
        for statement in (
            "DELETE FROM compensations",
            "UPDATE compensations SET before = '{}'",
            "UPDATE compensations SET reversed_at = NULL",
        ):
            with pytest.raises(sqlite3.IntegrityError):
                conn.execute(statement)


async def test_a_dry_run_says_what_would_be_reversed_and_changes_nothing(api: BrainClient, brain: Brain) -> None:
    task_id = await queue(api)
    claimed = await claim(api, action_id="act_claim", decision_id="dec_1")
    await finish(api, claimed, action_id="act_done", decision_id="dec_1")
    finished = await brain.state.task(task_id)
    body = {"reason": "would it?", "dry_run": True}
    result = ok(await api.post("/v1/undo/dec_1", body, as_="approver"))
    assert result["dry_run"] is True and [r["action_id"] for r in result["reversed"]] == ["act_done", "act_claim"]
    assert await brain.state.task(task_id) == finished
    assert all(r.reversed_at is None for r in await brain.state.compensations("dec_1"))
    assert not [e for e in await brain.state.log_entries() if e.action == "reverse"]
    refused(await api.post("/v1/undo/act_nothing", body, as_="approver"), 404, "nothing_to_reverse")


async def test_undoing_a_reversal_redoes_it_and_undoing_that_reverses_again(api: BrainClient, brain: Brain) -> None:
    task_id = await queue(api)
    queued = await brain.state.task(task_id)
    claimed = await claim(api, action_id="act_claim", decision_id="dec_1")
    await finish(api, claimed, action_id="act_done", decision_id="dec_1")
    done = await brain.state.task(task_id)

    dry = ok(await api.post("/v1/undo/dec_1", {"reason": "look", "dry_run": True}, as_="approver"))
    assert dry["undo_id"] is None
    first = ok(await api.post("/v1/undo/dec_1", {"reason": "wrong turn", "as_action": "act_undo"}, as_="approver"))
    assert first["undo_id"] == "act_undo" and row_of(await brain.state.task(task_id)) == row_of(queued)

    redo = ok(await undo(api, "act_undo"))  # the reversal's own records: the task as the decision left it
    assert [(r["kind"], r["action_id"]) for r in redo["reversed"]] == [("reversal", "act_undo")] * 2
    assert row_of(await brain.state.task(task_id)) == row_of(done)
    assert redo["undo_id"].startswith("rev_")
    refused(await undo(api, "act_undo"), 404, "nothing_to_reverse")

    ok(await undo(api, redo["undo_id"]))
    assert row_of(await brain.state.task(task_id)) == row_of(queued)
    # Each put-back was kept as the row it overwrote and the row it wrote: outcome undone first, then the claim.
    records = await brain.state.compensations("act_undo")
    (claimed,), (finished,) = await brain.state.compensations("act_claim"), await brain.state.compensations("act_done")
    assert [(r.kind, r.before, r.after) for r in records] == [
        ("reversal", finished.after, finished.before),  # finished -> claimed
        ("reversal", claimed.after, claimed.before),  # claimed -> queued
    ]
    lines = [e for e in await brain.state.log_entries() if e.action == "reverse"]
    assert [e.detail["undo_id"] for e in lines][:2] == ["act_undo", "act_undo"]


async def test_a_reversal_is_kept_only_under_an_id_that_names_nothing_yet(api: BrainClient, brain: Brain) -> None:
    task_id = await queue(api)
    await claim(api, action_id="act_claim", decision_id="dec_1")
    before = await brain.state.task(task_id)
    for taken in ("act_claim", "dec_1"):  # the target itself, or any id that already names brain updates
        request = {"reason": "wrong turn", "as_action": taken}
        data = refused(await api.post("/v1/undo/dec_1", request, as_="approver"), 422, "invalid_request")
        assert "as_action" in data["message"] or data.get("field") == "as_action"
    assert await brain.state.task(task_id) == before


async def test_redoing_over_a_task_changed_since_is_a_conflict_and_changes_nothing(
    api: BrainClient, brain: Brain
) -> None:
    await queue(api)
    claimed = await claim(api, action_id="act_claim")
    ok(await api.post("/v1/undo/act_claim", {"reason": "wrong turn", "as_action": "act_undo"}, as_="approver"))
    again = await claim(api, "body-b")  # another body takes the task meanwhile
    before = await brain.state.task(claimed["task"]["id"])
    data = refused(await undo(api, "act_undo"), 409, "reverse_conflict")
    assert "changed since act_undo" in data["message"]
    assert await brain.state.task(again["task"]["id"]) == before


@pytest.mark.sqlite
async def test_a_database_from_before_reversals_were_kept_keeps_its_records(tmp_path: Path) -> None:
    from brain_server.state._schema import MIGRATIONS, split_statements

    path = tmp_path / "brain.db"
    conn = sqlite3.connect(path)
    try:
        for migration in MIGRATIONS[:6]:
            for statement in split_statements(migration):
                conn.execute(statement)
        conn.execute("PRAGMA user_version = 6")
        conn.execute(
            "INSERT INTO compensations (action_id, body_id, kind, target, before, after, created_at) "
            "VALUES ('act_1', 'body-a', 'task_claim', 'task_1', '{}', '{}', '2026-11-26T00:00:00.000000+00:00')"
        )
        with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
            conn.execute(
                "INSERT INTO compensations (action_id, kind, target, before, after, created_at) "
                "VALUES ('act_2', 'reversal', 'task_1', '{}', '{}', '2026-11-26T00:00:00.000000+00:00')"
            )
        conn.commit()
    finally:
        conn.close()

    state = await SqliteStateEngine.open(path)
    await state.close()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("SELECT id, action_id, kind FROM compensations").fetchall() == [(1, "act_1", "task_claim")]
        conn.execute(
            "INSERT INTO compensations (action_id, kind, target, before, after, created_at) "
            "VALUES ('act_2', 'reversal', 'task_1', '{}', '{}', '2026-11-26T00:00:00.000000+00:00')"
        )
        for statement in ("DELETE FROM compensations", "UPDATE compensations SET target = 'x'"):
            with pytest.raises(sqlite3.IntegrityError, match=r"never deleted|only gains its reversal"):
                conn.execute(statement)
    finally:
        conn.close()


async def test_two_reversals_racing_for_one_id_keep_only_one_under_it(api: BrainClient, brain: Brain) -> None:
    from brain_server.auth import Principal
    from brain_server.exceptions import InvalidRequest

    await queue(api, "one")
    await queue(api, "two")
    await claim(api, action_id="act_c1")
    await claim(api, action_id="act_c2")
    who = Principal(token_id="tok_a", role="approver", label="approver-1")
    outcomes: list[str] = []

    async def reverse(target: str) -> None:
        try:
            await brain.reverse(who, target, "wrong turn", as_action="act_u")
            outcomes.append("reversed")
        except InvalidRequest:
            outcomes.append("refused")

    async with anyio.create_task_group() as tg:
        tg.start_soon(reverse, "act_c1")
        tg.start_soon(reverse, "act_c2")
    assert sorted(outcomes) == ["refused", "reversed"]
    assert len(await brain.state.compensations("act_u")) == 1
