"""A decision's life (shared_protocol.decisions), as pure functions: no store, no clock but the one passed in."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from shared_protocol import Impact
from shared_protocol.decisions import (
    DEADLINE,
    FINAL_STATES,
    RULES,
    RULES_VERSION,
    AnswerKind,
    Decision,
    DecisionRequest,
    DecisionState,
    answer,
    expire,
    is_due,
    new_decision,
    tally,
)
from shared_protocol.exceptions import AnswerRefused

T0 = datetime(2030, 1, 1, tzinfo=UTC)
HOUR = 3600


def ask(*, confidence: float = 0.9, deadline_s: int | None = None, **impact: float) -> Decision:
    request = DecisionRequest(
        summary="do it",
        rationale="because",
        confidence=confidence,
        impact=Impact.model_validate(impact),
        agent="agent-1",
        body_id="body-1",
        deadline_s=deadline_s,
    )
    return new_decision(request, decision_id="dec_1", now=T0, default_deadline_s=HOUR)


def pending() -> Decision:
    return ask(confidence=0.5)


def in_state(state: DecisionState) -> Decision:
    """A decision brought to `state` by the lifecycle itself."""
    decision = pending()
    if state == "approved":
        return answer(decision, "approve", by="alice", reason="ok", now=T0)
    if state == "denied":
        return answer(decision, "deny", by="alice", reason="no", now=T0)
    if state == "expired":
        return expire(decision, T0 + timedelta(seconds=HOUR))
    if state == "overridden":
        return answer(decision, "override", by="carol", reason="veto", now=T0)
    return decision


def test_a_request_that_needs_nobody_is_approved_by_the_rules_at_once() -> None:
    decision = ask(files=1)
    assert (decision.needs, decision.state, decision.rules_version) == ("none", "approved", RULES_VERSION)
    assert [(a.verdict, a.by, a.at) for a in decision.answers] == [("approved", RULES, T0)]


def test_a_request_over_the_blast_radius_is_denied_by_the_rules_at_once() -> None:
    decision = ask(files=11)
    assert (decision.needs, decision.state) == ("blocked", "denied")
    assert [(a.verdict, a.by) for a in decision.answers] == [("denied", RULES)]


def test_a_request_that_needs_a_human_waits_with_no_answer_until_the_default_deadline() -> None:
    decision = pending()
    assert (decision.needs, decision.state, decision.answers) == ("human", "pending", [])
    assert (decision.created_at, decision.deadline) == (T0, T0 + timedelta(seconds=HOUR))


def test_a_request_may_ask_for_its_own_deadline() -> None:
    assert ask(confidence=0.5, deadline_s=60).deadline == T0 + timedelta(seconds=60)


@pytest.mark.parametrize(("kind", "state"), [("approve", "approved"), ("deny", "denied")])
def test_a_person_approves_or_denies_a_pending_decision_and_is_recorded(kind: AnswerKind, state: str) -> None:
    decision = answer(pending(), kind, by="alice", role="approver", token_id="tok_1", reason="read it", now=T0)
    assert decision.state == state
    last = decision.answers[-1]
    assert (last.verdict, last.by, last.role, last.token_id, last.reason, last.at) == (
        state,
        "alice",
        "approver",
        "tok_1",
        "read it",
        T0,
    )


@pytest.mark.parametrize("state", ["approved", "denied", "expired", "overridden"])
@pytest.mark.parametrize("kind", ["approve", "deny"])
def test_approve_and_deny_are_refused_once_a_decision_is_not_pending(kind: AnswerKind, state: DecisionState) -> None:
    decision = in_state(state)
    with pytest.raises(AnswerRefused) as refused:
        answer(decision, kind, by="bob", reason="late", now=T0)
    assert (refused.value.code, refused.value.decision_id) == ("not_pending", decision.id)


@pytest.mark.parametrize("state", ["pending", "approved"])
def test_a_captain_overrides_a_decision_not_yet_final_even_an_approved_one(state: DecisionState) -> None:
    decision = answer(in_state(state), "override", by="carol", role="captain", reason="veto", now=T0)
    assert (decision.state, decision.answers[-1].by, decision.answers[-1].role) == ("overridden", "carol", "captain")


@pytest.mark.parametrize("state", sorted(FINAL_STATES))
def test_an_override_of_a_final_decision_is_refused_as_already_final(state: DecisionState) -> None:
    with pytest.raises(AnswerRefused) as refused:
        answer(in_state(state), "override", by="carol", reason="veto", now=T0)
    assert refused.value.code == "already_final"


def test_the_final_states_are_exactly_those_no_answer_leaves() -> None:
    states: list[DecisionState] = ["pending", "approved", "denied", "expired", "overridden"]
    kinds: list[AnswerKind] = ["approve", "deny", "override"]

    def leaves(state: DecisionState) -> bool:
        for kind in kinds:
            try:
                answer(in_state(state), kind, by="x", reason="y", now=T0)
            except AnswerRefused:
                continue
            return True
        return False

    assert {state for state in states if not leaves(state)} == FINAL_STATES


def test_a_pending_decision_is_due_from_its_deadline_on() -> None:
    decision = pending()
    assert not is_due(decision, decision.deadline - timedelta(microseconds=1))
    assert is_due(decision, decision.deadline)
    assert not is_due(in_state("approved"), decision.deadline)


def test_a_due_decision_expires_to_a_denial_by_the_deadline() -> None:
    decision = expire(pending(), T0 + timedelta(seconds=HOUR))
    assert decision.state == "expired"
    assert [(a.verdict, a.by) for a in decision.answers] == [("expired", DEADLINE)]


def test_expiring_an_answered_decision_is_refused_and_expiring_early_is_a_bug() -> None:
    with pytest.raises(AnswerRefused) as refused:
        expire(in_state("approved"), T0 + timedelta(seconds=HOUR))
    assert refused.value.code == "not_pending"
    with pytest.raises(ValueError):
        expire(pending(), T0 + timedelta(seconds=HOUR - 1))


@pytest.mark.parametrize(("kind", "code"), [("approve", "not_pending"), ("override", "already_final")])
def test_an_answer_after_the_deadline_is_refused_even_before_the_expiry_is_stored(kind: AnswerKind, code: str) -> None:
    with pytest.raises(AnswerRefused) as refused:
        answer(pending(), kind, by="alice", reason="late", now=T0 + timedelta(seconds=HOUR))
    assert refused.value.code == code


def test_every_step_appends_one_answer_and_the_state_is_their_tally() -> None:
    assert tally([]) == "pending"
    steps = [pending()]
    steps.append(answer(steps[-1], "approve", by="alice", reason="ok", now=T0))
    steps.append(answer(steps[-1], "override", by="carol", reason="veto", now=T0 + timedelta(seconds=1)))
    for before, after in itertools.pairwise(steps):
        assert after.answers[: len(before.answers)] == before.answers
        assert len(after.answers) == len(before.answers) + 1
    assert [d.state for d in steps] == [tally(d.answers) for d in steps] == ["pending", "approved", "overridden"]


def test_an_answer_leaves_the_decision_it_was_given_as_it_was() -> None:
    decision = pending()
    answer(decision, "approve", by="alice", reason="ok", now=T0)
    assert (decision.state, decision.answers) == ("pending", [])
