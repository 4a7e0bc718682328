"""The audit events the brain stores, as they arrive, for the dashboard's live audit stream.

A page shows only the newest `AUDIT_ROWS` audit events (and the newest `ERROR_ROWS` refusals and failures in its
Errors panel), so that is all a page is sent: `Brain.ingest_audit` hands every newly stored batch to `publish`,
which only queues it (no encoding, no wake-up of any page); `run` (the brain's background work) flushes what queued
at most every `every_s`: of the events queued since the last flush it picks the newest `AUDIT_ROWS`, the newest
refusals and failures among the rest up to `ERROR_ROWS` (`shown`), and the count of the others (`audit_skipped`,
which the page shows: the full record is each body's trail, `swarm audit tail`), encodes that once and hands the
same bytes to every open stream without awaiting any page. So while 32 bodies stream, what pages cost the brain
is at most `AUDIT_ROWS + ERROR_ROWS` encodings and one write per page a flush, however many events arrive; a kill,
a resume, a decision or a task event is not an audit event and never passes here (`EventHub`, whole, at once).

A stream whose buffer is full (a page not reading) is cut off and reconnects. The newest `AUDIT_ROWS` events stored,
and before them the newest `ERROR_ROWS` refusals and failures, are kept in memory (encoded at most once between
changes) and are the first chunk a page that opens is sent; a page opening while a flush is queued gets that flush's
events in the flush, never twice. Nothing here touches the database, so an open dashboard costs the brain no queries
per event; after a restart the backlog starts empty.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Generator, Sequence
from contextlib import contextmanager

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from shared_protocol import AuditEvent
from shared_protocol.privacy import redact_tokens

AUDIT_ROWS = 200
"""The audit events a page keeps in its list (app.js reads it from `GET /session`): a flush sends a page at most the
newest this many, and a page that opens is sent the newest this many stored."""

ERROR_ROWS = 50
"""The refusals and failures a page's Errors panel shows (app.js reads it from `GET /session`): a flush sends the
newest this many even when they are older than its newest `AUDIT_ROWS` events."""

FLUSH_S = 1.0
"""How often at most the queued events go out to the open pages (a human reads slower; the kill switch's own
events do not wait for it)."""

_ERRORS = frozenset({"refused", "failed"})
_CHAIN: set[str] = {"prev_mac", "mac", "attest"}  # (a set: what pydantic's `exclude` takes)
"""An event's chain fields: the page never shows them (`swarm audit verify` checks the chain), so it is not sent
them."""


def redacted(data: bytes) -> bytes:
    """`[privacy]`: a dashboard stream is not revealed as a reply is (it is pushed, and kept by the page): every
    token of personal data it would carry — a decision's summary, a task's reason, a body's audit event — is
    redacted, its subject's id and ciphertext included. The page reads the details through `/v1` replies, revealed
    to those allowed to read them."""
    return redact_tokens(data.decode()).encode() if b"[pii:" in data else data


def sse_audit(events: Sequence[AuditEvent]) -> bytes:
    """`audit` server-sent events (a dashboard stream's own name: bodies' streams never carry it), redacted, without
    the chain's fields."""
    return redacted(b"".join(f"event: audit\ndata: {e.model_dump_json(exclude=_CHAIN)}\n\n".encode() for e in events))


def sse_skipped(count: int) -> bytes:
    """`audit_skipped`: how many audit events stored since the last flush the page is not sent (all older than the
    ones it is)."""
    return f'event: audit_skipped\ndata: {{"skipped":{count}}}\n\n'.encode()


