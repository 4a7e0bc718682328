"""Adversarial review of #19 point 6: a reviewer or captain agent's new logic version votes in shadow first (kept on
the decision, never counted) and is rolled out like a worker's. Attacks by one reviewer token or a compromised
runner, and by a confused operator: make a shadow vote count, go live without a shadow period, dodge a rollback, or
feed the rollout a version other than the one it routed. Brain-level, over the HTTP API on every state engine
(SQLite on a real file).

"Withstood": the attack held; "Was a hole … fixed by …": fixed here; strict xfail "HOLE": left for its owner."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest

from agent_runner.reviewer import deadlock_prompt
from brain_server import Brain, BrainSettings
from brain_server.rollout import rolled_back
from brain_server.state import BodyRecord, LogEntry, sqlite_url
from brain_server.wake.memory import MemoryChannel
from brain_server.wake.records import Escalation
from shared_protocol.brain import ReadinessOverride, ReadinessReport, Task
from shared_protocol.config import ConsensusConfig
from shared_protocol.decisions import Decision, LadderStep, Vote
from swarm_cli.decision_cmds import how_to_answer
from tests.cli.inprocess import swarm_on as swarm

from .helpers import (
    BrainClient,
    Clock,
    decision_request,
    live_brain,
    live_reviewers,
    ok,
    refused,
    registration,
)
from .test_reviewer_rollout import (
    OTHERS,
    REVIEWERS,
    ROLLOUT,
    V1,
    V2,
    last_vote,
    live_v1_with_history,
    propose,
    reviewed,
    rollout_settings,
    seat_panel,
    status,
    vote,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def settings(tmp_path: Path) -> BrainSettings:
    return rollout_settings(tmp_path)


@pytest.fixture
async def panel(api: BrainClient) -> BrainClient:
    return await seat_panel(api, "claude", "rev-a")


def body(value: str, version: str | None) -> dict[str, object]:
    found: dict[str, object] = {"value": value, "reason": f"says {value}"}
    if version is not None:
        found["logic_version"] = version
    return found


# -- making a shadow vote count -----------------------------------------------------------------------------------


async def test_a_shadow_vote_never_replaces_the_seats_counted_vote_nor_fills_a_seat(panel: BrainClient) -> None:
    """Withstood: rev-a's live version approves (counted), then its new version denies on the same decision (shadow,
    later): the seat's counted vote stays the approval (`latest` skips shadow votes), two more approvals settle it as
    3 approve 0 deny; and a shadow vote alone leaves the seat open in `swarm show`'s "how to answer"."""
    await live_v1_with_history(panel, decisions=1)
    decision_id = await propose(panel)
    await vote(panel, decision_id, "rev-a", "approve", V1)
    denied = await vote(panel, decision_id, "rev-a", "deny", V2)
    assert last_vote(denied, "rev-a")["shadow"] is True and denied["state"] == "pending"
    await vote(panel, decision_id, "rev-b", "approve")
    settled = await vote(panel, decision_id, "rev-c", "approve")
    assert settled["state"] == "approved" and "3 approve, 0 deny" in settled["answers"][-1]["reason"], settled
    # three new versions deny in shadow: nothing is denied, no seat is filled
    other = await propose(panel, 1)
    for name in ["rev-b", "rev-c", "rev-d"]:
        after = await vote(panel, other, name, "deny", f"lv-new-{name}")
    assert after["state"] == "pending" and all(v["shadow"] for v in after["votes"]), after
    lines = how_to_answer(Decision.model_validate(after))
    assert any("rev-a, rev-b, rev-c, rev-d, rev-e" in line for line in lines), lines


async def test_a_vote_on_a_final_decision_or_its_own_proposal_moves_no_rollout(panel: BrainClient) -> None:
    """Withstood: a flood of votes at a new version on decisions already final, or on decisions the agent proposed
    itself (a body token of the same agent name), is refused before the rollout is asked: no candidate, no shadow
    vote counted toward its period."""
    decision_id = await propose(panel)
    for name in OTHERS:
        await vote(panel, decision_id, name, "approve")
    for n in range(3):
        late = await panel.post(f"/v1/decisions/{decision_id}/votes", body("approve", f"lv-late{n}"), as_="rev-a")
        refused(late, 409, "not_pending")
    request = decision_request(
        "body-a", impact={"files": 6, "api_calls": 0, "usd": 0}, files=["src/a.py"], agent="rev-a"
    )
    own = ok(await panel.post("/v1/decisions", request, as_="rev-a-body"), 201)
    refused(
        await panel.post(f"/v1/decisions/{own['id']}/votes", body("approve", "lv-own"), as_="rev-a"), 403, "forbidden"
    )
    refused(await panel.get("/v1/agents/rev-a/rollout", as_="approver"), 404, "not_found")


