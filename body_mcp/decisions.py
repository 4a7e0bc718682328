"""Decisions: an agent asks, the rules classify, a human answers — and the guard checks.

A standalone body keeps its decisions in its own `state.db` (`LocalDecisionStore`) and takes
its answers from `swarm approve|deny|override` on the same machine; a linked body asks its
brain instead (the same `DecisionStore` protocol). What a decision becomes is decided by the
pure functions of `shared_protocol.decisions`, as in the brain; the store only stores. A
pending decision past its deadline is `expired`: silence is never consent.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

from shared_protocol import decisions as lifecycle
from shared_protocol.decisions import AnswerKind, ApprovalThresholds, Decision, DecisionRequest
from shared_protocol.exceptions import AnswerRefused

from ._db import StateDB
from .exceptions import UserError

_Change = Callable[[Decision, datetime], Decision]
"""A step of a decision's life (`shared_protocol.decisions`), given the decision as stored and the time."""


class DecisionStore(Protocol):
    async def create(self, request: DecisionRequest) -> Decision: ...

    async def get(self, decision_id: str) -> Decision | None: ...


class DecisionConflict(UserError):
    """The decision is not pending (or, for an override, already final)."""


class LocalDecisionStore:
    """Decisions of a standalone body, in its `state.db`."""

    def __init__(
        self, db: StateDB, *, rules: ApprovalThresholds, deadline_s: int, clock: Callable[[], float] = time.time
    ) -> None:
        self._db = db
        self._rules = rules
        self._deadline_s = deadline_s
        self._clock = clock

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    async def create(self, request: DecisionRequest) -> Decision:
        return self.create_now(request)

    async def get(self, decision_id: str) -> Decision | None:
        return self.get_now(decision_id)

    def create_now(self, request: DecisionRequest) -> Decision:
        decision = lifecycle.new_decision(
            request,
            decision_id=lifecycle.new_decision_id(),
            now=self._now(),
            default_deadline_s=self._deadline_s,
            thresholds=self._rules,
        )
        with self._db.write() as conn:
            conn.execute(
                "INSERT INTO decisions (id, state, body) VALUES (?, ?, ?)",
                (decision.id, decision.state, decision.model_dump_json()),
            )
        return decision

    def get_now(self, decision_id: str) -> Decision | None:
        """The decision as of now: one past its deadline is expired (and stored so) on the way out."""
        with self._db.read() as conn:
            row = conn.execute("SELECT body FROM decisions WHERE id = ?", (decision_id,)).fetchone()
        if row is None:
            return None
        decision = Decision.model_validate_json(row[0])
        if lifecycle.is_due(decision, self._now()):
            decision = self._change(decision_id, _expire_if_due)
        return decision

    def answer(self, decision_id: str, kind: AnswerKind, *, by: str, reason: str) -> Decision:
        """A human's approve, deny or override; `DecisionConflict` if the decision's state does not allow it."""
        if self.get_now(decision_id) is None:  # (which also stores an expiry first: an answer never beats it)
            raise UserError(f"no decision '{decision_id}' on this machine")
        try:
            return self._change(
                decision_id, lambda current, now: lifecycle.answer(current, kind, by=by, reason=reason, now=now)
            )
        except AnswerRefused as refused:
            raise DecisionConflict(refused.message) from None

    def _change(self, decision_id: str, change: _Change) -> Decision:
        """Load, change and save in one write transaction, so no other writer (another process) comes between."""
        with self._db.write() as conn:
            row = conn.execute("SELECT body FROM decisions WHERE id = ?", (decision_id,)).fetchone()
            if row is None:
                raise UserError(f"no decision '{decision_id}' on this machine")
            current = Decision.model_validate_json(row[0])
            updated = change(current, self._now())
            if updated != current:
                conn.execute(
                    "UPDATE decisions SET state = ?, body = ? WHERE id = ?",
                    (updated.state, updated.model_dump_json(), decision_id),
                )
        return updated


def _expire_if_due(decision: Decision, now: datetime) -> Decision:
    """Another writer may have answered it since it was read as due: then it stays as it is."""
    return lifecycle.expire(decision, now) if lifecycle.is_due(decision, now) else decision
