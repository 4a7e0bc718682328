"""The state contract: one small `Protocol` per kind of record, and `StateEngine`, all of them at once.

Every method is one transaction: it happens completely or not at all, and a change is recorded
in the brain's log in the same transaction. The rules live above the engine; the engine keeps
the few invariants that must hold under concurrency (a task is claimed once, a decision changes
only from the state its writer saw, an audit chain only grows by linking). A kind of engine is
its `StateEngine` plus an `EngineKind`: how its database URL is checked and opened.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

from shared_protocol import AuditEvent
from shared_protocol.brain import (
    AgentPause,
    Decision,
    KillState,
    ReadinessOverride,
    ReadinessReport,
    RolloutState,
    Task,
    TaskOutcome,
    TaskState,
    UsageRecord,
)
from shared_protocol.decisions import DecisionState

from ..audit import AuditAppend
from ..exceptions import StateBroken
from ..wake.records import AnswerToken, Escalation
from ._records import (
    BodyRecord,
    ClaimGrant,
    Compensation,
    CompensationDraft,
    DecisionReplaced,
    DecisionTiming,
    KeptKeys,
    LogEntry,
    Presence,
    Rebinding,
    Reversal,
    TaskKey,
    TaskTiming,
    TokenRecord,
    UsageSummary,
)
from ._sessions import SessionStore
from ._transitions import OutcomeReport

Durability = Literal["power_loss", "crash"]
"""What a committed write survives: `power_loss` (synchronous=FULL) or only a crash of the process (NORMAL)."""


class TokenStore(Protocol):
    """The brain's bearer tokens, kept as hashes; never deleted, only bound to a body and revoked, once each.
    A token's agent (`TokenRecord.agent`) is given when it is added and never changes."""

    async def add_token(self, record: TokenRecord, log: LogEntry) -> None: ...

    async def token_by_hash(self, token_hash: str) -> TokenRecord | None: ...

    async def tokens(self) -> list[TokenRecord]:
        """Every token, revoked ones included, oldest first."""
        ...

    async def has_agent_token(self, agent: str) -> bool:
        """Whether any token (a revoked one too) is bound to `agent`: `tokens()` asked about one name."""
        ...

    async def bind_token(self, token_id: str, body_id: str, log: LogEntry) -> TokenRecord | None:
        """Bind an unbound, unrevoked body token to `body_id` (and write `log`); the token as stored afterwards.

        Only a body id no token has named yet is bound this way (trust on first use): a body id that another
        token holds, or held before it was revoked, moves only by `rebind_body`, and the token comes back unbound.
        Atomic: of two first uses naming different bodies, exactly one binds, and the other gets back the
        token bound to the winner's body; of two tokens naming one body, exactly one gets it. A bound, revoked or
        non-body token is returned unchanged, with no log. None if there is no such token.
        """
        ...

    async def rebind_body(
        self, body_id: str, token_id: str, *, at: datetime, log: LogEntry, revoke_log: LogEntry
    ) -> Rebinding:
        """Give `body_id` to the token `token_id` (a live body token, unbound or bound to it already), and revoke at
        `at` the live token that holds it now, if another: one transaction, with `log` (and `revoke_log`, its target
        the revoked token's id, when one is revoked). The body's verification key is forgotten: its next registration
        sets it again (the reset of a body whose audit key changed). `NotFound` (no such token) or `RebindRefused`
        (see `rebind_refusal`), writing nothing.
        """
        ...

    async def revoke_token(self, token_id: str, *, at: datetime, log: LogEntry) -> TokenRecord | None:
        """Revoke a token at `at` (and write `log`); the token as it was before, None if there is no such token.

        A token revoked already keeps its first `revoked_at`, and nothing is written.
        """
        ...


class BrainLog(Protocol):
    """The brain's own append-only log. Most lines are written by the change they record, in its transaction."""

    async def append_log(self, entry: LogEntry) -> None:
        """A log line on its own (a page sent, a refused interaction)."""
        ...

    async def log_entries(self, *, limit: int = 100) -> list[LogEntry]:
        """The newest `limit` entries of the brain's log, oldest first."""
        ...


