"""Governance: how votes, a panel, a deadlock's ladder and a captain's override move a decision.

Pure functions over `Decision` (no store, no clock: `now` is given); `Brain` loads, calls one of these, and
compare-and-sets what it returns. A decision at the consensus thresholds gets a panel (`[consensus] panel`) and a
quorum; the brain's rule reviewers on it vote as it is created. Then:

    pending ──a human denies──────────────────────────────────────────▶ denied
    pending ──quorum approves (and a human, when one is required)─────▶ approved        (by `panel`)
    pending ──quorum denies, or the quorum can no longer be reached───▶ denied          (by `panel`)
    pending ──a tie, or no quorum by the panel's deadline─────────────▶ the ladder:
        deadlock → captain_agent (a captain agent exists and no human is required; it may approve or deny)
                 → priority (the task's value orders the inbox: it never approves)
                 → human_captain (paged; a human captain's approve or deny settles it)
                 → denied (the decision's deadline: silence is never consent)

The rule reviewers never approve what they were not shown: `rules:paths` denies a change naming fewer paths than
its `impact.files` (the unnamed cannot be judged safe) and `rules:files` abstains on a count it cannot check; and
such a decision, when rule reviewers sit on its panel, also needs a human's approval (`paths_unnamed`), so seats
judging the proposer's own numbers (`cost`, `confidence`, `value`) never approve it alone: the unknown goes to a
human, and silence denies.

A reviewer agent's vote at a logic version that does not vote live on the decision (`Rollouts.vote`) is a shadow
vote: kept on the decision, counted nowhere (`shared_protocol.consensus.latest` skips it), breaking no deadlock.

A decision that needs a human and no panel is settled by the first human's approve or deny, as before votes.
A captain's override (`override`) takes any decision: a human captain vetoes or forces it; the captain agent may
veto only, and never what a human captain said (an override, an answer that settled it, an approving vote):
that is reversed only by another human captain.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from fnmatch import fnmatch

from shared_protocol import decisions
from shared_protocol.config import ConsensusConfig
from shared_protocol.consensus import HUMAN_SEAT, Count, count, latest
from shared_protocol.decisions import (
    Answer,
    ApprovalThresholds,
    Decision,
    DecisionState,
    LadderStep,
    LadderStepKind,
    OverrideAction,
    Role,
    Verdict,
    Vote,
    VoteValue,
)

from .exceptions import AlreadyFinal, Forbidden, NotPending

PANEL: str = "panel"
"""`Answer.by` when the panel's count settled a decision."""

PROTECTED_PATTERNS: tuple[str, ...] = (
    ".env*",
    "*.pem",
    "*.key",
    "*id_rsa*",
    "*secret*",
    ".github/*",
    "swarm.toml",
    ".mcp.json",
    "*migrations/*",
)
"""Paths the `rules:paths` reviewer will not approve a change to (matched against each path and its name)."""

CONFIDENT = 0.8
"""The stated confidence the `rules:confidence` reviewer approves from."""

HUMAN_ROLES: frozenset[Role] = frozenset({"approver", "captain"})


@dataclass(kw_only=True, frozen=True)
class Voter:
    """Who votes, from their token: never from the request."""

    seat: str
    """`Vote.voter`: an agent's name (a reviewer token), or `human:<label>`."""
    name: str
    """Recorded as `Answer.by` when their vote settles a decision."""
    role: Role
    token_id: str
    agent: str | None = None
    captain_agent: bool = False
    """A reviewer token of an agent whose `[[agents]] role` is captain."""

    @property
    def human(self) -> bool:
        return self.role in HUMAN_ROLES


def human_seat(label: str) -> str:
    return f"{HUMAN_SEAT}{label}"


@dataclass(kw_only=True, frozen=True)
class Context:
    """What the rules outside a decision say about it: passed in, so these functions stay pure."""

    captain_agents: bool
    """Whether a captain agent exists (`[[agents]] role = "captain"`) to take a deadlock's first step."""
    priority: float | None = None
    """The value of the task the proposing body works on (None: none known): orders the inbox, never approves."""


