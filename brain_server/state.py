"""The state engine: everything the brain knows, behind one `Protocol`.

Two implementations ship: `SqliteStateEngine` (one file, WAL, versioned migrations; the
daemon's) and `MemoryStateEngine` (tests and the demo). PostgreSQL can follow. Every
method is one transaction: it happens completely or not at all, and a change is recorded
in the brain's log in the same transaction. The rules live above the engine; the engine
keeps the few invariants that must hold under concurrency (a task is claimed once, a
decision changes only from the state its writer saw, an audit chain only grows by linking).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from shared_protocol import AuditEvent
from shared_protocol.brain import Decision, KillState, Role, Task, TaskOutcome, TaskState
from shared_protocol.decisions import DecisionState

from .audit import AuditAppend
from .wake.records import AnswerToken, Escalation

LogAction = Literal[
    "token_create",
    "kill",
    "resume",
    "decision_create",
    "approve",
    "deny",
    "override",
    "expire",
    "task_create",
    "task_claim",
    "task_outcome",
    "task_requeue",
    "escalate",
    "page",
    "page_failed",
    "acknowledge",
    "alert",
    "answer_refused",
    "interaction_refused",
]


@dataclass(kw_only=True, frozen=True)
class LogEntry:
    """One line of the brain's own append-only log: who did what to which thing, and why."""

    at: datetime
    action: LogAction
    by: str
    """A token's label or id, or `rules`, `deadline` or `lease` when the brain acted by itself."""
    token_id: str | None = None
    role: Role | None = None
    reason: str = ""
    target: str | None = None
    """The decision, task, token or body acted on."""
    detail: dict[str, Any] = field(default_factory=dict[str, Any])


@dataclass(kw_only=True, frozen=True)
class TokenRecord:
    """A stored token: its SHA-256, never the token itself."""

    id: str
    token_hash: str
    role: Role
    label: str
    created_at: datetime


@dataclass(kw_only=True, frozen=True)
class BodyRecord:
    body_id: str
    workspace: str
    hostname: str
    version: str
    registered_at: datetime
    last_heartbeat: datetime


@dataclass(kw_only=True, frozen=True)
class ClaimGrant:
    """What a claim writes on the task it wins."""

    body_id: str
    agent: str
    claim_token: str
    at: datetime
    lease_expires: datetime


KILL_RELEASED = KillState(engaged=False)


class StateEngine(Protocol):
    """The brain's state. Implementations serialise writers; every method is atomic."""

    async def close(self) -> None: ...

    # -- tokens and the log ----------------------------------------------------------------

    async def add_token(self, record: TokenRecord, log: LogEntry) -> None: ...

    async def token_by_hash(self, token_hash: str) -> TokenRecord | None: ...

    async def log_entries(self, *, limit: int = 100) -> list[LogEntry]:
        """The newest `limit` entries of the brain's log, oldest first."""
        ...

    # -- kill switch and bodies ------------------------------------------------------------

    async def kill_state(self) -> KillState: ...

    async def set_kill_state(self, state: KillState, log: LogEntry) -> None: ...

    async def upsert_body(self, body: BodyRecord) -> None:
        """Register a body, or update a known one (keeping its first `registered_at`)."""
        ...

    async def touch_body(self, body_id: str, at: datetime) -> bool:
        """Record a heartbeat; False if the body never registered."""
        ...

    async def bodies(self) -> list[BodyRecord]: ...

    # -- audit -----------------------------------------------------------------------------

    async def append_audit(self, body_id: str, events: Sequence[AuditEvent]) -> AuditAppend:
        """Store the events of a batch that link to the body's chain (see `audit.link_batch`)."""
        ...

    async def audit_events(self, body_id: str, *, after_seq: int = 0, limit: int = 1000) -> list[AuditEvent]: ...

    # -- decisions -------------------------------------------------------------------------

    async def insert_decision(self, decision: Decision, log: LogEntry) -> None: ...

    async def decision(self, decision_id: str) -> Decision | None: ...

    async def replace_decision(self, decision: Decision, *, expected: DecisionState, log: LogEntry) -> bool:
        """Store the new version of a decision if it is still in `expected`; False if someone changed it first."""
        ...

    async def due_decisions(self, now: datetime) -> list[Decision]:
        """Pending decisions whose deadline has passed."""
        ...

    async def count_pending_decisions(self, now: datetime) -> int:
        """Pending decisions still within their deadline."""
        ...

    # -- tasks -----------------------------------------------------------------------------

    async def insert_task(self, task: Task, log: LogEntry) -> None: ...

    async def task(self, task_id: str) -> Task | None: ...

    async def claim_task(self, grant: ClaimGrant, log: Callable[[Task], LogEntry]) -> Task | None:
        """Atomically move the most valuable queued task (oldest first among equals) to `claimed`."""
        ...

    async def finish_task(
        self, task_id: str, *, claim_token: str, outcome: TaskOutcome, summary: str, at: datetime, log: LogEntry
    ) -> Task:
        """Record a claimed task's outcome. Raises `NotFound`, or `StaleClaim` if the token is not the current one."""
        ...

    async def requeue_expired(self, now: datetime, log: Callable[[Task], LogEntry]) -> list[Task]:
        """Requeue claimed tasks whose lease has run out; their claim tokens go stale."""
        ...

    async def count_tasks(self) -> dict[TaskState, int]: ...

    # -- waking humans ---------------------------------------------------------------------

    async def append_log(self, entry: LogEntry) -> None:
        """A log line on its own (a page sent, a refused interaction)."""
        ...

    async def insert_escalation(self, escalation: Escalation, log: LogEntry) -> bool:
        """Start an escalation; False (and nothing written) if one with that id exists."""
        ...

    async def escalation(self, escalation_id: str) -> Escalation | None: ...

    async def replace_escalation(self, escalation: Escalation, *, log: LogEntry | None = None) -> bool:
        """Store `escalation` (whose `version` is one more than the stored one's); False if someone wrote first."""
        ...

    async def due_escalations(self, now: datetime) -> list[Escalation]:
        """Active escalations whose next page is due, oldest first."""
        ...

    async def open_escalation(self, dedup_key: str, *, since: datetime) -> Escalation | None:
        """The newest active or acknowledged escalation with this key created at or after `since`."""
        ...

    async def add_answer_tokens(self, tokens: Sequence[AnswerToken], *, now: datetime) -> None:
        """Store new tokens, dropping those that expired before `now` (a link nobody can use any more)."""
        ...

    async def answer_token(self, token_hash: str) -> AnswerToken | None: ...

    async def use_answer_token(self, token_hash: str, at: datetime) -> AnswerToken | None:
        """Mark the token used and return it, if it exists, is unused and unexpired at `at`; else None."""
        ...

    async def remember_interaction(self, interaction_id: str, at: datetime, *, forget_before: datetime) -> bool:
        """Record an interaction id; False if it was seen before (a replay). Drops ids older than `forget_before`."""
        ...
