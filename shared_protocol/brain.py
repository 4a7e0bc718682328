"""The brain's HTTP API (JSON under `/v1`, bearer tokens): requests, responses, events and errors.

Requests are what bodies and humans send; responses are what the brain answers. Every
error is an `ErrorBody` with a stable `code` (clients branch on it, never on `message`).
`GET /v1/events` is a stream of server-sent events named by `BrainEventName`:

    event: kill | resume    data: KillState   (the first event of every stream: the current kill state)
    event: decision         data: Decision    (a decision changed state)
    event: task_available   data: TaskAvailable  (a task was created, requeued or resumed: a waiting runner wakes)
    event: task_cancelled   data: TaskCancelled  (stop working on it: its claim is gone)
    event: task_ended       data: TaskEnded  (the brain ended a parked task itself: its decision was denied, expired
                                              or overridden; its holder drops it, its claim is gone)
    event: policy           reserved: no payload defined yet

A client ignores an event name it does not know (names are added over time).

Times are UTC, ISO 8601.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import Field, RootModel, StringConstraints, ValidationInfo, field_validator, model_validator

from ._base import Identifier, NonEmpty, ProtocolModel
from .audit import AuditEvent

# The decision records are part of this API; they live with the rules and functions of their life.
from .decisions import Answer as Answer
from .decisions import Decision as Decision
from .decisions import DecisionRequest as DecisionRequest
from .decisions import DecisionState as DecisionState
from .decisions import OverrideAction as OverrideAction
from .decisions import Role as Role
from .decisions import Verdict as Verdict
from .decisions import Vote as Vote
from .decisions import VoteValue as VoteValue
from .verdict import CheckReport

BrainEventName = Literal["kill", "resume", "decision", "task_available", "task_cancelled", "task_ended", "policy"]
TaskState = Literal["queued", "claimed", "waiting_approval", "succeeded", "failed", "abandoned", "cancelled"]
"""queued → claimed (under a lease) ⇄ waiting_approval (parked on a decision, no lease) → succeeded | failed |
abandoned; any state before those → cancelled. The last four are final."""
FINAL_TASK_STATES: frozenset[str] = frozenset({"succeeded", "failed", "abandoned", "cancelled"})
TaskOutcome = Literal["succeeded", "failed", "abandoned"]
ClaimMode = Literal["ide", "shadow", "live"]
"""ide: a body's `next_task` in an IDE session; shadow: an agent working in a throwaway copy (its outcome is
recorded as a shadow run, the task goes back to the queue); live: an agent's real work (gated on readiness)."""
TaskEventKind = Literal[
    "created",
    "claimed",
    "lease_lost",
    "parked",
    "resumed",
    "outcome",
    "shadow_run",
    "cancelled",
    "reversed",
    "verification",
]
UsageOutcome = Literal["answered", "rejected", "aborted"]
CompensationKind = Literal["task_claim", "task_outcome", "reversal"]
"""The brain updates a body action can make, each recorded with what undoes it; and a reversal's own put-back of a
task row, recorded the same way so that undoing the reversal redoes what it undid."""

MAX_AUDIT_BATCH = 1000
"""Events per `POST /v1/audit`; ship a longer backlog in several batches."""


