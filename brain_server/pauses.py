"""Agent pauses: a kill switch scoped to one agent's bodies.

A body whose token is bound to an agent (`auth.Principal.agent`) obeys the *effective* kill state: the brain's
global switch when it is engaged, else its agent's pause when there is one, else released. Every answer that carries
a kill state to such a body (registration, heartbeat, the first event of its stream) carries the effective one, and
pausing or resuming publishes `kill` / `resume` to that agent's streams only. A body bound to no agent (an IDE's)
obeys the global switch only.

Changes to the global switch and to pauses are serialised by one lock, so what each stream hears last is what its
bodies should obey: releasing the global switch sends `resume` to every stream but those of paused agents, which hear
their pause again instead. A kill is published before its commit (`committing`); until that commit ends, every answer
that carries a kill state carries that kill, so no answer read from the database meanwhile tells a body that has
stopped that it may go on.

A captain pauses an agent (`POST /v1/agents/{name}/pause`), or the anomaly detector does (`anomaly.py`); only a
captain resumes it: the detector never does.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from contextlib import contextmanager
from datetime import datetime

import anyio

from shared_protocol.brain import AgentPause, KillState

from .events import BrainEvent, EventHub, kill_event
from .state import LogEntry, StateEngine


def effective_kill(brain_kill: KillState, pause: AgentPause | None) -> KillState:
    """The kill state an agent's body obeys, given the brain's switch and the agent's pause (None: not paused)."""
    if brain_kill.engaged or pause is None:
        return brain_kill
    return KillState(
        engaged=True, reason=f"agent {pause.agent} paused: {pause.reason}", by=pause.by, at=pause.at, agent=pause.agent
    )


def pause_event(pause: AgentPause) -> BrainEvent:
    """The `kill` event a paused agent's streams hear."""
    return kill_event(effective_kill(KillState(engaged=False), pause))


class AgentPauses:
    """Pauses in the state engine, and the events they send; one per brain, sharing its kill-switch `lock`."""

    def __init__(self, state: StateEngine, *, hub: EventHub, lock: anyio.Lock, now: Callable[[], datetime]) -> None:
        self._state = state
        self._hub = hub
        self.lock = lock
        self._now = now
        self._committing: KillState | None = None
        """The brain's kill while it is published but not yet committed (`committing`)."""

    async def pause_of(self, agent: str) -> AgentPause | None:
        return next((p for p in await self._state.agent_pauses() if p.agent == agent), None)

    async def brain_kill(self) -> KillState:
        """The brain's kill switch as answered now: a kill being committed counts as engaged (`committing`)."""
        return self._committing or await self._state.kill_state()

    async def kill_state(self, agent: str | None) -> KillState:
        """The effective kill state of a body of `agent` (None: a body bound to no agent, which obeys the brain's); a
        kill being committed counts as engaged (looked at before the database is read: a read that began before the
        commit ended would find the state from before the kill)."""
        brain_kill = await self.brain_kill()
        if agent is None or brain_kill.engaged:
            return brain_kill
        return effective_kill(brain_kill, await self.pause_of(agent))

    async def pause(self, pause: AgentPause, log: LogEntry) -> tuple[AgentPause, bool]:
        """Pause `pause.agent` and tell its streams; an agent paused already keeps its first pause (returned, with
        False: nothing was written)."""
        async with self.lock:
            if not await self._state.pause_agent(pause, log):
                held = await self.pause_of(pause.agent)
                return (held or pause), False
            brain_kill = await self._state.kill_state()
            if not brain_kill.engaged:  # (engaged: its bodies are stopped already, and hear the pause on release)
                self._hub.publish(pause_event(pause), agent=pause.agent)
            else:
                self._hub.changed()  # (the pages' status lists it: `dashboard.snapshots`)
        return pause, True

    async def resume(self, agent: str, *, by: str, reason: str, log: LogEntry) -> KillState | None:
        """Lift `agent`'s pause and tell its streams what they obey now; None if it was not paused."""
        async with self.lock:
            if await self._state.resume_agent(agent, log) is None:
                return None
            brain_kill = await self._state.kill_state()
            if brain_kill.engaged:
                self._hub.changed()  # (the pages' status no longer lists the pause: `dashboard.snapshots`)
                return brain_kill
            released = KillState(engaged=False, reason=reason, by=by, at=log.at, agent=agent)
            self._hub.publish(kill_event(released), agent=agent)
            return released

    @contextmanager
    def committing(self, kill: KillState) -> Generator[None]:
        """Publish the brain's `kill` to every stream at once and answer with it while the caller commits it (under
        `lock`): the bodies stop without waiting for the writers queued ahead of the commit, and a heartbeat,
        registration or stream answered meanwhile says killed, not what the database still holds. Once the commit
        ends, failed or not, answers are read from the database again (a failed kill lifts on the bodies' next
        heartbeat: they stopped anyway, failing closed)."""
        self._committing = kill
        try:
            self._hub.publish(kill_event(kill))
            yield
        finally:
            self._committing = None

    async def publish_release(self, state: KillState) -> None:
        """After the brain's switch was released and committed (under `lock`): every stream hears it, except that a
        paused agent's streams hear their pause instead."""
        pauses = await self._state.agent_pauses()
        self._hub.publish(kill_event(state), except_agents=frozenset(p.agent for p in pauses))
        for pause in pauses:
            self._hub.publish(pause_event(pause), agent=pause.agent)