# --- the rule reviewers -----------------------------------------------------------------


def rule_vote(
    seat: str, decision: Decision, *, task_value: float | None, thresholds: ApprovalThresholds
) -> tuple[VoteValue, str]:
    """The vote and rationale of one of the brain's rule reviewers (`shared_protocol.consensus.RULE_REVIEWERS`)."""
    impact, t = decision.impact, thresholds
    if seat == "rules:cost":  # cost-conservative
        if impact.usd <= t.consensus_usd / 2:
            return "approve", f"${impact.usd:.2f} is at most half the consensus threshold (${t.consensus_usd:.2f})"
        return "deny", f"${impact.usd:.2f} is over half the consensus threshold (${t.consensus_usd:.2f})"
    if seat == "rules:files":  # file-count
        named = len(set(decision.files))
        if named < impact.files:
            return "abstain", (
                f"the request names {named} of the {impact.files} paths it claims to change: the count is the "
                "proposer's word, unchecked"
            )
        limit = (t.consensus_files + t.blocked_files) / 2
        if impact.files < limit:
            return "approve", f"{impact.files} files: under {limit:g}, midway to the blast radius ({t.blocked_files})"
        return "deny", f"{impact.files} files: at least {limit:g}, too near the blast radius ({t.blocked_files})"
    if seat == "rules:paths":  # protected-path-averse
        touchy = [path for path in decision.files if _protected(path)]
        if touchy:
            return "deny", f"touches sensitive paths: {', '.join(sorted(touchy)[:5])}"
        named = len(set(decision.files))
        if named < impact.files:  # unnamed paths cannot be judged safe: the unknown never approves
            return "deny", f"names {named} of the {impact.files} paths it changes: the unnamed cannot be judged safe"
        if not decision.files:
            return "abstain", "the request names no paths and changes no file, so there is nothing to judge"
        return "approve", f"none of its {len(decision.files)} paths is sensitive"
    if seat == "rules:confidence":  # confidence-based
        if decision.confidence >= CONFIDENT:
            return "approve", f"stated confidence {decision.confidence:.2f} is at least {CONFIDENT:.2f}"
        return "deny", f"stated confidence {decision.confidence:.2f} is under {CONFIDENT:.2f}"
    if seat == "rules:value":  # value-vs-cost
        if task_value is None or task_value <= 0:
            return "abstain", "no task value known to weigh the cost against"
        if task_value >= 2 * impact.usd:
            return "approve", f"the task's value ${task_value:.2f} is at least twice the cost ${impact.usd:.2f}"
        if task_value < impact.usd:
            return "deny", f"the task's value ${task_value:.2f} is less than the cost ${impact.usd:.2f}"
        return "abstain", f"the task's value ${task_value:.2f} is under twice the cost ${impact.usd:.2f}"
    raise ValueError(f"no rule reviewer {seat!r}")


def _protected(path: str) -> bool:
    name = path.rstrip("/").rsplit("/", 1)[-1]
    return any(fnmatch(path, pattern) or fnmatch(name, pattern) for pattern in PROTECTED_PATTERNS)


def paths_unnamed(decision: Decision) -> bool:
    """Whether a decision names fewer paths than the files it changes (`impact.files`): what its rule reviewers
    cannot judge. A consensus decision like that, on a panel where rule reviewers sit, also needs a human's approval
    (`open_panel`): a command's paths, say, are known only once it ran, and the unknown is never approved by numbers
    alone. (Reviewer agents and humans on a panel read the proposal and its diff: their votes are their own.)"""
    return len(set(decision.files)) < decision.impact.files


def human_required(impact_usd: float, confidence: float, irreversible: bool, thresholds: ApprovalThresholds) -> bool:
    """Whether a decision needs a human's approval (besides any quorum): the spec's human row."""
    return impact_usd > thresholds.human_usd or confidence < thresholds.human_confidence or irreversible


