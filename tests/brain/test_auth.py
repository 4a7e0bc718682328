"""Bearer tokens, roles, revocation and a body token's binding to one body: every refusal is 401 or 403, and
nothing changes when a request is refused."""

from __future__ import annotations

import sqlite3
from typing import Any

import anyio
import pytest

from brain_server import Brain, Principal, SqliteStateEngine, UnknownToken, hash_token, revoke_token
from brain_server.auth import new_token, speak_for
from brain_server.state import sqlite_path

from .helpers import BrainClient, audit_chain, batch, decision_request, ok, refused

pytestmark = pytest.mark.anyio


async def snapshot(brain: Brain, decision_id: str) -> tuple[Any, ...]:
    """Everything a refused request could have changed (the log but for its lines of refused body requests)."""
    decision = await brain.state.decision(decision_id)
    return (
        await brain.state.kill_state(),
        decision,
        await brain.state.count_tasks(),
        len([e for e in await brain.state.log_entries(limit=10_000) if e.action != "body_refused"]),
    )


async def refusals_logged(brain: Brain) -> list[str | None]:
    """The bodies named by the refused body requests in the brain's log."""
    return [e.target for e in await brain.state.log_entries(limit=10_000) if e.action == "body_refused"]


@pytest.fixture
async def pending_id(api: BrainClient) -> str:
    return ok(await api.post("/v1/decisions", decision_request(confidence=0.5), as_="body"), 201)["id"]


ANSWERS = ["approve", "deny", "override"]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/v1/status", None),
        ("POST", "/v1/kill", {"reason": "r"}),
        ("POST", "/v1/resume", {"reason": "r"}),
        ("POST", "/v1/bodies/register", {"body_id": "b", "workspace": "/w", "hostname": "h", "version": "1"}),
        ("POST", "/v1/decisions/{id}/approve", {"reason": "r"}),
        ("POST", "/v1/decisions/{id}/deny", {"reason": "r"}),
        ("POST", "/v1/decisions/{id}/override", {"reason": "r"}),
        ("POST", "/v1/tasks", {"title": "t"}),
        ("POST", "/v1/tasks/claim", {"body_id": "b", "agent": "a"}),
    ],
)
@pytest.mark.parametrize("token", [None, "unknown", "malformed"])
async def test_a_missing_unknown_or_malformed_token_is_401_and_changes_nothing(
    api: BrainClient, brain: Brain, pending_id: str, method: str, path: str, body: Any, token: str | None
) -> None:
    before = await snapshot(brain, pending_id)
    headers = {} if token is None else {"Authorization": f"Bearer {new_token()}" if token == "unknown" else "Basic x"}
    response = await api.client.request(method, path.format(id=pending_id), json=body, headers=headers)
    refused(response, 401, "unauthorized")
    assert await snapshot(brain, pending_id) == before


@pytest.mark.parametrize(
    ("path", "roles"),
    [
        ("/v1/kill", ["body", "approver"]),
        ("/v1/resume", ["body", "approver"]),
        ("/v1/decisions/{id}/override", ["body", "approver"]),
        ("/v1/decisions/{id}/approve", ["body"]),
        ("/v1/decisions/{id}/deny", ["body"]),
        ("/v1/tasks", ["body"]),
        ("/v1/bodies/register", ["approver", "captain"]),
        ("/v1/tasks/claim", ["approver", "captain"]),
        ("/v1/decisions", ["approver", "captain"]),
    ],
)
async def test_a_token_of_the_wrong_role_is_403_and_changes_nothing(
    api: BrainClient, brain: Brain, pending_id: str, path: str, roles: list[str]
) -> None:
    if path.endswith("/resume"):
        ok(await api.post("/v1/kill", {"reason": "engaged first, so a resume would change something"}, as_="captain"))
    bodies = {
        "/v1/kill": {"reason": "r"},
        "/v1/resume": {"reason": "r"},
        "/v1/tasks": {"title": "t"},
        "/v1/bodies/register": {"body_id": "b", "workspace": "/w", "hostname": "h", "version": "1"},
        "/v1/tasks/claim": {"body_id": "b", "agent": "a"},
        "/v1/decisions": decision_request(),
    }
    body = bodies.get(path, {"reason": "r"})
    for role in roles:
        before = await snapshot(brain, pending_id)
        bodies_before = await brain.state.bodies()
        refused(await api.post(path.format(id=pending_id), body, as_=role), 403, "forbidden")
        assert await snapshot(brain, pending_id) == before
        assert await brain.state.bodies() == bodies_before


