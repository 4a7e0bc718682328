"""The state engine: everything the brain knows, behind one `Protocol`.

Two implementations ship: `SqliteStateEngine` (one file, WAL, versioned migrations; the
daemon's) and `MemoryStateEngine` (tests and the demo). PostgreSQL can follow. Every
method is one transaction: it happens completely or not at all, and a change is recorded
in the brain's log in the same transaction. The rules live above the engine; the engine
keeps the few invariants that must hold under concurrency (a task is claimed once, a
decision changes only from the state its writer saw, an audit chain only grows by linking).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from shared_protocol import AuditEvent
from shared_protocol.brain import (
    Claimant,
    CompensationKind,
    Decision,
    KillState,
    Role,
    Task,
    TaskOutcome,
    TaskState,
)
from shared_protocol.decisions import DecisionState

from .audit import AuditAppend
from .exceptions import BodyMismatch, InvalidRequest, KeyReused, NotFound, StaleClaim
from .wake.records import AnswerToken, Escalation

LogAction = Literal[
    "token_create",
    "token_bind",
    "token_revoke",
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
    "reverse",
    "escalate",
    "page",
    "page_failed",
    "acknowledge",
    "alert",
    "answer_refused",
    "interaction_refused",
    "audit_prune",
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
    body_id: str | None = None
    """A body token's body, bound on its first use of a body id and never changed; always None for other roles."""
    revoked_at: datetime | None = None
    """Once set, the token is refused everywhere; it is never unset."""


@dataclass(kw_only=True, frozen=True)
class TaskKey:
    """An `Idempotency-Key` of a task creation: whose, the key, and the SHA-256 of the request it came with."""

    token_id: str
    key: str
    request_sha256: str


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


@dataclass(kw_only=True, frozen=True)
class CompensationDraft:
    """The body action behind a task update: the engine keeps what undoes the update under these ids."""

    action_id: str
    decision_id: str | None = None
    body_id: str | None = None
    """None: the body holding the task's claim (an outcome does not name its body)."""


@dataclass(kw_only=True, frozen=True)
class Compensation:
    """A compensating record: a task row just before and just after a body action changed it."""

    id: int
    action_id: str
    decision_id: str | None
    body_id: str | None
    kind: CompensationKind
    target: str
    """The task id."""
    before: dict[str, Any]
    """The task row (see `task_row`) as it was; reversing writes it back."""
    after: dict[str, Any]
    """The row the action left; a row that differs from it now was changed since (a conflict)."""
    created_at: datetime
    reversed_at: datetime | None = None
    reversed_by: str | None = None


@dataclass(kw_only=True, frozen=True)
class Reversal:
    """What `StateEngine.reverse` did: the records it reversed (newest first) and the conflicts it found.

    With conflicts and no force, nothing is reversed and `reversed` is empty.
    """

    reversed: list[Compensation]
    conflicts: list[str]


TASK_ROW_FIELDS = (
    "id",
    "title",
    "description",
    "value_usd",
    "state",
    "created_at",
    "created_by",
    "claimed_body",
    "claimed_agent",
    "claimed_at",
    "lease_expires",
    "claim_token",
    "attempts",
    "outcome_summary",
    "finished_at",
)
"""A task as stored, claim token included: the shape of a compensation's snapshots in every engine."""


def iso(at: datetime) -> str:
    """The one stored time format: UTC, microseconds, so that text order is time order."""
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def parse_time(value: object) -> datetime | None:
    """A stored time (see `iso`) back, or None."""
    return None if value is None else datetime.fromisoformat(str(value))


def task_row(task: Task, claim_token: str | None) -> dict[str, Any]:
    """`task` as the SQLite engine stores it, for engines that keep `Task` objects."""
    holder = task.claimed_by
    return {
        "id": task.id,
        "title": task.title,
        "description": task.description,
        "value_usd": task.value_usd,
        "state": task.state,
        "created_at": iso(task.created_at),
        "created_by": task.created_by,
        "claimed_body": None if holder is None else holder.body_id,
        "claimed_agent": None if holder is None else holder.agent,
        "claimed_at": None if task.claimed_at is None else iso(task.claimed_at),
        "lease_expires": None if task.lease_expires is None else iso(task.lease_expires),
        "claim_token": claim_token,
        "attempts": task.attempts,
        "outcome_summary": task.outcome_summary,
        "finished_at": None if task.finished_at is None else iso(task.finished_at),
    }


