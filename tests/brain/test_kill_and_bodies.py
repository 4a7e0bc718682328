"""The brain's kill switch, body registration and heartbeats, and status."""

from __future__ import annotations

import pytest

from brain_server import Brain
from brain_server.wake.memory import MemoryChannel

from .helpers import BrainClient, Clock, ok, refused

pytestmark = pytest.mark.anyio

REGISTER = {"body_id": "body-a", "workspace": "/srv/app", "hostname": "dev-1", "version": "0.1.0"}


async def test_registration_returns_the_timing_and_the_kill_state(api: BrainClient, brain: Brain) -> None:
    data = ok(await api.post("/v1/bodies/register", REGISTER, as_="body"))
    assert data["body_id"] == "body-a"
    assert data["heartbeat_interval_s"] == brain.settings.heartbeat_interval_s
    assert data["failsafe_s"] == brain.settings.failsafe_s
    assert data["kill"] == {"engaged": False, "reason": None, "by": None, "at": None, "agent": None}


async def test_kill_is_recorded_with_who_and_why_and_reported_to_bodies(api: BrainClient, brain: Brain) -> None:
    ok(await api.post("/v1/bodies/register", REGISTER, as_="body"))
    kill = ok(await api.post("/v1/kill", {"reason": "runaway agent"}, as_="captain"))
    assert kill["engaged"] is True and kill["reason"] == "runaway agent" and kill["by"] == "captain-1"
    heartbeat = ok(await api.post("/v1/bodies/body-a/heartbeat", as_="body"))
    assert heartbeat["kill"]["engaged"] is True
    again = ok(await api.post("/v1/bodies/register", REGISTER, as_="body"))
    assert again["kill"]["engaged"] is True

    resumed = ok(await api.post("/v1/resume", {"reason": "fixed"}, as_="captain"))
    assert resumed["engaged"] is False and resumed["by"] == "captain-1"
    assert ok(await api.post("/v1/bodies/body-a/heartbeat", as_="body"))["kill"]["engaged"] is False

    log = [e for e in await brain.state.log_entries() if e.action in ("kill", "resume")]
    assert [(e.action, e.by, e.role, e.reason) for e in log] == [
        ("kill", "captain-1", "captain", "runaway agent"),
        ("resume", "captain-1", "captain", "fixed"),
    ]
    assert all(e.token_id is not None and e.token_id.startswith("tok_") for e in log)


async def test_kill_and_resume_need_a_reason(api: BrainClient, brain: Brain) -> None:
    data = refused(await api.post("/v1/kill", {}, as_="captain"), 422, "invalid_request")
    assert data["field"] == "reason"
    refused(await api.post("/v1/kill", {"reason": "  "}, as_="captain"), 422, "invalid_request")
    assert (await brain.state.kill_state()).engaged is False


async def test_a_heartbeat_from_an_unregistered_body_asks_it_to_register(api: BrainClient) -> None:
    refused(await api.post("/v1/bodies/nobody/heartbeat", as_="body"), 404, "unknown_body")


async def test_status_lists_bodies_and_whether_they_are_connected(api: BrainClient, clock: Clock) -> None:
    ok(await api.post("/v1/bodies/register", REGISTER, as_="body"))
    await api.add_token("body-b")
    ok(await api.post("/v1/bodies/register", {**REGISTER, "body_id": "body-b"}, as_="body-b"))
    clock.advance(5)
    ok(await api.post("/v1/bodies/body-a/heartbeat", as_="body"))
    clock.advance(6)
    status = ok(await api.get("/v1/status", as_="approver"))
    bodies = {b["body_id"]: b for b in status["bodies"]}
    assert bodies["body-a"]["connected"] is True
    assert bodies["body-b"]["connected"] is False
    assert bodies["body-a"]["workspace"] == "/srv/app"
    assert status["kill"]["engaged"] is False
    assert (status["pending_decisions"], status["queued_tasks"], status["claimed_tasks"]) == (0, 0, 0)


async def test_re_registering_keeps_the_first_registration_time(api: BrainClient, clock: Clock) -> None:
    ok(await api.post("/v1/bodies/register", REGISTER, as_="body"))
    clock.advance(60)
    ok(await api.post("/v1/bodies/register", {**REGISTER, "version": "0.2.0"}, as_="body"))
    (body,) = ok(await api.get("/v1/status", as_="captain"))["bodies"]
    assert body["version"] == "0.2.0"
    assert body["registered_at"] < body["last_heartbeat"]


async def test_unknown_routes_and_methods_answer_in_json(api: BrainClient) -> None:
    refused(await api.get("/v1/nothing", as_="captain"), 404, "not_found")
    refused(await api.get("/v1/kill", as_="captain"), 405, "method_not_allowed")


async def test_a_body_that_deregisters_is_gone_not_lost_and_is_back_when_it_registers(
    api: BrainClient, brain: Brain, clock: Clock, pages: MemoryChannel
) -> None:
    ok(await api.post("/v1/bodies/register", REGISTER, as_="body"))
    await brain.sweep()
    left = ok(await api.post("/v1/bodies/body-a/deregister", as_="body"))
    assert left["body_id"] == "body-a" and left["left_at"] is not None
    (body,) = ok(await api.get("/v1/status", as_="captain"))["bodies"]
    assert (body["connected"], body["left_at"]) == (False, left["left_at"])
    clock.advance(brain.settings.failsafe_s * 10)
    await brain.sweep()
    await brain.escalator.tick()
    assert pages.pages == [], "a clean exit pages nobody"
    assert [e.action for e in await brain.state.log_entries()].count("body_deregister") == 1
    ok(await api.post("/v1/bodies/register", REGISTER, as_="body"))
    (back,) = ok(await api.get("/v1/status", as_="captain"))["bodies"]
    assert (back["connected"], back["left_at"]) == (True, None)


async def test_only_the_bodys_own_token_deregisters_it(api: BrainClient, brain: Brain) -> None:
    ok(await api.post("/v1/bodies/register", REGISTER, as_="body"))
    await api.add_token("other")
    refused(await api.post("/v1/bodies/body-a/deregister", as_="other"), 403, "forbidden")
    refused(await api.post("/v1/bodies/body-a/deregister", as_="captain"), 403, "forbidden")
    (body,) = await brain.state.bodies()
    assert body.left_at is None
    await api.add_token("fresh")
    refused(await api.post("/v1/bodies/body-b/deregister", as_="fresh"), 404, "unknown_body")