async def test_the_role_is_checked_before_the_body_is_read(api: BrainClient) -> None:
    response = await api.client.post("/v1/kill", content=b"{not json", headers=api.headers("approver"))
    refused(response, 403, "forbidden")


async def test_every_role_may_read_status_and_decisions(api: BrainClient, pending_id: str) -> None:
    for role in ("body", "approver", "captain"):
        assert ok(await api.get("/v1/status", as_=role))["pending_decisions"] == 1
        assert ok(await api.get(f"/v1/decisions/{pending_id}", as_=role))["state"] == "pending"


async def test_a_captain_may_do_what_an_approver_may(api: BrainClient, pending_id: str) -> None:
    decision = ok(await api.post(f"/v1/decisions/{pending_id}/approve", {"reason": "fine"}, as_="captain"))
    assert decision["state"] == "approved"
    assert decision["answers"][-1]["role"] == "captain"
    ok(await api.post("/v1/tasks", {"title": "t"}, as_="captain"), 201)


@pytest.mark.sqlite
@pytest.mark.parametrize("state", ["sqlite"], indirect=True)
async def test_tokens_are_stored_hashed_never_in_clear(api: BrainClient, brain: Brain) -> None:
    db = sqlite_path(brain.settings.database_url)
    assert isinstance(brain.state, SqliteStateEngine) and db is not None
    raw = b"".join(p.read_bytes() for p in db.parent.glob("brain.db*"))
    for token in api.tokens.values():
        assert token.encode() not in raw
    conn = sqlite3.connect(db)
    try:
        hashes = {row[0] for row in conn.execute("SELECT token_hash FROM tokens")}
    finally:
        conn.close()
    assert hashes == {hash_token(token) for token in api.tokens.values()}


# -- revocation ----------------------------------------------------------------------------------------------------


async def token_id(brain: Brain, api: BrainClient, name: str) -> str:
    record = await brain.state.token_by_hash(hash_token(api.tokens[name]))
    assert record is not None
    return record.id


async def everything(brain: Brain, pending_id: str) -> tuple[Any, ...]:
    """What a refused body request could have changed, tokens (their bindings) included."""
    return (
        await snapshot(brain, pending_id),
        await brain.state.bodies(),
        await brain.state.audit_events("body-a"),
        await brain.state.audit_events("body-b"),
        await brain.state.tokens(),
    )


REGISTER_A = {"body_id": "body-a", "workspace": "/w", "hostname": "h", "version": "1"}


@pytest.mark.parametrize(
    ("role", "method", "path", "body"),
    [
        ("body", "POST", "/v1/bodies/register", REGISTER_A),
        ("body", "POST", "/v1/tasks/claim", {"body_id": "body-a", "agent": "a"}),
        ("body", "GET", "/v1/status", None),
        ("approver", "POST", "/v1/decisions/{id}/approve", {"reason": "r"}),
        ("approver", "POST", "/v1/tasks", {"title": "t"}),
        ("captain", "POST", "/v1/kill", {"reason": "r"}),
        ("captain", "POST", "/v1/decisions/{id}/override", {"reason": "r"}),
    ],
)
async def test_a_revoked_token_is_401_on_every_endpoint_and_changes_nothing(
    api: BrainClient, brain: Brain, pending_id: str, role: str, method: str, path: str, body: Any
) -> None:
    ok(await api.post("/v1/tasks", {"title": "something a claim would take"}, as_="captain"), 201)
    await revoke_token(brain.state, await token_id(brain, api, role), reason="lost laptop", at=brain.now())
    before = await everything(brain, pending_id)
    response = await api.client.request(method, path.format(id=pending_id), json=body, headers=api.headers(role))
    assert "revoked" in refused(response, 401, "unauthorized")["message"]
    assert await everything(brain, pending_id) == before
    for other in {"body", "approver", "captain"} - {role}:
        ok(await api.get("/v1/status", as_=other))


async def test_revoking_is_logged_and_a_second_revocation_changes_nothing(api: BrainClient, brain: Brain) -> None:
    tok = await token_id(brain, api, "approver")
    first = await revoke_token(brain.state, tok, reason="left the team", at=brain.now())
    assert first.revoked_at is None, "returned as it was before"
    again = await revoke_token(brain.state, tok, reason="again", at=brain.now())
    assert again.revoked_at == brain.now()
    lines = [e for e in await brain.state.log_entries() if e.action == "token_revoke"]
    assert [(e.target, e.reason) for e in lines] == [(tok, "left the team")]
    with pytest.raises(UnknownToken):
        await revoke_token(brain.state, "tok_nope", reason="", at=brain.now())