class KillStore(Protocol):
    """The brain's kill switch: one state, released until someone engages it."""

    async def kill_state(self) -> KillState: ...

    async def note_kill(self, state: KillState, log: LogEntry) -> None:
        """Note a kill ahead of its publication and its commit (`set_kill_state`, which makes the note durable
        against a power loss first): a brain whose process dies in between engages it again as it starts (a crash
        never un-kills the bodies that heard it). Waits for no disk: it is on the kill's path to every body."""
        ...

    async def set_kill_state(self, state: KillState, log: LogEntry) -> None: ...


class BodyStore(Protocol):
    """The bodies that registered, and when each was last heard from."""

    async def upsert_body(self, body: BodyRecord, *, key_log: LogEntry | None = None) -> None:
        """Register a body, or update a known one (keeping its first `registered_at`, and clearing its `left_at`).

        `body.verify_key`: kept if the body has none yet (trust on first use, with `key_log`); the same one changes
        nothing; another raises `BodyKeyMismatch`, writing nothing; None leaves the kept one as it is."""
        ...

    async def deregister_body(self, body_id: str, *, at: datetime, log: LogEntry) -> bool:
        """Mark a registered body gone at `at` (a clean exit) and write `log`; False, and nothing written, if it
        never registered. A heartbeat does not bring it back (`touch_body` is False for it); registering again
        does."""
        ...

    async def touch_body(self, body_id: str, at: datetime) -> bool:
        """Record a heartbeat; False if the body never registered, or deregistered since it last registered (a
        late heartbeat of a process that left, or another process of the same body that must register again)."""
        ...

    async def bodies(self) -> list[BodyRecord]:
        """Every registered body, by id."""
        ...


class AuditEventStore(Protocol):
    """The brain's copy of each body's audit chain: it only grows by linking, and is pruned only by retention."""

    async def append_audit(
        self, body_id: str, events: Sequence[AuditEvent], *, log_start_seq: int = 1, at: datetime | None = None
    ) -> AuditAppend:
        """Store the events of a batch that link to the body's chain (see `audit.link_batch`), as received `at`
        (default now): retention goes by when the brain received an event, never by the body's own clock.

        In the same transaction, a task's verification pending on one of the new events is settled
        (`verification.settle_task`, a `verification` history line)."""
        ...

    async def audit_events(self, body_id: str, *, after_seq: int = 0, limit: int = 1000) -> list[AuditEvent]:
        """The body's stored events after `after_seq`, in seq order, at most `limit`."""
        ...

    async def refused_events(self, agent: str) -> list[AuditEvent]:
        """Every stored event of `agent`'s bodies whose call was refused (`outcome` "refused"), by body and seq
        (what a rollout counts against a version; SQLite reads them by an index, not every event)."""
        ...

    async def rewrite_audit_events(
        self, rewrite: Callable[[str], str | None], log: LogEntry
    ) -> tuple[int, dict[str, int]]:
        """Every stored event's text (its JSON) through `rewrite` (None: unchanged), in one transaction, its seq,
        id, time and `mac` never changed (`swarm privacy migrate`); logged once with the count per body, if any
        changed. Freed pages are zeroed and the WAL emptied after it. Returns (events read, rewritten per body)."""
        ...

    async def rewrite_records(self, change: RecordRewrite, log: LogEntry) -> dict[str, int]:
        """The brain's own records — tasks (and their history lines), the task rows compensating records keep,
        decisions, escalations, the log's reasons (and a `detail.error`), the kill switch's and agents' pauses'
        reasons, readiness reports and overrides, bodies' registrations, answer links' recipients — through `change`
        (None: unchanged), in one transaction; a history line, a log entry, a compensating record, a readiness
        report or override changes its text only (`swarm privacy migrate`; brain schemas v24 and v25 let nothing
        else change). Logged once with the count per kind, if any changed; freed pages are zeroed and the WAL
        emptied after it. Returns the count per kind of what changed (`tasks`, `task_events`, `compensations`,
        `decisions`, `escalations`, `log`, `kill`, `pauses`, `readiness_reports`, `readiness_overrides`, `bodies`,
        `answer_tokens`)."""
        ...

    async def escalations(self) -> list[Escalation]:
        """Every escalation record, oldest first (`swarm privacy export`)."""
        ...

    async def prune_audit(self, before: datetime, log: LogEntry) -> dict[str, int]:
        """Delete each body's events received before `before` (the brain's clock: a body cannot age its own
        events by their `ts`), through the newest such seq, but never a body's newest event (the next batch links
        to it); logged once with what went, if anything did. Returns the number deleted per body that lost any."""
        ...