def task_from_row(row: Mapping[str, Any]) -> Task:
    """The `Task` a stored row describes (its claim token is not part of it)."""
    claimed_by = (
        None if row["claimed_body"] is None else Claimant(body_id=row["claimed_body"], agent=row["claimed_agent"] or "")
    )
    return Task(
        id=row["id"],
        title=row["title"],
        description=row["description"],
        value_usd=float(row["value_usd"]),
        state=row["state"],
        created_at=datetime.fromisoformat(row["created_at"]),
        created_by=row["created_by"],
        claimed_by=claimed_by,
        claimed_at=parse_time(row["claimed_at"]),
        lease_expires=parse_time(row["lease_expires"]),
        attempts=int(row["attempts"]),
        outcome_summary=row["outcome_summary"],
        finished_at=parse_time(row["finished_at"]),
    )


def conflicts_of(pending: Sequence[Compensation], current: Mapping[str, Mapping[str, Any] | None]) -> list[str]:
    """The records of `pending` (newest first) whose task is not as they left it.

    Walked over the rows as they are now, each as it will be once the newer records are put back: so a claim
    and an outcome of one decision reverse together, while a change made by anyone else since is a conflict.
    """
    rows = dict(current)
    conflicts: list[str] = []
    for record in pending:
        now = rows.get(record.target)
        if now is None:
            conflicts.append(f"task {record.target} no longer exists")
        elif dict(now) != record.after:
            conflicts.append(
                f"task {record.target} changed since {record.action_id} "
                f"(it left it {_describe(record.after)}; it is {_describe(now)} now)"
            )
        rows[record.target] = record.before
    return conflicts


def reversal_id_taken(as_action: str) -> InvalidRequest:
    """A reversal is kept only under an id that names no brain updates yet (checked in its transaction)."""
    return InvalidRequest(
        f"'{as_action}' already names brain updates: keep a reversal under a new id", field="as_action"
    )


def same_question(a: Decision, b: Decision) -> bool:
    """Whether two decisions ask the same thing of the same body (a retried request): everything the asker
    chose (the time it gave to answer, not when it asked), and what the rules made of it."""
    return (
        a.deadline - a.created_at == b.deadline - b.created_at
        and a.body_id == b.body_id
        and a.agent == b.agent
        and a.summary == b.summary
        and a.rationale == b.rationale
        and a.confidence == b.confidence
        and a.impact == b.impact
        and a.options == b.options
        and a.action == b.action
        and a.needs == b.needs
    )


def check_key(key: TaskKey, first_request_sha256: str) -> None:
    """`KeyReused` unless `key` comes with the request it first came with."""
    if first_request_sha256 != key.request_sha256:
        raise KeyReused(f"Idempotency-Key '{key.key}' was used for a different task request")


def not_current_claim(task_id: str, row: Mapping[str, Any] | None) -> NotFound | StaleClaim:
    """What to raise when a claim token is not the task's current one: the task is gone, or its claim is."""
    if row is None:
        return NotFound(f"no task '{task_id}'")
    return StaleClaim(f"task '{task_id}' is {row['state']} and this claim token is not its current one")


def check_holder(task_id: str, row: Mapping[str, Any] | None, holder: str | None) -> None:
    """`BodyMismatch` if `holder` is given and the task row (claimed now or last) is another body's."""
    if holder is None or row is None:
        return
    claimed = row["claimed_body"]
    if claimed is not None and claimed != holder:
        raise BodyMismatch(f"this token is bound to body '{holder}'; task '{task_id}' was claimed by body '{claimed}'")


def _describe(row: Mapping[str, Any]) -> str:
    holder = f" by {row['claimed_body']}" if row.get("state") == "claimed" and row.get("claimed_body") else ""
    return f"{row.get('state')}{holder}, attempt {row.get('attempts')}"


KILL_RELEASED = KillState(engaged=False)


