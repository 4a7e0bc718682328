"""The ladder on a real SQLite brain with a controllable clock: climb, stop on an answer, deny on silence."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import pytest

from brain_server import Brain, BrainSettings, SqliteStateEngine
from brain_server.auth import Principal
from brain_server.exceptions import NothingToAcknowledge
from brain_server.wake.base import Channel, ChannelError, Delivery, Page
from brain_server.wake.escalator import ladder_step, redact
from brain_server.wake.memory import MemoryChannel
from brain_server.wake.records import hash_answer_token
from brain_server.wake.setup import WakeSetup
from shared_protocol import AuditEvent
from shared_protocol.brain import AuditBatch, DecisionRequest, RegisterRequest
from shared_protocol.wake import EscalationConfig, EscalationLevel
from tests.brain.helpers import Clock, audit_chain

pytestmark = pytest.mark.anyio

BODY = Principal(token_id="tok_b", role="body", label="body-1")
HUMAN = Principal(token_id="tok_h", role="approver", label="alice")


@dataclass
class Recorder:
    """A channel that keeps what it was asked to send (or fails, `failures` times, as told)."""

    name: str
    failures: int = 0
    retryable: bool = True
    pages: list[Page] = field(default_factory=list[Page])

    async def send(self, page: Page) -> Delivery:
        if self.failures:
            self.failures -= 1
            raise ChannelError("service unavailable", channel=self.name, retryable=self.retryable, status=503)
        self.pages.append(page)
        return Delivery(channel=self.name, target=page.target, provider_id=f"{self.name}-{len(self.pages)}")


@dataclass
class Ladder:
    brain: Brain
    clock: Clock
    channels: dict[str, Recorder]

    def sent(self) -> list[tuple[str, str, int]]:
        """(channel, target, level) of every page, in order of sending."""
        pages = [(p.page_id, name, p.target, p.level) for name, ch in self.channels.items() for p in ch.pages]
        return [(name, target, level) for _, name, target, level in sorted(pages)]

    async def at(self, seconds: float) -> None:
        """Move the clock to `seconds` after the start, then do what the daemon loops would."""
        self.clock.now = START + seconds
        await self.brain.sweep()
        await self.brain.escalator.tick()


START = Clock().now


def setup(channels: Mapping[str, Channel], **escalation: object) -> WakeSetup:
    return WakeSetup(
        escalation=EscalationConfig.model_validate(escalation) if escalation else EscalationConfig(),
        channels=channels,
        recipients={"discord": [""], "sms": ["+15550001111"], "call": ["+15550001111"]},
        public_url="https://brain.example.com",
        retry_wait_s=0,
    )


@pytest.fixture
async def ladder(tmp_path: Path) -> AsyncIterator[Ladder]:
    channels = {name: Recorder(name) for name in ("discord", "sms", "call")}
    clock = Clock()
    state = await SqliteStateEngine.open(tmp_path / "brain.db")
    brain = Brain(BrainSettings(failsafe_s=10), state=state, clock=clock, wake=setup(channels))
    try:
        async with brain.running():
            yield Ladder(brain, clock, channels)
    finally:
        await state.close()


def needs_human(deadline_s: int = 3600) -> DecisionRequest:
    return DecisionRequest(
        summary="drop the orders table",
        rationale="it looks unused",
        confidence=0.4,
        agent="claude",
        body_id="body-a",
        deadline_s=deadline_s,
    )


def test_the_default_ladder_is_discord_then_sms_at_5_minutes_then_a_call_at_10_then_two_repeats() -> None:
    config = EscalationConfig()
    steps = [ladder_step(config, n) for n in range(6)]
    assert [(s.level, s.attempt, s.offset_s, s.targets) for s in steps if s is not None] == [
        (0, 1, 0, ["discord"]),
        (1, 1, 300, ["sms"]),
        (2, 1, 600, ["call"]),
        (2, 2, 900, ["call"]),
        (2, 3, 1200, ["call"]),
    ]
    assert steps[5] is None


async def test_an_unanswered_decision_climbs_discord_sms_phone_and_is_then_denied(ladder: Ladder) -> None:
    decision = await ladder.brain.request_decision(BODY, needs_human(deadline_s=1000))
    await ladder.at(0)
    assert ladder.sent() == [("discord", "", 0)]
    await ladder.at(299)
    assert len(ladder.sent()) == 1, "nothing before the SMS level is due"
    await ladder.at(300)
    await ladder.at(600)
    await ladder.at(900)
    assert ladder.sent() == [
        ("discord", "", 0),
        ("sms", "+15550001111", 1),
        ("call", "+15550001111", 2),
        ("call", "+15550001111", 2),
    ]
    await ladder.at(1000)
    assert (await ladder.brain.decision(decision.id)).state == "expired"
    await ladder.at(5000)
    assert len(ladder.sent()) == 4, "nothing is paged after the deadline denied it"
    escalation = await ladder.brain.state.escalation(decision.id)
    assert escalation is not None and escalation.state == "resolved" and escalation.closed_by == "deadline"
    pages = [e for e in await ladder.brain.state.log_entries() if e.action == "page"]
    assert [e.detail["channel"] for e in pages] == ["discord", "sms", "call", "call"]
    assert all("+15550001111" not in str(e.detail) for e in pages), "phone numbers are redacted in the log"


async def test_each_page_carries_the_single_use_answer_links_its_channel_shows(ladder: Ladder) -> None:
    decision = await ladder.brain.request_decision(BODY, needs_human())
    await ladder.at(0)
    await ladder.at(300)
    await ladder.at(600)
    discord, sms, call = (ladder.channels[name].pages[0] for name in ("discord", "sms", "call"))
    assert discord.kind == "decision" and discord.subject_id == decision.id and discord.deadline == decision.deadline
    assert discord.links is None, "Discord answers with its buttons"
    assert discord.facts["Confidence"] == "0.40" and "denied" in discord.facts["Deadline"]
    assert sms.links is not None and sms.links.gather is None
    assert sms.links.approve and sms.links.approve.startswith("https://brain.example.com/wake/") and sms.links.deny
    assert call.links is not None and call.links.approve is None and call.links.deny is None
    assert call.links.gather and call.links.gather.startswith("https://brain.example.com/twilio/gather?t=")
    tokens = [
        await ladder.brain.state.answer_token(hash_answer_token(url.rsplit("/", 1)[1]))
        for url in (sms.links.approve, sms.links.deny, sms.links.acknowledge)
    ]
    assert [t.verb for t in tokens if t is not None] == ["approve", "deny", "ack"]
    assert all(t is not None and t.expires_at == decision.deadline for t in tokens)


async def test_an_answer_at_the_sms_level_stops_the_climb(ladder: Ladder) -> None:
    decision = await ladder.brain.request_decision(BODY, needs_human())
    await ladder.at(0)
    await ladder.at(300)
    await ladder.brain.answer(HUMAN, decision.id, "approve", "fine, it is unused")
    await ladder.at(600)
    await ladder.at(2000)
    assert [c for c, _, _ in ladder.sent()] == ["discord", "sms"]
    assert (await ladder.brain.decision(decision.id)).state == "approved"


async def test_an_answer_at_the_first_level_means_nobody_is_woken_by_sms(ladder: Ladder) -> None:
    decision = await ladder.brain.request_decision(BODY, needs_human())
    await ladder.at(0)
    await ladder.brain.answer(HUMAN, decision.id, "deny", "no")
    await ladder.at(3000)
    assert [c for c, _, _ in ladder.sent()] == ["discord"]


async def test_acknowledging_stops_the_pages_but_silence_still_denies_at_the_deadline(ladder: Ladder) -> None:
    decision = await ladder.brain.request_decision(BODY, needs_human(deadline_s=700))
    await ladder.at(0)
    acked = await ladder.brain.acknowledge(HUMAN, decision.id, "looking at it")
    assert acked.state == "acknowledged" and acked.closed_by == "alice"
    await ladder.at(650)
    assert [c for c, _, _ in ladder.sent()] == ["discord"]
    await ladder.at(700)
    assert (await ladder.brain.decision(decision.id)).state == "expired"
    with pytest.raises(NothingToAcknowledge):
        await ladder.brain.acknowledge(HUMAN, decision.id, "too late")
    log = await ladder.brain.state.log_entries()
    assert any(e.action == "acknowledge" and e.by == "alice" and e.target == decision.id for e in log)


async def test_a_level_with_no_channel_configured_climbs_at_once(tmp_path: Path) -> None:
    channels = {"discord": Recorder("discord"), "call": Recorder("call")}
    clock = Clock()
    state = await SqliteStateEngine.open(tmp_path / "brain.db")
    wake = setup(channels)  # the default ladder names sms, which is not configured here
    brain = Brain(BrainSettings(), state=state, clock=clock, wake=wake)
    try:
        async with brain.running():
            ladder = Ladder(brain, clock, channels)
            await brain.request_decision(BODY, needs_human())
            await ladder.at(0)
            await ladder.at(300)
            assert [c for c, _, _ in ladder.sent()] == ["discord", "call"], "no SMS channel: the call goes out now"
            failures = [e for e in await state.log_entries() if e.action == "page_failed"]
            assert failures and failures[0].detail["channel"] == "sms" and "not configured" in failures[0].reason
    finally:
        await state.close()


async def test_a_failing_channel_is_retried_then_the_next_level_is_paged_at_once(tmp_path: Path) -> None:
    channels = {"discord": Recorder("discord", failures=2), "sms": Recorder("sms", failures=99)}
    channels["call"] = Recorder("call")
    clock = Clock()
    state = await SqliteStateEngine.open(tmp_path / "brain.db")
    brain = Brain(BrainSettings(), state=state, clock=clock, wake=setup(channels))
    try:
        async with brain.running():
            ladder = Ladder(brain, clock, channels)
            await brain.request_decision(BODY, needs_human())
            await ladder.at(0)
            assert [c for c, _, _ in ladder.sent()] == ["discord"], "two retryable failures, then delivered"
            await ladder.at(300)
            assert [c for c, _, _ in ladder.sent()] == ["discord", "call"]
            failed = [e for e in await state.log_entries() if e.action == "page_failed"]
            assert [e.detail["channel"] for e in failed] == ["sms"]
            assert "service unavailable" in failed[0].reason
    finally:
        await state.close()


async def test_a_non_retryable_failure_is_not_retried(tmp_path: Path) -> None:
    channels = {"discord": Recorder("discord", failures=1, retryable=False)}
    clock = Clock()
    state = await SqliteStateEngine.open(tmp_path / "brain.db")
    only_discord = {"levels": [{"after_s": 0, "targets": ["discord"]}], "repeat": 0}
    brain = Brain(BrainSettings(), state=state, clock=clock, wake=setup(channels, **only_discord))
    try:
        async with brain.running():
            await brain.request_decision(BODY, needs_human())
            await Ladder(brain, clock, channels).at(0)
            assert channels["discord"].pages == [] and channels["discord"].failures == 0
    finally:
        await state.close()


async def test_two_ticks_at_once_page_each_step_once(ladder: Ladder) -> None:
    await ladder.brain.request_decision(BODY, needs_human())
    await ladder.at(0)
    ladder.clock.now = START + 300
    async with anyio.create_task_group() as group:
        for _ in range(4):
            group.start_soon(ladder.brain.escalator.tick)
    assert [c for c, _, _ in ladder.sent()] == ["discord", "sms"]


async def test_circuit_breaker_refusals_raise_one_alert_per_body_while_it_is_open(ladder: Ladder) -> None:
    events = audit_chain("body-a", 3)
    tripped = [
        AuditEvent.model_validate({**e.model_dump(), "outcome": "refused", "code": "circuit_open"}) for e in events
    ]
    linked: list[AuditEvent] = []
    prev = "genesis-body-a"
    for event in tripped:  # re-link the chain after changing the events
        event = event.model_copy(update={"prev_mac": prev})
        linked.append(event)
        prev = event.mac
    await ladder.brain.register(RegisterRequest(body_id="body-a", workspace="/w", hostname="h", version="1"))
    await ladder.brain.ingest_audit(AuditBatch(body_id="body-a", events=linked[:2]))
    await ladder.brain.ingest_audit(AuditBatch(body_id="body-a", events=linked))  # a resend plus one new
    await ladder.at(0)
    alerts = [p for p in ladder.channels["discord"].pages if p.kind == "alert"]
    assert len(alerts) == 1 and "Circuit breaker open on body body-a" in alerts[0].title
    stored = await ladder.brain.state.escalation(alerts[0].subject_id)
    assert stored is not None and stored.occurrences == 3
    await ladder.at(300)
    (sms,) = ladder.channels["sms"].pages
    assert sms.links is not None and sms.links.approve is None, "an alert has nothing to approve"


async def test_events_of_a_body_that_never_registered_raise_no_alert(ladder: Ladder) -> None:
    events = [
        AuditEvent.model_validate({**e.model_dump(), "outcome": "refused", "code": "circuit_open"})
        for e in audit_chain("ghost", 1)
    ]
    await ladder.brain.ingest_audit(AuditBatch(body_id="ghost", events=events))
    await ladder.at(0)
    assert ladder.sent() == []


async def test_a_body_that_goes_silent_is_reported_lost_once(ladder: Ladder) -> None:
    request = RegisterRequest(body_id="body-a", workspace="/w", hostname="h", version="1")
    await ladder.brain.register(request)
    await ladder.at(5)
    assert ladder.sent() == []
    await ladder.at(11)
    await ladder.at(12)
    lost = [p for p in ladder.channels["discord"].pages if p.kind == "alert"]
    assert len(lost) == 1 and lost[0].title == "Body body-a is lost"
    await ladder.brain.heartbeat("body-a")
    await ladder.at(13)
    await ladder.at(40)
    assert len([p for p in ladder.channels["discord"].pages if p.kind == "alert"]) == 1, "deduplicated while open"


async def test_an_alert_ladder_ends_exhausted_after_its_repeats(ladder: Ladder) -> None:
    alert = await ladder.brain.raise_alert(kind="test", body_id="body-a", title="t", summary="s")
    for t in (0, 300, 600, 900, 1200, 1500, 9000):
        await ladder.at(t)
    assert [c for c, _, _ in ladder.sent()] == ["discord", "sms", "call", "call", "call"]
    stored = await ladder.brain.state.escalation(alert.id)
    assert stored is not None and stored.state == "exhausted"


def test_redaction_keeps_too_little_to_contact_anyone() -> None:
    assert redact("sms", "+15550001111") == "sms:…1111"
    assert redact("email", "oncall@example.com") == "email:o…@example.com"
    assert redact("ntfy", "secret-topic") == "ntfy:(topic)"
    assert redact("discord", "") == "discord"


def test_a_ladder_must_rise() -> None:
    with pytest.raises(ValueError, match="at least the one before"):
        EscalationConfig(
            levels=[EscalationLevel(after_s=300, targets=["sms"]), EscalationLevel(after_s=0, targets=["discord"])]
        )


async def test_without_any_channel_nothing_is_started_and_nothing_fails_level_by_level(tmp_path: Path) -> None:
    clock = Clock()
    state = await SqliteStateEngine.open(tmp_path / "brain.db")
    brain = Brain(BrainSettings(), state=state, clock=clock, wake=WakeSetup())
    try:
        async with brain.running():
            decision = await brain.request_decision(BODY, needs_human())
            assert await brain.raise_alert(kind="test", body_id="body-a", title="t", summary="s") is None
            await Ladder(brain, clock, {}).at(600)
            assert await state.escalation(decision.id) is None
            actions = {e.action for e in await state.log_entries()}
            assert "page_failed" not in actions and "escalate" not in actions
            assert (await brain.decision(decision.id)).state == "pending", "it still waits for its deadline"
    finally:
        await state.close()


def test_retry_after_reads_seconds_and_http_dates() -> None:
    from datetime import UTC, datetime

    from brain_server.wake.base import retry_after_s

    now = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)
    assert retry_after_s({"Retry-After": "120"}, now=now) == 120.0
    assert retry_after_s({"Retry-After": "Thu, 26 Nov 2026 12:00:30 GMT"}, now=now) == 30.0
    assert retry_after_s({"Retry-After": "Thu, 26 Nov 2026 11:00:00 GMT"}, now=now) == 0.0  # in the past
    assert retry_after_s({"Retry-After": "1.5"}, now=now) == 1.5
    assert retry_after_s({"Retry-After": "-5"}, now=now) is None
    assert retry_after_s({"Retry-After": "\u00b2"}, now=now) is None  # a digit to str.isdigit, not to float
    assert retry_after_s({"Retry-After": "in a while"}, now=now) is None
    assert retry_after_s({}, now=now) is None


@dataclass
class RateLimited:
    """A channel that answers 429 with `Retry-After: after` `times` times, then delivers."""

    name: str
    after: float
    times: int = 1
    pages: list[Page] = field(default_factory=list[Page])

    async def send(self, page: Page) -> Delivery:
        if self.times:
            self.times -= 1
            raise ChannelError("rate limited", channel=self.name, retryable=True, status=429, retry_after=self.after)
        self.pages.append(page)
        return Delivery(channel=self.name, target=page.target, provider_id="ok")


@pytest.mark.parametrize(
    ("after", "times", "waits", "delivered"),
    [(3.0, 1, [3.0], True), (60.0, 1, [], False), (2.0, 5, [2.0], False)],
)
async def test_a_retry_waits_what_the_service_asked_within_what_the_backoff_would_wait_in_all(
    tmp_path: Path, after: float, times: int, waits: list[float], delivered: bool
) -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    channels = {"sms": RateLimited("sms", after=after, times=times)}
    wake = setup(channels, levels=[{"after_s": 0, "targets": ["sms"]}], repeat=0)
    wake.retry_wait_s, wake.sleep = 1.0, sleep  # 3 attempts: the backoff would wait 1 + 2 = 3 s in all
    clock = Clock()
    state = await SqliteStateEngine.open(tmp_path / "brain.db")
    brain = Brain(BrainSettings(), state=state, clock=clock, wake=wake)
    try:
        async with brain.running():
            await brain.request_decision(BODY, needs_human())
            clock.now = START
            await brain.escalator.tick()
            assert slept == waits
            assert bool(channels["sms"].pages) is delivered
            failed = [e for e in await state.log_entries() if e.action == "page_failed"]
            assert bool(failed) is not delivered
    finally:
        await state.close()


async def test_one_failsafe_episode_pages_once_however_many_calls_it_refused_and_however_they_arrive(
    tmp_path: Path,
) -> None:
    pages = MemoryChannel()
    clock = Clock()
    state = await SqliteStateEngine.open(tmp_path / "brain.db")
    brain = Brain(BrainSettings(failsafe_s=10), state=state, clock=clock, wake=WakeSetup.paging(pages))
    try:
        async with brain.running():
            await brain.register(RegisterRequest(body_id="body-a", workspace="/w", hostname="h", version="1"))
            chain = audit_chain("body-a", 6)
            first = [
                AuditEvent.model_validate({**e.model_dump(), "code": "brain_unreachable", "detail": detail})
                for e, detail in zip(chain, [{"failsafe_since": "2030-01-01T00:00:00+00:00"}] * 3, strict=False)
            ]
            for event in first:  # three batches; the one-level ladder of the first page ends before the next
                await brain.ingest_audit(AuditBatch(body_id="body-a", events=[event]))
                await brain.escalator.tick()
            assert len(pages.pages) == 1
            # A brain restarted on the same database pages no more for it.
            again = Brain(BrainSettings(failsafe_s=10), state=state, clock=clock, wake=WakeSetup.paging(pages))
            async with again.running():
                await again._raise_event_alerts(first)  # pyright: ignore[reportPrivateUsage]
                await again.escalator.tick()
            assert len(pages.pages) == 1
            # The next time the failsafe engages is news.
            second = AuditEvent.model_validate(
                {**chain[3].model_dump(), "code": "brain_unreachable", "detail": {"failsafe_since": "later"}}
            )
            await brain.ingest_audit(AuditBatch(body_id="body-a", events=[second]))
            await brain.escalator.tick()
            assert len(pages.pages) == 2
            assert [e.action for e in await state.log_entries(limit=1000)].count("alert") == 2
    finally:
        await state.close()


async def test_without_a_channel_one_failsafe_episode_is_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state = await SqliteStateEngine.open(tmp_path / "brain.db")
    brain = Brain(BrainSettings(), state=state, clock=Clock(), wake=WakeSetup())
    try:
        async with brain.running():
            await brain.register(RegisterRequest(body_id="body-a", workspace="/w", hostname="h", version="1"))
            for event in audit_chain("body-a", 3):
                refusal = AuditEvent.model_validate(
                    {**event.model_dump(), "code": "brain_unreachable", "detail": {"failsafe_since": "t0"}}
                )
                await brain.ingest_audit(AuditBatch(body_id="body-a", events=[refusal]))
        alerts = [r for r in caplog.records if r.getMessage().startswith("alert failsafe on body body-a")]
        assert len(alerts) == 1
    finally:
        await state.close()


async def test_a_lost_body_is_given_the_failsafe_time_after_a_restart_and_paged_once_across_restarts(
    tmp_path: Path,
) -> None:
    pages, clock = MemoryChannel(), Clock()
    state = await SqliteStateEngine.open(tmp_path / "brain.db")

    def brain() -> Brain:
        return Brain(BrainSettings(failsafe_s=10), state=state, clock=clock, wake=WakeSetup.paging(pages))

    async def sweep_at(b: Brain, seconds: float) -> int:
        clock.now = START + seconds
        await b.sweep()
        await b.escalator.tick()
        return len(pages.pages)

    try:
        first = brain()
        async with first.running():
            await first.register(RegisterRequest(body_id="body-a", workspace="/w", hostname="h", version="1"))
            assert await sweep_at(first, 5) == 0
        clock.now = START + 100  # the brain was down: the body could not heartbeat
        second = brain()
        async with second.running():
            assert await sweep_at(second, 105) == 0, "it may not have reconnected yet"
            assert await sweep_at(second, 111) == 1
        clock.now = START + 200
        third = brain()
        async with third.running():
            assert await sweep_at(third, 300) == 1, "the same loss, paged already"
    finally:
        await state.close()
