"""The audit events the brain stores, as they arrive, for the dashboard's live audit stream.

`Brain.ingest_audit` hands every newly stored batch to `publish`, which encodes it once for every open stream
(`encode`: the SSE text, redacted; not at all while none is open) and queues it: nothing is sent there, so a storm of
audit batches (every body writing while a kill fans out) costs the event loop one encoding per batch, not a wake-up
and a socket write per page per batch. `run` (the brain's background work) sends what queued at most every
`every_s`, one chunk per stream, like the `EventHub` without awaiting any page: a stream whose buffer is full (a page
not reading) is cut off and reconnects. (Encoding stays in `publish`, on the event loop, a batch at a time: on a
worker thread a flush's whole chunk would hold the GIL against the loop in 5 ms slices, a longer wait for a kill
landing then than one batch's encoding.) The newest `keep` events sent (or stored while no page was open) are kept
in memory for a page that opens (`backlog`); a page sees every event, at most `every_s` late. Nothing here touches
the database, so an open dashboard costs the brain no queries per event; after a restart the backlog starts empty.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Generator, Sequence
from contextlib import contextmanager

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from shared_protocol import AuditEvent
from shared_protocol.privacy import redact_tokens

FLUSH_S = 0.25
"""How often at most the queued events go out to the open pages (a human reads slower)."""


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
        self,
        encode: Callable[[Sequence[AuditEvent]], bytes] = sse_audit,
        *,
        keep: int = 200,
        buffer: int = 256,
        every_s: float = FLUSH_S,
    ) -> None:
        self._encode = encode
        self._recent: deque[AuditEvent] = deque(maxlen=keep)
        self._buffer = buffer
        """Chunks a stream may have waiting before it is cut off."""
        self._every_s = every_s
        self._queued: list[tuple[Sequence[AuditEvent], bytes]] = []
        """Stored while a page was open, encoded, not sent yet (`flush`)."""
        self._wake: anyio.Event | None = None
        """Set when something is queued; made by `run` (an event needs the running event loop)."""
        self._subscribers: set[MemoryObjectSendStream[bytes]] = set()

    def backlog(self) -> bytes:
        """The newest events sent (or stored while no page was open), oldest first, encoded: what a page that opens
        now is sent first; what is queued reaches it with the next `flush`."""
        return self._encode(list(self._recent)) if self._recent else b""

    def publish(self, events: Sequence[AuditEvent]) -> None:
        """Encode and queue newly stored events for the open pages (kept for the backlog straight away while none
        is)."""
        if not events:
            return
        if not self._subscribers and not self._queued:
            self._recent.extend(events)
            return
        self._queued.append((events, self._encode(events)))
        if self._wake is not None:
            self._wake.set()

    def flush(self) -> None:
        """Send what queued to every open stream, one chunk each."""
        queued, self._queued = self._queued, []
        if not queued:
            return
        for events, _chunk in queued:
            self._recent.extend(events)
        if not self._subscribers:
            return
        chunk = b"".join(chunk for _events, chunk in queued)
        for send in list(self._subscribers):
            try:
                send.send_nowait(chunk)
            except (anyio.WouldBlock, anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._subscribers.discard(send)
                send.close()

    async def run(self) -> None:
        """Flush at most every `every_s`, whenever something is queued (the brain's background work)."""
        while True:
            self._wake = anyio.Event()
            if not self._queued:
                await self._wake.wait()
            await anyio.sleep(self._every_s)  # (what else arrives meanwhile goes in the same chunk)
            self.flush()

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