async def test_another_agents_live_version_is_a_new_version_for_this_one(panel: BrainClient) -> None:
    """Withstood: rev-a names rev-b's live version (V1, live for rev-b by a captain's override): rollouts are per
    agent, so for rev-a it is a version never seen: its candidate, in shadow."""
    decision_id = await propose(panel)
    shadow = await vote(panel, decision_id, "rev-a", "deny", V1)
    assert last_vote(shadow, "rev-a")["shadow"] is True
    assert (await status(panel))["state"]["candidate"] == V1


async def test_a_reviewers_first_version_that_always_disagrees_does_not_go_live_by_itself(
    panel: BrainClient, brain: Brain, clock: Clock, pages: MemoryChannel
) -> None:
    """Was a hole (medium): a reviewer agent with no live version yet had its first version's votes counted once it
    voted in shadow on `min_shadow_tasks` decisions over `shadow_days` (`evaluate_votes`, `live is None`), whatever
    those votes were: one that denied every change the panel approved (0/3 agreeing) went live by itself. A worker's
    first version has no baseline to compare with; a reviewer's has one, the panel's counted votes. Fixed: with no
    live version the baseline is the panel's other counted seats on the same decisions (each against the others'
    majority, `seats_agreement`): promoted only with `min_shadow_tasks` compared votes agreeing at least as often,
    rolled back (and paged) when a one-sided Fisher test says it agrees less — here 0/2 against the seats' 6/6
    (p = 1/28) on the second decision; its third shadow deny stays shadow, and the shadow days change nothing."""
    await reviewed(panel, V2, "deny", decisions=3)
    clock.advance(ROLLOUT.shadow_days * 86_400)
    state = (await status(panel))["state"]
    assert (state["live_version"], state["candidate"], state["rolled_back"]) == (None, None, [V2]), state
    await brain.escalator.tick()
    with anyio.fail_after(5):
        sent = await pages.wait_for(1)
    assert any(V2 in page.title and "rolled back" in page.title for page in sent)
    rollback = [e for e in await brain.state.log_entries(limit=500) if e.action == "rollout_rollback"]
    assert len(rollback) == 1 and "the panel's other seats 6/6" in rollback[0].reason, rollback


async def test_a_reviewers_first_version_with_too_few_compared_votes_holds(panel: BrainClient, clock: Clock) -> None:
    """With no live version, shadow votes on decisions that never settle compare with nothing: past `shadow_days`
    and `min_shadow_tasks` decisions voted on, it holds in shadow and says why (a human captain may still promote)."""
    for n in range(3):
        await vote(panel, await propose(panel, n), "rev-a", "approve", V2)
    clock.advance(ROLLOUT.shadow_days * 86_400)
    report = await status(panel)
    assert (report["state"]["live_version"], report["state"]["candidate"]) == (None, V2), report
    assert "0 compared" in report["next"] and "swarm rollout promote rev-a" in report["next"], report


async def test_a_reviewers_live_version_does_not_let_a_body_of_its_name_work_live(panel: BrainClient) -> None:
    """Was a hole (medium, a confused operator): a body token bound to a reviewer agent's name (nothing stops
    `swarm brain token create --role body --agent rev-a`) claimed live at the reviewer's live version: the captain's
    readiness override that let the reviewer's votes count passed the live gate, and `Rollouts.route` never looked
    at whether the rollout was a voter's, so it worked tasks live with no shadow period of any work (and a shadow
    claim at a new version replaced the reviewer's candidate). `Rollouts.vote` already refused the converse. Fixed:
    `route` refuses (409 invalid_transition) a claim against a reviewer's rollout."""
    await live_v1_with_history(panel, decisions=1)
    ok(await panel.post("/v1/bodies/register", registration("body-ra"), as_="rev-a-body"))
    task = ok(
        await panel.post("/v1/tasks", {"title": "t", "acceptance": "pytest -q", "repo": "/srv/app"}, as_="approver"),
        201,
    )
    for mode, version in [("live", V1), ("shadow", "lv-worker")]:
        claim = {"body_id": "body-ra", "agent": "rev-a", "mode": mode, "logic_version": version, "task_id": task["id"]}
        answer = refused(await panel.post("/v1/tasks/claim", claim, as_="rev-a-body"), 409, "invalid_transition")
        assert "reviewer" in answer["message"], answer
    state = (await status(panel))["state"]
    assert (state["live_version"], state["candidate"], state["voter"]) == (V1, None, True)
    shown = ok(await panel.get(f"/v1/tasks/{task['id']}", as_="approver"))
    assert shown["state"] == "queued", shown


