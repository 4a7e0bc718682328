"""A reviewer agent's new logic version over the API, on every state engine: its votes are kept in shadow (on the
decision, audited, never counted) until its shadow period is done and its votes agree with the panel's counted ones
at least as often as the live version's, or a human captain promotes it; then its canary share of decisions by
decision id; rolled back (and paged) when it agrees less. A clock the test moves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from brain_server import Brain, BrainSettings
from brain_server.canary import bucket
from brain_server.wake.memory import MemoryChannel
from shared_protocol.config import ConsensusConfig, RolloutConfig

from .helpers import REVIEWER_LV, BrainClient, Clock, decision_request, engine_url, live_reviewers, ok, refused

pytestmark = pytest.mark.anyio

REVIEWERS = ["rev-a", "rev-b", "rev-c", "rev-d", "rev-e"]
OTHERS = ["rev-b", "rev-c", "rev-d"]
"""Their REVIEWER_LV votes live: they settle the decisions rev-a's versions are judged against."""
V1 = REVIEWER_LV
V2 = "lv-changedprompt2"
SHADOW_S = 600.0
ROLLOUT = RolloutConfig(shadow_days=SHADOW_S / 86_400, min_shadow_tasks=3, steps=[10, 50, 100], min_tasks_per_step=3)


def rollout_settings(tmp_path: Path) -> BrainSettings:
    """A SQLite brain with the panel of five reviewer agents (quorum 3), `ROLLOUT`, and captain agent `cap`."""
    return BrainSettings(
        database_url=engine_url("sqlite", tmp_path),
        consensus=ConsensusConfig(panel=REVIEWERS, quorum=3, deadline_s=3600),
        rollout=ROLLOUT,
        captain_agents=["cap"],
    )


async def seat_panel(api: BrainClient, *bodies: str) -> BrainClient:
    """A reviewer token for each seat and for `cap`, a body token `AGENT-body` for each agent of `bodies`; the
    `OTHERS`' `REVIEWER_LV` live."""
    for name in [*REVIEWERS, "cap"]:
        await api.add_token(name, "reviewer", agent=name)
    for agent in bodies:
        await api.add_token(f"{agent}-body", "body", agent=agent)
    await live_reviewers(api, OTHERS)
    return api


@pytest.fixture
def settings(tmp_path: Path) -> BrainSettings:
    return rollout_settings(tmp_path)


@pytest.fixture
async def panel(api: BrainClient) -> BrainClient:
    return await seat_panel(api, "claude")


async def propose(api: BrainClient, n: int = 0) -> str:
    request = decision_request("body-c", impact={"files": 6, "api_calls": 0, "usd": 0}, files=["src/a.py"])
    request["summary"] = f"change {n}"
    return str(ok(await api.post("/v1/decisions", request, as_="claude-body"), 201)["id"])


async def vote(api: BrainClient, decision_id: str, as_: str, value: str, version: str = V1) -> dict[str, Any]:
    body = {"value": value, "reason": f"{as_} says {value}", "logic_version": version}
    return ok(await api.post(f"/v1/decisions/{decision_id}/votes", body, as_=as_))


def last_vote(decision: dict[str, Any], agent: str) -> dict[str, Any]:
    return [v for v in decision["votes"] if v["agent"] == agent][-1]


async def status(api: BrainClient, agent: str = "rev-a") -> dict[str, Any]:
    return ok(await api.get(f"/v1/agents/{agent}/rollout", as_="approver"))


async def reviewed(api: BrainClient, version: str, value: str, *, decisions: int, start: int = 0) -> list[str]:
    """`decisions` decisions rev-a votes `value` on at `version` first, then the others approve until it settles."""
    ids: list[str] = []
    for n in range(decisions):
        decision_id = await propose(api, start + n)
        await vote(api, decision_id, "rev-a", value, version)
        for name in OTHERS:
            if (await vote(api, decision_id, name, "approve"))["state"] != "pending":
                break
        ids.append(decision_id)
    return ids


async def live_v1_with_history(api: BrainClient, decisions: int = 5) -> None:
    """A human captain let rev-a's V1 vote live; it approved `decisions` decisions the panel approved."""
    await live_reviewers(api, ["rev-a"], V1)
    await reviewed(api, V1, "approve", decisions=decisions, start=100)
    state = (await status(api))["state"]
    assert (state["live_version"], state["candidate"], state["voter"]) == (V1, None, True)


