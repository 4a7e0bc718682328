"""Decisions: an agent asks, the rules classify, a human answers — and the guard checks.

A standalone body keeps its decisions in its own `state.db` (`LocalDecisionStore`) and takes
its answers from `swarm approve|deny|override` on the same machine; a linked body asks its
brain instead (the same `DecisionStore` protocol). A pending decision past its deadline is
`expired`: silence is never consent.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Literal, Protocol

from shared_protocol.brain import Answer, Decision, DecisionRequest, Verdict
from shared_protocol.decisions import ApprovalThresholds, classify, initial_state

from ._db import StateDB
from .exceptions import UserError

AnswerKind = Literal["approve", "deny", "override"]
_VERDICTS: dict[AnswerKind, Verdict] = {"approve": "approved", "deny": "denied", "override": "overridden"}


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
        now = self._now()
        needs = classify(request.impact, request.confidence, self._rules, irreversible=request.irreversible)
        state = initial_state(needs)
        answers: list[Answer] = []
        if state != "pending":
            reason = "blocked: over the blast radius" if needs == "blocked" else "within the rules: no approval needed"
            answers.append(Answer(verdict=state, by="rules", reason=reason, at=now))  # type: ignore[arg-type]
        decision = Decision(
            id=f"dec_{time.time_ns():x}{secrets.token_hex(3)}",
            state=state,
            needs=needs,
            summary=request.summary,
            rationale=request.rationale,
            confidence=request.confidence,
            impact=request.impact,
            options=request.options,
            agent=request.agent,
            body_id=request.body_id,
            action=request.action,
            created_at=now,
            deadline=now + timedelta(seconds=request.deadline_s or self._deadline_s),
            answers=answers,
            rules_version="1",
        )
        with self._db.write() as conn:
            conn.execute(
                "INSERT INTO decisions (id, state, body) VALUES (?, ?, ?)",
                (decision.id, decision.state, decision.model_dump_json()),
            )
        return decision

    def get_now(self, decision_id: str) -> Decision | None:
        with self._db.read() as conn:
            row = conn.execute("SELECT body FROM decisions WHERE id = ?", (decision_id,)).fetchone()
        if row is None:
            return None
        decision = Decision.model_validate_json(row[0])
        if decision.state == "pending" and self._now() >= decision.deadline:
            decision = self._save(
                decision.model_copy(
                    update={
                        "state": "expired",
                        "answers": [
                            *decision.answers,
                            Answer(verdict="expired", by="deadline", reason="nobody answered in time", at=self._now()),
                        ],
                    }
                )
            )
        return decision

    def _save(self, decision: Decision) -> Decision:
        with self._db.write() as conn:
            conn.execute(
                "UPDATE decisions SET state = ?, body = ? WHERE id = ?",
                (decision.state, decision.model_dump_json(), decision.id),
            )
        return decision

    def answer(self, decision_id: str, kind: AnswerKind, *, by: str, reason: str) -> Decision:
        decision = self.get_now(decision_id)
        if decision is None:
            raise UserError(f"no decision '{decision_id}' on this machine")
        final = decision.state in ("denied", "expired", "overridden")
        if (kind != "override" and decision.state != "pending") or (kind == "override" and final):
            raise DecisionConflict(f"decision {decision_id} is already {decision.state}")
        verdict = _VERDICTS[kind]
        answer = Answer(verdict=verdict, by=by, reason=reason, at=self._now())
        return self._save(decision.model_copy(update={"state": verdict, "answers": [*decision.answers, answer]}))