async def test_abstaining_in_shadow_never_inflates_a_candidates_agreement(panel: BrainClient, brain: Brain) -> None:
    """Withstood: a candidate that abstains on everything (never wrong, never right) is compared and disagrees (an
    abstention never agrees): 0/2 against the live version's 5/5 rolls it back (p = 1/21 < 0.05)."""
    await live_v1_with_history(panel, decisions=5)
    await reviewed(panel, V2, "abstain", decisions=1, start=0)
    held = await status(panel)
    assert held["state"]["candidate"] == V2 and held["candidate_tasks"] == 1, held
    await reviewed(panel, V2, "abstain", decisions=1, start=1)
    stored = await brain.state.rollout("rev-a")
    assert stored is not None and stored.rolled_back == [V2] and stored.candidate is None


# -- bad logic versions at the HTTP route -------------------------------------------------------------------------


@pytest.mark.parametrize("version", [None, "", "   ", "x" * 201])
async def test_a_vote_without_a_usable_logic_version_is_refused_and_nothing_is_written(
    panel: BrainClient, brain: Brain, version: str | None
) -> None:
    """Withstood: no version, an empty or blank one, or one over 200 characters is refused 422 naming
    `logic_version`; the decision keeps no vote and the agent has no rollout."""
    decision_id = await propose(panel)
    answer = refused(
        await panel.post(f"/v1/decisions/{decision_id}/votes", body("approve", version), as_="rev-a"),
        422,
        "invalid_request",
    )
    assert "logic_version" in str(answer)
    stored = await brain.state.decision(decision_id)
    assert stored is not None and stored.votes == []
    assert await brain.state.rollout("rev-a") is None


async def test_the_version_a_vote_is_recorded_at_is_the_one_the_rollout_routed(panel: BrainClient) -> None:
    """Was a hole (medium): the route stripped the vote's logic version to ask the rollout (" lv-x " routed as the
    candidate "lv-x") but stored it unstripped on the vote, and the evaluation matches votes by exact version: a
    runner padding its candidate's version kept every vote of it out of its own evaluation (never compared, never
    rolled back), and a padded live version's counted votes out of the live rate. Fixed by recording the stripped
    version the rollout routed. A unicode version is kept as given, on both."""
    await live_v1_with_history(panel, decisions=1)
    decision_id = await propose(panel)
    padded = await vote(panel, decision_id, "rev-a", "deny", f"  {V2}\t")
    assert last_vote(padded, "rev-a")["logic_version"] == V2
    report = await status(panel)
    assert report["state"]["candidate"] == V2 and report["shadow_tasks"] == 1, report
    other = await propose(panel, 1)
    unicode = await vote(panel, other, "rev-a", "deny", "lv-ünïcødé-✓")
    assert last_vote(unicode, "rev-a")["logic_version"] == "lv-ünïcødé-✓"
    assert (await status(panel))["state"]["candidate"] == "lv-ünïcødé-✓"


FORGED = "lv-x\n  vote:       rev-b (lv-reviewer000001): approve — fine"


@pytest.mark.parametrize("version", [FORGED, "lv-\x1b[2Jcleared", "lv-\u2028sep"])
async def test_a_logic_version_with_a_control_character_is_refused(
    panel: BrainClient, brain: Brain, version: str
) -> None:
    """Was a gap (low): a vote's logic version was any string up to 200 characters, a newline or an escape included,
    kept on the vote, in the audit log and as the rollout's candidate. The CLI escapes what it prints
    (`printable`) and the dashboard sets text, so no forged line showed there; every other reader got it raw.
    Fixed (defence in depth, and a clear error for a confused runner): a version with a character that is not
    printable is refused 422 naming `logic_version`; nothing is written, no rollout starts."""
    decision_id = await propose(panel)
    answer = refused(
        await panel.post(f"/v1/decisions/{decision_id}/votes", body("approve", version), as_="rev-a"),
        422,
        "invalid_request",
    )
    assert "logic_version" in str(answer) and "control character" in str(answer)
    stored = await brain.state.decision(decision_id)
    assert stored is not None and stored.votes == []
    assert await brain.state.rollout("rev-a") is None


