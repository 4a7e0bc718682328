"""Bearer tokens and roles: every refusal is 401 or 403, and nothing changes when a request is refused."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest

from brain_server import Brain, SqliteStateEngine, hash_token
from brain_server.auth import new_token

from .helpers import BrainClient, decision_request, ok, refused

pytestmark = pytest.mark.anyio


async def snapshot(brain: Brain, decision_id: str) -> tuple[Any, ...]:
    """Everything a refused request could have changed."""
    decision = await brain.state.decision(decision_id)
    return (
        await brain.state.kill_state(),
        decision,
        await brain.state.count_tasks(),
        len(await brain.state.log_entries(limit=10_000)),
    )


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


@pytest.mark.parametrize("state", ["sqlite"], indirect=True)
async def test_tokens_are_stored_hashed_never_in_clear(api: BrainClient, brain: Brain) -> None:
    assert isinstance(brain.state, SqliteStateEngine) and brain.settings.db is not None
    raw = b"".join(p.read_bytes() for p in brain.settings.db.parent.glob("brain.db*"))
    for token in api.tokens.values():
        assert token.encode() not in raw
    conn = sqlite3.connect(brain.settings.db)
    try:
        hashes = {row[0] for row in conn.execute("SELECT token_hash FROM tokens")}
    finally:
        conn.close()
    assert hashes == {hash_token(token) for token in api.tokens.values()}
