"""The brain's anomaly watch on every state engine, on a clock the test drives: steady tool calls and spend pause
nothing; a burst pauses the agent within one interval, pages a human with the numbers and is logged; the watch never
resumes it, a captain does; an agent no token is bound to is never paused."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import anyio
import pytest

from brain_server import Brain, BrainSettings, StateEngine, issue_token
from brain_server.auth import Principal
from brain_server.state import LogEntry
from brain_server.wake.memory import MemoryChannel
from brain_server.wake.setup import WakeSetup
from shared_protocol import AuditEvent
from shared_protocol.brain import AuditBatch, RegisterRequest, UsageBatch, UsageRecord
from shared_protocol.config import AnomalyConfig

from .helpers import Clock

pytestmark = pytest.mark.anyio

CAPTAIN = Principal(token_id="tok_c", role="captain", label="captain-1")
CONFIG = AnomalyConfig(interval_s=60, window=10, min_samples=5)


@pytest.fixture
async def brain(state: StateEngine, pages: MemoryChannel, clock: Clock) -> AsyncIterator[Brain]:
    b = Brain(BrainSettings(anomaly=CONFIG), state=state, clock=clock, wake=WakeSetup.paging(pages))
    async with b.running():
        await issue_token(state, role="body", label="w1", at=b.now(), agent="w1")
        await _held(state, "body-1", agent="w1")
        await b.register(RegisterRequest(body_id="body-1", workspace="/w", hostname="h", version="1"))
        yield b


async def _held(state: StateEngine, body_id: str, *, agent: str) -> None:
    """`agent`'s token holds `body_id`, as its first request over HTTP would make it (`auth.speak_for`)."""
    [token] = [t for t in await state.tokens() if t.agent == agent]
    log = LogEntry(at=datetime.now(UTC), action="token_bind", by="test", target=token.id)
    assert await state.bind_token(token.id, body_id, log) is not None


class Trail:
    """A body's audit chain, written as the test says."""

    def __init__(self, body_id: str = "body-1") -> None:
        self.body_id = body_id
        self.seq = 0
        self.mac = "genesis"

    def calls(self, agent: str, at: float, count: int) -> list[AuditEvent]:
        events: list[AuditEvent] = []
        for n in range(count):
            self.seq += 1
            mac = hashlib.sha256(f"{self.seq}|{self.mac}".encode()).hexdigest()
            ts = datetime.fromtimestamp(at + n * 0.01, UTC).isoformat(timespec="microseconds")
            events.append(
                AuditEvent(
                    seq=self.seq,
                    id=f"act_{self.seq}",
                    ts=ts,
                    kind="tool_call",
                    body_id=self.body_id,
                    agent=agent,
                    session="s",
                    tool="write_file",
                    rationale="r",
                    outcome="ok",
                    prev_mac=self.mac,
                    mac=mac,
                )
            )
            self.mac = mac
        return events


async def minute(brain: Brain, clock: Clock, trail: Trail, *, calls: int, usd: float, agent: str = "w1") -> None:
    """A minute of `agent`'s work, shipped as it happens; the clock moves to the minute's end."""
    at = clock.now + 1
    await brain.ingest_audit(AuditBatch(body_id=trail.body_id, events=trail.calls(agent, at, calls)))
    record = UsageRecord(
        id=f"{trail.body_id}-u{trail.seq}",
        at=datetime.fromtimestamp(at, UTC),
        agent=agent,
        provider="p",
        model="m",
        usd=usd,
    )
    await brain.record_usage(trail.body_id, UsageBatch(records=[record]))
    clock.advance(60)


async def steady(brain: Brain, clock: Clock, trail: Trail, minutes: int) -> None:
    for n in range(minutes):
        await minute(brain, clock, trail, calls=3 + n % 3, usd=0.1 + 0.01 * (n % 4))
        assert await brain.anomaly.evaluate() == []


async def test_a_burst_pauses_the_agent_pages_and_logs_and_only_a_captain_resumes_it(
    brain: Brain, clock: Clock, pages: MemoryChannel
) -> None:
    clock.now -= clock.now % 60  # minutes on the bin edges
    trail = Trail()
    await steady(brain, clock, trail, 12)
    await minute(brain, clock, trail, calls=200, usd=0.1)  # 200 tool calls in a minute
    found = await brain.anomaly.evaluate()
    assert [(f.agent, f.metric) for f in found] == [("w1", "tool_calls_per_min")]
    [pause] = await brain.state.agent_pauses()
    assert (pause.agent, pause.source, pause.by) == ("w1", "anomaly", "anomaly")
    numbers = pause.detail["tool_calls_per_min"]
    assert numbers["value"] == 200 and numbers["median"] < 10 and numbers["threshold"] < 200
    assert (await brain.kill_state("w1")).engaged and not (await brain.kill_state(None)).engaged
    await brain.escalator.tick()
    with anyio.fail_after(5):
        [page] = await pages.wait_for(1)
    assert "w1" in page.title and "200" in page.summary
    logged = [e for e in await brain.state.log_entries() if e.action == "agent_pause"]
    assert [(e.by, e.target) for e in logged] == [("anomaly", "w1")]
    # The watch never lifts it, and does not page again for the pause it holds.
    await minute(brain, clock, trail, calls=300, usd=0.1)
    await brain.anomaly.evaluate()
    await brain.escalator.tick()
    assert len(await brain.state.agent_pauses()) == 1 and len(pages.pages) == 1
    await minute(brain, clock, trail, calls=3, usd=0.1)
    await brain.anomaly.evaluate()
    assert (await brain.kill_state("w1")).engaged
    assert not (await brain.resume_agent(CAPTAIN, "w1", "looked at it")).engaged
    assert await brain.state.agent_pauses() == []


async def test_a_spend_burst_is_caught_from_the_usage_records(brain: Brain, clock: Clock) -> None:
    clock.now -= clock.now % 60
    trail = Trail()
    await steady(brain, clock, trail, 8)
    await minute(brain, clock, trail, calls=4, usd=5.0)  # $300 an hour for a minute
    assert [f.metric for f in await brain.anomaly.evaluate()] == ["spend_usd_per_hour"]
    assert [p.agent for p in await brain.state.agent_pauses()] == ["w1"]


async def test_an_agent_no_token_is_bound_to_is_never_paused(brain: Brain, clock: Clock) -> None:
    """An IDE body (its token bound to no agent) calling itself 'claude': its burst is its body's, and pauses none."""
    await issue_token(brain.state, role="body", label="ide", at=brain.now())
    [ide] = [t for t in await brain.state.tokens() if t.label == "ide"]
    log = LogEntry(at=brain.now(), action="token_bind", by="test", target=ide.id)
    assert await brain.state.bind_token(ide.id, "body-2", log) is not None
    await brain.register(RegisterRequest(body_id="body-2", workspace="/w", hostname="h", version="1"))
    clock.now -= clock.now % 60
    trail = Trail("body-2")
    for n in range(8):
        await minute(brain, clock, trail, calls=3 + n % 2, usd=0.1, agent="claude")
        await brain.anomaly.evaluate()
    await minute(brain, clock, trail, calls=300, usd=0.1, agent="claude")
    assert await brain.anomaly.evaluate() == []
    assert await brain.state.agent_pauses() == []
