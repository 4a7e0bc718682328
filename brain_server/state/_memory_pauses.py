"""The memory engine's agent pauses: a dictionary by agent."""

from __future__ import annotations

from shared_protocol.brain import AgentPause

from ._records import LogEntry


class MemoryPauses:
    """Agents paused until a human resumes them; logs to the engine this is part of."""

    _log: list[LogEntry]

    def __init__(self) -> None:
        self._pauses: dict[str, AgentPause] = {}

    async def agent_pauses(self) -> list[AgentPause]:
        return [self._pauses[agent] for agent in sorted(self._pauses)]

    async def pause_agent(self, pause: AgentPause, log: LogEntry) -> bool:
        if pause.agent in self._pauses:
            return False
        self._pauses[pause.agent] = pause
        self._log.append(log)
        return True

    async def resume_agent(self, agent: str, log: LogEntry) -> AgentPause | None:
        pause = self._pauses.pop(agent, None)
        if pause is not None:
            self._log.append(log)
        return pause
