"""Decisions: classified by the rules, answered by humans with who and why, expired by the clock."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import anyio
import pytest

from brain_server import Brain
from brain_server.wake.memory import MemoryChannel

from .helpers import BrainClient, Clock, decision_request, ok, refused

pytestmark = pytest.mark.anyio


async def create(api: BrainClient, **changes: Any) -> dict[str, Any]:
    return ok(await api.post("/v1/decisions", decision_request(**changes), as_="body"), 201)


async def test_a_small_confident_action_is_approved_at_once_by_the_rules(
    api: BrainClient, pages: MemoryChannel, brain: Brain
) -> None:
    decision = await create(api)
    assert (decision["state"], decision["needs"]) == ("approved", "none")
    assert [(a["verdict"], a["by"]) for a in decision["answers"]] == [("approved", "rules")]
    await brain.escalator.tick()
    assert pages.pages == []


async def test_an_action_over_the_blast_radius_is_denied_at_once(api: BrainClient) -> None:
    for impact in ({"files": 11}, {"api_calls": 1001}, {"usd": 100.5}):
        decision = await create(api, impact=impact)
        assert (decision["state"], decision["needs"]) == ("denied", "blocked")


async def test_an_action_that_needs_a_human_is_pending_and_a_human_is_paged(
    api: BrainClient, pages: MemoryChannel, brain: Brain
) -> None:
    human = await create(api, confidence=0.6, action="rm -rf build/")
    # 5 files: consensus; the rule panel approves (cost, files, paths), and confidence 0.6 also needs a human
    named = [f"src/m{n}.py" for n in range(5)]
    consensus = await create(api, impact={"files": 5}, confidence=0.6, files=named)
    assert (human["state"], human["needs"]) == ("pending", "human")
    assert (consensus["state"], consensus["needs"], consensus["human_required"]) == ("pending", "consensus", True)
    assert human["action"] == "rm -rf build/"
    await brain.escalator.tick()
    sent = pages.pages
    assert {p.subject_id for p in sent} == {human["id"], consensus["id"]}
    assert {p.kind for p in sent} == {"decision"}
    page = next(p for p in sent if p.subject_id == human["id"])
    assert (page.facts["Needs"], page.summary, page.facts["Agent"], page.facts["Body"]) == (
        "a human",
        "rewrite the billing module\n\nWhy: the tests fail on refunds",
        "claude",
        "body-a",
    )
    assert page.deadline == brain.now() + timedelta(seconds=3600)
    (stand_in,) = (p for p in sent if p.subject_id == consensus["id"])
    assert stand_in.facts["Needs"] == "consensus (3 of 5) and a human's approval"


async def test_the_deadline_defaults_from_settings_and_can_be_given(api: BrainClient) -> None:
    default = await create(api, confidence=0.5)
    short = await create(api, confidence=0.5, deadline_s=60)
    for decision, seconds in ((default, 3600), (short, 60)):
        created = datetime.fromisoformat(str(decision["created_at"]))
        assert datetime.fromisoformat(str(decision["deadline"])) - created == timedelta(seconds=seconds)


async def test_an_approval_is_recorded_with_who_and_why(api: BrainClient, brain: Brain) -> None:
    pending = await create(api, confidence=0.5)
    decision = ok(await api.post(f"/v1/decisions/{pending['id']}/approve", {"reason": "looks right"}, as_="approver"))
    assert decision["state"] == "approved"
    (answer,) = decision["answers"]
    assert (answer["verdict"], answer["by"], answer["role"], answer["reason"]) == (
        "approved",
        "approver-1",
        "approver",
        "looks right",
    )
    assert ok(await api.get(f"/v1/decisions/{pending['id']}", as_="body")) == decision
    (entry,) = [e for e in await brain.state.log_entries() if e.action == "approve"]
    assert (entry.by, entry.reason, entry.target) == ("approver-1", "looks right", pending["id"])


async def test_answering_a_decision_that_is_not_pending_is_a_conflict(api: BrainClient) -> None:
    pending = await create(api, confidence=0.5)
    path = f"/v1/decisions/{pending['id']}"
    ok(await api.post(f"{path}/deny", {"reason": "too risky"}, as_="approver"))
    refused(await api.post(f"{path}/approve", {"reason": "changed my mind"}, as_="captain"), 409, "not_pending")
    refused(await api.post(f"{path}/deny", {"reason": "again"}, as_="approver"), 409, "not_pending")
    refused(await api.post(f"{path}/override", {"reason": "veto"}, as_="captain"), 409, "already_final")
    decision = ok(await api.get(path, as_="captain"))
    assert decision["state"] == "denied" and len(decision["answers"]) == 1
    auto = await create(api)
    refused(await api.post(f"/v1/decisions/{auto['id']}/approve", {"reason": "x"}, as_="approver"), 409, "not_pending")


async def test_a_captain_overrides_even_an_approved_decision(api: BrainClient) -> None:
    for confidence in (0.9, 0.5):
        decision = await create(api, confidence=confidence)
        vetoed = ok(await api.post(f"/v1/decisions/{decision['id']}/override", {"reason": "not now"}, as_="captain"))
        assert vetoed["state"] == "overridden"
        assert (vetoed["answers"][-1]["verdict"], vetoed["answers"][-1]["by"]) == ("overridden", "captain-1")


async def test_a_pending_decision_expires_at_its_deadline_in_the_sweep(
    api: BrainClient, brain: Brain, clock: Clock
) -> None:
    decision = await create(api, confidence=0.5, deadline_s=60)
    clock.advance(59)
    assert (await brain.sweep()).expired == []
    assert ok(await api.get(f"/v1/decisions/{decision['id']}", as_="body"))["state"] == "pending"
    clock.advance(1)
    assert (await brain.sweep()).expired == [decision["id"]]
    stored = ok(await api.get(f"/v1/decisions/{decision['id']}", as_="body"))
    assert stored["state"] == "expired"
    assert (stored["answers"][-1]["verdict"], stored["answers"][-1]["by"]) == ("expired", "deadline")
    assert ok(await api.get("/v1/status", as_="captain"))["pending_decisions"] == 0


async def test_a_decision_read_past_its_deadline_is_expired_without_waiting_for_the_sweep(
    api: BrainClient, clock: Clock
) -> None:
    decision = await create(api, confidence=0.5, deadline_s=60)
    clock.advance(61)
    assert ok(await api.get("/v1/status", as_="captain"))["pending_decisions"] == 0
    assert ok(await api.get(f"/v1/decisions/{decision['id']}", as_="body"))["state"] == "expired"


async def test_an_answer_after_the_deadline_is_refused_silence_is_never_consent(api: BrainClient, clock: Clock) -> None:
    decision = await create(api, confidence=0.5, deadline_s=60)
    clock.advance(60)
    path = f"/v1/decisions/{decision['id']}"
    refused(await api.post(f"{path}/approve", {"reason": "late"}, as_="approver"), 409, "not_pending")
    assert ok(await api.get(path, as_="body"))["state"] == "expired"


async def test_an_unknown_decision_is_404(api: BrainClient) -> None:
    refused(await api.get("/v1/decisions/dec_nope", as_="body"), 404, "not_found")
    refused(await api.post("/v1/decisions/dec_nope/approve", {"reason": "x"}, as_="approver"), 404, "not_found")


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"confidence": 1.5}, "confidence"),
        ({"summary": ""}, "summary"),
        ({"impact": {"files": -1}}, "impact"),
        ({"impact": {"files": "many"}}, "impact.files"),
        ({"deadline_s": 0}, "deadline_s"),
        ({"surprise": True}, "surprise"),
    ],
)
async def test_a_schema_error_names_the_field_and_writes_nothing(
    api: BrainClient, brain: Brain, changes: dict[str, Any], field: str
) -> None:
    before = len(await brain.state.log_entries())
    data = refused(await api.post("/v1/decisions", decision_request(**changes), as_="body"), 422, "invalid_request")
    assert data["field"] == field
    assert len(await brain.state.log_entries()) == before


async def test_a_missing_field_is_named(api: BrainClient) -> None:
    request = decision_request()
    del request["agent"]
    assert refused(await api.post("/v1/decisions", request, as_="body"), 422, "invalid_request")["field"] == "agent"


async def test_a_decision_event_is_pushed_to_its_body_when_it_changes(api: BrainClient, brain: Brain) -> None:
    with brain.hub.subscribe("body-a") as mine, brain.hub.subscribe("body-b") as theirs:
        decision = await create(api, confidence=0.5)
        ok(await api.post(f"/v1/decisions/{decision['id']}/approve", {"reason": "ok"}, as_="approver"))
        with anyio.fail_after(1):
            created, approved = await mine.receive(), await mine.receive()
        assert (created.name, approved.name) == ("decision", "decision")
        assert '"state":"approved"' in approved.data
        with pytest.raises(anyio.WouldBlock):
            theirs.receive_nowait()


async def test_asking_the_same_pending_question_again_returns_it_and_pages_nobody_twice(
    api: BrainClient, pages: MemoryChannel, brain: Brain, clock: Clock
) -> None:
    first = await create(api, confidence=0.5)  # 201: a new question, a human is paged
    retry = ok(await api.post("/v1/decisions", decision_request(confidence=0.5), as_="body"))  # 200: the same one
    assert retry == first
    await brain.escalator.tick()
    assert len(pages.pages) == 1, "the retry paged nobody"
    assert [e.action for e in await brain.state.log_entries()].count("decision_create") == 1
    # A different question, another body's, or one asked once the first is answered or due, is new.
    assert (await create(api, confidence=0.5, summary="another question"))["id"] != first["id"]
    await api.add_token("body-b")
    other = ok(await api.post("/v1/decisions", decision_request("body-b", confidence=0.5), as_="body-b"), 201)
    assert other["id"] != first["id"]
    ok(await api.post(f"/v1/decisions/{first['id']}/approve", {"reason": "fine"}, as_="approver"))
    again = await create(api, confidence=0.5)
    assert again["id"] != first["id"] and again["state"] == "pending"
    clock.advance(3600)  # `again` is due now (not swept yet): asking once more is a new question
    assert (await create(api, confidence=0.5))["id"] != again["id"]


async def test_concurrent_retries_of_one_question_make_one_decision(api: BrainClient, brain: Brain) -> None:
    statuses: list[int] = []

    async def ask() -> None:
        response = await api.post("/v1/decisions", decision_request(confidence=0.5), as_="body")
        statuses.append(response.status_code)

    async with anyio.create_task_group() as group:
        for _ in range(8):
            group.start_soon(ask)
    assert sorted(statuses) == [200] * 7 + [201]
    assert [e.action for e in await brain.state.log_entries()].count("decision_create") == 1