class BrainErrorCode(StrEnum):
    """Why the brain refused a request. Stable strings: part of the interface contract."""

    UNAUTHORIZED = "unauthorized"
    """401: no bearer token, one the brain does not know, or a revoked one."""
    FORBIDDEN = "forbidden"
    """403: the token's role may not do this, or a body token named a body other than the one it is bound to, or a
    body bound to another token."""
    NOT_FOUND = "not_found"
    """404: no such route, decision or task."""
    UNKNOWN_BODY = "unknown_body"
    """404: a heartbeat for a body that never registered: register again."""
    METHOD_NOT_ALLOWED = "method_not_allowed"
    """405."""
    INVALID_JSON = "invalid_json"
    """422: the body is not JSON."""
    INVALID_REQUEST = "invalid_request"
    """422: a field is missing, unknown or has a bad value; `field` names it."""
    CHAIN_GAP = "chain_gap"
    """409: an audit event's seq is not the next one for its body; resend from `expected_seq`."""
    CHAIN_MISMATCH = "chain_mismatch"
    """409: an audit event does not link to the stored chain (its `prev_mac`, or a resent event's `mac`, differs)."""
    NOT_PENDING = "not_pending"
    """409: the decision was already answered (or expired); approve and deny need a pending one."""
    ALREADY_FINAL = "already_final"
    """409: the decision is denied, expired or overridden already; there is nothing left to override."""
    NOTHING_TO_ACKNOWLEDGE = "nothing_to_acknowledge"
    """409: nothing is paging about that id (never paged, or already answered, expired or exhausted)."""
    STALE_CLAIM = "stale_claim"
    """409: the claim token is not the task's current one (its lease ran out and it was requeued, or it finished)."""
    TASK_CANCELLED = "task_cancelled"
    """409: the task was cancelled (by an approver or captain): stop working on it; nothing more is accepted."""
    INVALID_TRANSITION = "invalid_transition"
    """409: the task's state does not allow this (park a parked task, resume one not waiting, cancel a finished
    one); `message` says which state it is in."""
    NOT_READY = "not_ready"
    """403: live work is refused: no fresh ready readiness report and no override for this agent and logic version.
    Run `swarm readiness`, or have a human captain run `swarm readiness override --agent NAME --reason …`."""
    NOTHING_TO_REVERSE = "nothing_to_reverse"
    """404: the brain holds no unreversed update of that action or decision (unknown id, or reversed already)."""
    REVERSE_CONFLICT = "reverse_conflict"
    """409: a task changed since the action being reversed; nothing was reversed. Send `force` to overwrite."""
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"
    """409: an `Idempotency-Key` came back with another request than the one it first came with."""
    BODY_KEY_MISMATCH = "body_key_mismatch"
    """409: a registration names another verification key than the one the body first registered with; nothing
    was changed. A captain resets it (`swarm brain body rebind BODY --token-id TOKEN_ID --reason …`)."""
    REBIND_REFUSED = "rebind_refused"
    """409: the token a rebind names cannot take the body (revoked, not a body token, or bound to another body)."""
    AGENT_PAUSED = "agent_paused"
    """409: the agent this token is bound to is paused (by a captain or the anomaly watch): it votes and overrides
    nothing until a human captain resumes it (`swarm resume --agent NAME`)."""
    PAIRING_REQUIRED = "pairing_required"
    """403: the token is paired (`swarm brain token create --pair`): a registration naming a verification key must
    carry its pairing secret (`$SWARM_PAIRING`, `[[agents]] pairing`); it had none, or another. Nothing was changed."""
    PAYLOAD_TOO_LARGE = "payload_too_large"
    """413: the request body is over the route's cap (64 KB, 1 MB for audit batches, unless configured)."""
    KEY_STORE_REPLACED = "key_store_replaced"
    """503: the brain's key store is not the one its `Idempotency-Key`s were kept under (lost, restored without it,
    or another file): a retry of a request sent before cannot be told from a new one, so a request with an
    `Idempotency-Key` is refused until the key store is put back or a human accepts the new one (`swarm brain
    key-store accept`). Nothing was written; the same request without the header is taken."""
    STATE_UNAVAILABLE = "state_unavailable"
    """503: the brain's database is unusable (damaged, disk full, deleted); the brain is stopping."""
    INTERNAL_ERROR = "internal_error"
    """500: an unexpected error; nothing was changed by the failed request."""


class ErrorBody(ProtocolModel):
    """Every error response."""

    code: BrainErrorCode
    message: str
    field: str | None = None
    """For `invalid_request`: the first offending field, dotted (`impact.usd`, `events.3.prev_mac`)."""
    expected_seq: int | None = None
    """For `chain_gap` and `chain_mismatch`: the seq the brain needs next from that body."""
    stored_through: int | None = None
    """For `chain_gap` and `chain_mismatch`: the body's last stored seq (events before the bad one are kept)."""


# --- kill switch and bodies --------------------------------------------------------------


class KillState(ProtocolModel):
    """The brain's kill switch: who engaged or released it last, when and why."""

    engaged: bool
    reason: str | None = None
    by: str | None = None
    at: datetime | None = None
    agent: str | None = None
    """Set when the kill is one agent's pause (`POST /v1/agents/{name}/pause`), not the brain's global switch."""


class KillRequest(ProtocolModel):
    """`POST /v1/kill` (captain): engage the brain's kill switch for every linked body."""

    reason: NonEmpty


class ResumeRequest(ProtocolModel):
    """`POST /v1/resume` (captain): release it. A body's local kill is lifted only locally."""

    reason: NonEmpty


PauseSource = Literal["captain", "anomaly"]


class AgentPause(ProtocolModel):
    """One agent paused: a kill switch scoped to the bodies whose tokens are bound to that agent."""

    agent: str
    reason: str
    by: str
    """The captain's token label, or `anomaly` when the detector paused it."""
    source: PauseSource
    at: datetime
    detail: dict[str, Any] = Field(default_factory=dict[str, Any])
    """For an anomaly: the metric, the value, the baseline median and scale, the threshold."""


class PauseRequest(ProtocolModel):
    """`POST /v1/agents/{name}/pause` (captain) and `/resume` (captain; a human's only)."""

    reason: NonEmpty


class RegisterRequest(ProtocolModel):
    """`POST /v1/bodies/register`: a body announces itself (again after a restart; registering is idempotent)."""

    body_id: Identifier
    workspace: str
    hostname: str
    version: str
    verify_key: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")] | None = None
    pairing: Annotated[str, StringConstraints(pattern=r"^swp_[A-Za-z0-9_-]{20,100}$")] | None = None
    """The pairing secret of a paired token (`swarm brain token create --pair`, `$SWARM_PAIRING`): a paired token's
    registration naming a verification key must carry it (403 `pairing_required` otherwise), so a key is the body's
    whose operator was given the secret, never that of whoever holds the token alone."""
    """The key (64 lowercase hex digits) the body attests its shipped audit events with
    (`shared_protocol.audit.attestation_key`). The brain keeps the first one a body id registers with (trust on
    first use) and refuses another (409 `body_key_mismatch`); None changes nothing. A body with no key kept has
    no verification confirmed."""


