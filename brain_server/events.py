"""Pushing events to the bodies that hold `GET /v1/events` open.

The kill switch's critical path runs through here: `publish` hands an event to every
subscriber's buffer without awaiting anything, so all bodies get a kill in the same loop
iteration that published it (before its commit, `Brain.set_kill`: a stream that opens
before the commit ends is sent that kill as its first event, `AgentPauses.committing`). A
subscriber whose buffer is full (a body not reading) is cut off rather than slowing the
others: it reconnects, and the first event of every stream is the current kill state, so no
kill is ever lost by a cut.
"""

from __future__ import annotations

from collections.abc import Generator
from contextlib import contextmanager
from dataclasses import dataclass, field

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from shared_protocol.brain import BrainEventName, KillState
from shared_protocol.privacy import redact_tokens


@dataclass(kw_only=True, frozen=True)
class BrainEvent:
    """One server-sent event: a name and its JSON data."""

    name: BrainEventName
    data: str
    _wire: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Encoded once for every stream it goes to (a kill goes to every body's, in the moment they all wait for it).
        object.__setattr__(self, "_wire", f"event: {self.name}\ndata: {self.data}\n\n".encode())

    def encode(self) -> bytes:
        """The event in the text/event-stream format."""
        return self._wire


KEEPALIVE = b": keepalive\n\n"


def kill_event(state: KillState) -> BrainEvent:
    """`kill` while engaged, `resume` once released; the data is the kill state either way, its reason's personal
    data redacted (a stream is not revealed as a reply is: `[privacy]`)."""
    reason = state.reason
    shown = state.model_copy(update={"reason": redact_tokens(reason)}) if reason and "[pii:" in reason else state
    return BrainEvent(name="kill" if state.engaged else "resume", data=shown.model_dump_json())


@dataclass(kw_only=True, eq=False)
class _Subscriber:
    body_id: str | None
    agent: str | None
    send: MemoryObjectSendStream[BrainEvent]


class EventHub:
    """Fan-out of brain events to every open event stream."""

    def __init__(self, *, buffer: int = 256) -> None:
        self._buffer = buffer
        self._subscribers: set[_Subscriber] = set()
        self._closed = False
        self.published = 0
        """How many events were published so far: a read kept from before a change is known stale by it
        (`dashboard.snapshots`)."""

    def changed(self) -> None:
        """Count a change no stream is told of now that a page must still see at once (an agent paused or resumed
        while the kill is engaged): what was read before it is known stale by `published` as after an event."""
        self.published += 1

    @contextmanager
    def subscribe(
        self, body_id: str | None = None, *, agent: str | None = None
    ) -> Generator[MemoryObjectReceiveStream[BrainEvent]]:
        """A stream of every event published from now on; it ends when the hub closes or cuts it off. `agent`: the
        agent the stream's token is bound to, which hears that agent's pause and resume."""
        send, receive = anyio.create_memory_object_stream[BrainEvent](self._buffer)
        subscriber = _Subscriber(body_id=body_id, agent=agent, send=send)
        if self._closed:
            send.close()
        else:
            self._subscribers.add(subscriber)
        try:
            with receive:
                yield receive
        finally:
            self._subscribers.discard(subscriber)
            send.close()

    def publish(
        self,
        event: BrainEvent,
        *,
        body_id: str | None = None,
        agent: str | None = None,
        except_agents: frozenset[str] = frozenset(),
    ) -> None:
        """Deliver to every subscriber, or only to `body_id`'s (and those that did not say who they are); with
        `agent`, only to the streams of that agent's tokens; never to the streams of `except_agents`."""
        self.published += 1
        for subscriber in list(self._subscribers):
            if body_id is not None and subscriber.body_id not in (None, body_id):
                continue
            if agent is not None and subscriber.agent != agent:
                continue
            if subscriber.agent is not None and subscriber.agent in except_agents:
                continue
            try:
                subscriber.send.send_nowait(event)
            except anyio.WouldBlock:
                self._cut(subscriber)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._subscribers.discard(subscriber)

    def _cut(self, subscriber: _Subscriber) -> None:
        self._subscribers.discard(subscriber)
        subscriber.send.close()

    def connected(self) -> set[str]:
        """The body ids holding a stream open."""
        return {s.body_id for s in self._subscribers if s.body_id is not None}

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def close(self) -> None:
        """End every stream (shutdown): clients see the stream close and reconnect to the next brain."""
        self._closed = True
        for subscriber in list(self._subscribers):
            self._cut(subscriber)