# -- a body token speaks for one body ------------------------------------------------------------------------------


async def bound_body(brain: Brain, api: BrainClient, name: str) -> str | None:
    record = await brain.state.token_by_hash(hash_token(api.tokens[name]))
    assert record is not None
    return record.body_id


async def test_a_body_token_is_bound_to_the_first_body_id_it_names(api: BrainClient, brain: Brain) -> None:
    assert await bound_body(brain, api, "body") is None
    ok(await api.post("/v1/bodies/register", REGISTER_A, as_="body"))
    assert await bound_body(brain, api, "body") == "body-a"
    (line,) = [e for e in await brain.state.log_entries() if e.action == "token_bind"]
    assert (line.by, line.role, line.detail) == ("body-1", "body", {"body_id": "body-a"})
    # From then on it does everything a body does, as body-a, without binding again.
    ok(await api.post("/v1/bodies/body-a/heartbeat", as_="body"))
    ok(await api.post("/v1/audit", batch("body-a", audit_chain("body-a", 2)), as_="body"))
    ok(await api.post("/v1/decisions", decision_request("body-a"), as_="body"), 201)
    ok(await api.post("/v1/tasks", {"title": "t"}, as_="approver"), 201)
    claimed = ok(await api.post("/v1/tasks/claim", {"body_id": "body-a", "agent": "a"}, as_="body"))
    outcome = {"claim_token": claimed["claim_token"], "outcome": "succeeded"}
    ok(await api.post(f"/v1/tasks/{claimed['task']['id']}/outcome", outcome, as_="body"))
    assert [e.action for e in await brain.state.log_entries()].count("token_bind") == 1


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/bodies/register", {**REGISTER_A, "body_id": "body-b"}),
        ("POST", "/v1/bodies/body-b/heartbeat", None),
        ("GET", "/v1/events?body_id=body-b", None),
        ("POST", "/v1/audit", batch("body-b", audit_chain("body-b", 2))),
        ("POST", "/v1/decisions", decision_request("body-b")),
        ("POST", "/v1/tasks/claim", {"body_id": "body-b", "agent": "a"}),
        ("POST", "/v1/tasks/{task}/outcome", {"claim_token": "{claim}", "outcome": "succeeded"}),
        ("POST", "/v1/tasks/{task}/renew", {"claim_token": "{claim}"}),
    ],
)
async def test_a_bound_body_token_naming_another_body_is_403_and_changes_nothing(
    api: BrainClient, brain: Brain, pending_id: str, method: str, path: str, body: Any
) -> None:
    ok(await api.post("/v1/bodies/register", REGISTER_A, as_="body"))
    await api.add_token("body-b")
    ok(await api.post("/v1/bodies/register", {**REGISTER_A, "body_id": "body-b"}, as_="body-b"))
    ok(await api.post("/v1/tasks", {"title": "body-b's"}, as_="approver"), 201)
    ok(await api.post("/v1/tasks", {"title": "one more to claim"}, as_="approver"), 201)
    theirs = ok(await api.post("/v1/tasks/claim", {"body_id": "body-b", "agent": "a"}, as_="body-b"))
    if isinstance(body, dict) and body.get("claim_token") == "{claim}":
        body = {**body, "claim_token": theirs["claim_token"]}  # even with body-b's own claim token
    before = await everything(brain, pending_id)
    url = path.format(task=theirs["task"]["id"])
    data = refused(await api.client.request(method, url, json=body, headers=api.headers("body")), 403, "forbidden")
    assert "body-a" in data["message"], "the refusal names the bound body"
    assert await everything(brain, pending_id) == before
    assert await bound_body(brain, api, "body") == "body-a"
    if "{task}" not in path:  # (an outcome or renewal names no body: refused by the task's claim, not logged)
        assert await refusals_logged(brain) == ["body-b"]


async def test_a_first_use_that_is_refused_binds_nothing(api: BrainClient, brain: Brain) -> None:
    refused(await api.post("/v1/bodies/register", {"body_id": "body-a"}, as_="body"), 422, "invalid_request")
    refused(await api.post("/v1/bodies/register", REGISTER_A, as_="approver"), 403, "forbidden")
    await revoke_token(brain.state, await token_id(brain, api, "body"), reason="r", at=brain.now())
    refused(await api.post("/v1/bodies/register", REGISTER_A, as_="body"), 401, "unauthorized")
    assert [t.body_id for t in await brain.state.tokens()] == [None, None, None]
    assert "token_bind" not in [e.action for e in await brain.state.log_entries()]


