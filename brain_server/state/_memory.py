"""`MemoryStateEngine`: the state engine in dictionaries, for tests and throwaway brains (`memory://`).

Same contract as the SQLite engine, and put together the same way: the task queue with its
compensating records is `_memory_tasks`, the rest is here. Every method runs without awaiting
in between, so on one event loop each one is atomic without a lock.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime

import anyio

from shared_protocol import AuditEvent
from shared_protocol.brain import Decision, KillState, Task
from shared_protocol.decisions import DecisionState

from ..audit import AuditAppend, link_batch, seqs_to_look_up
from ..exceptions import NoDatabase, StateBroken
from ..wake.records import OPEN_STATES, AnswerToken, Escalation
from ._memory_autonomy import MemoryAutonomy
from ._memory_pauses import MemoryPauses
from ._memory_rollouts import MemoryRollouts
from ._memory_tasks import MemoryTasks
from ._memory_telemetry import MemoryTelemetry
from ._protocols import Durability, EngineKind, RecordRewrite, StateEngine
from ._records import BodyRecord, DecisionReplaced, LogEntry, Rebinding, TokenRecord
from ._rules import body_key_change, canonical, decision_mark, iso, rebind_refusal, same_question
from ._sessions import MemorySessions

KILL_RELEASED = KillState(engaged=False)


class MemoryStateEngine(MemoryTasks, MemoryAutonomy, MemoryTelemetry, MemorySessions, MemoryPauses, MemoryRollouts):
    """The brain's state in memory: lost when the process ends."""

    def __init__(self) -> None:
        MemoryTasks.__init__(self)
        MemoryAutonomy.__init__(self)
        MemoryTelemetry.__init__(self)
        MemorySessions.__init__(self)
        MemoryPauses.__init__(self)
        MemoryRollouts.__init__(self)
        self._tokens: dict[str, TokenRecord] = {}
        self._log: list[LogEntry] = []
        self._kill: KillState = KILL_RELEASED
        self._bodies: dict[str, BodyRecord] = {}
        self._audit: dict[str, dict[int, AuditEvent]] = {}
        self._audit_floor: dict[str, int] = {}
        self._audit_ids: dict[tuple[str, str], int] = {}
        """Each stored event's seq by (body id, action id)."""
        self._audit_received: dict[str, dict[int, str]] = {}
        self._decisions: dict[str, Decision] = {}
        self._escalations: dict[str, Escalation] = {}
        self._answer_tokens: dict[str, AnswerToken] = {}
        self._interactions: dict[str, datetime] = {}

    async def close(self) -> None:
        return None

    @property
    def broken(self) -> StateBroken | None:
        return None  # nothing to damage: it is only memory

    async def wait_broken(self) -> StateBroken:
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    # -- tokens and the log ----------------------------------------------------------------

    async def add_token(self, record: TokenRecord, log: LogEntry) -> None:
        self._tokens[record.token_hash] = record
        self._log.append(log)

    async def token_by_hash(self, token_hash: str) -> TokenRecord | None:
        return self._tokens.get(token_hash)

    async def tokens(self) -> list[TokenRecord]:
        return sorted(self._tokens.values(), key=lambda t: t.created_at)  # stable: creation order among equals

    async def has_agent_token(self, agent: str) -> bool:
        return any(t.agent == agent for t in self._tokens.values())

    def _token_by_id(self, token_id: str) -> TokenRecord | None:
        return next((t for t in self._tokens.values() if t.id == token_id), None)

    async def bind_token(self, token_id: str, body_id: str, log: LogEntry) -> TokenRecord | None:
        token = self._token_by_id(token_id)
        if token is None or token.role != "body" or token.body_id is not None or token.revoked_at is not None:
            return token
        if any(t.body_id == body_id for t in self._tokens.values()):
            return token  # another token's body: only a rebind moves it
        bound = replace(token, body_id=body_id)
        self._tokens[token.token_hash] = bound
        self._log.append(log)
        return bound

    async def rebind_body(
        self, body_id: str, token_id: str, *, at: datetime, log: LogEntry, revoke_log: LogEntry
    ) -> Rebinding:
        token = self._token_by_id(token_id)
        held_by = [t for t in self._tokens.values() if t.body_id == body_id]
        if (refusal := rebind_refusal(token, body_id, held_by)) is not None:
            raise refusal
        assert token is not None
        holder = next(
            (t for t in self._tokens.values() if t.body_id == body_id and t.revoked_at is None and t.id != token_id),
            None,
        )
        if holder is not None:
            self._tokens[holder.token_hash] = replace(holder, revoked_at=at)
            self._log.append(replace(revoke_log, target=holder.id))
        bound = replace(token, body_id=body_id)
        self._tokens[token.token_hash] = bound
        known = self._bodies.get(body_id)
        if known is not None:
            self._bodies[body_id] = replace(known, verify_key=None)
        self._log.append(log)
        return Rebinding(token=bound, previous=holder)

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

    async def note_kill(self, state: KillState, log: LogEntry) -> None:
        """Nothing to note: a memory engine does not outlive its process."""

    async def set_kill_state(self, state: KillState, log: LogEntry) -> None:
        self._kill = state
        self._log.append(log)

    async def upsert_body(self, body: BodyRecord, *, key_log: LogEntry | None = None) -> None:
        known = self._bodies.get(body.body_id)
        kept = None if known is None else known.verify_key
        key_is_new = body_key_change(body.body_id, kept, body.verify_key)
        registered_at = body.registered_at if known is None else known.registered_at
        self._bodies[body.body_id] = replace(
            body, registered_at=registered_at, left_at=None, verify_key=kept or body.verify_key
        )
        if key_is_new and key_log is not None:
            self._log.append(key_log)

    async def touch_body(self, body_id: str, at: datetime) -> bool:
        known = self._bodies.get(body_id)
        if known is None or known.left_at is not None:
            return False
        self._bodies[body_id] = replace(known, last_heartbeat=at)
        return True

    async def deregister_body(self, body_id: str, *, at: datetime, log: LogEntry) -> bool:
        known = self._bodies.get(body_id)
        if known is None:
            return False
        self._bodies[body_id] = replace(known, left_at=at)
        self._log.append(log)
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
        for event in plan.new:
            self._audit_ids.setdefault((body_id, event.id), event.seq)  # (an id twice: the first one)
        new = {e.id: e for e in plan.new if e.kind == "tool_call"}  # (a re-run a verification may wait for)
        if new:
            self._settle_new(at or datetime.now(UTC), new)
        return AuditAppend(stored_through=plan.through(head), problem=plan.problem, stored=len(plan.new))

    def _audit_head(self, body_id: str) -> int:
        return max(self._audit.get(body_id, {}), default=0)

    def _audit_event(self, body_id: str, action_id: str) -> AuditEvent | None:
        seq = self._audit_ids.get((body_id, action_id))
        return None if seq is None else self._audit.get(body_id, {}).get(seq)

    def _verify_key(self, body_id: str) -> str | None:
        known = self._bodies.get(body_id)
        return None if known is None else known.verify_key

    async def audit_events(self, body_id: str, *, after_seq: int = 0, limit: int = 1000) -> list[AuditEvent]:
        chain = self._audit.get(body_id, {})
        return [chain[seq] for seq in sorted(chain) if seq > after_seq][:limit]

    async def refused_events(self, agent: str) -> list[AuditEvent]:
        return [
            chain[seq]
            for _, chain in sorted(self._audit.items())
            for seq in sorted(chain)
            if chain[seq].outcome == "refused" and chain[seq].agent == agent
        ]

    async def rewrite_audit_events(
        self, rewrite: Callable[[str], str | None], log: LogEntry
    ) -> tuple[int, dict[str, int]]:
        read = 0
        rewritten: dict[str, int] = {}
        new_events: dict[tuple[str, int], AuditEvent] = {}
        for body_id, chain in sorted(self._audit.items()):
            for seq in sorted(chain):
                read += 1
                new = rewrite(canonical(chain[seq].model_dump(mode="json")))
                if new is not None:
                    new_events[(body_id, seq)] = AuditEvent.model_validate_json(new)
                    rewritten[body_id] = rewritten.get(body_id, 0) + 1
        for (body_id, seq), event in new_events.items():
            self._audit[body_id][seq] = event
        if rewritten:
            await self.append_log(replace(log, detail={**log.detail, "rewritten": rewritten, "events": read}))
        return read, rewritten

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
                if self._audit_ids.get((body_id, chain[seq].id)) == seq:
                    del self._audit_ids[(body_id, chain[seq].id)]
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

    async def replace_decision(
        self, decision: Decision, *, expected: DecisionState, log: LogEntry, previous: Decision | None = None
    ) -> DecisionReplaced | None:
        current = self._decisions.get(decision.id)
        if current is None or current.state != expected:
            return None
        if previous is not None and decision_mark(current) != decision_mark(previous):
            return None
        self._decisions[decision.id] = decision
        self._log.append(log)
        return DecisionReplaced(ended=self._end_parked(decision, log))

    async def due_decisions(self, now: datetime) -> list[Decision]:
        return [d for d in self._decisions.values() if d.state == "pending" and d.deadline <= now]

    async def pending_decisions(self) -> list[Decision]:
        pending = [d for d in self._decisions.values() if d.state == "pending"]
        return sorted(pending, key=lambda d: (d.deadline, d.id))

    async def count_pending_decisions(self, now: datetime) -> int:
        return sum(1 for d in self._decisions.values() if d.state == "pending" and d.deadline > now)

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

    async def escalations(self) -> list[Escalation]:
        return sorted(self._escalations.values(), key=lambda e: (e.created_at, e.id))

    async def rewrite_records(self, change: RecordRewrite, log: LogEntry) -> dict[str, int]:
        # Everything is worked out first and changed only then: a `change` that fails leaves nothing half done.
        task_events = 0
        tasks: dict[str, Task] = {}
        for task_id, task in self._tasks.items():
            if (new := change.task(task)) is not None:
                tasks[task_id] = new
                task_events += sum(1 for a, b in zip(task.history, new.history, strict=True) if a != b)
        compensations = self._rewritten_compensations(change.task)
        decisions = {i: new for i, d in self._decisions.items() if (new := change.decision(d)) is not None}
        escalations = {i: new for i, e in self._escalations.items() if (new := change.escalation(e)) is not None}
        entries: dict[int, LogEntry] = {}
        for n, entry in enumerate(self._log):
            reason, detail = change.reason(entry.reason), change.log_detail(entry.detail)
            if reason is not None or detail is not None:
                entries[n] = replace(
                    entry,
                    reason=entry.reason if reason is None else reason,
                    detail=entry.detail if detail is None else detail,
                )
        kill = None if not self._kill.reason else change.reason(self._kill.reason)
        pauses = {a: new for a, pause in self._pauses.items() if (new := change.reason(pause.reason)) is not None}
        reports, overrides = self._rewritten_readiness(change.readiness_report, change.readiness_override)
        bodies = {i: new for i, b in self._bodies.items() if (new := change.body(b)) is not None}
        targets = {
            h: replace(t, target=new)
            for h, t in self._answer_tokens.items()
            if (new := change.reason(t.target)) is not None
        }
        keys: dict[tuple[str, str], tuple[str, tuple[str, str]]] = {}  # (each row's key and request digest, keyed)
        for (token_id, old), (digest, task_id) in self._task_keys.items():
            new_key, new_digest = change.task_key(token_id, old), change.task_request(digest)
            if new_key is not None or new_digest is not None:
                keys[(token_id, new_key or old)] = (old, (new_digest or digest, task_id))
        self._tasks.update(tasks)
        for (token_id, new), (old, seen) in keys.items():
            del self._task_keys[(token_id, old)]
            self._task_keys[(token_id, new)] = seen
        for n, record in compensations.items():
            self._compensations[n] = record
        self._decisions.update(decisions)
        self._escalations.update(escalations)
        for n, entry in entries.items():
            self._log[n] = entry
        if kill is not None:
            self._kill = self._kill.model_copy(update={"reason": kill})
        for agent, reason in pauses.items():
            self._pauses[agent] = self._pauses[agent].model_copy(update={"reason": reason})
        for n, report in reports.items():
            self._reports[n] = report
        for n, override in overrides.items():
            self._overrides[n] = override
        self._bodies.update(bodies)
        self._answer_tokens.update(targets)
        counts = dict(
            tasks=len(tasks),
            task_events=task_events,
            compensations=len(compensations),
            decisions=len(decisions),
            escalations=len(escalations),
            log=len(entries),
            kill=0 if kill is None else 1,
            pauses=len(pauses),
            readiness_reports=len(reports),
            readiness_overrides=len(overrides),
            bodies=len(bodies),
            task_keys=len(keys),
            answer_tokens=len(targets),
        )
        counts = {kind: n for kind, n in counts.items() if n}
        if counts:
            self._log.append(replace(log, detail={**log.detail, "records": counts}))
        return counts

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

    async def answer_tokens(self) -> list[AnswerToken]:
        return sorted(self._answer_tokens.values(), key=lambda t: t.created_at)

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
