"""The audit events the brain stores, as they arrive, for the dashboard's live audit stream.

`Brain.ingest_audit` hands every newly stored event to `publish`, which keeps the newest `keep` in memory (what a
page that opens sees first) and hands them to every open dashboard stream without awaiting anything, like the
`EventHub`: a stream whose buffer is full (a page not reading) is cut off and reconnects. Nothing here touches the
database, so an open dashboard costs the brain no queries per event; after a restart the backlog starts empty.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Generator, Sequence
from contextlib import contextmanager

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from shared_protocol import AuditEvent


class AuditFeed:
    def __init__(self, *, keep: int = 200, buffer: int = 1024) -> None:
        self._recent: deque[AuditEvent] = deque(maxlen=keep)
        self._buffer = buffer
        self._subscribers: set[MemoryObjectSendStream[AuditEvent]] = set()

    def recent(self) -> list[AuditEvent]:
        """The newest events stored since the brain started, oldest first."""
        return list(self._recent)

    def publish(self, events: Sequence[AuditEvent]) -> None:
        self._recent.extend(events)
        for send in list(self._subscribers):
            try:
                for event in events:
                    send.send_nowait(event)
            except (anyio.WouldBlock, anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._subscribers.discard(send)
                send.close()

    @contextmanager
    def subscribe(self) -> Generator[MemoryObjectReceiveStream[AuditEvent]]:
        send, receive = anyio.create_memory_object_stream[AuditEvent](self._buffer)
        self._subscribers.add(send)
        try:
            with receive:
                yield receive
        finally:
            self._subscribers.discard(send)
            send.close()

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)