async def test_a_new_versions_vote_is_kept_in_shadow_and_audited_not_counted(panel: BrainClient, brain: Brain) -> None:
    await live_v1_with_history(panel)
    decision_id = await propose(panel)
    shadow = await vote(panel, decision_id, "rev-a", "deny", V2)
    assert shadow["state"] == "pending" and shadow["votes"][-1]["shadow"] is True
    assert shadow["votes"][-1]["logic_version"] == V2
    # the two live others approve: 2 of 3, rev-a's shadow deny fills no seat and denies nothing
    await vote(panel, decision_id, "rev-b", "approve")
    still = await vote(panel, decision_id, "rev-c", "approve")
    assert still["state"] == "pending"
    approved = await vote(panel, decision_id, "rev-d", "approve")
    assert approved["state"] == "approved" and "3 approve, 0 deny" in approved["answers"][-1]["reason"]
    shown = ok(await panel.get(f"/v1/decisions/{decision_id}", as_="approver"))
    assert [(v["voter"], v["value"], v["shadow"]) for v in shown["votes"]] == [
        ("rev-a", "deny", True),
        ("rev-b", "approve", False),
        ("rev-c", "approve", False),
        ("rev-d", "approve", False),
    ]
    logged = [e for e in await brain.state.log_entries(limit=500) if e.action == "vote" and e.target == decision_id]
    assert [(e.by, e.detail["shadow"], e.detail["logic_version"]) for e in logged] == [
        ("rev-a", True, V2),
        ("rev-b", False, V1),
        ("rev-c", False, V1),
        ("rev-d", False, V1),
    ]
    candidate = [e for e in await brain.state.log_entries(limit=500) if e.action == "rollout_candidate"]
    assert [(e.target, e.detail["version"]) for e in candidate] == [("rev-a", V2)]
    report = await status(panel)
    assert (report["state"]["candidate"], report["state"]["stage"]) == (V2, "shadow")
    agreement = {m["name"]: m for m in report["metrics"]}["vote_agreement"]
    assert (agreement["candidate"], agreement["live"]) == ("0/1 = 0%", "5/5 = 100%"), report
    assert "agree" in report["test"] and "shadow" in report["next"]


async def test_the_live_versions_votes_still_count_while_a_candidate_shadows(panel: BrainClient) -> None:
    await live_v1_with_history(panel, decisions=1)
    first = await propose(panel)
    await vote(panel, first, "rev-a", "approve", V2)  # a version never seen: the candidate, in shadow
    counted = await vote(panel, first, "rev-a", "approve", V1)  # the live version's vote on the same seat counts
    assert last_vote(counted, "rev-a")["shadow"] is False
    await vote(panel, first, "rev-b", "approve")
    assert (await vote(panel, first, "rev-c", "approve"))["state"] == "approved"
    # a third version replaces the candidate; it votes in shadow too
    second = await propose(panel, 1)
    third = await vote(panel, second, "rev-a", "approve", "lv-third")
    assert last_vote(third, "rev-a")["shadow"] is True
    assert (await status(panel))["state"]["candidate"] == "lv-third"


async def test_after_its_shadow_period_and_as_much_agreement_it_counts_on_its_canary_share(
    panel: BrainClient, clock: Clock
) -> None:
    await live_v1_with_history(panel, decisions=3)
    await reviewed(panel, V2, "approve", decisions=3)
    held = await status(panel)
    assert held["state"]["stage"] == "shadow" and "more days" in held["next"], held  # the days are not over
    clock.advance(SHADOW_S)
    promoted = await status(panel)
    assert (promoted["state"]["stage"], promoted["percent"]) == ("canary", 10), promoted
    # at 10%: V2's vote counts on the decisions whose bucket is under 10, V1's on the others (deterministic by id)
    for n in range(6):
        decision_id = await propose(panel, 10 + n)
        candidate = last_vote(await vote(panel, decision_id, "rev-a", "approve", V2), "rev-a")
        assert candidate["shadow"] is (bucket(decision_id) >= 10), (decision_id, bucket(decision_id))
        live = last_vote(await vote(panel, decision_id, "rev-a", "approve", V1), "rev-a")
        assert live["shadow"] is (bucket(decision_id) < 10), (decision_id, bucket(decision_id))


async def test_a_human_captain_promotes_a_reviewers_first_version_and_its_votes_count(
    panel: BrainClient, brain: Brain
) -> None:
    first = await propose(panel)
    assert last_vote(await vote(panel, first, "rev-a", "approve", V2), "rev-a")["shadow"] is True
    url = "/v1/agents/rev-a/rollout"
    refused(await panel.post(f"{url}/promote", {"reason": "ship it"}, as_="rev-a"), 403, "forbidden")
    promoted = ok(await panel.post(f"{url}/promote", {"reason": "read its prompt"}, as_="captain"))
    assert (promoted["state"]["live_version"], promoted["state"]["candidate"]) == (V2, None)
    second = await propose(panel, 1)
    assert last_vote(await vote(panel, second, "rev-a", "approve", V2), "rev-a")["shadow"] is False
    entries = [e for e in await brain.state.log_entries(limit=500) if e.action == "rollout_promote"]
    assert [(e.target, e.role, e.reason) for e in entries] == [("rev-a", "captain", "read its prompt")]


