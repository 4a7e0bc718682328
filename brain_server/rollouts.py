"""`Rollouts`: each agent's rollout kept, routed, evaluated and moved on (the rules: `rollout.py`, the test:
`canary.py`).

A claim asks `route` which tasks it may take (a refusal, or a share of the canary buckets); the brain evaluates
an agent's candidate before each of its claims, after each of its outcomes, on every sweep and when its report is
read, promotes it step by step while its metrics hold and rolls it back the moment one fails — with a line in the
brain's log and a page to a human through the wake-up ladder. Human captains promote or roll back by hand.

A reviewer or captain agent's versions vote rather than claim: each vote asks `vote` whether it counts (a share of
the canary buckets by decision id, like a claim's by task id); one that does not is kept on the decision as a
shadow vote. Its rollout is evaluated by its votes (`rollout.evaluate_votes`), and promoted, rolled back and paged
the same way.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import anyio

from shared_protocol.brain import ClaimMode, RolloutMetric, RolloutReport, RolloutState
from shared_protocol.config import RolloutConfig

from .auth import Principal
from .canary import ALPHA, bucket
from .exceptions import InvalidTransition, NotFound, NotReady
from .rollout import (
    TEST_STATEMENT,
    Evaluation,
    Refusal,
    evaluate,
    evaluate_votes,
    percent,
    promoted,
    rolled_back,
    shadow_runs,
    with_candidate,
)
from .rollout_inputs import RolloutInputs
from .state import LogAction, LogEntry, StateEngine
from .wake.records import Escalation

VOTE_TEST_STATEMENT = (
    "candidate vs live by their votes: how often each agrees with the panel's other counted votes on final "
    "decisions (the majority of approve vs deny; an abstention never agrees); promoted only at a rate at least the "
    f"live one's, rolled back when a one-sided Fisher exact test says it agrees less (p < {ALPHA})"
)
AUTOMATIC = "rollout"
"""Who the brain's own rollout changes are logged as."""
MAX_BUCKET = 100


def votes_live(state: RolloutState, version: str, decision_id: str, steps: Sequence[int]) -> bool:
    """Whether `version` of `state`'s agent votes live on `decision_id` as the rollout stands (no change made): the
    live version but on the canary's share of decisions, where the candidate in canary does instead; never a version
    rolled back, nor a candidate in shadow."""
    if version in state.rolled_back:
        return False
    share = percent(state, steps)
    if version == state.live_version:
        return share == 0 or bucket(decision_id) >= share
    return version == state.candidate and state.stage == "canary" and bucket(decision_id) < share


def _parse_ts(ts: str) -> datetime | None:
    try:
        at = datetime.fromisoformat(ts)
    except ValueError:
        return None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


class Alert(Protocol):
    def __call__(
        self,
        *,
        kind: str,
        body_id: str,
        title: str,
        summary: str,
        facts: dict[str, str] | None = None,
        episode: str | None = None,
    ) -> Awaitable[Escalation | None]: ...


