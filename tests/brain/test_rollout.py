"""An agent's new logic version over the API: shadow (recorded, never live), canary steps by task-id bucket, promoted
step by step on good metrics, rolled back (and paged) the moment one fails; human captains promote and roll back.
A clock the test moves."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from brain_server import Brain, BrainSettings
from brain_server.canary import bucket
from brain_server.wake.memory import MemoryChannel
from shared_protocol.config import RolloutConfig

from .helpers import BrainClient, Clock, batch, engine_url, ok, refused, registration, rerun_event

pytestmark = pytest.mark.anyio

AGENT = "w1"
V1 = "lv-1111111111111111"
V2 = "lv-2222222222222222"
ACCEPTANCE = "pytest -q"
READY = {"ready": True, "items": [{"name": "kill_drill", "ok": True, "detail": "0.1 s", "fix": ""}]}
SHADOW_S = 600.0
CONFIG = RolloutConfig(shadow_days=SHADOW_S / 86_400, min_shadow_tasks=3, steps=[10, 50, 100], min_tasks_per_step=3)


@pytest.fixture
def settings(tmp_path: Path) -> BrainSettings:
    return BrainSettings(database_url=engine_url("sqlite", tmp_path), rollout=CONFIG)


@dataclass
class Version:
    """One logic version of agent w1: its own body token (`as_`), its body and that body's audit chain."""

    api: BrainClient
    clock: Clock
    version: str
    name: str
    body_id: str
    seq: int = 0
    prev: str = "genesis"
    actions: list[str] = field(default_factory=list[str])

    async def start(self) -> Version:
        await self.api.add_token(self.name, agent=AGENT)
        ok(await self.api.post("/v1/bodies/register", registration(self.body_id), as_=self.name))
        return self

    async def claim(self, mode: str, task_id: str | None = None) -> httpx.Response:
        return await self.api.post("/v1/tasks/claim", self._claim(mode, task_id), as_=self.name)

    async def work(
        self, mode: str, *, verified: bool = True, usd: float = 0.1, task_id: str | None = None
    ) -> dict[str, Any]:
        """Claim a task and finish it: a confirmed re-run of its acceptance (verified) or a failure."""
        claimed = ok(await self.api.post("/v1/tasks/claim", self._claim(mode, task_id), as_=self.name))
        task = claimed["task"]
        assert task is not None, f"{self.version} found nothing to claim ({mode})"
        self.clock.advance(1)
        action = f"act_{self.body_id}_{len(self.actions)}"
        self.actions.append(action)
        if verified:
            self.seq += 1
            event = rerun_event(
                self.body_id,
                self.seq,
                self.prev,
                action_id=action,
                at=self.clock.now,
                argv=["pytest", "-q"],
                task_id=task["id"],
                agent=AGENT,
            )
            self.prev = event.mac
            ok(await self.api.post("/v1/audit", batch(self.body_id, [event]), as_=self.name))
        outcome = {
            "claim_token": claimed["claim_token"],
            "outcome": "succeeded" if verified else "failed",
            "summary": "done",
            "verification": {
                "command": ACCEPTANCE,
                "exit_code": 0 if verified else 1,
                "action_id": action,
                "verified": verified,
            },
            "spend": {"usd": usd},
            "logic_version": self.version,
            "mode": mode,
        }
        done = ok(await self.api.post(f"/v1/tasks/{task['id']}/outcome", outcome, as_=self.name))
        self.clock.advance(1)
        return done

    def _claim(self, mode: str, task_id: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {"body_id": self.body_id, "agent": AGENT, "mode": mode, "logic_version": self.version}
        if task_id is not None:
            body["task_id"] = task_id
        return body


async def queue(api: BrainClient) -> str:
    task = ok(
        await api.post("/v1/tasks", {"title": "t", "acceptance": ACCEPTANCE, "repo": "/srv/app"}, as_="approver"), 201
    )
    return task["id"]


async def queue_in(api: BrainClient, low: int, high: int) -> str:
    """Queue tasks until one falls in buckets [low, high) (the others stay queued), and return its id."""
    while True:
        task_id = await queue(api)
        if low <= bucket(task_id) < high:
            return task_id


async def status(api: BrainClient, as_: str = "approver") -> dict[str, Any]:
    return ok(await api.get(f"/v1/agents/{AGENT}/rollout", as_=as_))


async def live_with_history(api: BrainClient, clock: Clock, tasks: int = 8) -> tuple[Version, Version]:
    """Readiness passed and a captain let V1 go live first (its shadow period is another test's); V1 is live with
    `tasks` verified tasks; V2's body is registered."""
    ok(await api.post("/v1/readiness", READY, as_="captain"), 201)
    await let_live(api, V1)
    v1 = await Version(api, clock, V1, "v1", "body-1").start()
    v2 = await Version(api, clock, V2, "v2", "body-2").start()
    for _ in range(tasks):
        await queue(api)
        await v1.work("live")
    return v1, v2


async def let_live(api: BrainClient, version: str) -> None:
    """A human captain's readiness override for `version` of the agent (the first live version needs one, or its
    shadow period on this brain)."""
    override = {"agent": AGENT, "logic_version": version, "reason": "first version", "for_s": 86400}
    ok(await api.post("/v1/readiness/overrides", override, as_="captain"), 201)


async def through_shadow(api: BrainClient, clock: Clock, v2: Version) -> None:
    for _ in range(3):
        await queue(api)
        await v2.work("shadow")
    clock.advance(SHADOW_S)


async def test_a_new_version_shadows_then_is_promoted_through_each_canary_step_to_live(
    api: BrainClient, clock: Clock, brain: Brain
) -> None:
    v1, v2 = await live_with_history(api, clock)
    first = await status(api)
    assert first["state"]["live_version"] == V1 and first["state"]["candidate"] is None

    # Shadow: the new version's first claim makes it the candidate; its live claims are refused.
    await queue(api)
    await v2.work("shadow")
    shadow = await status(api)
    assert (shadow["state"]["candidate"], shadow["state"]["stage"], shadow["percent"]) == (V2, "shadow", 0)
    refused(await v2.claim("live"), 403, "not_ready")
    assert "more shadow tasks" in shadow["next"]
    await queue(api)
    await v2.work("shadow")
    await queue(api)
    await v2.work("shadow")
    not_yet = await status(api)
    assert not_yet["state"]["stage"] == "shadow" and not_yet["shadow_tasks"] == 3  # (days not yet)
    by_name = {m["name"]: m for m in not_yet["metrics"]}
    assert (
        by_name["verified_success"]["candidate"] == "3/3 = 100%" and by_name["verified_success"]["live"] == "8/8 = 100%"
    )
    clock.advance(SHADOW_S)

    # Canary: each step takes its share by task-id bucket; the other version's claims do not see those tasks.
    for percent, after in ((10, "50"), (50, "100"), (100, "live")):
        report = await status(api)
        assert (report["state"]["stage"], report["percent"]) == ("canary", percent), report
        for _ in range(3):
            mine = await queue_in(api, 0, percent)
            if percent < 100:
                theirs = await queue_in(api, percent, 100)
                refused_claim = ok(await v1.claim("live", task_id=mine))
                assert refused_claim["task"] is None  # (the candidate's bucket: not the live version's)
                assert (await v1.work("live", task_id=theirs))["state"] == "succeeded"
            done = await v2.work("live", task_id=mine)
            assert done["verified"] is True
        assert after in (await status(api))["next"] or after == "live"

    final = await status(api)
    assert final["state"]["live_version"] == V2 and final["state"]["candidate"] is None
    log = [e for e in await brain.state.log_entries(limit=500) if e.action.startswith("rollout_")]
    assert [(e.action, e.by) for e in log] == [
        ("rollout_live", "rollout"),
        ("rollout_candidate", "rollout"),
        ("rollout_promote", "rollout"),
        ("rollout_promote", "rollout"),
        ("rollout_promote", "rollout"),
        ("rollout_promote", "rollout"),
    ]
    assert log[2].detail["stage"] == "shadow" and log[-1].detail["percent"] == 100


async def test_a_failing_candidate_is_rolled_back_at_once_and_a_human_is_paged(
    api: BrainClient, clock: Clock, brain: Brain, pages: MemoryChannel
) -> None:
    v1, v2 = await live_with_history(api, clock)
    await through_shadow(api, clock, v2)
    assert (await status(api))["state"]["stage"] == "canary"
    await v2.work("live", task_id=await queue_in(api, 0, 10), verified=False)
    assert (await status(api))["state"]["stage"] == "canary"  # 0/1 against 8/8: p = 1/9, not yet evidence
    await v2.work("live", task_id=await queue_in(api, 0, 10), verified=False)  # 0/2: p = 1/45 < 0.05

    after = await status(api)
    assert after["state"]["candidate"] is None and after["state"]["rolled_back"] == [V2]
    assert after["state"]["live_version"] == V1
    refused(await v2.claim("live"), 403, "not_ready")
    assert (await v1.work("live", task_id=await queue_in(api, 0, 10)))["verified"] is True  # every bucket is V1's
    await brain.escalator.tick()  # (the ladder's first rung: the sweeper's tick, here by hand)
    with anyio.fail_after(5):
        sent = await pages.wait_for(1)
    assert any(V2 in page.title and "rolled back" in page.title for page in sent)
    rollback = [e for e in await brain.state.log_entries(limit=500) if e.action == "rollout_rollback"]
    assert len(rollback) == 1 and rollback[0].by == "rollout" and "verified_success" in rollback[0].reason
    assert rollback[0].detail["metrics"]["verified_success"]["candidate"] == "0/2 = 0%"


async def test_a_candidate_worse_in_shadow_is_rolled_back_before_any_live_task(api: BrainClient, clock: Clock) -> None:
    _, v2 = await live_with_history(api, clock)
    for _ in range(2):
        await queue(api)
        await v2.work("shadow", verified=False)
    after = await status(api)
    assert after["state"]["rolled_back"] == [V2] and after["state"]["candidate"] is None


async def test_only_a_human_captain_promotes_or_rolls_back_by_hand_with_a_reason(
    api: BrainClient, clock: Clock, brain: Brain
) -> None:
    _, v2 = await live_with_history(api, clock, tasks=1)
    await queue(api)
    await v2.work("shadow")
    url = f"/v1/agents/{AGENT}/rollout"
    for who in ("approver", "body", "v2"):
        refused(await api.post(f"{url}/promote", {"reason": "ship it"}, as_=who), 403, "forbidden")
    refused(await api.post(f"{url}/promote", {}, as_="captain"), 422, "invalid_request")
    promoted = ok(await api.post(f"{url}/promote", {"reason": "looked at it"}, as_="captain"))
    assert (promoted["state"]["stage"], promoted["percent"]) == ("canary", 10)
    back = ok(await api.post(f"{url}/rollback", {"reason": "not today"}, as_="captain"))
    assert back["state"]["candidate"] is None and back["state"]["rolled_back"] == [V2]
    refused(await api.post(f"{url}/rollback", {"reason": "again"}, as_="captain"), 409, "invalid_transition")
    refused(await api.get("/v1/agents/nobody/rollout", as_="captain"), 404, "not_found")
    refused(await api.post("/v1/agents/nobody/rollout/promote", {"reason": "x"}, as_="captain"), 404, "not_found")
    refused(await api.get("/v1/agents/bad name!/rollout", as_="captain"), 422, "invalid_request")
    entries = [
        e for e in await brain.state.log_entries(limit=500) if e.action in ("rollout_promote", "rollout_rollback")
    ]
    assert [(e.action, e.role, e.reason) for e in entries] == [
        ("rollout_promote", "captain", "looked at it"),
        ("rollout_rollback", "captain", "not today"),
    ]


async def test_the_first_live_version_needs_readiness_and_then_takes_every_task(api: BrainClient, clock: Clock) -> None:
    v1 = await Version(api, clock, V1, "v1", "body-1").start()
    await queue(api)
    refused(await v1.claim("live"), 403, "not_ready")  # (no readiness report)
    ok(await api.post("/v1/readiness", READY, as_="captain"), 201)
    # A ready report was computed for the version configured when it ran: the first live version also needs its
    # own shadow period on this brain (or a captain's override naming it).
    refusal = refused(await v1.claim("live"), 403, "not_ready")
    assert "no shadow period of its own" in refusal["message"] and "0/3 shadow tasks" in refusal["message"], refusal
    await through_shadow(api, clock, v1)
    await queue(api)
    await v1.work("live")
    report = await status(api)
    assert report["state"]["live_version"] == V1 and report["metrics"] == []