def open_panel(
    decision: Decision,
    *,
    consensus: ConsensusConfig,
    needs_human: bool,
    thresholds: ApprovalThresholds,
    context: Context,
    now: datetime,
) -> Decision:
    """A new consensus decision with its panel, quorum and deadlines, the rule reviewers' votes cast, and what they
    settle; any other decision is returned as it is."""
    if decision.needs != "consensus":
        return decision
    rules_sit = any(seat.startswith("rules:") for seat in consensus.panel)
    needs_human = needs_human or (rules_sit and paths_unnamed(decision))
    step = timedelta(seconds=consensus.deadline_s)
    votes = [
        Vote(voter=seat, value=value, rationale=why, at=now, logic_version=decisions.RULES_VERSION)
        for seat in consensus.panel
        if seat.startswith("rules:")
        for value, why in [rule_vote(seat, decision, task_value=context.priority, thresholds=thresholds)]
    ]
    opened = decision.model_copy(
        update={
            "panel": list(consensus.panel),
            "quorum": consensus.quorum,
            "human_required": needs_human,
            "quorum_deadline": now + step,
            "deadline": max(decision.deadline, now + 3 * step),
            "votes": votes,
        }
    )
    return settle(opened, now, context=context)


# --- votes --------------------------------------------------------------------------------


def stage(decision: Decision) -> LadderStepKind | None:
    """The deadlock ladder's step a decision is at (None: no deadlock)."""
    return decision.ladder[-1].kind if decision.ladder else None


def panel_count(decision: Decision) -> Count | None:
    """The panel's count as it stands (None: no panel)."""
    return count(decision.votes, decision.panel, decision.quorum) if decision.panel else None


def human_approved(decision: Decision) -> bool:
    """Whether a human's latest vote on it is an approval."""
    return any(v.value == "approve" and v.role in HUMAN_ROLES for v in latest(decision.votes).values())


def cast(
    decision: Decision,
    voter: Voter,
    value: VoteValue,
    *,
    reason: str,
    now: datetime,
    context: Context,
    logic_version: str | None = None,
    shadow: bool = False,
) -> Decision:
    """`decision` with `voter`'s vote, and what it settles. `NotPending` unless it is pending (a decision past its
    deadline counts as expired); `Forbidden` for a voter who may not vote on it (the proposer, a reviewer without a
    seat). A `shadow` vote (a reviewer agent's logic version not voting live: `Rollouts.vote`) is kept on the
    decision and counts for nothing: no seat, no deadlock broken."""
    state: DecisionState = "expired" if decisions.is_due(decision, now) else decision.state
    if state != "pending":
        raise NotPending(f"decision {decision.id} is {state}, not pending: votes are closed")
    if not voter.human:
        if voter.agent == decision.agent:
            raise Forbidden(f"agent '{voter.agent}' proposed decision {decision.id}: a proposer never votes on it")
        breaking = voter.captain_agent and stage(decision) == "captain_agent"
        if voter.seat not in decision.panel and not breaking:
            seats = ", ".join(decision.panel) or "none: it needs a human, not a panel"
            raise Forbidden(f"agent '{voter.agent}' has no seat on decision {decision.id}'s panel (seats: {seats})")
        if breaking and value == "deny" and (word := human_captains_word(decision)) is not None:
            raise Forbidden(
                f"decision {decision.id} was {word}: the captain agent does not deny it; only another human captain "
                "reverses it"
            )
    vote = Vote(
        voter=voter.seat,
        value=value,
        rationale=reason,
        at=now,
        role=voter.role,
        token_id=voter.token_id,
        agent=voter.agent,
        logic_version=logic_version,
        shadow=shadow,
    )
    voted = decision.model_copy(update={"votes": [*decision.votes, vote]})
    return settle(voted, now, context=context, by=None if shadow else voter)


