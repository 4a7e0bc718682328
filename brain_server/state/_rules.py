"""The rules every state engine keeps alike: the stored shapes of times and task rows, and the checks made
inside a transaction (a retried question, a reused key, a stale claim, a reversal's conflicts).

Pure functions over records and rows; an engine calls them between its reads and its writes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import BaseModel

from shared_protocol.brain import Claimant, Decision, ShadowRun, Task, TaskEvent, TaskSpend, UsageRecord, Verification

from ..exceptions import (
    BodyKeyMismatch,
    BodyMismatch,
    InvalidRequest,
    KeyReused,
    KeyStoreReplaced,
    NotFound,
    RebindRefused,
    StaleClaim,
    TaskCancelled,
)
from ._records import Compensation, LogEntry, TaskKey, TokenRecord

M = TypeVar("M", bound=BaseModel)

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
    "acceptance",
    "repo",
    "claim_mode",
    "logic_version",
    "parked_decision_id",
    "verification",
    "verified",
    "evidence",
    "spend",
    "shadow_runs",
    "acceptance_inputs",
    "setup",
)
"""A task as stored, claim token included, its history not (an append-only table of its own): the shape of a
compensation's snapshots in every engine. Structured fields are canonical JSON text. Snapshots taken before a field
existed lack it: it is neither compared nor put back."""


def canonical(value: Any) -> str:
    """JSON as stored: sorted keys, no spaces, so that equal values are equal text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _json_of(model: BaseModel | None) -> str | None:
    return None if model is None else canonical(model.model_dump(mode="json"))


def iso(at: datetime) -> str:
    """The one stored time format: UTC, microseconds, so that text order is time order."""
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def parse_time(value: object) -> datetime | None:
    """A stored time (see `iso`) back, or None."""
    return None if value is None else datetime.fromisoformat(str(value))


def rebind_refusal(
    token: TokenRecord | None, body_id: str, held_by: Sequence[TokenRecord] = ()
) -> NotFound | RebindRefused | None:
    """Why `token` may not take `body_id` by a rebind, or None: it must be a live body token, unbound or bound to
    that body already (a token's body never changes), and of the agent the body's tokens so far (`held_by`, live
    or revoked) were of: a body keeps its agent."""
    if token is None:
        return NotFound("no such token (see `swarm brain token list`)")
    if token.role != "body":
        return RebindRefused(f"token {token.id} is a {token.role} token: only a body token speaks for a body")
    if token.revoked_at is not None:
        return RebindRefused(f"token {token.id} is revoked: create a new body token and rebind to that")
    if token.body_id is not None and token.body_id != body_id:
        return RebindRefused(f"token {token.id} speaks for body '{token.body_id}' already, and for no other")
    for other in held_by:
        if other.id != token.id and other.agent != token.agent:
            flag = "no --agent" if other.agent is None else f"--agent {other.agent}"
            return RebindRefused(
                f"body '{body_id}' belongs to {_owner(other.agent)}, token {token.id} to {_owner(token.agent)}: a "
                f"body keeps its agent (create its new token with {flag})"
            )
    return None


def body_key_change(body_id: str, kept: str | None, given: str | None) -> bool:
    """Whether a registration naming `given` sets the body's verification key (it has none kept yet); `kept` and
    None change nothing; another key is refused (`BodyKeyMismatch`): trust on first use."""
    if given is None or given == kept:
        return False
    if kept is None:
        return True
    raise BodyKeyMismatch(
        f"body '{body_id}' registered another verification key before (its audit key changed, or this is not that "
        f"body); nothing was changed. If the body was set up again on purpose, a captain resets it: swarm brain "
        f"body rebind {body_id} --token-id TOKEN_ID --reason … (TOKEN_ID: its body token, `swarm brain token list`) "
        "forgets the key, and the body's next registration sets it"
    )


def _owner(agent: str | None) -> str:
    return "no agent (an IDE body)" if agent is None else f"agent '{agent}'"


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
        "acceptance": task.acceptance,
        "repo": task.repo,
        "claim_mode": task.claim_mode,
        "logic_version": task.logic_version,
        "parked_decision_id": task.parked_decision_id,
        "verification": _json_of(task.verification),
        "verified": int(task.verified),
        "evidence": canonical(task.evidence),
        "spend": _json_of(task.spend),
        "shadow_runs": canonical([run.model_dump(mode="json") for run in task.shadow_runs]),
        "acceptance_inputs": None if task.acceptance_inputs is None else canonical(task.acceptance_inputs),
        "setup": task.setup,
    }


