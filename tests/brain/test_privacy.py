"""The brain's side of `[privacy]` over its HTTP API, on every state engine: what it stores from requests is
protected, what it serves is revealed to who may read it, pages are redacted, and erase/export are a captain's."""

from __future__ import annotations

import pytest

from brain_server import Brain
from brain_server.wake.memory import MemoryChannel
from tests.privacy.plant import plant

from .helpers import BrainClient, decision_request, ok, refused

pytestmark = pytest.mark.anyio


async def test_a_task_and_a_decision_are_stored_protected_and_served_as_written(
    api: BrainClient, brain: Brain, pages: MemoryChannel
) -> None:
    p = plant()
    task = ok(await api.post("/v1/tasks", {"title": f"refund {p.email}", "description": p.text()}, as_="captain"), 201)
    assert task["title"] == f"refund {p.email}" and task["description"] == p.text()
    stored = await brain.state.task(task["id"])
    assert stored is not None and p.email not in stored.title and p.phone not in stored.description
    asked = decision_request(summary=f"mail {p.email}", rationale=f"from {p.ip}", confidence=0.5)
    decision = ok(await api.post("/v1/decisions", asked, as_="body"), 201)
    assert decision["summary"] == f"mail {p.email}"
    kept = await brain.state.decision(decision["id"])
    assert kept is not None and p.email not in kept.summary and p.ip not in kept.rationale
    assert p.email not in str([e.reason for e in await brain.state.log_entries(limit=100)])
    await brain.escalator.tick()
    (page,) = pages.pages
    assert page.summary == "mail [pii:email]\n\nWhy: from [pii:ip]" and p.email not in page.title


async def test_erasure_is_a_captains_and_leaves_the_subject_unreadable(api: BrainClient, brain: Brain) -> None:
    p = plant()
    task = ok(await api.post("/v1/tasks", {"title": f"refund {p.email}", "description": p.phone}, as_="captain"), 201)
    held = ok(await api.post("/v1/privacy/export", {"subject": p.email}, as_="captain"))
    assert held["kind"] == "email" and {i["value"] for i in held["held"]} == {p.email}
    assert {i["where"].split()[0] for i in held["held"]} == {"task", "log"}  # (the task_create entry names its title)
    for role in ("approver", "body"):
        refused(await api.post("/v1/privacy/erase", {"subject": p.email}, as_=role), 403, "forbidden")
        refused(await api.post("/v1/privacy/export", {"subject": p.email}, as_=role), 403, "forbidden")
    erased = ok(
        await api.post("/v1/privacy/erase", {"subject": p.email.upper(), "reason": f"by {p.email}"}, as_="captain")
    )
    assert erased == {"kind": "email", "erased": True, "erased_before": None}
    after = ok(await api.get(f"/v1/tasks/{task['id']}", as_="captain"))
    assert after["title"] == "refund [pii:email]" and after["description"] == p.phone
    gone = ok(await api.post("/v1/privacy/export", {"subject": p.email}, as_="captain"))
    assert gone["held"] == [] and gone["erased_at"] > 0  # (when it was erased, nothing more)
    again = ok(await api.post("/v1/privacy/erase", {"subject": p.email}, as_="captain"))  # (no key: nothing changes)
    assert again == {"kind": "email", "erased": False, "erased_before": gone["erased_at"]}
    first, second = [e for e in await brain.state.log_entries(limit=100) if e.action == "privacy_erase"]
    assert first.detail == {"kind": "email"} and p.email not in first.reason and first.target
    assert second.detail == {"kind": "email", "key_held": False} and second.target is None


async def test_erasing_a_subject_the_brain_never_saw_tombstones_it(api: BrainClient, brain: Brain) -> None:
    """An erasure is about the subject: with no key held it is tombstoned all the same, so a task written about
    them afterwards (a runner that read them elsewhere before) keeps nothing; export says when; unerase lifts it."""
    p = plant()
    erased = ok(await api.post("/v1/privacy/erase", {"subject": p.phone, "reason": "asked"}, as_="captain"))
    assert erased == {"kind": "phone", "erased": False, "erased_before": None}
    late = ok(await api.post("/v1/tasks", {"title": f"call {p.phone}"}, as_="captain"), 201)
    assert late["title"] == "call [pii:phone:erased]"
    assert ok(await api.post("/v1/privacy/export", {"subject": p.phone_e164}, as_="captain"))["erased_at"] > 0
    (entry,) = [e for e in await brain.state.log_entries(limit=100) if e.action == "privacy_erase"]
    assert entry.detail == {"kind": "phone", "key_held": False} and entry.target is None and entry.reason == "asked"
    unerase = {"subject": p.phone, "reason": "came back"}
    assert ok(await api.post("/v1/privacy/unerase", unerase, as_="captain")) == {"kind": "phone", "unerased": True}
    back = ok(await api.post("/v1/tasks", {"title": f"call {p.phone}"}, as_="captain"), 201)
    assert back["title"] == f"call {p.phone}"


async def test_a_malformed_subject_is_refused_naming_the_field(api: BrainClient) -> None:
    for body in ({"subject": "nobody in particular"}, {"subject": "4111 1111 1111 1112"}):
        problem = refused(await api.post("/v1/privacy/erase", body, as_="captain"), 422, "invalid_request")
        assert problem["field"] == "subject"
    refused(await api.post("/v1/privacy/export", {}, as_="captain"), 422, "invalid_request")


async def test_an_erased_subject_stays_erased_until_a_captain_unerases_it(api: BrainClient, brain: Brain) -> None:
    p = plant()
    ok(await api.post("/v1/tasks", {"title": f"refund {p.email}"}, as_="captain"), 201)
    ok(await api.post("/v1/privacy/erase", {"subject": p.email}, as_="captain"))
    late = ok(await api.post("/v1/tasks", {"title": f"again {p.email}"}, as_="captain"), 201)
    assert late["title"] == "again [pii:email:erased]"  # (no new key: redacted)
    unerase = {"subject": p.email, "reason": "came back"}
    for role in ("approver", "body"):
        refused(await api.post("/v1/privacy/unerase", unerase, as_=role), 403, "forbidden")
    refused(await api.post("/v1/privacy/unerase", {"subject": p.email}, as_="captain"), 422, "invalid_request")
    assert ok(await api.post("/v1/privacy/unerase", unerase, as_="captain")) == {"kind": "email", "unerased": True}
    refused(await api.post("/v1/privacy/unerase", unerase, as_="captain"), 404, "not_found")
    back = ok(await api.post("/v1/tasks", {"title": f"welcome {p.email}"}, as_="captain"), 201)
    assert back["title"] == f"welcome {p.email}"
    (entry,) = [e for e in await brain.state.log_entries(limit=100) if e.action == "privacy_unerase"]
    assert entry.detail == {"kind": "email"} and entry.reason == "came back"