class StateEngine(Protocol):
    """The brain's state. Implementations serialise writers; every method is atomic."""

    async def close(self) -> None: ...

    # -- tokens and the log ----------------------------------------------------------------

    async def add_token(self, record: TokenRecord, log: LogEntry) -> None: ...

    async def token_by_hash(self, token_hash: str) -> TokenRecord | None: ...

    async def tokens(self) -> list[TokenRecord]:
        """Every token, revoked ones included, oldest first."""
        ...

    async def bind_token(self, token_id: str, body_id: str, log: LogEntry) -> TokenRecord | None:
        """Bind an unbound, unrevoked body token to `body_id` (and write `log`); the token as stored afterwards.

        Atomic: of two first uses naming different bodies, exactly one binds, and the other gets back the
        token bound to the winner's body. A bound, revoked or non-body token is returned unchanged, with no log.
        None if there is no such token.
        """
        ...

    async def revoke_token(self, token_id: str, *, at: datetime, log: LogEntry) -> TokenRecord | None:
        """Revoke a token at `at` (and write `log`); the token as it was before, None if there is no such token.

        A token revoked already keeps its first `revoked_at`, and nothing is written.
        """
        ...

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

    async def append_audit(
        self, body_id: str, events: Sequence[AuditEvent], *, log_start_seq: int = 1, at: datetime | None = None
    ) -> AuditAppend:
        """Store the events of a batch that link to the body's chain (see `audit.link_batch`), as received `at`
        (default now): retention goes by when the brain received an event, never by the body's own clock."""
        ...

    async def audit_events(self, body_id: str, *, after_seq: int = 0, limit: int = 1000) -> list[AuditEvent]: ...

    async def prune_audit(self, before: datetime, log: LogEntry) -> dict[str, int]:
        """Delete each body's events received before `before` (the brain's clock: a body cannot age its own
        events by their `ts`), through the newest such seq, but never a body's newest event (the next batch links
        to it); logged once with what went, if anything did. Returns the number deleted per body that lost any."""
        ...

    # -- decisions -------------------------------------------------------------------------

    async def insert_decision(self, decision: Decision, log: LogEntry, *, reuse_pending: bool = False) -> Decision:
        """Store a new decision (and `log`); returns what is stored.

        With `reuse_pending`, a decision still pending (not yet due at `decision.created_at`) that asks the
        same question of the same body (`same_question`) is returned instead and nothing is
        written: a retried request is not a second question (nor a second page). Atomic with the insert.
        """
        ...

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

    async def insert_task(self, task: Task, log: LogEntry, *, key: TaskKey | None = None) -> Task:
        """Queue a new task (and write `log`); returns what is stored.

        With `key`, a task created before under the same token and key is returned instead and nothing is
        written, or `KeyReused` if that creation was a different request. Atomic with the insert.
        """
        ...

    async def task(self, task_id: str) -> Task | None: ...

    async def claim_task(
        self, grant: ClaimGrant, log: Callable[[Task], LogEntry], *, compensation: CompensationDraft | None = None
    ) -> Task | None:
        """Atomically move the most valuable queued task (oldest first among equals) to `claimed`.

        With `compensation`, a `task_claim` record of the row before and after is written in the same transaction.
        """
        ...

    async def finish_task(
        self,
        task_id: str,
        *,
        claim_token: str,
        outcome: TaskOutcome,
        summary: str,
        at: datetime,
        log: LogEntry,
        compensation: CompensationDraft | None = None,
        holder: str | None = None,
    ) -> Task:
        """Record a claimed task's outcome. Raises `NotFound`, or `StaleClaim` if the token is not the current one.

        With `holder`, a task claimed (now or last) by another body raises `BodyMismatch`, checked in the same
        transaction. With `compensation`, a `task_outcome` record of the row before and after is written in it too.
        """
        ...

    async def renew_lease(
        self, task_id: str, *, claim_token: str, lease_expires: datetime, holder: str | None = None
    ) -> Task:
        """Move a claimed task's lease on to `lease_expires`. Raises `NotFound`, `StaleClaim` (the token is not
        the current one: the task finished, or its lease ran out and it was requeued), or `BodyMismatch` with
        `holder` (another body's claim). Not logged: a renewal changes no state but the lease's end."""
        ...

    async def requeue_expired(self, now: datetime, log: Callable[[Task], LogEntry]) -> list[Task]:
        """Requeue claimed tasks whose lease has run out; their claim tokens go stale."""
        ...

    async def count_tasks(self) -> dict[TaskState, int]: ...

    # -- reversal --------------------------------------------------------------------------

    async def compensations(self, target_id: str) -> list[Compensation]:
        """Every compensating record (reversed or not) of the action or decision `target_id`, oldest first."""
        ...

    async def reverse(
        self,
        target_id: str,
        *,
        force: bool,
        at: datetime,
        log: Callable[[Compensation], LogEntry],
        dry_run: bool = False,
        as_action: str | None = None,
    ) -> Reversal:
        """Put back the task rows of `target_id`'s unreversed records, newest first, in one transaction.

        A task whose row differs from what the record left is a conflict: without `force` nothing changes.
        Each reversed record is marked (at `at`, by its log entry's `by`) and gets its own log line.
        `as_action`: each row put back is itself recorded (kind `reversal`, the row it overwrote as `before`)
        under this action id, so that reversing `as_action` redoes it; an id that already names records is
        refused (`reversal_id_taken`), dry runs included.
        `dry_run`: change nothing, and return the records that would be reversed (unmarked).
        """
        ...

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
