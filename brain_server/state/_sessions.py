"""Dashboard sessions (#20): a human who pasted an approver's or captain's token into the dashboard's login form.

A session is kept by the SHA-256 of its cookie (never the cookie itself), with the hash of the token it was opened
with: every request re-reads that token, so a session ends the moment its token is revoked. The CSRF token is a
second secret the page holds in memory and sends in a header; the brain compares it with the stored one. The rules
(timeouts, roles, the CSRF and Origin checks) are in `auth.session_principal`; the engines only store, find, touch
and delete.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol

from ._records import LogEntry


@dataclass(kw_only=True, frozen=True)
class SessionRecord:
    session_hash: str
    """The SHA-256 of the session cookie."""
    token_hash: str
    """The SHA-256 of the token the human logged in with (the `tokens.token_hash` it names)."""
    token_id: str
    csrf: str
    """The per-session CSRF token: sent back in the `X-Swarm-CSRF` header of every state-changing request."""
    created_at: datetime
    last_seen: datetime


class SessionStore(Protocol):
    """The dashboard's open sessions; a session is deleted when it ends (logout, timeout, its token revoked)."""

    async def add_session(self, record: SessionRecord, log: LogEntry) -> None: ...

    async def session_by_hash(self, session_hash: str) -> SessionRecord | None: ...

    async def touch_session(self, session_hash: str, at: datetime) -> None:
        """Record a request of the session at `at` (its idle timeout counts from the last one)."""
        ...

    async def end_session(self, session_hash: str, log: LogEntry) -> bool:
        """Delete the session (and write `log`); False, and nothing written, if there was none."""
        ...

    async def prune_sessions(self, *, idle_before: datetime, created_before: datetime) -> int:
        """Delete the sessions last seen before `idle_before` or created before `created_before` (ended by their
        timeouts, never used again); how many went. Nothing is logged: each was logged when it started."""
        ...


class MemorySessions:
    """`SessionStore` in a dictionary, for the memory engine."""

    _log: list[LogEntry]

    def __init__(self) -> None:
        self._sessions: dict[str, SessionRecord] = {}

    async def add_session(self, record: SessionRecord, log: LogEntry) -> None:
        self._sessions[record.session_hash] = record
        self._log.append(log)

    async def session_by_hash(self, session_hash: str) -> SessionRecord | None:
        return self._sessions.get(session_hash)

    async def touch_session(self, session_hash: str, at: datetime) -> None:
        found = self._sessions.get(session_hash)
        if found is not None:
            self._sessions[session_hash] = replace(found, last_seen=at)

    async def end_session(self, session_hash: str, log: LogEntry) -> bool:
        if self._sessions.pop(session_hash, None) is None:
            return False
        self._log.append(log)
        return True

    async def prune_sessions(self, *, idle_before: datetime, created_before: datetime) -> int:
        stale = [key for key, s in self._sessions.items() if s.last_seen < idle_before or s.created_at < created_before]
        for key in stale:
            del self._sessions[key]
        return len(stale)
