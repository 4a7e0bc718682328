"""The audit events the brain stores, as they arrive, for the dashboard's live audit stream.

`Brain.ingest_audit` hands every newly stored batch to `publish`, which keeps the newest `keep` events in memory
(what a page that opens sees first) and hands the batch to every open dashboard stream without awaiting anything,
like the `EventHub`: a stream whose buffer is full (a page not reading) is cut off and reconnects. A batch is
encoded once for every open stream (`encode`: the SSE text, redacted), and not at all while none is open. Nothing
here touches the database, so an open dashboard costs the brain no queries per event; after a restart the backlog
starts empty.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Generator, Sequence
from contextlib import contextmanager

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from shared_protocol import AuditEvent
from shared_protocol.privacy import redact_tokens


def redacted(data: bytes) -> bytes:
    """`[privacy]`: a dashboard stream is not revealed as a reply is (it is pushed, and kept by the page): every
    token of personal data it would carry — a decision's summary, a task's reason, a body's audit event — is
    redacted, its subject's id and ciphertext included. The page reads the details through `/v1` replies, revealed
    to those allowed to read them."""
    return redact_tokens(data.decode()).encode() if b"[pii:" in data else data


def sse_audit(events: Sequence[AuditEvent]) -> bytes:
    """`audit` server-sent events (a dashboard stream's own name: bodies' streams never carry it), redacted."""
    return redacted(b"".join(f"event: audit\ndata: {e.model_dump_json()}\n\n".encode() for e in events))


class AuditFeed:
    def __init__(
        self, encode: Callable[[Sequence[AuditEvent]], bytes] = sse_audit, *, keep: int = 200, buffer: int = 256
    ) -> None:
        self._encode = encode
        self._recent: deque[AuditEvent] = deque(maxlen=keep)
        self._buffer = buffer
        """Batches a stream may have waiting before it is cut off."""
        self._subscribers: set[MemoryObjectSendStream[bytes]] = set()

    def backlog(self) -> bytes:
        """The newest events stored since the brain started, oldest first, encoded."""
        return self._encode(list(self._recent)) if self._recent else b""

    def publish(self, events: Sequence[AuditEvent]) -> None:
        self._recent.extend(events)
        if not self._subscribers or not events:
            return
        chunk = self._encode(events)
        for send in list(self._subscribers):
            try:
                send.send_nowait(chunk)
            except (anyio.WouldBlock, anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._subscribers.discard(send)
                send.close()

    @contextmanager
    def subscribe(self) -> Generator[MemoryObjectReceiveStream[bytes]]:
        send, receive = anyio.create_memory_object_stream[bytes](self._buffer)
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