class Registration(ProtocolModel):
    """The answer to `POST /v1/bodies/register`: how often to heartbeat and when to fail safe."""

    body_id: str
    heartbeat_interval_s: float
    failsafe_s: float
    """A body that has not heard from its brain for this long behaves as killed until it reconnects."""
    kill: KillState
    max_audit_request_bytes: int | None = None
    """The largest `POST /v1/audit` body the brain reads: ship batches under it (None: a brain that does not say)."""


class HeartbeatResponse(ProtocolModel):
    """The answer to `POST /v1/bodies/{id}/heartbeat`."""

    kill: KillState


class RebindRequest(ProtocolModel):
    """`POST /v1/bodies/{id}/rebind` (captain): give the body to another body token, revoking the one that holds it.

    The one way a body id changes tokens (a lost or leaked token: create a new one, then rebind to it)."""

    token_id: Identifier
    """The body token to hold the body: live, and unbound or bound to this body already."""
    reason: NonEmpty


class RebindResult(ProtocolModel):
    """The answer to a rebind: the token that holds the body now, and the one revoked to free it (if any)."""

    body_id: str
    token_id: str
    revoked_token_id: str | None = None


class BodyStatus(ProtocolModel):
    """One registered body, as `GET /v1/status` reports it."""

    body_id: str
    workspace: str
    hostname: str
    version: str
    registered_at: datetime
    last_heartbeat: datetime
    connected: bool
    """Holds the event stream open, or heartbeated within the failsafe time (never once it left)."""
    left_at: datetime | None = None
    """When it deregistered (a clean exit: gone, not lost); None while registered."""


class Deregistration(ProtocolModel):
    """The answer to `POST /v1/bodies/{id}/deregister`: the body is gone as of `left_at`, and nobody is alerted."""

    body_id: str
    left_at: datetime


class BrainStatus(ProtocolModel):
    """`GET /v1/status`."""

    kill: KillState
    bodies: list[BodyStatus]
    pending_decisions: int
    queued_tasks: int
    claimed_tasks: int
    waiting_tasks: int = 0
    """Parked: waiting for a decision (waiting_approval)."""
    paused_agents: list[AgentPause] = Field(default_factory=list[AgentPause])
    """Agents paused (their bodies refuse as if killed) until a human resumes them; a body token sees its own."""


# --- audit -----------------------------------------------------------------------------


class AuditBatch(ProtocolModel):
    """Events a body ships, oldest first. Resending stored events is harmless (idempotent by body and seq)."""

    body_id: Identifier
    events: list[AuditEvent] = Field(max_length=MAX_AUDIT_BATCH)
    log_start_seq: int = Field(default=1, ge=1)
    """The oldest seq the body still holds (above 1 once retention pruned it): a brain holding nothing for this
    body takes a first batch that starts exactly there, and asks for this seq otherwise."""


class AuditAck(ProtocolModel):
    stored_through: int
    """The highest seq stored for that body: every event up to it is stored, none after it."""


# --- decisions (`DecisionRequest`, `Decision`, `Answer`: in `decisions.py`) ------------


class AnswerRequest(ProtocolModel):
    """`approve` and `deny` (a human's vote): the reason is recorded with who gave it."""

    reason: NonEmpty


class VoteRequest(ProtocolModel):
    """`POST /v1/decisions/{id}/votes`: a vote, its voter taken from the token (never from here)."""

    value: VoteValue
    reason: NonEmpty
    logic_version: str | None = Field(
        default=None, max_length=200, description="A reviewer agent's logic version, recorded with its vote."
    )


class DecisionOverrideRequest(ProtocolModel):
    """`POST /v1/decisions/{id}/override`: a captain's veto (the default) or a human captain's force, with why."""

    reason: NonEmpty
    action: OverrideAction = "veto"
    logic_version: str | None = Field(
        default=None,
        max_length=200,
        description="The captain agent's logic version (required of an agent's token; a veto has no shadow form: "
        "refused unless that version votes live on the decision). A human captain's override names none.",
    )


class DecisionList(RootModel[list[Decision]]):
    """`GET /v1/decisions`: a JSON list of decisions (the inbox: `?state=pending`, most valuable task first)."""


TIE_BREAK = "Borda score, then more approvals, then the task's value, then the earlier proposal, then the smaller id"
"""`TaskProposals.tie_break`: the order `shared_protocol.ranking.rank` applies."""


class ProposalStanding(ProtocolModel):
    """One competing proposal (a decision for the task) and where the panel's votes put it."""

    rank: int
    """1 is the best; acceptable proposals come before every other."""
    decision_id: str
    summary: str
    agent: str
    state: DecisionState
    approvals: int
    borda: float
    acceptable: bool
    """Approved by at least `quorum` voters."""


