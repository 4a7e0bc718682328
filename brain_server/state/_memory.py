"""`MemoryStateEngine`: the state engine in dictionaries, for tests and the demo (`memory://`).

Same contract as the SQLite engine. Every method runs without awaiting in between, so on
one event loop each one is atomic without a lock.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from shared_protocol import AuditEvent
from shared_protocol.brain import Claimant, CompensationKind, Decision, KillState, Task, TaskOutcome, TaskState
from shared_protocol.decisions import DecisionState

from ..audit import AuditAppend, link_batch, seqs_to_look_up
from ..exceptions import NoDatabase
from ..wake.records import OPEN_STATES, AnswerToken, Escalation
from ._protocols import Durability, EngineKind, StateEngine
from ._records import (
    BodyRecord,
    ClaimGrant,
    Compensation,
    CompensationDraft,
    LogEntry,
    Reversal,
    TaskKey,
    TokenRecord,
)
from ._rules import (
    check_holder,
    check_key,
    conflicts_of,
    iso,
    not_current_claim,
    reversal_id_taken,
    same_question,
    task_from_row,
    task_row,
)

KILL_RELEASED = KillState(engaged=False)


class MemoryStateEngine:
    """The brain's state in memory: lost when the process ends."""

    def __init__(self) -> None:
        self._tokens: dict[str, TokenRecord] = {}
        self._log: list[LogEntry] = []
        self._kill: KillState = KILL_RELEASED
        self._bodies: dict[str, BodyRecord] = {}
        self._audit: dict[str, dict[int, AuditEvent]] = {}
        self._audit_floor: dict[str, int] = {}
        self._audit_received: dict[str, dict[int, str]] = {}
        self._decisions: dict[str, Decision] = {}
        self._tasks: dict[str, Task] = {}
        self._claim_tokens: dict[str, str] = {}
        self._task_keys: dict[tuple[str, str], tuple[str, str]] = {}
        self._compensations: list[Compensation] = []
        self._escalations: dict[str, Escalation] = {}
        self._answer_tokens: dict[str, AnswerToken] = {}
        self._interactions: dict[str, datetime] = {}

    async def close(self) -> None:
        return None

    # -- tokens and the log ----------------------------------------------------------------

    async def add_token(self, record: TokenRecord, log: LogEntry) -> None:
        self._tokens[record.token_hash] = record
        self._log.append(log)

    async def token_by_hash(self, token_hash: str) -> TokenRecord | None:
        return self._tokens.get(token_hash)

    async def tokens(self) -> list[TokenRecord]:
        return sorted(self._tokens.values(), key=lambda t: t.created_at)  # stable: creation order among equals

    def _token_by_id(self, token_id: str) -> TokenRecord | None:
        return next((t for t in self._tokens.values() if t.id == token_id), None)

    async def bind_token(self, token_id: str, body_id: str, log: LogEntry) -> TokenRecord | None:
        token = self._token_by_id(token_id)
        if token is None or token.role != "body" or token.body_id is not None or token.revoked_at is not None:
            return token
        bound = replace(token, body_id=body_id)
        self._tokens[token.token_hash] = bound
        self._log.append(log)
        return bound

    async def revoke_token(self, token_id: str, *, at: datetime, log: LogEntry) -> TokenRecord | None:
        token = self._token_by_id(token_id)
        if token is not None and token.revoked_at is None:
            self._tokens[token.token_hash] = replace(token, revoked_at=at)
            self._log.append(log)
        return token

    async def log_entries(self, *, limit: int = 100) -> list[LogEntry]:
        return self._log[-limit:]

    # -- kill switch and bodies ------------------------------------------------------------

    async def kill_state(self) -> KillState:
        return self._kill

    async def set_kill_state(self, state: KillState, log: LogEntry) -> None:
        self._kill = state
        self._log.append(log)

    async def upsert_body(self, body: BodyRecord) -> None:
        known = self._bodies.get(body.body_id)
        if known is not None:
            body = BodyRecord(
                body_id=body.body_id,
                workspace=body.workspace,
                hostname=body.hostname,
                version=body.version,
                registered_at=known.registered_at,
                last_heartbeat=body.last_heartbeat,
            )
        self._bodies[body.body_id] = body

    async def touch_body(self, body_id: str, at: datetime) -> bool:
        known = self._bodies.get(body_id)
        if known is None:
            return False
        self._bodies[body_id] = BodyRecord(
            body_id=known.body_id,
            workspace=known.workspace,
            hostname=known.hostname,
            version=known.version,
            registered_at=known.registered_at,
            last_heartbeat=at,
        )
        return True

    async def bodies(self) -> list[BodyRecord]:
        return sorted(self._bodies.values(), key=lambda b: b.body_id)

    # -- audit -----------------------------------------------------------------------------

    async def append_audit(
        self, body_id: str, events: Sequence[AuditEvent], *, log_start_seq: int = 1, at: datetime | None = None
    ) -> AuditAppend:
        chain = self._audit.setdefault(body_id, {})
        head = max(chain, default=0)
        stored = {seq: chain[seq].mac for seq in seqs_to_look_up(head, events) if seq in chain}
        floor = self._audit_floor.get(body_id, 0)
        plan = link_batch(head, stored, events, log_start_seq=log_start_seq, floor=floor)
        received = self._audit_received.setdefault(body_id, {})
        for event in plan.new:
            chain[event.seq] = event
            received[event.seq] = iso(at or datetime.now(UTC))
        return AuditAppend(stored_through=plan.through(head), problem=plan.problem, stored=len(plan.new))

    async def audit_events(self, body_id: str, *, after_seq: int = 0, limit: int = 1000) -> list[AuditEvent]:
        chain = self._audit.get(body_id, {})
        return [chain[seq] for seq in sorted(chain) if seq > after_seq][:limit]

    async def prune_audit(self, before: datetime, log: LogEntry) -> dict[str, int]:
        cutoff = iso(before)
        pruned: dict[str, int] = {}
        for body_id, chain in sorted(self._audit.items()):
            head = max(chain, default=0)
            received = self._audit_received.get(body_id, {})
            through = max((seq for seq in chain if seq < head and received.get(seq, "") < cutoff), default=0)
            if not through:
                continue
            gone = [seq for seq in chain if seq <= through]
            for seq in gone:
                del chain[seq]
                received.pop(seq, None)
            self._audit_floor[body_id] = through
            pruned[body_id] = len(gone)
        if pruned:
            self._log.append(replace(log, detail={**log.detail, "pruned": pruned}))
        return pruned

    # -- decisions -------------------------------------------------------------------------

    async def insert_decision(self, decision: Decision, log: LogEntry, *, reuse_pending: bool = False) -> Decision:
        if reuse_pending:
            for existing in self._decisions.values():
                if (
                    existing.state == "pending"
                    and existing.deadline > decision.created_at
                    and same_question(existing, decision)
                ):
                    return existing
        self._decisions[decision.id] = decision
        self._log.append(log)
        return decision

    async def decision(self, decision_id: str) -> Decision | None:
        return self._decisions.get(decision_id)

    async def replace_decision(self, decision: Decision, *, expected: DecisionState, log: LogEntry) -> bool:
        current = self._decisions.get(decision.id)
        if current is None or current.state != expected:
            return False
        self._decisions[decision.id] = decision
        self._log.append(log)
        return True

    async def due_decisions(self, now: datetime) -> list[Decision]:
        return [d for d in self._decisions.values() if d.state == "pending" and d.deadline <= now]

    async def count_pending_decisions(self, now: datetime) -> int:
        return sum(1 for d in self._decisions.values() if d.state == "pending" and d.deadline > now)

    # -- tasks -----------------------------------------------------------------------------

    async def insert_task(self, task: Task, log: LogEntry, *, key: TaskKey | None = None) -> Task:
        if key is not None:
            seen = self._task_keys.get((key.token_id, key.key))
            if seen is not None:
                check_key(key, seen[0])
                return self._tasks[seen[1]]
            self._task_keys[(key.token_id, key.key)] = (key.request_sha256, task.id)
        self._tasks[task.id] = task
        self._log.append(log)
        return task

    async def task(self, task_id: str) -> Task | None:
        return self._tasks.get(task_id)

    async def claim_task(
        self, grant: ClaimGrant, log: Callable[[Task], LogEntry], *, compensation: CompensationDraft | None = None
    ) -> Task | None:
        order = list(self._tasks)
        queued = [t for t in self._tasks.values() if t.state == "queued"]
        if not queued:
            return None
        best = min(queued, key=lambda t: (-t.value_usd, order.index(t.id)))
        before = self._row(best.id)
        claimed = best.model_copy(
            update={
                "state": "claimed",
                "claimed_by": Claimant(body_id=grant.body_id, agent=grant.agent),
                "claimed_at": grant.at,
                "lease_expires": grant.lease_expires,
                "attempts": best.attempts + 1,
            }
        )
        self._tasks[claimed.id] = claimed
        self._claim_tokens[claimed.id] = grant.claim_token
        if compensation is not None:
            self._compensate(compensation, "task_claim", before, grant.at)
        self._log.append(log(claimed))
        return claimed

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
        task = self._current_claim(task_id, claim_token, holder)
        before = self._row(task_id)
        finished = task.model_copy(
            update={"state": outcome, "outcome_summary": summary, "finished_at": at, "lease_expires": None}
        )
        self._tasks[task_id] = finished
        del self._claim_tokens[task_id]
        if compensation is not None:
            self._compensate(compensation, "task_outcome", before, at)
        self._log.append(log)
        return finished

    def _current_claim(self, task_id: str, claim_token: str, holder: str | None) -> Task:
        """The task, if `claim_token` is its current claim (and `holder`'s, when given)."""
        row = self._row(task_id) if task_id in self._tasks else None
        check_holder(task_id, row, holder)
        task = self._tasks.get(task_id)
        if task is None or task.state != "claimed" or self._claim_tokens.get(task_id) != claim_token:
            raise not_current_claim(task_id, row)
        return task

    async def renew_lease(
        self, task_id: str, *, claim_token: str, lease_expires: datetime, holder: str | None = None
    ) -> Task:
        task = self._current_claim(task_id, claim_token, holder)
        renewed = task.model_copy(update={"lease_expires": lease_expires})
        self._tasks[task_id] = renewed
        return renewed

    async def requeue_expired(self, now: datetime, log: Callable[[Task], LogEntry]) -> list[Task]:
        requeued: list[Task] = []
        for task in list(self._tasks.values()):
            if task.state == "claimed" and task.lease_expires is not None and task.lease_expires <= now:
                back = task.model_copy(
                    update={"state": "queued", "claimed_by": None, "claimed_at": None, "lease_expires": None}
                )
                self._tasks[task.id] = back
                self._claim_tokens.pop(task.id, None)
                self._log.append(log(task))
                requeued.append(back)
        return requeued

    async def count_tasks(self) -> dict[TaskState, int]:
        counts: dict[TaskState, int] = {}
        for task in self._tasks.values():
            counts[task.state] = counts.get(task.state, 0) + 1
        return counts

    # -- reversal --------------------------------------------------------------------------

    def _row(self, task_id: str) -> dict[str, Any]:
        return task_row(self._tasks[task_id], self._claim_tokens.get(task_id))

    def _compensate(
        self, draft: CompensationDraft, kind: CompensationKind, before: dict[str, Any], at: datetime
    ) -> None:
        self._compensations.append(
            Compensation(
                id=len(self._compensations) + 1,
                action_id=draft.action_id,
                decision_id=draft.decision_id,
                body_id=draft.body_id or before["claimed_body"],
                kind=kind,
                target=before["id"],
                before=before,
                after=self._row(before["id"]),
                created_at=at,
            )
        )

    async def compensations(self, target_id: str) -> list[Compensation]:
        return [c for c in self._compensations if target_id in (c.action_id, c.decision_id)]

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
        if as_action is not None and any(as_action in (c.action_id, c.decision_id) for c in self._compensations):
            raise reversal_id_taken(as_action)
        pending = [
            c
            for c in reversed(self._compensations)
            if target_id in (c.action_id, c.decision_id) and c.reversed_at is None
        ]
        current = {c.target: self._row(c.target) if c.target in self._tasks else None for c in pending}
        conflicts = conflicts_of(pending, current)
        if conflicts and not force:
            return Reversal(reversed=[], conflicts=conflicts)
        if dry_run:
            return Reversal(reversed=pending, conflicts=conflicts)
        entries = [log(record) for record in pending]  # before any change: a failing one leaves all as it was
        done: list[Compensation] = []
        for record, entry in zip(pending, entries, strict=True):
            overwritten = self._row(record.target) if record.target in self._tasks else None
            self._tasks[record.target] = task_from_row(record.before)
            token = record.before["claim_token"]
            if token is None:
                self._claim_tokens.pop(record.target, None)
            else:
                self._claim_tokens[record.target] = token
            if as_action is not None and overwritten is not None:
                draft = CompensationDraft(action_id=as_action, body_id=record.body_id)
                self._compensate(draft, "reversal", overwritten, at)
            marked = replace(record, reversed_at=at, reversed_by=entry.by)
            self._compensations[record.id - 1] = marked
            self._log.append(entry)
            done.append(marked)
        return Reversal(reversed=done, conflicts=conflicts)

    # -- waking humans ---------------------------------------------------------------------

    async def append_log(self, entry: LogEntry) -> None:
        self._log.append(entry)

    async def insert_escalation(self, escalation: Escalation, log: LogEntry) -> bool:
        if escalation.id in self._escalations:
            return False
        self._escalations[escalation.id] = escalation
        self._log.append(log)
        return True

    async def escalation(self, escalation_id: str) -> Escalation | None:
        return self._escalations.get(escalation_id)

    async def replace_escalation(self, escalation: Escalation, *, log: LogEntry | None = None) -> bool:
        current = self._escalations.get(escalation.id)
        if current is None or current.version != escalation.version - 1:
            return False
        self._escalations[escalation.id] = escalation
        if log is not None:
            self._log.append(log)
        return True

    async def due_escalations(self, now: datetime) -> list[Escalation]:
        due = [
            e for e in self._escalations.values() if e.state == "active" and e.next_at is not None and e.next_at <= now
        ]
        return sorted(due, key=lambda e: e.next_at or now)

    async def open_escalation(self, dedup_key: str, *, since: datetime) -> Escalation | None:
        matching = [
            e
            for e in self._escalations.values()
            if e.dedup_key == dedup_key and e.state in OPEN_STATES and e.created_at >= since
        ]
        return max(matching, key=lambda e: e.created_at, default=None)

    async def add_answer_tokens(self, tokens: Sequence[AnswerToken], *, now: datetime) -> None:
        self._answer_tokens = {k: t for k, t in self._answer_tokens.items() if t.expires_at > now}
        for token in tokens:
            self._answer_tokens[token.token_hash] = token

    async def answer_token(self, token_hash: str) -> AnswerToken | None:
        return self._answer_tokens.get(token_hash)

    async def use_answer_token(self, token_hash: str, at: datetime) -> AnswerToken | None:
        token = self._answer_tokens.get(token_hash)
        if token is None or token.used_at is not None or token.expires_at <= at:
            return None
        used = replace(token, used_at=at)
        self._answer_tokens[token_hash] = used
        return used

    async def remember_interaction(self, interaction_id: str, at: datetime, *, forget_before: datetime) -> bool:
        self._interactions = {k: v for k, v in self._interactions.items() if v >= forget_before}
        if interaction_id in self._interactions:
            return False
        self._interactions[interaction_id] = at
        return True


def _location_problem(location: str) -> str | None:
    return None if not location else "memory:// takes nothing after it"


async def _open_location(location: str, *, durability: Durability, create: bool) -> StateEngine:
    if not create:
        raise NoDatabase("memory:// holds nothing until it is opened: there is no database to open")
    return MemoryStateEngine()


MEMORY = EngineKind(form="memory://", durable=False, problem=_location_problem, open=_open_location)
"""`memory://`: a new, empty engine on every open, gone when it is closed. `durability` does not apply."""