async def test_a_reviewers_first_version_counts_after_its_own_shadow_period(panel: BrainClient, clock: Clock) -> None:
    """With no live version, its shadow votes are compared with the panel's other counted seats on the same
    decisions: three settled decisions it agreed on (3/3, as the seats' 9/9) and the shadow days make it live."""
    pending = await propose(panel, 50)  # (voted on, never settled: not compared, so not enough alone)
    assert last_vote(await vote(panel, pending, "rev-a", "approve", V2), "rev-a")["shadow"] is True
    ids = await reviewed(panel, V2, "approve", decisions=3)
    for decision_id in ids:
        shown = ok(await panel.get(f"/v1/decisions/{decision_id}", as_="approver"))
        assert last_vote(shown, "rev-a")["shadow"] is True
    report = await status(panel)
    assert report["state"]["live_version"] is None and "4 over" in report["next"], report
    agreement = {m["name"]: m for m in report["metrics"]}["vote_agreement"]
    assert (agreement["candidate"], agreement["live"]) == ("3/3 = 100%", "9/9 = 100%"), report
    clock.advance(SHADOW_S)
    after = await status(panel)
    assert (after["state"]["live_version"], after["state"]["candidate"]) == (V2, None), after
    decision_id = await propose(panel, 9)
    assert last_vote(await vote(panel, decision_id, "rev-a", "approve", V2), "rev-a")["shadow"] is False


async def test_a_candidate_agreeing_less_is_rolled_back_paged_and_then_never_counts(
    panel: BrainClient, brain: Brain, pages: MemoryChannel
) -> None:
    await live_v1_with_history(panel, decisions=5)
    await reviewed(panel, V2, "deny", decisions=1)  # the panel approved it: 0/1 against 5/5 is p = 1/6, no evidence
    held = await brain.state.rollout("rev-a")
    assert held is not None and held.candidate == V2
    await reviewed(panel, V2, "deny", decisions=1, start=1)  # 0/2 against 5/5: p = 1/21 < 0.05
    stored = await brain.state.rollout("rev-a")  # (rolled back as the decision settled: nothing read the report)
    assert stored is not None and stored.rolled_back == [V2] and stored.candidate is None
    after = await status(panel)
    assert after["state"]["candidate"] is None and after["state"]["rolled_back"] == [V2], after
    assert after["state"]["live_version"] == V1
    decision_id = await propose(panel, 50)
    assert last_vote(await vote(panel, decision_id, "rev-a", "approve", V2), "rev-a")["shadow"] is True
    assert (await status(panel))["state"]["candidate"] is None  # a version rolled back is never a candidate again
    await brain.escalator.tick()
    with anyio.fail_after(5):
        sent = await pages.wait_for(1)
    assert any(V2 in page.title and "rolled back" in page.title for page in sent)
    rollback = [e for e in await brain.state.log_entries(limit=500) if e.action == "rollout_rollback"]
    assert len(rollback) == 1 and rollback[0].by == "rollout" and "agree" in rollback[0].reason


async def test_a_human_captain_rolls_a_reviewers_candidate_back(panel: BrainClient) -> None:
    await live_v1_with_history(panel, decisions=1)
    decision_id = await propose(panel)
    await vote(panel, decision_id, "rev-a", "approve", V2)
    back = ok(await panel.post("/v1/agents/rev-a/rollout/rollback", {"reason": "prompt leaks"}, as_="captain"))
    assert back["state"]["rolled_back"] == [V2] and back["state"]["live_version"] == V1
    again = await propose(panel, 1)
    assert last_vote(await vote(panel, again, "rev-a", "approve", V2), "rev-a")["shadow"] is True
    assert last_vote(await vote(panel, again, "rev-a", "approve", V1), "rev-a")["shadow"] is False


async def test_a_captain_agents_shadow_vote_breaks_no_deadlock(panel: BrainClient, clock: Clock) -> None:
    decision_id = await propose(panel)
    await live_reviewers(panel, ["rev-a", "rev-e"])
    for name, value in zip(REVIEWERS, ["approve", "approve", "deny", "deny", "abstain"], strict=True):
        tied = await vote(panel, decision_id, name, value)
    assert [s["kind"] for s in tied["ladder"]] == ["deadlock", "captain_agent"], tied
    shadow = await vote(panel, decision_id, "cap", "approve", "lv-cap-new")
    assert shadow["state"] == "pending" and last_vote(shadow, "cap")["shadow"] is True
    await live_reviewers(panel, ["cap"], "lv-cap-new")  # a human captain names it: its next vote counts
    broken = await vote(panel, decision_id, "cap", "approve", "lv-cap-new")
    assert broken["state"] == "approved" and last_vote(broken, "cap")["shadow"] is False
