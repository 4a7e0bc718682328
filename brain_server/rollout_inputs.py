"""What an agent's rollout evaluation reads — the tasks it worked, the decisions they waited on, the usage charged to
them, its refused calls — kept between evaluations while the state engine's generation of it stays put.

An agent's candidate is evaluated before each of its claims; reading every task, decision, usage record and audit
event of the brain each time made a claim's cost grow with the brain's history. The engine numbers what these reads
see (`rollout_inputs_generation`: SQLite triggers move it on every change of them, whichever process writes, and
not on a claim of a queued task or a renewal, which change nothing an evaluation counts); the number is read first,
so what is kept under it is never older than it, and a change after it moves it: the next evaluation reads afresh.
The evaluation itself (`rollout.evaluate`) runs every time, at the current time (a shadow period's days, a
verification's grace), and on the rollout state read fresh: a rollback takes effect on the very next claim.
An engine without a generation (memory) is read afresh each time.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from shared_protocol.brain import Decision, Task, UsageRecord

from .rollout import Refusal
from .state import StateEngine


@dataclass(kw_only=True, frozen=True)
class Inputs:
    """What `rollout.evaluate` reads for one agent."""

    tasks: list[Task]
    """The tasks the agent claimed, shadowed or has a line in the history of (the others count for none of its
    versions)."""
    decisions: dict[str, Decision]
    """The decisions those tasks were parked on, by id."""
    refusals: list[Refusal]
    usage: list[UsageRecord]
    """The usage records charged to those tasks."""


def worked_by(task: Task, agent: str) -> bool:
    """Whether `task` can count for a version of `agent`: its claim, a shadow run or a line of its history is the
    agent's (`rollout.live_runs`, `shadow_runs` and `answered` look at no other task)."""
    holder = task.claimed_by
    return (
        (holder is not None and holder.agent == agent)
        or any(run.agent == agent for run in task.shadow_runs)
        or any(line.agent == agent for line in task.history)
    )


class RolloutInputs:
    """Each agent's `Inputs`, kept while the engine's generation stays the same."""

    def __init__(self, state: StateEngine, *, refusals: Callable[[str], Awaitable[list[Refusal]]]) -> None:
        self._state = state
        self._refusals = refusals
        self._generation: int | None = None
        self._kept: dict[str, Inputs] = {}
        self.reads = 0
        """How many times the inputs were read from the engine (not kept), for the tests and the bench."""

    async def of(self, agent: str) -> Inputs:
        generation = await self._state.rollout_inputs_generation()  # (first: what is read next is at least as new)
        if generation is None or generation != self._generation:
            self._kept.clear()
            self._generation = generation
        kept = self._kept.get(agent)
        if kept is not None:
            return kept
        inputs = await self._read(agent)
        if generation is not None and self._generation == generation:
            self._kept[agent] = inputs
        return inputs

    async def _read(self, agent: str) -> Inputs:
        self.reads += 1
        tasks = [task for task in await self._state.tasks() if worked_by(task, agent)]
        ids = {task.id for task in tasks}
        parked = {
            str(line.detail.get("decision_id", ""))
            for task in tasks
            for line in task.history
            if line.kind == "parked" and line.agent == agent
        }
        decisions = {d.id: d for d in await self._state.decisions() if d.id in parked}
        usage = [record for record in await self._state.usage() if record.task_id in ids]
        return Inputs(tasks=tasks, decisions=decisions, refusals=await self._refusals(agent), usage=usage)