class Rollouts:
    """The brain's rollouts over its state engine; changes are serialised by one lock."""

    def __init__(self, state: StateEngine, *, config: RolloutConfig, alert: Alert, now: Callable[[], datetime]) -> None:
        self._state = state
        self.config = config
        self._alert = alert
        self._now = now
        self._lock = anyio.Lock()
        self.inputs = RolloutInputs(state, refusals=self._refusals)
        """What the evaluations read, per agent."""

    # -- claims ------------------------------------------------------------------------------

    async def route(self, agent: str, version: str, mode: ClaimMode) -> tuple[int, int] | None:
        """The canary buckets a claim by `agent` at `version` may take (None: any task), or `NotReady`
        (`InvalidTransition`: `agent` is a reviewer or captain agent, whose versions vote).

        A version the brain has not seen becomes the candidate (in shadow); a live claim by a candidate in shadow,
        by a version rolled back or by a new one is refused; the first version of an agent to work live becomes
        its live version (readiness let it through: the caller checked)."""
        if mode == "ide" or not agent or not version:
            return None
        async with self._lock:
            now = self._now()
            state = await self._state.rollout(agent) or RolloutState(agent=agent)
            if state.voter:  # (its live version's readiness override let its votes count, never a body's work)
                raise InvalidTransition(
                    f"agent '{agent}' has a reviewer's rollout (its versions vote on decisions): a body token of that "
                    "name cannot claim tasks; give the worker an agent name of its own"
                )
            if version in state.rolled_back:
                if mode == "shadow":
                    return None
                raise NotReady(
                    f"logic version {version} of agent '{agent}' was rolled back: it never works live again "
                    f"(change the agent's logic for a new version; `swarm rollout status {agent}` says why)"
                )
            if version not in (state.live_version, state.candidate):
                if mode == "live" and state.live_version is None:
                    await self._first_live(agent, version, now)
                    await self._go_live(state, version, now, f"agent '{agent}' (readiness let it through)")
                    return None
                await self._new_candidate(
                    state, version, now, f"a new logic version of agent '{agent}' starts in shadow"
                )
                state = await self._state.rollout(agent) or state
            if mode == "shadow":
                return None
            if version == state.live_version:
                share = percent(state, self.config.steps)
                return None if share == 0 else (share, MAX_BUCKET)
            if state.stage == "canary":
                return (0, percent(state, self.config.steps))
            if state.live_version is None:  # (the candidate of an agent with no live version yet)
                await self._first_live(agent, version, now)
                await self._put(
                    promoted(state, steps=self.config.steps, now=now),
                    "rollout_live",
                    f"the first live version of agent '{agent}' (readiness let it through)",
                    {"version": version},
                )
                return None
            raise NotReady(
                f"logic version {version} of agent '{agent}' is in shadow (live: {state.live_version}): it works "
                f"live only from its first canary step. Run it with --shadow; `swarm rollout status {agent}` says what "
                f"the next step needs, or a human captain runs `swarm rollout promote {agent} --reason ...`"
            )

    async def _go_live(self, state: RolloutState, version: str, now: datetime, whose: str) -> None:
        """An agent's first live version (no live version before it): straight to live, logged."""
        await self._put(
            promoted(with_candidate(state, version, now=now), steps=self.config.steps, now=now),
            "rollout_live",
            f"the first live version of {whose}",
            {"version": version},
        )

    async def _new_candidate(self, state: RolloutState, version: str, now: datetime, what: str) -> None:
        """A version the brain has not seen becomes the candidate (replacing any earlier one), logged."""
        replaced = state.candidate
        await self._put(
            with_candidate(state, version, now=now),
            "rollout_candidate",
            what + (f" (replacing candidate {replaced})" if replaced else ""),
            {"version": version, "replaced": replaced},
        )

    async def _first_live(self, agent: str, version: str, now: datetime) -> None:
        """Refuse (`NotReady`) the first live version of `agent` unless the brain's own record shows its shadow
        period (min_shadow_tasks shadow runs over shadow_days) or a human captain's readiness override names it:
        a ready report was computed for the version configured when it ran, not for this one."""
        overrides = await self._state.readiness_overrides(at=now)
        if any(o.agent == agent and o.logic_version == version and o.expires_at > now for o in overrides):
            return
        runs = shadow_runs(await self._state.tasks(), agent, version, now=now)
        tasks = len({run.task_id for run in runs})
        days = (now - min(run.at for run in runs)).total_seconds() / 86400 if runs else 0.0
        if tasks >= self.config.min_shadow_tasks and days >= self.config.shadow_days:
            return
        raise NotReady(
            f"logic version {version} of agent '{agent}' would be its first live version, and this brain has no "
            f"shadow period of its own for it ({tasks}/{self.config.min_shadow_tasks} shadow tasks over "
            f"{days:.2f}/{self.config.shadow_days:g} days): run it with --shadow first, or have a human captain run "
            f"`swarm readiness override --agent {agent} --reason ...` for this version"
        )

    # -- votes -------------------------------------------------------------------------------

    async def vote(self, agent: str, version: str, decision_id: str) -> bool:
        """Whether a vote by reviewer or captain agent `agent` at `version` on decision `decision_id` counts (False:
        it is kept on the decision in shadow). The candidate is evaluated first (its shadow period may end now).

        A version the brain has not seen becomes the candidate and votes in shadow; so does a version rolled back. The
        live version's votes count but on the canary's share of decisions (bucket by decision id under the step's
        percent), where the candidate's count instead. An agent with no live version yet: its version votes live
        once its shadow period is done (`evaluate_votes`) or a human captain's readiness override names it."""
        await self.tick(agent)
        async with self._lock:
            now = self._now()
            state = await self._state.rollout(agent) or RolloutState(agent=agent, voter=True)
            if not state.voter:
                raise InvalidTransition(
                    f"agent '{agent}' has a worker's rollout (its versions claimed tasks): it cannot vote as a reviewer"
                )
            if version in state.rolled_back:
                return False
            if version not in (state.live_version, state.candidate):
                if state.live_version is None and await self._overridden(agent, version, now):
                    await self._go_live(
                        state, version, now, f"reviewer agent '{agent}' (a human captain's readiness override)"
                    )
                    return True
                await self._new_candidate(
                    state, version, now, f"a new logic version of reviewer agent '{agent}' votes in shadow"
                )
                return False
            if version == state.live_version or state.stage == "canary":
                return votes_live(state, version, decision_id, self.config.steps)
            if state.live_version is None and await self._overridden(agent, version, now):
                await self._put(
                    promoted(state, steps=self.config.steps, now=now),
                    "rollout_live",
                    f"the first live version of reviewer agent '{agent}' (a human captain's readiness override)",
                    {"version": version},
                )
                return True
            return False

    def held(self) -> anyio.Lock:
        """The lock every rollout change is made under: held across a vote's last check and its write
        (`Service.vote`), so no rollback by this brain lands between them."""
        return self._lock

    async def still_counts(self, agent: str, version: str, decision_id: str) -> bool:
        """Whether a vote `vote` said counts still does, on the rollout as stored now (no change made): called with
        `held()` held, just before the vote is written, so a rollback that landed since (another process's, or one
        written before the lock was taken) keeps it in shadow."""
        state = await self._state.rollout(agent)
        return state is not None and state.voter and votes_live(state, version, decision_id, self.config.steps)

    async def _overridden(self, agent: str, version: str, now: datetime) -> bool:
        """Whether a human captain's readiness override in force names `agent` at `version`."""
        overrides = await self._state.readiness_overrides(at=now)
        return any(o.agent == agent and o.logic_version == version and o.expires_at > now for o in overrides)

    # -- evaluation --------------------------------------------------------------------------

    async def _evaluation(self, state: RolloutState) -> Evaluation | None:
        if state.candidate is None:
            return None
        if state.voter:
            return evaluate_votes(state, decisions=await self._state.decisions(), config=self.config, now=self._now())
        inputs = await self.inputs.of(state.agent)  # (kept while nothing it reads changed: `rollout_inputs.py`)
        return evaluate(
            state,
            tasks=inputs.tasks,
            decisions=inputs.decisions,
            refusals=inputs.refusals,
            config=self.config,
            now=self._now(),
            usage=inputs.usage,
        )

    async def _refusals(self, agent: str) -> list[Refusal]:
        found: list[Refusal] = []
        for event in await self._state.refused_events(agent):
            at = _parse_ts(event.ts)
            if event.logic_version and at is not None:
                found.append(Refusal(agent=agent, logic_version=event.logic_version, at=at))
        return found

    async def tick(self, agent: str) -> Evaluation | None:
        """Evaluate `agent`'s candidate and act on it: promote one step, roll it back (and page), or hold."""
        async with self._lock:
            state = await self._state.rollout(agent)
            if state is None:
                return None
            found = await self._evaluation(state)
            if found is None or found.action == "hold":
                return found
            detail: dict[str, Any] = {
                "version": state.candidate,
                "stage": state.stage,
                "percent": percent(state, self.config.steps),
                "metrics": {
                    m.name: {"candidate": m.candidate, "live": m.live, "test": m.test} for m in found.comparison.metrics
                },
            }
            if found.action == "promote":
                await self._put(
                    promoted(state, steps=self.config.steps, now=self._now()), "rollout_promote", found.next, detail
                )
                return found
            await self._put(rolled_back(state), "rollout_rollback", found.next, detail)
        await self._alert(
            kind="rollout_rollback",
            body_id=f"agent:{agent}",
            title=f"Agent {agent}: logic version {state.candidate} rolled back",
            summary=f"{found.next}. "
            + (
                f"The live version {state.live_version} takes every task again. "
                if state.live_version is not None
                else "It has no live version: its votes stay in shadow until a new version proves itself. "
            )
            + f"See `swarm rollout status {agent}`.",
            facts={m.name: f"candidate {m.candidate}, live {m.live}, {m.test}" for m in found.comparison.metrics},
            episode=f"rollback {agent}@{state.candidate}",
        )
        return found

    async def sweep(self) -> None:
        """Evaluate every candidate (a shadow period ends with time, not only with work)."""
        for state in await self._state.rollouts():
            if state.candidate is not None:
                await self.tick(state.agent)

    # -- the report, and human captains ------------------------------------------------------

    async def report(self, agent: str) -> RolloutReport:
        """`agent`'s rollout, evaluated now (acting on it first, as every read of a deadline does)."""
        await self.tick(agent)
        state = await self._state.rollout(agent)
        if state is None:
            raise NotFound(
                f"agent '{agent}' has no rollout: none of its logic versions has claimed a task in shadow or live"
            )
        found = await self._evaluation(state)
        steps = list(self.config.steps)
        if found is None:
            return RolloutReport(
                state=state,
                percent=0,
                steps=steps,
                candidate_tasks=0,
                live_tasks=0,
                stage_tasks=0,
                shadow_tasks=0,
                shadow_days=0.0,
                metrics=[],
                holds=True,
                test=VOTE_TEST_STATEMENT if state.voter else TEST_STATEMENT,
                next="no candidate: a new logic version of the agent starts in shadow when it first "
                + ("votes" if state.voter else "claims a task"),
            )
        return RolloutReport(
            state=state,
            percent=percent(state, steps),
            steps=steps,
            candidate_tasks=found.candidate_tasks,
            live_tasks=found.live_tasks,
            stage_tasks=found.stage_tasks,
            shadow_tasks=found.shadow_tasks,
            shadow_days=found.shadow_days,
            metrics=[
                RolloutMetric(name=m.name, candidate=m.candidate, live=m.live, test=m.test, holds=m.holds)
                for m in found.comparison.metrics
            ],
            holds=found.comparison.holds,
            test=VOTE_TEST_STATEMENT if state.voter else TEST_STATEMENT,
            next=found.next,
        )

    async def promote(self, by: Principal, agent: str, reason: str) -> RolloutReport:
        """A human captain moves the candidate one stage on, whatever its metrics say (logged with the reason)."""
        async with self._lock:
            state = await self._candidate(agent, "promote")
            detail = {"version": state.candidate, "stage": state.stage, "percent": percent(state, self.config.steps)}
            await self._put(
                promoted(state, steps=self.config.steps, now=self._now()), "rollout_promote", reason, detail, by=by
            )
        return await self.report(agent)

    async def rollback(self, by: Principal, agent: str, reason: str) -> RolloutReport:
        """A human captain drops the candidate: the live version takes every task again (logged with the reason)."""
        async with self._lock:
            state = await self._candidate(agent, "roll back")
            detail = {"version": state.candidate, "stage": state.stage, "percent": percent(state, self.config.steps)}
            await self._put(rolled_back(state), "rollout_rollback", reason, detail, by=by)
        return await self.report(agent)

    async def _candidate(self, agent: str, doing: str) -> RolloutState:
        state = await self._state.rollout(agent)
        if state is None:
            raise NotFound(
                f"agent '{agent}' has no rollout: none of its logic versions has claimed a task in shadow or live"
            )
        if state.candidate is None:
            raise InvalidTransition(
                f"agent '{agent}' has no candidate logic version to {doing} (live: {state.live_version or 'none'})"
            )
        return state

    async def _put(
        self,
        state: RolloutState,
        action: LogAction,
        reason: str,
        detail: dict[str, Any],
        *,
        by: Principal | None = None,
    ) -> None:
        now = self._now()
        if by is None:
            log = LogEntry(at=now, action=action, by=AUTOMATIC, reason=reason, target=state.agent, detail=detail)
        else:
            log = by.entry(action, at=now, reason=reason, target=state.agent, detail=detail)
        await self._state.put_rollout(state, log)
