"""The memory engine's task queue and compensating records (`TaskStore`, `CompensationStore`).

Tasks are kept as `Task` objects with their claim tokens beside them; a compensation keeps the
task row (`task_row`) as the SQLite engine stores it, so both engines compare and restore alike.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any, cast

from shared_protocol import AuditEvent
from shared_protocol.brain import AgentPause, CompensationKind, Decision, KillState, Task, TaskState

from ..verification import Evidence, awaited, settle_task
from ._records import (
    ClaimGrant,
    Compensation,
    CompensationDraft,
    KeptKeys,
    KeptRequest,
    LogEntry,
    Reversal,
    TaskKey,
)
from ._rules import (
    check_key,
    check_key_store,
    conflicts_of,
    ended_log,
    reversal_id_taken,
    rewritten_row,
    task_from_row,
    task_row,
)
from ._transitions import (
    ENDS_PARKED,
    Step,
    StoredTask,
    TaskTransitions,
    claim,
    claimable,
    end_parked,
    lose_lease,
    reversal_event,
)


class MemoryTasks(TaskTransitions):
    """Tasks, their claim tokens and keys, and their compensating records, in dictionaries."""

    _log: list[LogEntry]
    """The brain's log, which the engine this is part of keeps."""
    _kill: KillState
    """The brain's kill switch, which the engine this is part of keeps."""
    _pauses: dict[str, AgentPause]
    """The agents paused (`MemoryPauses`)."""

    def __init__(self) -> None:
        self._tasks: dict[str, Task] = {}
        self._claim_tokens: dict[str, str] = {}
        self._task_keys: dict[tuple[str, str], tuple[str, str]] = {}
        self._task_key_secret: str | None = None
        self._compensations: list[Compensation] = []
        self._verification_uses: dict[tuple[str, str], str] = {}
        """Which verification each audit event (body id, action id) confirmed (never changed)."""

    # -- tasks -----------------------------------------------------------------------------

    async def insert_task(self, task: Task, log: LogEntry, *, key: TaskKey | None = None) -> Task:
        if key is not None:
            check_key_store(key, self._task_key_secret)
            self._task_key_secret = key.secret_check
            seen = self._task_keys.get((key.token_id, key.key))
            if seen is None and key.sent is not None:
                seen = self._task_keys.get((key.token_id, key.sent))
            if seen is not None:
                check_key(key, seen[0])
                return self._tasks[seen[1]]
            self._task_keys[(key.token_id, key.key)] = (key.request_sha256, task.id)
        self._tasks[task.id] = task
        self._log.append(log)
        return task

    async def accept_key_store(self, secret_check: str, log: LogEntry) -> tuple[bool, int]:
        if self._task_key_secret == secret_check:
            return False, len(self._task_keys)
        self._task_key_secret = secret_check
        self._log.append(log)
        return True, len(self._task_keys)

    async def unpinned_keys(self) -> KeptKeys | None:
        if self._task_key_secret is not None or not self._task_keys:
            return None
        keyed = [self._tasks[task_id] for _, task_id in self._task_keys.values()]
        return KeptKeys(
            keys=len(self._task_keys),
            texts=[text for task in keyed for text in (task.title, task.description) if "[pii:" in text],
            erased=frozenset(e.target for e in self._log if e.action == "privacy_erase" and e.target is not None),
            requests=[
                KeptRequest(request_sha256=digest, task=self._tasks[task_id])
                for digest, task_id in self._task_keys.values()
                if digest.startswith("hmac ")
            ],
        )

    async def pin_key_store(self, secret_check: str) -> bool:
        if self._task_key_secret is not None:
            return False
        self._task_key_secret = secret_check
        return True

    async def task(self, task_id: str) -> Task | None:
        return self._tasks.get(task_id)

    async def tasks(self, *, state: TaskState | None = None, agent: str | None = None) -> list[Task]:
        return [
            t
            for t in self._tasks.values()
            if (state is None or t.state == state)
            and (agent is None or (t.claimed_by is not None and t.claimed_by.agent == agent))
        ]

    async def task_page(
        self, *, state: TaskState | None = None, agent: str | None = None, limit: int, offset: int = 0
    ) -> tuple[list[Task], int]:
        every = await self.tasks(state=state, agent=agent)
        end = len(every) - offset
        return every[max(0, end - limit) : max(0, end)], len(every)

    def _stored(self, task_id: str) -> StoredTask | None:
        task = self._tasks.get(task_id)
        return None if task is None else StoredTask(task=task, claim_token=self._claim_tokens.get(task_id))

    def _put(self, stored: StoredTask) -> None:
        self._tasks[stored.task.id] = stored.task
        if stored.claim_token is None:
            self._claim_tokens.pop(stored.task.id, None)
        else:
            self._claim_tokens[stored.task.id] = stored.claim_token

    async def claim_task(
        self, grant: ClaimGrant, log: Callable[[Task], LogEntry], *, compensation: CompensationDraft | None = None
    ) -> Task | None:
        if self._kill.engaged or grant.agent in self._pauses:
            return None
        order = list(self._tasks)
        candidates = [t for t in self._tasks.values() if claimable(t, grant) and grant.task_id in (None, t.id)]
        if not candidates:
            return None
        best = min(candidates, key=lambda t: (-t.value_usd, order.index(t.id)))
        before = self._row(best.id)
        stored = self._stored(best.id)
        assert stored is not None
        after = claim(stored, replace(grant, audit_seq=self._audit_head(grant.body_id)))
        self._put(after)
        if compensation is not None:
            self._compensate(compensation, "task_claim", before, grant.at)
        self._log.append(log(after.task))
        return after.task

    async def _change(
        self,
        task_id: str,
        step: Step,
        *,
        log: LogEntry | None = None,
        compensation: tuple[CompensationDraft, str] | None = None,
        at: datetime | None = None,
        settle: bool = False,
    ) -> Task:
        stored = self._stored(task_id)
        after = step(stored)
        if settle:
            assert at is not None, "a verification is settled at a time"
            after = self._settled(after, at)
        before = self._row(task_id)
        self._put(after)
        if compensation is not None:
            draft, kind = compensation
            assert at is not None, "a compensation is kept at a time"
            self._compensate(draft, cast(CompensationKind, kind), before, at)
        if log is not None:
            self._log.append(log)
        return after.task

    async def requeue_expired(self, now: datetime, log: Callable[[Task], LogEntry]) -> list[Task]:
        requeued: list[Task] = []
        for task in list(self._tasks.values()):
            if task.state == "claimed" and task.lease_expires is not None and task.lease_expires <= now:
                back = lose_lease(StoredTask(task=task), at=now)
                self._put(back)
                self._log.append(log(task))
                requeued.append(back.task)
        return requeued

    def _end_parked(self, decision: Decision, log: LogEntry) -> list[Task]:
        """End the tasks parked on `decision`, if it came to an end without approval (see `replace_decision`)."""
        if decision.state not in ENDS_PARKED:
            return []
        ended: list[Task] = []
        for task in list(self._tasks.values()):
            if task.state == "waiting_approval" and task.parked_decision_id == decision.id:
                stored = self._stored(task.id)
                assert stored is not None
                after = end_parked(stored, decision, at=log.at, by=log.by)
                self._put(after)
                self._log.append(ended_log(after.task, decision, log))
                ended.append(after.task)
        return ended

    # -- verification ----------------------------------------------------------------------

    def _audit_head(self, body_id: str) -> int:
        """The highest seq of the body's chain stored (0: none)."""
        raise NotImplementedError

    def _audit_event(self, body_id: str, action_id: str) -> AuditEvent | None:
        """The body's stored audit event `action_id` (the engine this is part of keeps the chains)."""
        raise NotImplementedError

    def _verify_key(self, body_id: str) -> str | None:
        """The verification key `body_id` registered (the engine this is part of keeps the bodies)."""
        raise NotImplementedError

    def _settled(self, stored: StoredTask, at: datetime, *, new: Mapping[str, AuditEvent] | None = None) -> StoredTask:
        """`stored` with the verifications it waits for settled, as far as the evidence allows: the `new` events (by
        id, whatever body wrote them: another body's is a refutation), or else the claiming bodies' events stored
        already. What it confirms is recorded in `_verification_uses`."""
        evidence = Evidence()
        for body_id, action_id in awaited(stored.task):
            found = new.get(action_id) if new is not None else self._audit_event(body_id, action_id)
            if found is None:
                continue
            evidence.events[(body_id, action_id)] = found
            evidence.keys[body_id] = self._verify_key(body_id)
            use = self._verification_uses.get((found.body_id, found.id))
            if use is not None:
                evidence.uses[(found.body_id, found.id)] = use
        if not evidence.events:
            return stored
        task = settle_task(stored.task, evidence, at=at)
        if task is None:
            return stored
        for event, _task_id, slot in evidence.new_uses:
            assert event not in self._verification_uses, "one verification per event"
            self._verification_uses[event] = slot
        return StoredTask(task=task, claim_token=stored.claim_token)

    def _settle_new(self, at: datetime, new: Mapping[str, AuditEvent]) -> list[Task]:
        """Settle the verifications that wait for the `new` events (by action id), oldest task first."""
        changed: list[Task] = []
        for task_id in list(self._tasks):
            stored = self._stored(task_id)
            assert stored is not None
            if not any(action_id in new for _, action_id in awaited(stored.task)):
                continue
            after = self._settled(stored, at, new=new)
            if after is not stored:
                self._put(after)
                changed.append(after.task)
        return changed

    async def count_tasks(self) -> dict[TaskState, int]:
        counts: dict[TaskState, int] = {}
        for task in self._tasks.values():
            counts[task.state] = counts.get(task.state, 0) + 1
        return counts

    async def count_verified_succeeded(self) -> int:
        return sum(1 for task in self._tasks.values() if task.state == "succeeded" and task.verified)

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

    async def all_compensations(self) -> list[Compensation]:
        return list(self._compensations)

    async def decision_compensations(self, decision_ids: Collection[str]) -> list[Compensation]:
        wanted = set(decision_ids)
        return [c for c in self._compensations if c.decision_id in wanted]

    def _rewritten_compensations(self, change: Callable[[Task], Task | None]) -> dict[int, Compensation]:
        """The compensating records (by index) whose task rows `change` rewrites, as the task's own
        (`rewritten_row`); nothing is changed yet."""
        changed: dict[int, Compensation] = {}
        for n, record in enumerate(self._compensations):
            before, after = rewritten_row(record.before, change), rewritten_row(record.after, change)
            if before is not None or after is not None:
                changed[n] = replace(record, before=before or record.before, after=after or record.after)
        return changed

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
            history = self._tasks[record.target].history if record.target in self._tasks else []
            if overwritten is not None:
                history = [*history, reversal_event(record, at=at, by=entry.by, undo_id=as_action)]
            self._tasks[record.target] = task_from_row(record.before, history)
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
