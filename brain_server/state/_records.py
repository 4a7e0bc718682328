"""What the state engines store and hand back, besides the `shared_protocol` models they keep whole.

Decisions and tasks are `shared_protocol.brain` models; escalations and answer tokens are
`wake.records`. These are the brain's own records: its log, its tokens, its bodies, and
the compensating records that let a body's task updates be reversed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from shared_protocol.brain import ClaimMode, CompensationKind, Role, Task

LogAction = Literal[
    "token_create",
    "token_bind",
    "token_revoke",
    "body_rebind",
    "body_key",
    "body_refused",
    "body_deregister",
    "kill",
    "resume",
    "decision_create",
    "approve",
    "deny",
    "override",
    "vote",
    "deadlock",
    "expire",
    "task_create",
    "task_claim",
    "task_outcome",
    "task_requeue",
    "task_park",
    "task_resume",
    "task_cancel",
    "readiness_report",
    "readiness_override",
    "reverse",
    "escalate",
    "page",
    "page_failed",
    "acknowledge",
    "alert",
    "answer_refused",
    "interaction_refused",
    "session_start",
    "session_end",
    "audit_prune",
    "telemetry_prune",
    "agent_pause",
    "agent_resume",
    "rollout_candidate",
    "rollout_promote",
    "rollout_rollback",
    "rollout_live",
    "privacy_erase",
    "privacy_unerase",
    "privacy_migrate",
    "key_store_accept",
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
    """A body token's body, bound on its first use of a body id no token had named (or by a rebind), never changed;
    always None for other roles."""
    agent: str | None = None
    """The one agent this token speaks for, set when it is created and never changed (`swarm brain token create
    --agent NAME`): an autonomous agent's runner and body. None: no agent's (an IDE body's token, a human's)."""
    revoked_at: datetime | None = None
    """Once set, the token is refused everywhere; it is never unset."""
    pairing_hash: str | None = None
    """The SHA-256 of the token's pairing secret (`swarm brain token create --pair`), set when it is created and
    never changed; None: not paired (its body's first key is trusted on first use)."""


@dataclass(kw_only=True, frozen=True)
class Rebinding:
    """What `TokenStore.rebind_body` did: the token that holds the body now, and the one it took it from."""

    token: TokenRecord
    previous: TokenRecord | None
    """The token that held the body (as it was before: live), revoked by the rebind; None if none was live."""


@dataclass(kw_only=True, frozen=True)
class TaskKey:
    """An `Idempotency-Key` of a task creation: whose, the key as kept (`brain_server.privacy.keyed_task_key`: an
    HMAC under the brain's secret, never the key as sent), and the digest of the request it came with, kept keyed
    too (`brain_server.privacy.keyed_request_digest`)."""

    token_id: str
    key: str
    request_sha256: str
    sent: str | None = None
    """The key as sent: looked up too (a row kept before `swarm privacy migrate` holds it so), never stored."""
    request_bare: str | None = None
    """The request's bare SHA-256: compared with a row kept before `swarm privacy migrate` keyed it, never stored."""
    secret_check: str = ""
    """The check value of the key store's secret the key is keyed under (`brain_server.privacy.key_store_check`):
    compared with the one kept beside the keys (`task_key_secret`), so a replaced key store is said, not missed."""


@dataclass(kw_only=True, frozen=True)
class KeptRequest:
    """A kept `Idempotency-Key`'s request digest as kept (keyed under its key store's secret, when it starts `hmac `)
    and the task its request made (from which the request can be read again)."""

    request_sha256: str
    task: Task


@dataclass(kw_only=True, frozen=True)
class KeptKeys:
    """What tells which key store the kept `Idempotency-Key`s are under, while no check value of it is kept (they
    were kept before brain schema v26): how many there are, the text of their tasks (personal data in it encrypted
    under that store's subject keys), the subject ids erased since (their keys are gone from any store), and a
    sample of their keyed request digests with their tasks (`brain_server.privacy.key_store_holds`)."""

    keys: int
    texts: list[str]
    erased: frozenset[str]
    requests: list[KeptRequest] = field(default_factory=list["KeptRequest"])


KEY_STORE_UNVERIFIED = "unverified"
"""The check value kept when the key store the brain has cannot be the one its kept keys are under
(`brain_server.privacy.key_store_holds`): no store's check (hex) is it, so a keyed request is refused
(`KeyStoreReplaced`) until `swarm brain key-store accept` keeps the new store's."""


@dataclass(kw_only=True, frozen=True)
class BodyRecord:
    """A body that registered: where it runs, and when it was last heard from (or left)."""

    body_id: str
    workspace: str
    hostname: str
    version: str
    registered_at: datetime
    last_heartbeat: datetime
    left_at: datetime | None = None
    """When it deregistered (a clean exit: it is gone, not lost); None while it is registered."""
    verify_key: str | None = None
    """The key its shipped audit events are attested with, as it first registered it (None: none yet)."""


@dataclass(kw_only=True, frozen=True)
class ClaimGrant:
    """What a claim writes on the task it wins."""

    body_id: str
    agent: str
    claim_token: str
    at: datetime
    lease_expires: datetime
    mode: ClaimMode = "ide"
    logic_version: str = ""
    task_id: str | None = None
    """Only this task (if it is claimable)."""
    by: str = ""
    """Who claims, for the task's history (a token's label or id)."""
    buckets: tuple[int, int] | None = None
    """Only a task whose canary bucket (`canary.bucket`) is in [low, high): a rollout's share of live tasks..."""
    waited_before: datetime | None = None
    """...or, with buckets, any task created before this: the other version's share is a preference, not a lock
    (a task it leaves waiting this long is taken by this claim)."""
    audit_seq: int = 0
    """The claiming body's audit chain head the brain held when the claim was granted (set by the engine, in the
    claim's transaction): a verification's re-run must come after it."""


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
    """What `CompensationStore.reverse` did: the records it reversed (newest first) and the conflicts it found.

    With conflicts and no force, nothing is reversed and `reversed` is empty.
    """

    reversed: list[Compensation]
    conflicts: list[str]


@dataclass(kw_only=True, frozen=True)
class DecisionReplaced:
    """What `DecisionStore.replace_decision` wrote besides the decision: the tasks parked on it that ended with it
    (its new state denied, expired or overridden), as written in the same transaction."""

    ended: list[Task] = field(default_factory=list[Task])


@dataclass(kw_only=True, frozen=True)
class Presence:
    """The minutes a subject (`brain`, or `body:<id>`) was seen up, as `TelemetryStore.presence` counts them."""

    subject: str
    minutes: int
    first: datetime
    """Its first minute seen (within what retention kept)."""


@dataclass(kw_only=True, frozen=True)
class UsageSummary:
    """LLM usage summed by agent, model and outcome (`TelemetryStore.usage_summary`)."""

    agent: str
    model: str
    outcome: str
    calls: int
    usd: float
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int


@dataclass(kw_only=True, frozen=True)
class TaskTiming:
    """A finished task's final state and times (`TelemetryStore.task_timings`)."""

    task_id: str
    state: str
    created_at: datetime
    finished_at: datetime


@dataclass(kw_only=True, frozen=True)
class DecisionTiming:
    """An answered decision's state and times (`TelemetryStore.decision_timings`): `answered_at` is its first
    answer's (the rules', a person's, the panel's or the deadline's), whatever overrode it later."""

    decision_id: str
    state: str
    created_at: datetime
    answered_at: datetime
