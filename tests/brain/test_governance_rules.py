"""`brain_server.governance` as pure functions: the rule reviewers, the panel's settling, the ladder's timing, and
who may override what (no store, no clock: every time is given)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from brain_server import governance
from brain_server.exceptions import AlreadyFinal, Forbidden, NotPending
from brain_server.governance import Context, Voter
from shared_protocol import decisions
from shared_protocol.config import ConsensusConfig
from shared_protocol.decisions import DEFAULT_THRESHOLDS, Decision, DecisionRequest

T0 = datetime(2026, 1, 1, tzinfo=UTC)
NO_CAPTAIN = Context(captain_agents=False)
CAPTAIN = Context(captain_agents=True, priority=120.0)
AGENTS = ConsensusConfig(panel=["a", "b", "c", "d", "e"], quorum=3, deadline_s=600)


def _named(count: int) -> list[str]:
    return [f"src/m{n}.py" for n in range(count)]


def request(**changes: Any) -> DecisionRequest:
    fields: dict[str, Any] = {
        "summary": "s",
        "rationale": "r",
        "confidence": 0.9,
        "impact": {"files": 6},
        "agent": "claude",
        "body_id": "body-a",
        **changes,
    }
    return DecisionRequest.model_validate(fields)


def new(consensus: ConsensusConfig = AGENTS, context: Context = NO_CAPTAIN, **changes: Any) -> Decision:
    asked = request(**changes)
    decision = decisions.new_decision(asked, decision_id="dec_1", now=T0, default_deadline_s=3600)
    needs_human = governance.human_required(asked.impact.usd, asked.confidence, asked.irreversible, DEFAULT_THRESHOLDS)
    return governance.open_panel(
        decision, consensus=consensus, needs_human=needs_human, thresholds=DEFAULT_THRESHOLDS, context=context, now=T0
    )


def agent(name: str, *, captain: bool = False) -> Voter:
    return Voter(seat=name, name=name, role="reviewer", token_id=f"tok_{name}", agent=name, captain_agent=captain)


def human(label: str, role: str = "approver") -> Voter:
    return Voter(seat=governance.human_seat(label), name=label, role=role, token_id=f"tok_{label}")  # type: ignore[arg-type]


def cast(decision: Decision, voter: Voter, value: str, *, at: float = 1, context: Context = NO_CAPTAIN) -> Decision:
    return governance.cast(
        decision,
        voter,
        value,
        reason=f"{voter.name}: {value}",
        now=T0 + timedelta(seconds=at),
        context=context,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("seat", "changes", "expected"),
    [
        ("rules:cost", {"impact": {"files": 6, "usd": 25}}, "approve"),
        ("rules:cost", {"impact": {"files": 6, "usd": 26}}, "deny"),
        ("rules:files", {"impact": {"files": 7}, "files": _named(7)}, "approve"),
        ("rules:files", {"impact": {"files": 8}, "files": _named(8)}, "deny"),
        ("rules:files", {"impact": {"files": 7}, "files": _named(6)}, "abstain"),  # a count it cannot check
        ("rules:files", {"impact": {"files": 7}}, "abstain"),
        ("rules:paths", {"impact": {"files": 0, "usd": 60}}, "abstain"),  # no file: nothing to judge
        ("rules:paths", {}, "deny"),  # six files, none named: the unnamed cannot be judged safe
        ("rules:paths", {"files": ["src/a.py", "docs/"]}, "deny"),  # two named of six
        ("rules:paths", {"impact": {"files": 2}, "files": ["src/a.py", "docs/"]}, "approve"),
        ("rules:paths", {"files": [*_named(5), "config/.env.prod"]}, "deny"),
        ("rules:paths", {"files": ["db/migrations/0003.sql"]}, "deny"),
        ("rules:confidence", {"confidence": 0.8}, "approve"),
        ("rules:confidence", {"confidence": 0.79}, "deny"),
    ],
)
def test_each_rule_reviewer_votes_by_its_own_policy_with_a_rationale(
    seat: str, changes: dict[str, Any], expected: str
) -> None:
    decision = decisions.new_decision(request(**changes), decision_id="d", now=T0, default_deadline_s=60)
    value, why = governance.rule_vote(seat, decision, task_value=None, thresholds=DEFAULT_THRESHOLDS)
    assert value == expected and why


@pytest.mark.parametrize(
    ("value", "usd", "expected"),
    [(None, 10, "abstain"), (0, 10, "abstain"), (100, 10, "approve"), (15, 10, "abstain"), (5, 10, "deny")],
)
def test_the_value_reviewer_weighs_the_tasks_value_against_the_cost(
    value: float | None, usd: float, expected: str
) -> None:
    decision = decisions.new_decision(
        request(impact={"files": 6, "usd": usd}), decision_id="d", now=T0, default_deadline_s=60
    )
    assert governance.rule_vote("rules:value", decision, task_value=value, thresholds=DEFAULT_THRESHOLDS)[0] == expected
    with pytest.raises(ValueError, match="rules:nope"):
        governance.rule_vote("rules:nope", decision, task_value=value, thresholds=DEFAULT_THRESHOLDS)


def test_the_default_panel_of_rule_reviewers_settles_at_creation_both_ways() -> None:
    default = ConsensusConfig()
    approved = new(default, files=_named(6), context=Context(captain_agents=False, priority=50.0))
    assert approved.state == "approved" and approved.answers[-1].by == governance.PANEL
    assert {v.voter: v.value for v in approved.votes} == dict.fromkeys(default.panel, "approve")
    assert all(v.rationale and v.logic_version == decisions.RULES_VERSION and v.role is None for v in approved.votes)
    denied = new(default, impact={"files": 9, "usd": 40}, confidence=0.75, files=_named(9))
    assert denied.state == "denied" and "the panel denied" in denied.answers[-1].reason
    assert denied.deadline == T0 + timedelta(seconds=3 * default.deadline_s)  # three steps of the ladder, at least


def test_a_decision_without_consensus_gets_no_panel_and_a_human_settles_it() -> None:
    decision = new(impact={"files": 1}, confidence=0.5)
    assert (decision.needs, decision.panel, decision.quorum_deadline) == ("human", [], None)
    assert cast(decision, human("h"), "abstain").state == "pending"
    with pytest.raises(Forbidden):
        cast(decision, agent("a"), "approve")
    assert cast(decision, human("h"), "approve").state == "approved"
    assert cast(decision, human("h"), "deny").state == "denied"


def test_votes_close_at_the_deadline_and_on_a_settled_decision() -> None:
    decision = new()
    with pytest.raises(NotPending):
        cast(decision, agent("a"), "approve", at=3600)
    settled = cast(cast(cast(decision, agent("a"), "approve"), agent("b"), "approve"), agent("c"), "approve")
    assert settled.state == "approved"
    assert governance.settle(settled, T0, context=NO_CAPTAIN) is settled
    with pytest.raises(NotPending):
        cast(settled, agent("d"), "deny")


def test_the_ladder_waits_while_the_quorum_holds_for_a_human_and_steps_only_when_due() -> None:
    waiting = new(confidence=0.6)
    for name in "abc":
        waiting = cast(waiting, agent(name), "approve")
    assert waiting.state == "pending" and waiting.human_required
    assert governance.advance(waiting, T0 + timedelta(seconds=600), context=CAPTAIN) is None
    assert governance.advance(waiting, T0 + timedelta(seconds=3600), context=CAPTAIN) is None  # due: expire instead
    idle = new()
    assert governance.advance(idle, T0 + timedelta(seconds=599), context=CAPTAIN) is None
    at_captain = governance.advance(idle, T0 + timedelta(seconds=600), context=CAPTAIN)
    assert at_captain is not None and governance.stage(at_captain) == "captain_agent"
    assert governance.advance(at_captain, T0 + timedelta(seconds=1199), context=CAPTAIN) is None
    at_human = governance.advance(at_captain, T0 + timedelta(seconds=1200), context=CAPTAIN)
    assert at_human is not None and [s.kind for s in at_human.ladder][-2:] == ["priority", "human_captain"]
    assert "task value $120.00" in at_human.ladder[-2].reason
    assert governance.advance(at_human, T0 + timedelta(seconds=2000), context=CAPTAIN) is None
    assert governance.advance(new(impact={"files": 1}, confidence=0.5), T0 + timedelta(days=1), context=CAPTAIN) is None
    expired = governance.expire(at_human, T0 + timedelta(seconds=3600))
    assert (expired.state, expired.ladder[-1].kind) == ("expired", "denied")
    assert governance.expire(idle, T0 + timedelta(seconds=3600)).ladder == []


def test_only_the_captain_agent_breaks_a_deadlock_at_its_step_and_abstaining_breaks_nothing() -> None:
    decision = new()
    for name, value in zip("abcde", ["approve", "approve", "deny", "deny", "abstain"], strict=True):
        decision = cast(decision, agent(name), value, context=CAPTAIN)
    assert governance.stage(decision) == "captain_agent"
    assert cast(decision, agent("cap", captain=True), "abstain", context=CAPTAIN).state == "pending"
    assert cast(decision, human("boss", "captain"), "approve", context=CAPTAIN).state == "pending"  # not its step
    assert cast(decision, agent("cap", captain=True), "deny", context=CAPTAIN).state == "denied"


def test_overrides_follow_who_may_reverse_whom() -> None:
    decision = new()
    alice, bob = human("alice", "captain"), human("bob", "captain")
    with pytest.raises(Forbidden):
        governance.override(decision, "veto", human("ann"), reason="r", now=T0)
    vetoed = governance.override(decision, "veto", agent("cap", captain=True), reason="r", now=T0)
    assert vetoed.state == "overridden"
    forced = governance.override(vetoed, "force", alice, reason="r", now=T0)  # a captain agent's veto: any captain
    with pytest.raises(Forbidden):
        governance.override(forced, "veto", alice, reason="r", now=T0)
    with pytest.raises(AlreadyFinal):
        governance.override(forced, "force", bob, reason="r", now=T0)
    assert governance.override(forced, "veto", bob, reason="r", now=T0).state == "overridden"
    denied = cast(cast(cast(decision, agent("a"), "deny"), agent("b"), "deny"), agent("c"), "deny")
    with pytest.raises(AlreadyFinal):
        governance.override(denied, "veto", alice, reason="r", now=T0)
    assert governance.override(denied, "force", alice, reason="r", now=T0).state == "approved"
    with pytest.raises(AlreadyFinal):  # past its deadline it is expired: nothing to veto
        governance.override(decision, "veto", alice, reason="r", now=T0 + timedelta(hours=1))