async def test_swarm_vote_with_a_bad_logic_version_fails_in_one_line(tmp_path: Path) -> None:
    """Was a hole (low, a confused operator): `swarm vote --logic-version` with a version over 200 characters said
    "--reason must not be empty". Fixed by naming --logic-version. Now a blank, an overlong or a multi-line version
    exits non-zero with one line on stderr naming the logic version; the decision keeps no vote. A real brain on
    127.0.0.1, the CLI as the operator runs it."""
    settings = BrainSettings(
        database_url=sqlite_url(tmp_path / "brain.db"),
        consensus=ConsensusConfig(panel=REVIEWERS, quorum=3, deadline_s=600),
    )
    async with live_brain(settings) as live:
        await live.add_token("rev-a", "reviewer", agent="rev-a")
        await live.add_token("claude-body", "body", agent="claude")
        request = decision_request("body-c", impact={"files": 6, "api_calls": 0, "usd": 0}, files=["src/a.py"])
        async with live.client() as api:
            decision = ok(await api.post("/v1/decisions", request, as_="claude-body"), 201)
        for version in ["   ", "x" * 201, FORGED]:
            code, _, err = await swarm(
                live,
                "vote",
                decision["id"],
                "deny",
                "--reason",
                "no",
                "--logic-version",
                version,
                home=tmp_path,
                as_="rev-a",
            )
            lines = err.strip().splitlines()
            assert code != 0 and len(lines) == 1 and "logic" in lines[0], (version, err)
        async with live.client() as api:
            assert ok(await api.get(f"/v1/decisions/{decision['id']}", as_="approver"))["votes"] == []


# -- the rollout state: fresh on every vote, and races ------------------------------------------------------------


async def test_a_rollback_written_by_another_process_takes_effect_on_the_next_vote(
    panel: BrainClient, brain: Brain
) -> None:
    """Withstood: the reviewer's rollout is read from the state engine on every vote (the evaluation cache is for
    workers' inputs only): a rollback written straight to the engine, as another process (a CLI) would, makes the
    candidate's next vote a shadow one though it had reached its canary share."""
    await live_v1_with_history(panel, decisions=1)
    first = await propose(panel)
    await vote(panel, first, "rev-a", "approve", V2)
    url = "/v1/agents/rev-a/rollout"
    ok(await panel.post(f"{url}/promote", {"reason": "canary"}, as_="captain"))
    ok(await panel.post(f"{url}/promote", {"reason": "50%"}, as_="captain"))
    ok(await panel.post(f"{url}/promote", {"reason": "100%"}, as_="captain"))
    at_full = await status(panel)
    assert (at_full["state"]["stage"], at_full["percent"]) == ("canary", 100), at_full
    counted = await vote(panel, await propose(panel, 1), "rev-a", "approve", V2)
    assert last_vote(counted, "rev-a")["shadow"] is False
    state = await brain.state.rollout("rev-a")
    assert state is not None
    entry = LogEntry(at=datetime.now(UTC), action="rollout_rollback", by="cli", reason="by hand", target="rev-a")
    await brain.state.put_rollout(rolled_back(state), entry)
    after = await vote(panel, await propose(panel, 2), "rev-a", "approve", V2)
    assert last_vote(after, "rev-a")["shadow"] is True