def settle(decision: Decision, now: datetime, *, context: Context, by: Voter | None = None) -> Decision:
    """What a pending decision's votes settle now (`by`: who voted last, if anyone did)."""
    if decision.state != "pending":
        return decision
    newest = decision.votes[-1] if by is not None and decision.votes else None
    if newest is not None and by is not None and newest.value != "abstain":
        verdict: Verdict = "approved" if newest.value == "approve" else "denied"
        if by.human and (not decision.panel or newest.value == "deny"):
            return _settled(decision, verdict, by=by, reason=newest.rationale, now=now)
        breaker = _breaker(by, stage(decision))
        if breaker is not None:
            reason = f"{breaker} broke the deadlock: {newest.rationale}"
            return _settled(decision, verdict, by=by, reason=reason, now=now)
    tally = panel_count(decision)
    if tally is None:
        return decision
    said = _said(tally, decision)
    if tally.outcome == "approved":
        if decision.human_required and not human_approved(decision):
            return decision  # the quorum holds; a human's approval is still needed
        human = " and a human approved" if decision.human_required else ""
        return _settled(decision, "approved", by=None, reason=f"the panel approved ({said}){human}", now=now)
    if tally.outcome in ("denied", "unreachable"):
        why = "denied" if tally.outcome == "denied" else f"can no longer reach {decision.quorum} approvals"
        return _settled(decision, "denied", by=None, reason=f"the panel {why} ({said})", now=now)
    if tally.outcome == "tie" and not decision.ladder:
        return deadlock(decision, now, reason=f"a tie ({said})", context=context)
    return decision


def _breaker(by: Voter, at: LadderStepKind | None) -> str | None:
    """Who `by` is if their vote breaks a deadlock at ladder step `at` (None: it does not)."""
    if by.captain_agent and at == "captain_agent":
        return "the captain agent"
    if by.role == "captain" and at == "human_captain":
        return "a human captain"
    return None


def _said(tally: Count, decision: Decision) -> str:
    return (
        f"{tally.approvals} approve, {tally.denials} deny, {tally.abstentions} abstain, {tally.missing} not voted; "
        f"quorum {decision.quorum} of {len(decision.panel)}"
    )


def _settled(decision: Decision, verdict: Verdict, *, by: Voter | None, reason: str, now: datetime) -> Decision:
    answer = Answer(
        verdict=verdict,
        by=PANEL if by is None else by.name,
        role=None if by is None else by.role,
        token_id=None if by is None else by.token_id,
        reason=reason,
        at=now,
    )
    return decision.model_copy(update={"answers": [*decision.answers, answer], "state": verdict})


# --- the deadlock ladder ---------------------------------------------------------------------


def step_s(decision: Decision) -> timedelta:
    """How long the panel had, and each ladder step has."""
    assert decision.quorum_deadline is not None
    return decision.quorum_deadline - decision.created_at


def deadlock(decision: Decision, now: datetime, *, reason: str, context: Context) -> Decision:
    """A deadlock's first steps: to the captain agent where it may decide (one exists, and no human is required),
    else on to the priority and the human captain."""
    steps = [LadderStep(kind="deadlock", at=now, reason=reason)]
    if context.captain_agents and not decision.human_required:
        until = (now + step_s(decision)).isoformat(timespec="seconds")
        steps.append(
            LadderStep(kind="captain_agent", at=now, reason=f"the captain agent may approve or deny until {until}")
        )
    else:
        steps += _to_human(
            decision, now, context=context, why="a human is required" if decision.human_required else "no captain agent"
        )
    return decision.model_copy(update={"ladder": [*decision.ladder, *steps]})


def _to_human(decision: Decision, now: datetime, *, context: Context, why: str) -> list[LadderStep]:
    value = "no task value known" if context.priority is None else f"task value ${context.priority:.2f}"
    until = decision.deadline.isoformat(timespec="seconds")
    return [
        LadderStep(kind="priority", at=now, reason=f"{value}: orders the inbox, never approves ({why})"),
        LadderStep(kind="human_captain", at=now, reason=f"a human captain is paged; no answer by {until}: denied"),
    ]


