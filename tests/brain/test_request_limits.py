"""Request bodies of the authenticated routes are capped (64 KB; audit batches 1 MB; both set in `[brain]`): over the
cap is 413 `payload_too_large` in the brain's error shape, read no further than the cap, and nothing changes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.types import Message, Scope

from brain_server import Brain, BrainSettings, MemoryStateEngine, build_app, issue_token
from shared_protocol.brain import Role

from .helpers import BrainClient, audit_chain, batch, ok, refused

pytestmark = pytest.mark.anyio

KB = 1024
OVER_64_KB = "x" * (64 * KB + 1)
ROLES: tuple[Role, ...] = ("body", "approver", "captain")


async def snapshot(brain: Brain) -> tuple[Any, ...]:
    return (
        await brain.state.kill_state(),
        await brain.state.bodies(),
        await brain.state.count_tasks(),
        len(await brain.state.log_entries(limit=10_000)),
        await brain.state.audit_events("body-a"),
    )


ROUTES = [
    ("/v1/kill", "captain", {"reason": OVER_64_KB}),
    ("/v1/resume", "captain", {"reason": OVER_64_KB}),
    ("/v1/bodies/register", "body", {"body_id": "body-a", "workspace": OVER_64_KB, "hostname": "h", "version": "1"}),
    ("/v1/bodies/body-a/heartbeat", "body", {"padding": OVER_64_KB}),
    ("/v1/decisions", "body", {"summary": OVER_64_KB}),
    ("/v1/decisions/dec_x/approve", "approver", {"reason": OVER_64_KB}),
    ("/v1/decisions/dec_x/override", "captain", {"reason": OVER_64_KB}),
    ("/v1/tasks", "approver", {"title": OVER_64_KB}),
    ("/v1/tasks/claim", "body", {"body_id": "body-a", "agent": OVER_64_KB}),
    ("/v1/tasks/task_x/outcome", "body", {"claim_token": OVER_64_KB, "outcome": "failed"}),
    ("/v1/tasks/task_x/park", "body", {"claim_token": OVER_64_KB, "decision_id": "d", "reason": "r"}),
    ("/v1/tasks/task_x/resume", "body", {"claim_token": OVER_64_KB}),
    ("/v1/tasks/task_x/cancel", "approver", {"reason": OVER_64_KB}),
    ("/v1/readiness", "captain", {"ready": False, "items": [{"name": OVER_64_KB, "ok": False}]}),
    ("/v1/readiness/overrides", "captain", {"agent": "w1", "logic_version": "lv-1", "reason": OVER_64_KB}),
    ("/v1/undo/act_x", "captain", {"reason": OVER_64_KB}),
    ("/v1/escalations/dec_x/acknowledge", "approver", {"reason": OVER_64_KB}),
]


@pytest.mark.parametrize(("path", "role", "body"), ROUTES, ids=[r[0] for r in ROUTES])
async def test_a_body_over_64_kb_is_413_on_every_authenticated_route_and_changes_nothing(
    api: BrainClient, brain: Brain, path: str, role: str, body: dict[str, Any]
) -> None:
    before = await snapshot(brain)
    refused(await api.post(path, body, as_=role), 413, "payload_too_large")
    assert await snapshot(brain) == before


async def test_an_audit_batch_may_be_up_to_1_mb_and_is_413_over_it(api: BrainClient, brain: Brain) -> None:
    # (The brain checks links, never MACs: a longer rationale keeps the chain.)
    chain = [e.model_copy(update={"rationale": "r" * 1000}) for e in audit_chain("body-a", 900)]
    fits, too_big = batch("body-a", chain[:400]), batch("body-a", chain[:900])
    assert 64 * KB < len(json.dumps(fits)) < 1024 * KB < len(json.dumps(too_big))
    refused(await api.post("/v1/audit", too_big, as_="body"), 413, "payload_too_large")
    assert await brain.state.audit_events("body-a") == []
    assert ok(await api.post("/v1/audit", fits, as_="body"))["stored_through"] == 400


async def test_a_streamed_body_without_a_length_is_read_no_further_than_the_cap(api: BrainClient) -> None:
    sent: list[int] = []

    async def endless() -> AsyncIterator[bytes]:
        yield b'{"reason": "'
        for n in range(10_000):  # 160 MB if it were all read
            sent.append(n)
            yield b"x" * 16 * KB

    response = await api.client.post(
        "/v1/kill", content=endless(), headers={**api.headers("captain"), "Content-Type": "application/json"}
    )
    refused(response, 413, "payload_too_large")
    assert len(sent) <= 6, f"read {len(sent) * 16} KB of a body capped at 64 KB"


async def test_a_declared_length_over_the_cap_is_refused_before_anything_is_read(api: BrainClient) -> None:
    async def never() -> AsyncIterator[bytes]:
        raise AssertionError("the body was read")
        yield b""  # pragma: no cover

    headers = {**api.headers("captain"), "Content-Type": "application/json", "Content-Length": str(64 * KB + 1)}
    request = api.client.build_request("POST", "/v1/kill", content=never(), headers=headers)
    refused(await api.client.send(request), 413, "payload_too_large")


async def test_the_caps_are_set_in_the_brain_section() -> None:
    settings = BrainSettings(database_url="memory://", max_request_bytes=2 * KB, max_audit_request_bytes=8 * KB)
    brain = Brain(settings, state=MemoryStateEngine())
    async with brain.running():
        tokens = {role: await issue_token(brain.state, role=role, label=role, at=brain.now()) for role in ROLES}
        transport = httpx.ASGITransport(app=build_app(brain))
        async with httpx.AsyncClient(transport=transport, base_url="http://brain") as client:
            api = BrainClient(client, tokens)
            refused(await api.post("/v1/kill", {"reason": "x" * 3 * KB}, as_="captain"), 413, "payload_too_large")
            ok(await api.post("/v1/kill", {"reason": "x" * KB}, as_="captain"))
            chain = audit_chain("body-a", 40)
            assert len(json.dumps(batch("body-a", chain))) > 8 * KB
            refused(await api.post("/v1/audit", batch("body-a", chain), as_="body"), 413, "payload_too_large")
            ok(await api.post("/v1/audit", batch("body-a", chain[:5]), as_="body"))


async def test_a_client_that_disconnects_mid_body_gets_a_refusal_not_a_server_error(
    brain: Brain, caplog: pytest.LogCaptureFixture
) -> None:
    """A body killed while shipping its audit leaves the brain with half a request: nothing is parsed or kept, and
    no traceback lands in the brain's log (it is the client's doing, not a server error)."""
    token = await issue_token(brain.state, role="body", label="body", at=brain.now())
    app = build_app(brain)
    sent: list[Message] = []
    chunks: list[Message] = [
        {"type": "http.request", "body": b'{"body_id": "body-a", "events": [', "more_body": True},
        {"type": "http.disconnect"},
    ]

    async def receive() -> Message:
        return chunks.pop(0) if chunks else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/audit",
        "raw_path": b"/v1/audit",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"authorization", f"Bearer {token}".encode()), (b"content-type", b"application/json")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
    }
    await app(scope, receive, send)
    (start,) = [m for m in sent if m["type"] == "http.response.start"]
    assert start["status"] == 422
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    assert json.loads(body)["code"] == "invalid_request" and b"disconnected" in body
    assert await brain.state.audit_events("body-a") == []
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")], caplog.text