class TaskProposals(ProtocolModel):
    """`GET /v1/tasks/{id}/proposals`: the task's decisions ranked by approval voting and Borda count."""

    task_id: str
    quorum: int
    """The approvals that make a proposal acceptable (`[consensus] quorum`)."""
    voters: int
    """How many seats have a ballot (voted on any of the proposals)."""
    ballots: str = (
        "each voter's latest votes: approved above abstained or not voted above denied; ties get averaged points"
    )
    tie_break: str = TIE_BREAK
    winner: str | None = None
    """The best acceptable proposal's decision id (none: no proposal is acceptable)."""
    proposals: list[ProposalStanding] = Field(default_factory=list[ProposalStanding])


# --- tasks -----------------------------------------------------------------------------


DEFAULT_ACCEPTANCE_INPUTS = (
    "tests/**",
    "**/tests/**",
    "**/test/**",
    "**/testing/**",
    "**/test_*.py",
    "**/*_test.py",
    "**/conftest.py",
    "**/pytest.ini",
    "**/.pytest.ini",
    "**/pytest.toml",
    "**/.pytest.toml",
    "**/tox.ini",
    "**/setup.cfg",
    "**/pyproject.toml",
    "**/noxfile.py",
    "**/sitecustomize.py",
    "**/usercustomize.py",
    "**/*.pth",
    "**/*.dist-info/**",
    "**/*.egg-info/**",
    "**/pyvenv.cfg",
    "**/conda-meta/**",
    "**/testdata/**",
    "**/test_data/**",
    "**/fixtures/**",
    ".python-version",
)
"""What the model may not change when a task does not say (`acceptance_inputs` unset), besides the files its
acceptance command names: the tests the command reads (a test directory anywhere, with the helpers its tests import:
`pkg/tests/`, `test/`, `testing/`), the test runner's configuration wherever it is (pytest reads `addopts` from
`pytest.ini`, `pyproject.toml`, `tox.ini` or `setup.cfg`, found upward from the tests it is given: `--collect-only`
there would pass every check; `noxfile.py` is what `nox` runs), what Python runs at start-up (`sitecustomize`,
`usercustomize`, `.pth` files), the distribution metadata an import root offers (`*.dist-info/`, `*.egg-info/`:
`importlib.metadata` reads them from the workspace, and an `entry_points.txt` there declares plugins pytest loads),
the virtualenv markers that make pytest skip a whole directory unreported (`pyvenv.cfg`, `conda-meta/`), the
conventional test-data directories (`testdata/`, `test_data/`, `fixtures/`: expected values a test reads), and
`.python-version` (it picks the interpreter the sandbox's `python3` is). Matched case-insensitively. A task
whose work is in one of them (adding a dependency to `pyproject.toml`) names its own (`swarm task add
--acceptance-input`)."""
MAX_ACCEPTANCE_INPUTS = 100
MAX_SETUP_CHARS = 4000


def check_setup(setup: str) -> str:
    """A task's setup command line: one line, no NUL, at most `MAX_SETUP_CHARS`; raises ValueError naming the
    problem (whether it splits into arguments is the runner's to say, as for the acceptance command)."""
    if len(setup) > MAX_SETUP_CHARS:
        raise ValueError(f"setup is longer than {MAX_SETUP_CHARS} characters")
    if "\0" in setup or "\n" in setup or "\r" in setup:
        raise ValueError("setup must be one command line (no newline or NUL byte)")
    return setup.strip()


def check_acceptance_input(pattern: str) -> str:
    """A glob of files relative to the repository (`*`, `?`, `[...]` within a name, `**` any directories); raises
    ValueError naming the problem."""
    if not pattern.strip():
        raise ValueError("an acceptance input must not be empty")
    if len(pattern) > 500:
        raise ValueError(f"acceptance input {pattern[:40]!r}… is longer than 500 characters")
    if "\0" in pattern or "\\" in pattern:
        raise ValueError(f"acceptance input {pattern!r} holds a NUL byte or a backslash")
    if pattern.startswith("/"):
        raise ValueError(f"acceptance input {pattern!r} must be relative to the repository, not absolute")
    if ".." in pattern.split("/"):
        raise ValueError(f"acceptance input {pattern!r} must stay inside the repository (no '..')")
    return pattern


MAX_TASK_VALUE_USD = 1e12
"""A task's estimated value (USD): finite, so that value delivered and ROI stay numbers."""