class DecisionStore(Protocol):
    """Decisions, changed only by compare-and-set on their state."""

    async def insert_decision(self, decision: Decision, log: LogEntry, *, reuse_pending: bool = False) -> Decision:
        """Store a new decision (and `log`); returns what is stored.

        With `reuse_pending`, a decision still pending (not yet due at `decision.created_at`) that asks the
        same question of the same body (`same_question`) is returned instead and nothing is
        written: a retried request is not a second question (nor a second page). Atomic with the insert.
        """
        ...

    async def decision(self, decision_id: str) -> Decision | None: ...

    async def replace_decision(
        self, decision: Decision, *, expected: DecisionState, log: LogEntry, previous: Decision | None = None
    ) -> DecisionReplaced | None:
        """Store the new version of a decision if it is still in `expected` (and, with `previous`, still as it was
        then: `decision_mark`, so a vote is never lost); None if someone changed it first.

        In the same transaction, a decision come to an end without approval (`_transitions.ENDS_PARKED`) ends the
        tasks parked on it (`_transitions.end_parked`: abandoned, or a shadow run and back to the queue), each with
        its history event and a `task_outcome` log line by `log.by`; they are returned in `DecisionReplaced.ended`.
        """
        ...

    async def due_decisions(self, now: datetime) -> list[Decision]:
        """Pending decisions whose deadline has passed."""
        ...

    async def pending_decisions(self) -> list[Decision]:
        """Every pending decision (due ones included, until swept), by deadline."""
        ...

    async def count_pending_decisions(self, now: datetime) -> int:
        """Pending decisions still within their deadline."""
        ...


