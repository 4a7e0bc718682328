"""The daemon loop, paging a human through a channel, and the event hub, without HTTP."""

from __future__ import annotations

import logging
from pathlib import Path

import anyio
import pytest
from starlette.types import Message

from brain_server import Brain, BrainEvent, BrainSettings, EventHub, MemoryStateEngine
from brain_server._sse import EventStreamResponse
from brain_server.auth import Principal
from brain_server.wake.base import Delivery, Page
from brain_server.wake.setup import WakeSetup
from shared_protocol.brain import DecisionRequest, KillState

from .helpers import Clock

pytestmark = pytest.mark.anyio

BODY = Principal(token_id="tok_1", role="body", label="body-1")


def request(confidence: float = 0.5, deadline_s: int = 60) -> DecisionRequest:
    return DecisionRequest(
        summary="s", rationale="r", confidence=confidence, agent="claude", body_id="body-a", deadline_s=deadline_s
    )


async def test_the_sweeper_loop_expires_a_decision_at_its_deadline(tmp_path: Path, clock: Clock) -> None:
    brain = Brain(BrainSettings(sweep_interval_s=0.01), state=MemoryStateEngine(), clock=clock)
    event: BrainEvent | None = None
    async with brain.running():
        decision = await brain.request_decision(BODY, request())
        with brain.hub.subscribe("body-a") as events:
            async with anyio.create_task_group() as group:
                group.start_soon(brain.run_sweeper)
                clock.advance(60)
                with anyio.fail_after(2):
                    event = await events.receive()
                group.cancel_scope.cancel()
    assert event is not None and event.name == "decision" and '"state":"expired"' in event.data
    stored = await brain.state.decision(decision.id)
    assert stored is not None and stored.state == "expired"


class BrokenChannel:
    """A channel with a bug: it raises something other than `ChannelError`."""

    name = "broken"

    def __init__(self) -> None:
        self.called = anyio.Event()

    async def send(self, page: Page) -> Delivery:
        self.called.set()
        raise ConnectionError("the channel is down")


async def test_a_failing_channel_does_not_fail_the_request_and_the_decision_stays_pending(
    caplog: pytest.LogCaptureFixture,
) -> None:
    channel = BrokenChannel()
    brain = Brain(BrainSettings(), state=MemoryStateEngine(), wake=WakeSetup.paging(channel))
    async with brain.running():
        decision = await brain.request_decision(BODY, request())
        await brain.escalator.tick()
        assert channel.called.is_set()
        assert (await brain.decision(decision.id)).state == "pending"
    assert any(r.levelno == logging.ERROR and decision.id in r.getMessage() for r in caplog.records)
    failed = [e for e in await brain.state.log_entries() if e.action == "page_failed"]
    assert [(e.target, e.detail["channel"]) for e in failed] == [(decision.id, "broken")]


async def test_without_a_wake_up_channel_the_log_names_a_decision_that_needs_a_human(
    caplog: pytest.LogCaptureFixture,
) -> None:
    brain = Brain(BrainSettings(), state=MemoryStateEngine())
    with caplog.at_level(logging.WARNING, logger="brain_server.wake.escalator"):
        async with brain.running():
            decision = await brain.request_decision(BODY, request())
    assert any(r.levelno == logging.WARNING and decision.id in r.getMessage() for r in caplog.records)


def kill(n: int) -> BrainEvent:
    return BrainEvent(name="kill", data=f'{{"n":{n}}}')


async def test_a_subscriber_that_does_not_read_is_cut_off_without_slowing_the_others() -> None:
    hub = EventHub(buffer=2)
    with hub.subscribe("slow") as slow, hub.subscribe("fast") as fast:
        for n in range(3):
            hub.publish(kill(n))
            assert (await fast.receive()).data == f'{{"n":{n}}}'
        assert hub.connected() == {"fast"}
        assert [(await slow.receive()).data for _ in range(2)] == ['{"n":0}', '{"n":1}']
        with pytest.raises(anyio.EndOfStream):
            await slow.receive()


async def test_events_for_one_body_reach_only_it_and_closing_the_hub_ends_every_stream() -> None:
    hub = EventHub()
    with hub.subscribe("a") as a, hub.subscribe("b") as b, hub.subscribe() as anyone:
        hub.publish(kill(1), body_id="a")
        assert (await a.receive()).data == (await anyone.receive()).data == '{"n":1}'
        with pytest.raises(anyio.WouldBlock):
            b.receive_nowait()
        hub.close()
        for stream in (a, b, anyone):
            with pytest.raises(anyio.EndOfStream):
                await stream.receive()
    with hub.subscribe("late") as late, pytest.raises(anyio.EndOfStream):
        await late.receive()
    assert hub.subscribers == 0


def test_an_event_is_encoded_as_text_event_stream() -> None:
    assert kill(1).encode() == b'event: kill\ndata: {"n":1}\n\n'


async def test_a_published_event_is_encoded_once_for_every_stream() -> None:
    hub = EventHub()
    with hub.subscribe("a") as a, hub.subscribe("b") as b:
        hub.publish(kill(1))
        assert (await a.receive()).encode() is (await b.receive()).encode()


async def test_an_event_stream_unsubscribes_when_its_client_disconnects() -> None:
    hub = EventHub()
    sent: list[Message] = []
    first_event = anyio.Event()
    hang_up = anyio.Event()

    async def kill_state() -> KillState:
        return KillState(engaged=False)

    async def receive() -> Message:
        await hang_up.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)
        if message["type"] == "http.response.body":
            first_event.set()

    response = EventStreamResponse(hub=hub, body_id="body-a", kill_state=kill_state, keepalive_s=60)
    async with anyio.create_task_group() as group:
        group.start_soon(response, {"type": "http"}, receive, send)
        with anyio.fail_after(2):
            await first_event.wait()
            assert hub.connected() == {"body-a"}
            hang_up.set()
    assert hub.subscribers == 0
    assert sent[0]["status"] == 200
    assert b"event: resume" in sent[1]["body"]
    assert all(m.get("more_body", True) for m in sent[1:]), "nothing is sent after a disconnect"