class TaskRequest(ProtocolModel):
    """`POST /v1/tasks` (approver or captain)."""

    title: NonEmpty
    description: str = ""
    value_usd: float = Field(
        default=0.0,
        ge=0,
        le=MAX_TASK_VALUE_USD,
        allow_inf_nan=False,
        description="Estimated value; higher-value tasks are claimed first.",
    )
    acceptance: str = Field(
        default="",
        description="The command line that decides success (split with shlex by the runner, re-run by the body); "
        "empty: none, so success is self-reported.",
    )
    repo: str = Field(
        default="",
        description="The absolute directory on the agents' host the task works in (a git repository); empty: none. "
        "The brain cannot see that host: `swarm task add` checks it exists.",
    )
    setup: str = Field(
        default="",
        description="The command line that builds the task's environment (e.g. `uv sync`): run by the runner, as its "
        "own call, at the start of the task into the model's env dirs and again into fresh ones before the acceptance "
        "re-run, which then runs with them; empty: none (the re-run sees no installed dependencies).",
    )
    acceptance_inputs: list[str] | None = Field(
        default=None,
        max_length=MAX_ACCEPTANCE_INPUTS,
        description="Globs (relative to the repository) of the files the acceptance command reads, which the model "
        "may not change (its body refuses them: `acceptance_input`); unset: the files the acceptance command names "
        "and DEFAULT_ACCEPTANCE_INPUTS; [] lets the model change them.",
    )

    @field_validator("acceptance_inputs")
    @classmethod
    def _globs(cls, inputs: list[str] | None) -> list[str] | None:
        return None if inputs is None else [check_acceptance_input(p) for p in inputs]

    @field_validator("setup")
    @classmethod
    def _setup(cls, setup: str) -> str:
        return check_setup(setup)

    @field_validator("repo")
    @classmethod
    def _absolute(cls, repo: str) -> str:
        if repo and not repo.startswith("/"):
            raise ValueError("repo must be an absolute path (or empty)")
        return repo


class Claimant(ProtocolModel):
    """The body and agent holding a claimed task."""

    body_id: str
    agent: str


class TaskEvent(ProtocolModel):
    """One line of a task's history: what happened to it, when, by whom, and for which agent and logic version."""

    at: datetime
    kind: TaskEventKind
    by: str
    """A token's label or id, or `lease` when the brain requeued it by itself."""
    agent: str | None = None
    logic_version: str | None = None
    detail: dict[str, Any] = Field(default_factory=dict[str, Any])


VerificationStatus = Literal["pending", "confirmed", "refuted"]


class Verification(ProtocolModel):
    """The body re-ran the task's acceptance command at the end: `verified` only if it exited 0, and only once the
    brain has checked the claim against the claiming body's audit event it ingested (`status`).

    A runner's `verified=true` is a claim: the brain keeps it `pending` (verified false) until the body's audit
    event `action_id` arrives (POST /v1/audit), then `confirmed` (verified true) or `refuted` (verified false,
    `detail` says why): a `run_command` of the claiming body, not the model's, naming this task (`task_id`),
    attested under the verification key the body registered (`attest`), after the claim in its chain, in the
    workspace root, with the task's acceptance argv (`shlex.split`), that ran and exited 0, whose pytest report (for
    a pytest check: `report`) says every collected test passed, and that confirmed no other verification."""

    command: str
    exit_code: int | None = None
    action_id: str | None = None
    """The body's audit event of the re-run (`swarm audit explain ID`)."""
    verified: bool = False
    status: VerificationStatus | None = None
    """Set by the brain: `pending`, `confirmed` or `refuted`; None when nothing was claimed verified."""
    detail: str = ""
    """Set by the brain: what it waits for, or why the claim was refuted."""
    body_id: str | None = None
    """Set by the brain: the claiming body, whose audit event decides."""
    after_seq: int | None = None
    """Set by the brain: the claiming body's audit chain head the brain held when it granted the claim (the re-run
    must come after it in the chain: the brain's own order, not the body's clock)."""
    report: CheckReport | None = None
    """A pytest check (`shared_protocol.verdict.pytest_start`): what the body's reporter saw of the re-run, whose
    verdict is the check's (the exit code is kept as evidence); None for a check whose verdict is its exit code."""

    @model_validator(mode="after")
    def _verified_means_exit_0(self) -> Verification:
        if self.verified and (self.exit_code != 0 or not self.action_id):
            raise ValueError("verified needs exit_code 0 and the action_id of the body's re-run")
        if self.verified and self.report is not None and self.report.verdict != "passed":
            raise ValueError("verified needs the check's report to say passed")
        return self


class TaskSpend(ProtocolModel):
    """What a task cost in LLM calls (the wallet's per-task totals)."""

    usd: float = Field(default=0.0, ge=0)
    input_tokens: int = Field(default=0, ge=0)
    output_tokens: int = Field(default=0, ge=0)
    cache_read_tokens: int = Field(default=0, ge=0)
    steps: int = Field(default=0, ge=0)
    model: str = ""


class ShadowRun(ProtocolModel):
    """An outcome of a shadow claim: the work was done in a throwaway copy, the task itself went back to the queue."""

    at: datetime
    agent: str
    logic_version: str
    outcome: TaskOutcome
    summary: str = ""
    verification: Verification | None = None
    spend: TaskSpend | None = None