def task_from_row(row: Mapping[str, Any], history: Sequence[TaskEvent] = ()) -> Task:
    """The `Task` a stored row describes (its claim token is not part of it), with its `history`."""
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
        acceptance=row.get("acceptance") or "",
        repo=row.get("repo") or "",
        claim_mode=row.get("claim_mode"),
        logic_version=row.get("logic_version"),
        parked_decision_id=row.get("parked_decision_id"),
        verification=_parsed(Verification, row.get("verification")),
        verified=bool(row.get("verified") or 0),
        evidence=json.loads(row.get("evidence") or "{}"),
        spend=_parsed(TaskSpend, row.get("spend")),
        shadow_runs=[ShadowRun.model_validate(run) for run in json.loads(row.get("shadow_runs") or "[]")],
        acceptance_inputs=None if row.get("acceptance_inputs") is None else json.loads(row["acceptance_inputs"]),
        setup=row.get("setup") or "",
        history=list(history),
    )


TASK_ROW_TEXT = (
    "title",
    "description",
    "acceptance",
    "setup",
    "outcome_summary",
    "repo",
    "verification",
    "evidence",
    "spend",
    "shadow_runs",
    "acceptance_inputs",
)
"""The columns of a task row holding what people and models wrote (the rest: ids, states, times, counts): all a
privacy rewrite of a compensation's snapshot may change (brain schema v25)."""


def rewritten_row(row: Mapping[str, Any], change: Callable[[Task], Task | None]) -> dict[str, Any] | None:
    """A compensation's snapshot of a task row with `change` made to the task it describes, as the task's own row
    gets it (the same text gives the same value, so a reversal still finds the row as the record left it); only the
    text columns it has change. None when nothing does."""
    task = task_from_row(row)
    new = change(task)
    if new is None:
        return None
    claim_token = row.get("claim_token")
    was, now = task_row(task, claim_token), task_row(new, claim_token)
    changed = {name: now[name] for name in TASK_ROW_TEXT if name in row and was[name] != now[name]}
    return {**row, **changed} if changed else None


def _parsed(model: type[M], text: str | None) -> M | None:
    return None if text is None else model.model_validate_json(text)


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
        elif {name: now.get(name) for name in record.after} != record.after:
            conflicts.append(
                f"task {record.target} changed since {record.action_id} "
                f"(it left it {_describe(record.after)}; it is {_describe(now)} now)"
            )
        rows[record.target] = {**now, **record.before} if now is not None else record.before
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


def decision_mark(decision: Decision) -> tuple[str, int, int, int]:
    """What a decision's compare-and-set compares (`replace_decision(previous=...)`): its state and how many answers,
    votes and ladder steps it has. Each only grows, so two writers who read the same mark cannot both write: a vote
    is never lost to another written between a read and a write."""
    return (decision.state, len(decision.answers), len(decision.votes), len(decision.ladder))


def check_key(key: TaskKey, first_request_sha256: str) -> None:
    """`KeyReused` unless `key` comes with the request it first came with (its digest kept keyed, or bare by a brain
    before `swarm privacy migrate`: a keyed one starts `hmac `, a bare one is hex, so the two never meet)."""
    if first_request_sha256 not in (key.request_sha256, key.request_bare):
        raise KeyReused("this Idempotency-Key was used for a different task request")  # (not quoted: kept keyed)


def check_key_store(key: TaskKey, kept: str | None) -> None:
    """`KeyStoreReplaced` unless `key` is keyed under the secret the kept keys are (`kept`: its check value, None
    before the first keyed request, which then keeps `key`'s)."""
    if kept is not None and kept != key.secret_check:
        raise KeyStoreReplaced(
            "the brain's key store is not the one its Idempotency-Keys were kept under (lost, restored without it, or "
            "another file: [brain] privacy_key_store), so a retry of a request sent before cannot be recognised and "
            "no request with an Idempotency-Key is taken; nothing was written. Put the key store back, or accept the "
            "new one (`swarm brain key-store accept --reason ...`: a retry of an earlier request is then a new task); "
            "a request without Idempotency-Key is taken meanwhile"
        )


def not_current_claim(task_id: str, row: Mapping[str, Any] | None) -> NotFound | StaleClaim | TaskCancelled:
    """What to raise when a claim token is not the task's current one: the task is gone, cancelled, or its claim is."""
    if row is None:
        return NotFound(f"no task '{task_id}'")
    if row["state"] == "cancelled":
        return TaskCancelled(f"task '{task_id}' was cancelled: stop working on it")
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


def check_usage_record(record: UsageRecord, body_id: str, stored: UsageRecord, stored_body: str) -> None:
    """A usage record id seen before is a harmless resend only as the same record of the same body."""
    if stored_body != body_id or stored != record:
        raise KeyReused(f"usage record '{record.id}' was recorded before with different content")


def ended_log(task: Task, decision: Decision, log: LogEntry) -> LogEntry:
    """The log line of a parked task ended by its decision (`log`: the decision's own line)."""
    return LogEntry(
        at=log.at,
        action="task_outcome",
        by=log.by,
        token_id=log.token_id,
        role=log.role,
        reason=task.outcome_summary or f"decision {decision.id} {decision.state}",
        target=task.id,
        detail={"outcome": "abandoned", "decision_id": decision.id, "decision_state": decision.state, "to": task.state},
    )