class TaskStore(Protocol):
    """The task queue: claimed once, finished only with the current claim token, requeued when a lease runs out."""

    async def insert_task(self, task: Task, log: LogEntry, *, key: TaskKey | None = None) -> Task:
        """Queue a new task (and write `log`); returns what is stored.

        With `key`, a task created before under the same token and key is returned instead and nothing is
        written, or `KeyReused` if that creation was a different request, or `KeyStoreReplaced` if the kept keys are
        under another key store's secret (`TaskKey.secret_check`; the first keyed request keeps its). Atomic with the
        insert.
        """
        ...

    async def accept_key_store(self, secret_check: str, log: LogEntry) -> tuple[bool, int]:
        """Keep `secret_check` as the key store's the kept `Idempotency-Key`s are under (the old store is lost for
        good: those keys never match again, and stay), and write `log`, at once; whether that changed anything, and how
        many keys are kept. Nothing is written if it was this one already."""
        ...

    async def unpinned_keys(self) -> KeptKeys | None:
        """While `Idempotency-Key`s are kept and no check value of the key store they are under is (kept before brain
        schema v26), what can tell that store (`KeptKeys`); else None."""
        ...

    async def pin_key_store(self, secret_check: str) -> bool:
        """Keep `secret_check` as the check value of the key store the kept keys are under, unless one is kept
        already (nothing is written then); whether it was kept."""
        ...

    async def task(self, task_id: str) -> Task | None: ...

    async def tasks(self, *, state: TaskState | None = None, agent: str | None = None) -> list[Task]:
        """Every task (in `state`, last claimed by `agent`, when given), oldest first, with its history."""
        ...

    async def task_page(
        self, *, state: TaskState | None = None, agent: str | None = None, limit: int, offset: int = 0
    ) -> tuple[list[Task], int]:
        """The `limit` newest tasks `tasks` would list after the `offset` newest (oldest first, with their
        histories), and how many it would list: a page of the list, read without the rest of it."""
        ...

    async def claim_task(
        self, grant: ClaimGrant, log: Callable[[Task], LogEntry], *, compensation: CompensationDraft | None = None
    ) -> Task | None:
        """Atomically move the most valuable queued task (oldest first among equals) to `claimed`: only
        `grant.task_id` when given, and for a shadow grant none this agent and logic version shadowed already.
        None (nothing written) while the brain's kill switch is engaged or `grant.agent` is paused, as read in the
        claim's own transaction.

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
        report: OutcomeReport | None = None,
    ) -> Task:
        """Record the outcome of a claimed (or waiting_approval) task, with `report`'s verification, evidence and
        spend; a shadow claim's outcome is kept as a shadow run and the task is queued again. Raises `NotFound`,
        `TaskCancelled`, or `StaleClaim` if the token is not the current one (see `_transitions.finish`).

        With `holder`, a task claimed (now or last) by another body raises `BodyMismatch`, checked in the same
        transaction. With `compensation`, a `task_outcome` record of the row before and after is written in it too.
        """
        ...

    async def park_task(
        self,
        task_id: str,
        *,
        claim_token: str,
        decision_id: str,
        reason: str,
        at: datetime,
        log: LogEntry,
        holder: str | None = None,
    ) -> Task:
        """A claimed task waits for `decision_id`: waiting_approval, no lease, the claim token still valid."""
        ...

    async def resume_task(
        self,
        task_id: str,
        *,
        claim_token: str,
        lease_expires: datetime,
        at: datetime,
        log: LogEntry,
        holder: str | None = None,
    ) -> Task:
        """A waiting_approval task is claimed again by its holder, under a lease to `lease_expires`."""
        ...

    async def cancel_task(self, task_id: str, *, reason: str, at: datetime, log: LogEntry) -> Task:
        """Cancel a task not finished yet (final; its claim token goes stale). `NotFound`, `InvalidTransition`."""
        ...

    async def abandon_parked_task(self, task_id: str, *, reason: str, at: datetime, log: LogEntry, holder: str) -> Task:
        """The body holding a parked task gives it up without its claim token (its runner lost the task's state):
        abandoned with `reason` (a shadow claim: a shadow run, back to the queue). `NotFound`, `BodyMismatch`
        (another body's), `TaskCancelled`, `InvalidTransition` (not waiting for approval)."""
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

    async def count_verified_succeeded(self) -> int:
        """Tasks succeeded with a verified outcome (the body re-ran the acceptance check)."""
        ...


class UsageStore(Protocol):
    """The LLM usage runners report, per body; records are never changed."""

    async def record_usage(self, body_id: str, records: Sequence[UsageRecord]) -> tuple[int, int]:
        """Keep `records` as `body_id`'s: (new, duplicates). A record whose id is stored already is a duplicate if it
        is the same record of the same body, else `KeyReused` and nothing of the batch is written."""
        ...

    async def usage(self, *, body_id: str | None = None) -> list[UsageRecord]:
        """Every record (of `body_id`, when given), in the order they were stored."""
        ...


class ReadinessStore(Protocol):
    """Readiness reports (the newest counts) and captains' overrides (they expire, never change)."""

    async def add_readiness_report(self, report: ReadinessReport, log: LogEntry) -> None: ...

    async def readiness_report(self) -> ReadinessReport | None:
        """The newest report stored."""
        ...

    async def readiness_reports(self) -> list[ReadinessReport]:
        """Every report stored, oldest first (`swarm privacy export`)."""
        ...

    async def add_readiness_override(self, override: ReadinessOverride, log: LogEntry) -> None: ...

    async def readiness_overrides(self, *, at: datetime | None) -> list[ReadinessOverride]:
        """The overrides in force at `at` (not expired), oldest first; `at` None: every one, expired too."""
        ...


class CompensationStore(Protocol):
    """The compensating records of the task updates bodies made (written by `TaskStore`), and their reversal."""

    async def compensations(self, target_id: str) -> list[Compensation]:
        """Every compensating record (reversed or not) of the action or decision `target_id`, oldest first."""
        ...

    async def all_compensations(self) -> list[Compensation]:
        """Every compensating record, oldest first (`swarm privacy export`)."""
        ...

    async def decision_compensations(self, decision_ids: Collection[str]) -> list[Compensation]:
        """The compensating records (reversed or not) made under any of `decision_ids`, oldest first: the KPIs'
        decision accuracy reads them for every decision of its window at once."""
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


class EscalationStore(Protocol):
    """Escalations climbing the paging ladder, changed only by compare-and-set on their `version`."""

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


class AnswerTokenStore(Protocol):
    """The single-use answer links sent with pages, kept as hashes."""

    async def add_answer_tokens(self, tokens: Sequence[AnswerToken], *, now: datetime) -> None:
        """Store new tokens, dropping those that expired before `now` (a link nobody can use any more)."""
        ...

    async def answer_token(self, token_hash: str) -> AnswerToken | None: ...

    async def answer_tokens(self) -> list[AnswerToken]:
        """Every token kept (until it expires), oldest first (`swarm privacy export`)."""
        ...

    async def use_answer_token(self, token_hash: str, at: datetime) -> AnswerToken | None:
        """Mark the token used and return it, if it exists, is unused and unexpired at `at`; else None."""
        ...


class InteractionStore(Protocol):
    """The ids of the chat interactions seen lately, so that a replayed one is refused."""

    async def remember_interaction(self, interaction_id: str, at: datetime, *, forget_before: datetime) -> bool:
        """Record an interaction id; False if it was seen before (a replay). Drops ids older than `forget_before`."""
        ...


class TelemetryStore(Protocol):
    """What the KPIs and `/metrics` read: presence minutes (kept under retention) and cheap summaries of what the
    other stores keep (usage, decisions, finished tasks), so that a scrape never loads whole records."""

    async def mark_presence(self, subjects: Sequence[str], minute: datetime) -> None:
        """Record each subject (`brain`, `body:<id>`) as up during `minute` (its start); marking twice is harmless."""
        ...

    async def presence(self, *, since: datetime) -> list[Presence]:
        """Per subject seen at or after `since`: its minutes up since then and its first minute kept."""
        ...

    async def prune_telemetry(self, before: datetime, log: LogEntry) -> int:
        """Delete the presence minutes before `before` (logged once with `log` if any went); how many went."""
        ...

    async def decisions(self) -> list[Decision]:
        """Every decision, oldest first."""
        ...

    async def count_decisions(self) -> dict[DecisionState, int]:
        """Decisions by stored state (a pending one past its deadline still counts as pending until swept)."""
        ...

    async def usage_for_kpi(self, *, since: datetime, until: datetime, task_ids: Collection[str]) -> list[UsageRecord]:
        """The records made in [since, until], and those billed to `task_ids` (whenever made): what the KPIs of that
        window read, without the rest."""
        ...

    async def usage_summary(
        self, *, since: datetime | None = None, until: datetime | None = None
    ) -> list[UsageSummary]:
        """Usage records (made at or after `since`, at or before `until`, when given) by agent, model, outcome."""
        ...

    async def task_timings(self) -> list[TaskTiming]:
        """Every finished task's final state, creation and finish times."""
        ...

    async def decision_timings(self) -> list[DecisionTiming]:
        """Every decision no longer pending: its state, creation time and its first answer's time."""
        ...


class PauseStore(Protocol):
    """Agents paused (a kill switch scoped to one agent's bodies) until a human resumes them."""

    async def agent_pauses(self) -> list[AgentPause]:
        """Every paused agent, by name."""
        ...

    async def pause_agent(self, pause: AgentPause, log: LogEntry) -> bool:
        """Pause `pause.agent` (logged with `log`); False, and nothing written, if it is paused already."""
        ...

    async def resume_agent(self, agent: str, log: LogEntry) -> AgentPause | None:
        """Lift `agent`'s pause (logged with `log`) and return it; None, and nothing written, if it was not paused."""
        ...


class RolloutStore(Protocol):
    """Each agent's rollout (`RolloutState`): replaced whole, with the log line that says why, in one write."""

    async def rollouts(self) -> list[RolloutState]:
        """Every agent's rollout, by agent name."""
        ...

    async def rollout(self, agent: str) -> RolloutState | None: ...

    async def put_rollout(self, state: RolloutState, log: LogEntry) -> None:
        """Store `state` as its agent's rollout, and `log`, together."""
        ...

    async def rollout_inputs_generation(self) -> int | None:
        """A number that moves whenever what a rollout's evaluation reads may have changed (a task's outcome,
        history but for its creation and claims, verification, spend or shadow runs; a decision; usage charged to a
        task; a refused audit event), whoever wrote it, and stays put over claims of queued tasks and renewals.
        None: this engine keeps no such number (every evaluation reads afresh)."""
        ...


class RecordRewrite(Protocol):
    """What `rewrite_records` does to each kind of record (`brain_server.privacy.RecordProtection`)."""

    def task(self, task: Task) -> Task | None:
        """A task (its history lines included); also applied to the task rows compensating records keep."""
        ...

    def decision(self, decision: Decision) -> Decision | None: ...

    def escalation(self, escalation: Escalation) -> Escalation | None: ...

    def reason(self, reason: str) -> str | None:
        """A piece of text: a log entry's reason, the kill switch's or a pause's, the recipient of an answer link."""
        ...

    def log_detail(self, detail: dict[str, Any]) -> dict[str, Any] | None:
        """A log entry's `detail` (only its `error` may change: brain schema v25)."""
        ...

    def readiness_report(self, report: ReadinessReport) -> ReadinessReport | None: ...

    def readiness_override(self, override: ReadinessOverride) -> ReadinessOverride | None: ...

    def body(self, body: BodyRecord) -> BodyRecord | None: ...

    def task_key(self, token_id: str, key: str) -> str | None:
        """An `Idempotency-Key` as kept in `task_keys` (kept as sent before: keyed now)."""
        ...

    def task_request(self, digest: str) -> str | None:
        """The digest of the request an `Idempotency-Key` came with, as kept in `task_keys` (bare before: keyed
        now)."""
        ...


class StateEngine(
    TokenStore,
    BrainLog,
    KillStore,
    BodyStore,
    AuditEventStore,
    DecisionStore,
    TaskStore,
    UsageStore,
    ReadinessStore,
    CompensationStore,
    EscalationStore,
    AnswerTokenStore,
    InteractionStore,
    TelemetryStore,
    SessionStore,
    PauseStore,
    RolloutStore,
    Protocol,
):
    """Everything the brain knows, in one object. Implementations serialise writers; every method is atomic."""

    async def close(self) -> None: ...

    @property
    def broken(self) -> StateBroken | None:
        """Why the engine's storage cannot be used any more (a malformed, truncated or deleted file, a full disk),
        once it found out; every method raises that `StateBroken` from then on. None while it works."""
        ...

    async def wait_broken(self) -> StateBroken:
        """Wait until the engine finds its storage unusable, and return why (the daemon stops then); an engine
        whose storage cannot break (memory://) never returns."""
        ...


class EngineOpener(Protocol):
    """Opens one kind of engine at a location (the part of its URL after `scheme://`)."""

    def __call__(self, location: str, *, durability: Durability, create: bool) -> Awaitable[StateEngine]: ...


@dataclass(kw_only=True, frozen=True)
class EngineKind:
    """One kind of state engine, as the scheme of a database URL names it: `scheme://location`."""

    form: str
    """The URL's form, for messages: `sqlite:///ABSOLUTE/PATH`."""
    durable: bool
    """Whether what it stores outlives the process that opened it."""
    problem: Callable[[str], str | None]
    """What is wrong with a location, or None. Pure: a URL is checked before anything is opened or created."""
    open: EngineOpener
    """Open the engine at a location `problem` accepted. Not `create`: `NoDatabase` if there is none there yet."""