class Task(ProtocolModel):
    """A unit of work: queued, claimed under a lease (or parked waiting for approval), then succeeded, failed or
    abandoned; or cancelled (all four final)."""

    id: str
    title: str
    description: str
    value_usd: float
    state: TaskState
    created_at: datetime
    created_by: str
    claimed_by: Claimant | None = None
    claimed_at: datetime | None = None
    lease_expires: datetime | None = None
    attempts: int = 0
    """How many times the task was claimed (a requeued task is claimed again)."""
    outcome_summary: str | None = None
    finished_at: datetime | None = None
    acceptance: str = ""
    repo: str = ""
    acceptance_inputs: list[str] | None = None
    """What the model may not change (globs relative to the repository); None: the default (see TaskRequest)."""
    setup: str = ""
    """The command line that builds the task's environment (see TaskRequest); empty: none."""
    claim_mode: ClaimMode | None = None
    """The mode of the current (or last) claim."""
    logic_version: str | None = None
    """The logic version of the agent of the current (or last) claim; None for an IDE claim."""
    parked_decision_id: str | None = None
    """While waiting_approval: the decision it waits for."""
    verification: Verification | None = None
    verified: bool = False
    """Succeeded and verified by the body's re-run of the acceptance command; False: self-reported (or not a
    success)."""
    evidence: dict[str, str] = Field(default_factory=dict[str, str])
    """What the outcome points at: branch, commit, tests run, files changed…"""
    spend: TaskSpend | None = None
    shadow_runs: list[ShadowRun] = Field(default_factory=list[ShadowRun])
    history: list[TaskEvent] = Field(default_factory=list[TaskEvent])
    """Every claim, lease lost, park, resume, outcome, shadow run, cancel and reversal, oldest first."""


class TaskList(ProtocolModel):
    """`GET /v1/tasks?state=&agent=` (approver or captain): oldest first. With `limit=N` (and `offset=M`): the N
    newest of that list after the M newest, still oldest first, and `total`, how many the whole list holds."""

    tasks: list[Task]
    total: int | None = None


class TaskAvailable(ProtocolModel):
    """The data of a `task_available` event."""

    task_id: str
    reason: Literal["created", "requeued", "resumed"]


class TaskCancelled(ProtocolModel):
    """The data of a `task_cancelled` event."""

    task_id: str
    reason: str
    by: str


class TaskEnded(ProtocolModel):
    """The data of a `task_ended` event: a parked task the brain ended because its decision came to an end without
    approval (`state` abandoned; queued again for a shadow claim, whose shadow run records it)."""

    task_id: str
    state: TaskState
    reason: str
    """`decision dec_… denied|expired|overridden`, or the holder's own reason when it gave the task up."""
    by: str
    body_id: str | None = None
    """The body whose claim ended."""


class AbandonRequest(ProtocolModel):
    """`POST /v1/tasks/{id}/abandon` (body): the body holding a parked task gives it up without its claim token (its
    runner lost the task's saved state): abandoned with `reason`."""

    reason: NonEmpty


class _CausedBy(ProtocolModel):
    """The body action (and its decision) behind an update, so `POST /v1/undo/{id}` can reverse it."""

    action_id: Identifier | None = None
    """The audit event of the body's tool call; with it the brain keeps a compensating record."""
    decision_id: Identifier | None = None
    """The decision the call acted under, so undoing the decision reverses this too."""

    @field_validator("decision_id")
    @classmethod
    def _decision_needs_action(cls, decision_id: str | None, info: ValidationInfo) -> str | None:
        if decision_id is not None and info.data.get("action_id") is None:
            raise ValueError("decision_id needs the action_id of the call that acted under it")
        return decision_id


class ClaimRequest(_CausedBy):
    """`POST /v1/tasks/claim` (body)."""

    body_id: Identifier
    agent: Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)] = ""
    """Who claims: an agent's token may leave it empty (the brain uses the agent the token is bound to, and refuses
    another name); an IDE body names its IDE."""
    mode: ClaimMode = "ide"
    """live is refused (403 `not_ready`) unless readiness passed or a captain overrode it for this agent and logic
    version; a shadow claim never takes a task this agent and logic version shadowed already."""
    logic_version: str = Field(default="", max_length=200, validate_default=True)
    """The agent's logic version (`lv-…`); needed for shadow and live claims."""
    task_id: Identifier | None = None
    """Claim this task only (null in the answer when it is not queued, or shadowed already)."""

    @field_validator("logic_version")
    @classmethod
    def _agents_name_their_logic(cls, logic_version: str, info: ValidationInfo) -> str:
        mode = info.data.get("mode", "ide")
        if mode != "ide" and not logic_version.strip():
            raise ValueError(f"a {mode} claim needs the agent's logic_version")
        return logic_version


class ClaimResponse(ProtocolModel):
    """`task` is null when nothing is queued (or the kill switch is engaged)."""

    task: Task | None
    claim_token: str | None = None
    """Send it with the outcome; it goes stale when the lease runs out and the task is requeued."""
    lease_s: int | None = None


class RenewRequest(ProtocolModel):
    """`POST /v1/tasks/{id}/renew` (body): keep holding a claimed task for another `lease_s`."""

    claim_token: NonEmpty


class RenewResponse(ProtocolModel):
    task: Task
    lease_s: int
    """The lease now runs this long from the renewal (`task.lease_expires`)."""