async def test_an_unbound_body_token_may_not_report_an_outcome(api: BrainClient, brain: Brain) -> None:
    ok(await api.post("/v1/tasks", {"title": "t"}, as_="approver"), 201)
    claimed = ok(await api.post("/v1/tasks/claim", {"body_id": "body-a", "agent": "a"}, as_="body"))
    await api.add_token("fresh")
    task_id = claimed["task"]["id"]
    before = await brain.state.task(task_id)
    outcome = {"claim_token": claimed["claim_token"], "outcome": "succeeded"}
    refused(await api.post(f"/v1/tasks/{task_id}/outcome", outcome, as_="fresh"), 403, "forbidden")
    assert await brain.state.task(task_id) == before
    assert await bound_body(brain, api, "fresh") is None


async def test_approver_and_captain_tokens_are_never_bound(api: BrainClient, brain: Brain) -> None:
    await api.add_token("body-b")
    ids = [
        ok(await api.post("/v1/decisions", decision_request(body, confidence=0.5), as_=token), 201)["id"]
        for body, token in (("body-a", "body"), ("body-b", "body-b"))
    ]
    ok(await api.post(f"/v1/decisions/{ids[0]}/approve", {"reason": "ok"}, as_="approver"))
    ok(await api.post(f"/v1/decisions/{ids[1]}/approve", {"reason": "ok"}, as_="approver"))
    ok(await api.post(f"/v1/decisions/{ids[0]}/override", {"reason": "no"}, as_="captain"))
    ok(await api.post(f"/v1/decisions/{ids[1]}/override", {"reason": "no"}, as_="captain"))
    bound = {t.label: t.body_id for t in await brain.state.tokens()}
    assert bound == {"body-1": "body-a", "approver-1": None, "captain-1": None, "body-b": "body-b"}
    for role in ("approver", "captain"):
        who = Principal(token_id=await token_id(brain, api, role), role=role, label=role)
        await speak_for(brain.state, who, "body-c", at=brain.now())
    assert {t.label: t.body_id for t in await brain.state.tokens()} == bound


async def test_a_body_token_reads_only_its_own_bodys_decisions(api: BrainClient, brain: Brain) -> None:
    mine = ok(await api.post("/v1/decisions", decision_request(confidence=0.5), as_="body"), 201)
    await api.add_token("body-b")
    theirs = ok(await api.post("/v1/decisions", decision_request("body-b", confidence=0.5), as_="body-b"), 201)
    await api.add_token("unbound")
    assert ok(await api.get(f"/v1/decisions/{mine['id']}", as_="body"))["id"] == mine["id"]
    # Another body's decision is not found (its existence is not confirmed), for a bound or unbound token.
    refused(await api.get(f"/v1/decisions/{theirs['id']}", as_="body"), 404, "not_found")
    refused(await api.get(f"/v1/decisions/{mine['id']}", as_="unbound"), 404, "not_found")
    assert await bound_body(brain, api, "unbound") is None
    for role in ("approver", "captain"):
        assert ok(await api.get(f"/v1/decisions/{theirs['id']}", as_=role))["id"] == theirs["id"]


async def test_a_body_token_sees_only_its_own_body_in_the_status(api: BrainClient) -> None:
    await api.add_token("unbound")
    ok(await api.post("/v1/bodies/register", REGISTER_A, as_="body"))
    await api.add_token("body-b")
    ok(await api.post("/v1/bodies/register", {**REGISTER_A, "body_id": "body-b"}, as_="body-b"))
    assert [b["body_id"] for b in ok(await api.get("/v1/status", as_="body"))["bodies"]] == ["body-a"]
    assert ok(await api.get("/v1/status", as_="unbound"))["bodies"] == []
    for role in ("approver", "captain"):
        assert sorted(b["body_id"] for b in ok(await api.get("/v1/status", as_=role))["bodies"]) == ["body-a", "body-b"]


SECOND_TOKEN_REQUESTS = [
    ("POST", "/v1/bodies/register", REGISTER_A),
    ("POST", "/v1/bodies/body-a/heartbeat", None),
    ("GET", "/v1/events?body_id=body-a", None),
    ("POST", "/v1/audit", batch("body-a", audit_chain("body-a", 2))),
    ("POST", "/v1/decisions", decision_request("body-a")),
    ("POST", "/v1/tasks/claim", {"body_id": "body-a", "agent": "a"}),
]