def advance(decision: Decision, now: datetime, *, context: Context) -> Decision | None:
    """The ladder's next step if one is due at `now` (None: nothing is): the panel's time ran out without a quorum,
    or the captain agent's did."""
    if decision.state != "pending" or decision.quorum_deadline is None or decisions.is_due(decision, now):
        return None
    current = stage(decision)
    if current is None and now >= decision.quorum_deadline:
        tally = panel_count(decision)
        assert tally is not None
        if tally.outcome == "approved":
            return None  # the quorum holds: a required human is paged already, and silence denies at the deadline
        return deadlock(
            decision, now, reason=f"no quorum by the panel's deadline ({_said(tally, decision)})", context=context
        )
    if current == "captain_agent" and now >= decision.ladder[-1].at + step_s(decision):
        steps = _to_human(decision, now, context=context, why="the captain agent did not decide in time")
        return decision.model_copy(update={"ladder": [*decision.ladder, *steps]})
    return None


def expire(decision: Decision, now: datetime) -> Decision:
    """`decisions.expire`, with the ladder's last step when it was in a deadlock."""
    expired = decisions.expire(decision, now)
    if not decision.ladder:
        return expired
    step = LadderStep(kind="denied", at=now, reason=decisions.EXPIRED_AT_DEADLINE)
    return expired.model_copy(update={"ladder": [*expired.ladder, step]})


# --- captains -----------------------------------------------------------------------------


def human_captains_word(decision: Decision) -> str | None:
    """What a human captain said that stands on `decision` (None: nothing): the last answer when a human captain
    gave it (an override, or a vote that settled it), or a human captain's latest vote approving it. The captain
    agent never reverses it; another human captain may."""
    last = decision.answers[-1] if decision.answers else None
    if last is not None and last.role == "captain":
        how = f"{last.override}d" if last.override is not None else last.verdict
        return f"{how} by human captain {last.by}"
    for vote in latest(decision.votes).values():
        if vote.role == "captain" and vote.value == "approve":
            return f"approved by human captain {vote.voter.removeprefix(HUMAN_SEAT)} (a vote)"
    return None


def override(decision: Decision, action: OverrideAction, voter: Voter, *, reason: str, now: datetime) -> Decision:
    """A captain's veto (overridden) or force (approved), at once, recorded with why.

    A human captain vetoes a pending or approved decision and forces any not approved; the captain agent only
    vetoes, and never what a human captain said (`human_captains_word`: an override, an approval or denial that
    settled it, or an approving vote still standing). A human captain's override is reversed only by another human
    captain. `Forbidden` or `AlreadyFinal` (409) otherwise; nothing changes then."""
    state: DecisionState = "expired" if decisions.is_due(decision, now) else decision.state
    previous = next((a for a in reversed(decision.answers) if a.override is not None), None)
    by_human_captain = previous is not None and previous.role == "captain"
    if voter.role == "captain":
        if by_human_captain and previous is not None and previous.token_id == voter.token_id:
            raise Forbidden(
                f"decision {decision.id} was {previous.override}d by this captain: only another human captain "
                "reverses it"
            )
    elif not voter.captain_agent:
        raise Forbidden("only a human captain, or the captain agent's reviewer token, overrides a decision")
    elif action == "force":
        raise Forbidden("the captain agent may veto, never force: forcing a decision stays with human captains")
    elif (word := human_captains_word(decision)) is not None:
        raise Forbidden(f"decision {decision.id} was {word}: only another human captain reverses it")
    if action == "veto" and state not in ("pending", "approved"):
        raise AlreadyFinal(f"decision {decision.id} is already {state}: nothing to veto")
    if action == "force" and state == "approved":
        raise AlreadyFinal(f"decision {decision.id} is approved already: nothing to force")
    verdict: Verdict = "overridden" if action == "veto" else "approved"
    answer = Answer(
        verdict=verdict,
        by=voter.name,
        role=voter.role,
        token_id=voter.token_id,
        reason=reason,
        at=now,
        override=action,
    )
    return decision.model_copy(update={"answers": [*decision.answers, answer], "state": verdict})