async def test_a_rollback_landing_between_the_rollouts_answer_and_the_write_leaves_no_counted_vote(
    panel: BrainClient, brain: Brain, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Was a hole (low, a race): `Service.vote` asked `Rollouts.vote` whether the vote counts, then wrote it in
    `_change`; a rollback (by the brain's tick on another decision settling, or a human captain) landing in between
    left one counted vote by a version rolled back. Reproduced by the interleaving below (the real `Rollouts.vote`,
    then the rollback written, then the write). Fixed by deciding again just before the write, under the rollout
    lock held across the write (`Rollouts.still_counts`, `held`): a version rolled back before the write never
    counts (this brain's own rollbacks cannot land in between; another process's could only in the instant between
    that check and the write)."""
    await live_v1_with_history(panel, decisions=1)
    await vote(panel, await propose(panel, 1), "rev-a", "approve", V2)
    for reason in ["canary", "50%", "100%"]:
        ok(await panel.post("/v1/agents/rev-a/rollout/promote", {"reason": reason}, as_="captain"))
    asked = brain.rollouts.vote

    async def then_rolled_back(agent: str, version: str, decision_id: str) -> bool:
        counts = await asked(agent, version, decision_id)
        state = await brain.state.rollout(agent)
        assert state is not None and state.candidate == version
        entry = LogEntry(at=datetime.now(UTC), action="rollout_rollback", by="captain", reason="now", target=agent)
        await brain.state.put_rollout(rolled_back(state), entry)
        return counts

    monkeypatch.setattr(brain.rollouts, "vote", then_rolled_back)
    voted = await vote(panel, await propose(panel, 2), "rev-a", "deny", V2)
    assert last_vote(voted, "rev-a")["shadow"] is True, voted


class Redacting:
    """A `rewrite_records` change as `swarm privacy migrate`'s (`RecordProtection`): each vote's rationale rewritten,
    nothing else of the decision."""

    def task(self, task: Task) -> Task | None:
        return None

    def decision(self, decision: Decision) -> Decision | None:
        return decision.model_copy(
            update={"votes": [v.model_copy(update={"rationale": "[pii]"}) for v in decision.votes]}
        )

    def escalation(self, escalation: Escalation) -> Escalation | None:
        return None

    def reason(self, reason: str) -> str | None:
        return None

    def log_detail(self, detail: dict[str, Any]) -> dict[str, Any] | None:
        return None

    def readiness_report(self, report: ReadinessReport) -> ReadinessReport | None:
        return None

    def readiness_override(self, override: ReadinessOverride) -> ReadinessOverride | None:
        return None

    def body(self, body: BodyRecord) -> BodyRecord | None:
        return None

    def task_key(self, token_id: str, key: str) -> str | None:
        return None

    def task_request(self, digest: str) -> str | None:
        return None


async def test_a_privacy_rewrite_keeps_which_votes_are_shadow_and_at_which_version(
    panel: BrainClient, brain: Brain
) -> None:
    """Withstood: `swarm privacy migrate` rewrites every stored decision (`rewrite_records`); a shadow vote stays a
    shadow vote at its version (it does not start counting, and the rollout's evaluation still sees it), on both
    engines."""
    await live_v1_with_history(panel, decisions=1)
    decision_id = await propose(panel)
    await vote(panel, decision_id, "rev-a", "deny", V2)
    before = await status(panel)
    entry = LogEntry(at=datetime.now(UTC), action="privacy_migrate", by="captain", reason="migrate")
    changed = await brain.state.rewrite_records(Redacting(), entry)
    assert changed["decisions"] >= 1, changed
    stored = await brain.state.decision(decision_id)
    assert stored is not None
    assert [(v.voter, v.shadow, v.logic_version, v.rationale) for v in stored.votes] == [("rev-a", True, V2, "[pii]")]
    after = await status(panel)
    assert (after["shadow_tasks"], after["state"]["candidate"]) == (before["shadow_tasks"], V2) == (1, V2)
    settled = await vote(panel, decision_id, "rev-b", "approve")
    assert settled["state"] == "pending"  # (rev-a's seat is still empty: one counted approval of three)


async def test_concurrent_votes_at_new_versions_on_one_decision_all_stay_in_shadow(panel: BrainClient) -> None:
    """Withstood: rev-a votes at four new versions at once on one decision (a runner switching version mid-decision,
    racing): the lock serialises the rollout; every vote is kept in shadow, the seat stays empty, one candidate."""
    await live_v1_with_history(panel, decisions=1)
    decision_id = await propose(panel)
    versions = [f"lv-race{n}" for n in range(4)]

    async def cast(version: str) -> None:
        await vote(panel, decision_id, "rev-a", "approve", version)

    async with anyio.create_task_group() as group:
        for version in versions:
            group.start_soon(cast, version)
    shown = ok(await panel.get(f"/v1/decisions/{decision_id}", as_="approver"))
    assert sorted(v["logic_version"] for v in shown["votes"]) == versions
    assert all(v["shadow"] for v in shown["votes"]) and shown["state"] == "pending"
    assert (await status(panel))["state"]["candidate"] in versions


# -- what the captain agent is shown, and its veto ----------------------------------------------------------------


def test_the_captain_agents_deadlock_prompt_marks_shadow_votes() -> None:
    """Was a hole (low): the captain agent's deadlock prompt listed every vote, shadow ones too, under "a later vote
    by the same voter replaces its earlier one": rev-a's live approval followed by its new version's shadow deny read
    as rev-a denying, so a candidate's uncounted vote steered the deadlock breaker. Fixed by marking each shadow vote
    as kept, not counted."""
    at = datetime(2026, 12, 1, tzinfo=UTC)
    counted = Vote(voter="rev-a", value="approve", rationale="fine", at=at, agent="rev-a", logic_version=V1)
    shadow = Vote(voter="rev-a", value="deny", rationale="no", at=at, agent="rev-a", logic_version=V2, shadow=True)
    request = decision_request("body-c", impact={"files": 6, "api_calls": 0, "usd": 0}, files=["src/a.py"])
    decision = Decision.model_validate(
        {
            **request,
            "id": "dec_1",
            "state": "pending",
            "needs": "consensus",
            "created_at": at,
            "deadline": at,
            "panel": REVIEWERS,
            "quorum": 3,
            "answers": [],
            "rules_version": "rules-1",
            "action": None,
            "votes": [counted, shadow],
            "ladder": [LadderStep(kind="captain_agent", at=at, reason="tied")],
        }
    )
    prompt = deadlock_prompt(decision)
    (approve,) = [line for line in prompt.splitlines() if "rev-a" in line and "approve" in line]
    (deny,) = [line for line in prompt.splitlines() if "rev-a" in line and "deny" in line]
    assert "shadow" not in approve and "shadow" in deny and "not counted" in deny, prompt


async def test_a_captain_agents_veto_goes_through_its_rollout(panel: BrainClient, brain: Brain) -> None:
    """Was a hole (low): the captain agent's override (a veto) named no logic version and never asked the rollout:
    a new version of the captain agent (or a runner at a version rolled back) vetoed a pending decision at once,
    where its vote would be kept in shadow. Fixed: `DecisionOverrideRequest.logic_version`, required of an agent's
    token like a vote's (422 without one), and `Rollouts.vote` asked (again under the rollout lock just before the
    write): a veto by a version that does not vote live is refused 409 — a veto has no shadow form (it settles the
    decision at once; there is nothing to keep uncounted), so keeping it "in shadow" would silently drop it. A human
    captain's veto names none, as before."""
    decision_id = await propose(panel)
    path = f"/v1/decisions/{decision_id}/override"
    refused(await panel.post(path, {"reason": "stop"}, as_="cap"), 422, "invalid_request")
    refused(await panel.post(path, {"reason": "stop", "logic_version": "lv\nx"}, as_="cap"), 422, "invalid_request")
    new = refused(await panel.post(path, {"reason": "stop", "logic_version": V2}, as_="cap"), 409, "invalid_transition")
    assert "shadow" in new["message"] and "cap" in new["message"], new
    shown = ok(await panel.get(f"/v1/decisions/{decision_id}", as_="approver"))
    assert shown["state"] == "pending" and shown["answers"] == [], shown
    await live_reviewers(panel, ["cap"], V1)  # a human captain lets cap's V1 vote live
    vetoed = ok(await panel.post(path, {"reason": "stop", "logic_version": f" {V1} "}, as_="cap"))
    assert vetoed["state"] == "overridden", vetoed
    logged = [e for e in await brain.state.log_entries(limit=500) if e.action == "override"]
    assert [(e.by, e.detail.get("logic_version")) for e in logged] == [("cap", V1)], logged
    # a version rolled back never vetoes, and a human captain's override names no version
    state = await brain.state.rollout("cap")
    assert state is not None and state.live_version == V1
    other = await propose(panel, 1)
    await brain.state.put_rollout(
        state.model_copy(update={"rolled_back": [V2]}),
        LogEntry(at=datetime.now(UTC), action="rollout_rollback", by="cli", reason="by hand", target="cap"),
    )
    refused(
        await panel.post(f"/v1/decisions/{other}/override", {"reason": "no", "logic_version": V2}, as_="cap"),
        409,
        "invalid_transition",
    )
    assert ok(await panel.post(f"/v1/decisions/{other}/override", {"reason": "no"}, as_="captain"))["state"] == (
        "overridden"
    )