@pytest.mark.parametrize(("method", "path", "body"), SECOND_TOKEN_REQUESTS)
async def test_a_second_token_naming_a_body_another_token_holds_is_403_and_changes_nothing(
    api: BrainClient, brain: Brain, pending_id: str, method: str, path: str, body: Any
) -> None:
    ok(await api.post("/v1/bodies/register", REGISTER_A, as_="body"))
    await api.add_token("second")
    before = await everything(brain, pending_id)
    with anyio.fail_after(10):  # (an event stream it were allowed to open would never end)
        response = await api.client.request(method, path, json=body, headers=api.headers("second"))
    refused(response, 403, "forbidden")
    assert await everything(brain, pending_id) == before
    assert await bound_body(brain, api, "second") is None
    assert await refusals_logged(brain) == ["body-a"]
    # Unbound, it reads none of body-a's decisions either.
    refused(await api.get(f"/v1/decisions/{pending_id}", as_="second"), 404, "not_found")


async def test_revoking_a_bodys_token_does_not_free_the_body_for_a_new_token_a_rebind_does(
    api: BrainClient, brain: Brain
) -> None:
    ok(await api.post("/v1/bodies/register", REGISTER_A, as_="body"))
    await revoke_token(brain.state, await token_id(brain, api, "body"), reason="laptop stolen", at=brain.now())
    await api.add_token("new")
    refused(await api.post("/v1/bodies/register", REGISTER_A, as_="new"), 403, "forbidden")
    new_id = await token_id(brain, api, "new")
    moved = ok(await api.post("/v1/bodies/body-a/rebind", {"token_id": new_id, "reason": "new laptop"}, as_="captain"))
    assert moved == {"body_id": "body-a", "token_id": new_id, "revoked_token_id": None}
    ok(await api.post("/v1/bodies/register", REGISTER_A, as_="new"))
    ok(await api.post("/v1/bodies/body-a/heartbeat", as_="new"))
    (line,) = [e for e in await brain.state.log_entries() if e.action == "body_rebind"]
    assert (line.by, line.role, line.reason, line.target) == ("captain-1", "captain", "new laptop", "body-a")


async def test_a_rebind_revokes_the_token_that_held_the_body(api: BrainClient, brain: Brain) -> None:
    ok(await api.post("/v1/bodies/register", REGISTER_A, as_="body"))
    await api.add_token("new")
    old_id, new_id = await token_id(brain, api, "body"), await token_id(brain, api, "new")
    moved = ok(await api.post("/v1/bodies/body-a/rebind", {"token_id": new_id, "reason": "rotate"}, as_="captain"))
    assert moved["revoked_token_id"] == old_id
    refused(await api.post("/v1/bodies/body-a/heartbeat", as_="body"), 401, "unauthorized")
    ok(await api.post("/v1/bodies/register", REGISTER_A, as_="new"))
    revocation = [e for e in await brain.state.log_entries() if e.action == "token_revoke"]
    assert [(e.target, e.by) for e in revocation] == [(old_id, "captain-1")]


@pytest.mark.parametrize(
    ("as_", "target", "status", "code"),
    [
        ("approver", "new", 403, "forbidden"),
        ("body", "new", 403, "forbidden"),
        ("captain", "approver", 409, "rebind_refused"),
        ("captain", "elsewhere", 409, "rebind_refused"),
        ("captain", "tok_unknown", 404, "not_found"),
    ],
)
async def test_a_rebind_by_anyone_but_a_captain_or_to_a_token_that_cannot_take_the_body_changes_nothing(
    api: BrainClient, brain: Brain, pending_id: str, as_: str, target: str, status: int, code: str
) -> None:
    ok(await api.post("/v1/bodies/register", REGISTER_A, as_="body"))
    await api.add_token("new")
    await api.add_token("elsewhere")
    ok(await api.post("/v1/bodies/register", {**REGISTER_A, "body_id": "body-b"}, as_="elsewhere"))
    target_id = target if target.startswith("tok_") else await token_id(brain, api, target)
    before = await everything(brain, pending_id)
    response = await api.post("/v1/bodies/body-a/rebind", {"token_id": target_id, "reason": "r"}, as_=as_)
    refused(response, status, code)
    assert await everything(brain, pending_id) == before


async def test_refused_body_requests_are_logged_at_a_bounded_rate(api: BrainClient, brain: Brain) -> None:
    ok(await api.post("/v1/bodies/register", REGISTER_A, as_="body"))
    await api.add_token("second")
    for _ in range(50):
        refused(await api.post("/v1/bodies/body-a/heartbeat", as_="second"), 403, "forbidden")
    assert 1 <= len(await refusals_logged(brain)) <= 20