class OutcomeRequest(_CausedBy):
    """`POST /v1/tasks/{id}/outcome` (body), with the claim token the claim returned (claimed or waiting_approval).

    A success without `verification.verified` is kept as self-reported (`Task.verified` False). The outcome of a
    shadow claim is kept in `task.shadow_runs`, and the task goes back to the queue."""

    claim_token: NonEmpty
    outcome: TaskOutcome
    summary: str = ""
    verification: Verification | None = None
    evidence: dict[str, str] = Field(default_factory=dict[str, str])
    spend: TaskSpend | None = None
    logic_version: str | None = None
    """If given, the claim's own (a mismatch is refused)."""
    mode: ClaimMode | None = None
    """If given, the claim's own (a mismatch is refused)."""


class ParkRequest(ProtocolModel):
    """`POST /v1/tasks/{id}/park` (body): wait for a decision without a lease; the claim token stays valid."""

    claim_token: NonEmpty
    decision_id: Identifier
    reason: NonEmpty


class ResumeTaskRequest(ProtocolModel):
    """`POST /v1/tasks/{id}/resume` (body): back to claimed under a new lease."""

    claim_token: NonEmpty


class CancelRequest(ProtocolModel):
    """`POST /v1/tasks/{id}/cancel` (approver or captain): final; its claim, if any, goes stale at once."""

    reason: NonEmpty


# --- usage -----------------------------------------------------------------------------


MAX_USAGE_TOKENS = 10**12
"""Tokens of one kind in one LLM call: far above any context window, far below what sums overflow."""
MAX_USAGE_USD = 1_000_000.0
"""Cost of one LLM call (USD): a finite ceiling, so that no record can turn a total into infinity."""
MAX_USAGE_DURATION_MS = 86_400_000.0
"""How long one LLM call may say it took (a day, in milliseconds): a finite ceiling for the latency histogram."""
MAX_USAGE_AHEAD_S = 300
"""How far past the brain's clock a usage record's `at` may be (clock skew); further is refused."""
MAX_LABEL_TEXT = 200
"""Length of a provider or model name in a usage record."""


class UsageRecord(ProtocolModel):
    """One LLM call's provider-reported usage and cost, as the runner's wallet settled it."""

    id: Identifier
    """Unique per call: resending a record is harmless."""
    at: datetime
    agent: Identifier
    logic_version: str = ""
    task_id: str | None = None
    provider: str = Field(max_length=MAX_LABEL_TEXT)
    model: str = Field(max_length=MAX_LABEL_TEXT)
    input_tokens: int = Field(default=0, ge=0, le=MAX_USAGE_TOKENS)
    output_tokens: int = Field(default=0, ge=0, le=MAX_USAGE_TOKENS)
    cache_read_tokens: int = Field(default=0, ge=0, le=MAX_USAGE_TOKENS)
    cache_write_tokens: int = Field(default=0, ge=0, le=MAX_USAGE_TOKENS)
    usd: float = Field(default=0.0, ge=0, le=MAX_USAGE_USD, allow_inf_nan=False)
    outcome: UsageOutcome = "answered"
    duration_ms: float | None = Field(default=None, ge=0, le=MAX_USAGE_DURATION_MS, allow_inf_nan=False)
    """How long the attempt took as the runner timed it (None: not timed): `swarm_llm_call_duration_seconds`."""


MAX_USAGE_BATCH = 1000
"""Records per `POST /v1/usage`."""


class UsageBatch(ProtocolModel):
    """`POST /v1/usage` (body): records are kept as the posting body's (idempotent by record id)."""

    records: list[UsageRecord] = Field(max_length=MAX_USAGE_BATCH)
    body_id: Identifier | None = None
    """The body posting (bound to the token on first use); default: the token's bound body."""


class UsageAck(ProtocolModel):
    stored: int
    """New records."""
    duplicates: int
    """Records the brain had already (same id, same record)."""


class UsageTotal(ProtocolModel):
    calls: int = 0
    usd: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0


class UsageTotals(ProtocolModel):
    """`GET /v1/usage`: humans see every body's records, a body its own. `by_task` leaves out calls outside a task;
    with `?by_task=false` it is empty (a human's totals are then the brain's running totals: no record is read)."""

    total: UsageTotal
    by_agent: dict[str, UsageTotal]
    by_task: dict[str, UsageTotal]
    by_model: dict[str, UsageTotal]


# --- readiness -------------------------------------------------------------------------


class ReadinessItem(ProtocolModel):
    name: NonEmpty
    ok: bool
    detail: str = ""
    fix: str = ""


class ReadinessRequest(ProtocolModel):
    """`POST /v1/readiness` (captain): the result of `swarm readiness`; `ready` must be every item's `ok`."""

    ready: bool
    items: list[ReadinessItem] = Field(min_length=1, max_length=200)
    drill_at: datetime | None = None

    @model_validator(mode="after")
    def _ready_means_every_item(self) -> ReadinessRequest:
        failing = [item.name for item in self.items if not item.ok]
        if self.ready and failing:
            raise ValueError(f"ready is true but these items fail: {', '.join(failing)}")
        if not self.ready and not failing:
            raise ValueError("ready is false but every item holds")
        return self


