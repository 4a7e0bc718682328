"""The memory engine's rollouts: a dictionary by agent."""

from __future__ import annotations

from shared_protocol.brain import RolloutState

from ._records import LogEntry


class MemoryRollouts:
    """Each agent's rollout state; logs to the engine this is part of."""

    _log: list[LogEntry]

    def __init__(self) -> None:
        self._rollouts: dict[str, RolloutState] = {}

    async def rollouts(self) -> list[RolloutState]:
        return [self._rollouts[agent] for agent in sorted(self._rollouts)]

    async def rollout(self, agent: str) -> RolloutState | None:
        return self._rollouts.get(agent)

    async def put_rollout(self, state: RolloutState, log: LogEntry) -> None:
        self._rollouts[state.agent] = state
        self._log.append(log)

    async def rollout_inputs_generation(self) -> int | None:
        return None  # (nothing to save: every read is of dictionaries in this process)
