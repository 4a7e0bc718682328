"""Records for the contract tests, one builder per kind, all at a fixed time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from brain_server.state import BodyRecord, ClaimGrant, LogAction, LogEntry, TokenRecord
from brain_server.wake.records import AnswerToken, Escalation, EscalationState
from shared_protocol import Impact
from shared_protocol.brain import Decision, Role, Task
from shared_protocol.decisions import DecisionState

NOW = datetime(2030, 1, 1, tzinfo=UTC)
LATER = NOW + timedelta(hours=1)


def entry(action: LogAction = "kill", *, reason: str = "because", at: datetime = NOW) -> LogEntry:
    return LogEntry(at=at, action=action, by="test", reason=reason)


def token_record(n: int, role: Role = "body") -> TokenRecord:
    return TokenRecord(id=f"tok_{n}", token_hash=f"hash_{n}", role=role, label=f"t{n}", created_at=NOW)


def body(body_id: str, *, at: datetime = NOW, workspace: str = "/ws") -> BodyRecord:
    return BodyRecord(
        body_id=body_id, workspace=workspace, hostname="host", version="1", registered_at=at, last_heartbeat=at
    )


def task(n: int, *, value_usd: float = 0) -> Task:
    return Task(
        id=f"task_{n}",
        title=f"t{n}",
        description="",
        value_usd=value_usd,
        state="queued",
        created_at=NOW,
        created_by="t",
    )


def grant(
    claim_token: str = "clm_1", *, body_id: str = "body-a", lease: timedelta = timedelta(minutes=5)
) -> ClaimGrant:
    return ClaimGrant(body_id=body_id, agent="a", claim_token=claim_token, at=NOW, lease_expires=NOW + lease)


def decision(
    n: int,
    *,
    state: DecisionState = "pending",
    created_at: datetime = NOW,
    deadline: timedelta = timedelta(hours=1),
    body_id: str = "body-a",
    summary: str = "rewrite billing",
) -> Decision:
    return Decision(
        id=f"dec_{n}",
        state=state,
        needs="human",
        summary=summary,
        rationale="tests fail",
        confidence=0.5,
        impact=Impact(files=1),
        options=[],
        agent="claude",
        body_id=body_id,
        action=None,
        created_at=created_at,
        deadline=created_at + deadline,
        answers=[],
        rules_version="1",
    )


def escalation(
    escalation_id: str,
    *,
    state: EscalationState = "active",
    next_at: datetime | None = NOW,
    dedup_key: str | None = None,
    created_at: datetime = NOW,
) -> Escalation:
    return Escalation(
        id=escalation_id,
        kind="alert",
        state=state,
        title="t",
        summary="s",
        dedup_key=dedup_key,
        created_at=created_at,
        next_at=next_at,
        updated_at=created_at,
    )


def answer_token(n: int, *, expires_at: datetime = LATER) -> AnswerToken:
    return AnswerToken(
        token_hash=f"ans_{n}",
        page_id="page_1",
        subject_id="dec_1",
        verb="approve",
        channel="discord",
        target="#ops",
        created_at=NOW,
        expires_at=expires_at,
    )


def row_of(task: Task | None) -> Task | None:
    """`task` without its history (which only grows: a reversal adds to it, never takes from it)."""
    return None if task is None else task.model_copy(update={"history": []})