class ReadinessReport(ProtocolModel):
    """A stored readiness report: the request, who sent it and when."""

    at: datetime
    by: str
    ready: bool
    items: list[ReadinessItem]
    drill_at: datetime | None = None


class OverrideRequest(ProtocolModel):
    """`POST /v1/readiness/overrides` (captain: a human): allow live work for one agent and logic version."""

    agent: Identifier
    logic_version: Identifier
    reason: NonEmpty
    for_s: int = Field(default=86_400, gt=0, le=30 * 86_400, description="How long it holds (at most 30 days).")


class ReadinessOverride(ProtocolModel):
    id: str
    agent: str
    logic_version: str
    reason: str
    by: str
    at: datetime
    expires_at: datetime


class ReadinessStatus(ProtocolModel):
    """`GET /v1/readiness`: the latest report, whether it lets live work through now, and the overrides in force."""

    report: ReadinessReport | None
    live_ready: bool
    """The latest report is ready and younger than `[rollout] readiness_max_age_s`."""
    max_age_s: int
    overrides: list[ReadinessOverride]


# --- rollout: shadow, then canary ------------------------------------------------------

RolloutStage = Literal["shadow", "canary"]
"""Where a candidate logic version is: `shadow` (its work recorded, never applied), `canary` (a share of live
tasks, by `[rollout] steps`). Past the last step it is the live version."""


class RolloutState(ProtocolModel):
    """An agent's rollout as the brain keeps it: the live logic version and the candidate on its way."""

    agent: str
    live_version: str | None = None
    """None until a version of the agent first works live."""
    live_since: datetime | None = None
    candidate: str | None = None
    stage: RolloutStage | None = None
    """The candidate's stage; None without a candidate."""
    step: int = 0
    """In canary: the index in `[rollout] steps` (0 is the first step)."""
    candidate_since: datetime | None = None
    stage_since: datetime | None = None
    """When the candidate reached its stage (in canary: its step)."""
    canary_since: datetime | None = None
    rolled_back: list[str] = Field(default_factory=list[str])
    """Versions rolled back: never a candidate again (change the agent's logic for a new version)."""
    voter: bool = False
    """A reviewer or captain agent's rollout: its versions vote on decisions (a shadow vote is kept, not counted)
    rather than work tasks, and are compared by how often their votes agree with the panel's counted ones."""


class RolloutMetric(ProtocolModel):
    """One metric, candidate and live side by side, with its test (see `brain_server.canary`)."""

    name: str
    candidate: str
    live: str
    test: str
    holds: bool


class RolloutReport(ProtocolModel):
    """`GET /v1/agents/{name}/rollout`: the rollout, the compared tasks, each metric and what the next step needs."""

    state: RolloutState
    percent: int
    """The share of live tasks the candidate takes now (0 in shadow or without a candidate)."""
    steps: list[int]
    candidate_tasks: int
    """The candidate's compared tasks (shadow runs in shadow, live tasks since the canary began)."""
    live_tasks: int
    """The live version's compared tasks."""
    stage_tasks: int
    """The candidate's tasks at its present stage or step."""
    shadow_tasks: int
    shadow_days: float
    """Days since the candidate's first shadow run."""
    metrics: list[RolloutMetric]
    holds: bool
    test: str
    """The statistical test, stated."""
    next: str
    """What the next step needs (or why there is none)."""


class RolloutAction(ProtocolModel):
    """`POST /v1/agents/{name}/rollout/promote|rollback` (a human captain): move the candidate on, or drop it."""

    reason: NonEmpty


# --- reversal --------------------------------------------------------------------------


class UndoRequest(ProtocolModel):
    """`POST /v1/undo/{id}` (approver or captain): reverse the brain updates of an action or a whole decision."""

    reason: NonEmpty
    force: bool = Field(default=False, description="Reverse even tasks that changed since (overwrites those changes).")
    dry_run: bool = Field(
        default=False, description="Only say what would be reversed, and refuse as the real undo would; change nothing."
    )
    as_action: Identifier | None = Field(
        default=None,
        description="The id to keep this reversal under (the workspace's undo action, so one id redoes both sides); "
        "default: one the brain makes.",
    )


class ReversedUpdate(ProtocolModel):
    """One brain update put back as it was before the action."""

    kind: CompensationKind
    task_id: str
    action_id: str


class ReversalResult(ProtocolModel):
    """The answer to `POST /v1/undo/{id}`: what was reversed, newest first."""

    target_id: str
    reversed: list[ReversedUpdate]
    """With `dry_run`: what would be reversed."""
    conflicts: list[str] = Field(default_factory=list[str])
    """With `force`: the tasks that had changed since and were overwritten."""
    dry_run: bool = False
    undo_id: str | None = None
    """Undo this id to redo the reversal (None for a dry run)."""