def shown(events: Sequence[AuditEvent], *, rows: int, errors: int) -> tuple[list[AuditEvent], int]:
    """What a flush sends of `events` (oldest first), oldest first: the newest `rows`, and before them the newest
    refusals and failures of the rest, so that the newest `errors` of those in `events` are all sent; and how many
    are left out."""
    if len(events) <= rows:
        return list(events), 0
    older, newest = events[: len(events) - rows], events[len(events) - rows :]
    wanted = errors - sum(1 for e in newest if e.outcome in _ERRORS)
    extra: list[AuditEvent] = []
    for event in reversed(older):
        if wanted <= 0:
            break
        if event.outcome in _ERRORS:
            extra.append(event)
            wanted -= 1
    extra.reverse()
    return extra + list(newest), len(older) - len(extra)


class AuditFeed:
    def __init__(
        self,
        encode: Callable[[Sequence[AuditEvent]], bytes] = sse_audit,
        *,
        rows: int = AUDIT_ROWS,
        errors: int = ERROR_ROWS,
        buffer: int = 256,
        every_s: float = FLUSH_S,
    ) -> None:
        self._encode = encode
        self._rows = rows
        self._errors = errors
        self._stored = 0
        """Events remembered so far: each one's number orders `_recent` and `_recent_errors` together."""
        self._recent: deque[tuple[int, AuditEvent]] = deque(maxlen=rows)
        self._recent_errors: deque[tuple[int, AuditEvent]] = deque(maxlen=errors)
        """The newest refusals and failures, older than `_recent` or not: a page that opens after a flood of other
        events still gets what its Errors panel shows, as an open page did (`shown`)."""
        self._backlog: bytes | None = None
        """`_recent` and `_recent_errors` encoded, until they change."""
        self._buffer = buffer
        """Chunks a stream may have waiting before it is cut off."""
        self._every_s = every_s
        self._queued: list[AuditEvent] = []
        """Stored while a page was open, not sent yet (`flush`)."""
        self._wake: anyio.Event | None = None
        """Set when something is queued; made by `run` (an event needs the running event loop)."""
        self._subscribers: set[MemoryObjectSendStream[bytes]] = set()

    def backlog(self) -> bytes:
        """The newest events flushed (or stored while no page was open), oldest first, encoded: the first chunk of a
        stream that opens now (`subscribe`); what is queued reaches it with the next `flush`."""
        if self._backlog is None:
            kept = dict(self._recent_errors) | dict(self._recent)
            self._backlog = self._encode([kept[n] for n in sorted(kept)]) if kept else b""
        return self._backlog

    def publish(self, events: Sequence[AuditEvent]) -> None:
        """Queue newly stored events for the open pages (kept for the backlog straight away while none is)."""
        if not events:
            return
        if not self._subscribers and not self._queued:
            self._remember(events)
            return
        self._queued.extend(events)
        if self._wake is not None:
            self._wake.set()

    def _remember(self, events: Sequence[AuditEvent]) -> None:
        first, self._stored = self._stored, self._stored + len(events)
        newest = events[-self._rows :] if self._rows else ()
        self._recent.extend(zip(range(self._stored - len(newest), self._stored), newest, strict=True))
        errors: list[tuple[int, AuditEvent]] = []
        for i in range(len(events) - 1, -1, -1):  # (newest first, until the Errors panel's worth is found)
            if len(errors) >= self._errors:
                break
            if events[i].outcome in _ERRORS:
                errors.append((first + i, events[i]))
        self._recent_errors.extend(reversed(errors))
        self._backlog = None

    def flush(self) -> None:
        """Send what queued to every open stream, capped (`shown`), encoded once: one chunk, the same for each."""
        queued, self._queued = self._queued, []
        if not queued:
            return
        self._remember(queued)
        if not self._subscribers:
            return
        sent, skipped = shown(queued, rows=self._rows, errors=self._errors)
        chunk = (sse_skipped(skipped) if skipped else b"") + self._encode(sent)
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
        """A page's stream: the backlog first (if any), then a chunk at each flush. Subscribing and taking the
        backlog happen together, so no event reaches a page twice or not at all."""
        send, receive = anyio.create_memory_object_stream[bytes](self._buffer)
        if backlog := self.backlog():
            send.send_nowait(backlog)
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
