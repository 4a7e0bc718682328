"""`Brain`: the brain's operations, above the state engine and below HTTP.

Each operation is one state-engine transaction, then the events it causes: pushed to the
event streams (after the commit, so no body hears of a change that is not durable) and, for
a decision that needs a human or something gone wrong, the wake-up ladder (`Escalator`, the
one way the brain tells humans anything). Callers have already checked the caller's role;
the `Principal` is passed in to be recorded.

`run_sweeper` is the daemon loop: it expires decisions at their deadline and requeues tasks
whose lease ran out. Both are also checked when read, so a late sweep changes nothing.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Literal

import anyio
import anyio.to_thread
from anyio.abc import TaskGroup

from shared_protocol import AuditEvent, RefusalCode, decisions, ranking
from shared_protocol.brain import (
    MAX_USAGE_AHEAD_S,
    AbandonRequest,
    AgentPause,
    AuditAck,
    AuditBatch,
    BodyStatus,
    BrainStatus,
    CancelRequest,
    ClaimRequest,
    ClaimResponse,
    Decision,
    DecisionRequest,
    Deregistration,
    HeartbeatResponse,
    KillState,
    OutcomeRequest,
    OverrideRequest,
    ParkRequest,
    ProposalStanding,
    ReadinessOverride,
    ReadinessReport,
    ReadinessRequest,
    ReadinessStatus,
    RebindRequest,
    RebindResult,
    RegisterRequest,
    Registration,
    RenewRequest,
    RenewResponse,
    ResumeTaskRequest,
    ReversalResult,
    ReversedUpdate,
    Task,
    TaskAvailable,
    TaskCancelled,
    TaskEnded,
    TaskProposals,
    TaskRequest,
    TaskState,
    UsageAck,
    UsageBatch,
    UsageRecord,
    UsageTotals,
    VoteRequest,
)
from shared_protocol.consensus import latest
from shared_protocol.decisions import AnswerKind, DecisionState, OverrideAction
from shared_protocol.privacy import (
    HeldItem,
    MalformedSubject,
    PrivacyErasure,
    PrivacyExport,
    PrivacyMigration,
    PrivacyRequest,
    PrivacyUnerasure,
    Subject,
)

from . import governance
from .anomaly_watch import AnomalyWatch
from .auth import Principal, agent_token_command, rebind_body
from .backup import drop_backups_before_migration
from .dashboard.feed import AuditFeed
from .events import BrainEvent, EventHub
from .exceptions import (
    AgentPaused,
    BodyMismatch,
    ChainGap,
    ChainMismatch,
    Forbidden,
    InvalidRequest,
    InvalidTransition,
    NotFound,
    NothingToReverse,
    NotPending,
    NotReady,
    ReverseConflict,
    StateBroken,
    UnknownBody,
)
from .metrics import BrainMetrics
from .pauses import AgentPauses
from .privacy import (
    RecordProtection,
    decision_texts,
    escalation_texts,
    held_in,
    key_store_check,
    key_store_mismatch,
    keyed_request_digest,
    keyed_task_key,
    log_texts,
    open_protector,
    protect_evidence,
    protect_readiness_items,
    protect_spend,
    protect_stored_event,
    protect_verification,
    readiness_texts,
    row_texts,
    task_texts,
)
from .rollout import live_ready, live_refusal, running_totals, usage_totals
from .rollouts import Rollouts
from .settings import BrainSettings
from .shared_reads import SharedReads
from .state import (
    KEY_STORE_UNVERIFIED,
    BodyRecord,
    ClaimGrant,
    Compensation,
    CompensationDraft,
    LogEntry,
    OutcomeReport,
    StateEngine,
    TaskKey,
    created,
    sqlite_path,
)
from .telemetry import Telemetry
from .verification import pending
from .wake.escalator import Escalator
from .wake.records import Escalation
from .wake.setup import WakeSetup

logger = logging.getLogger(__name__)

Clock = Callable[[], float]


_HELD: tuple[TaskState, ...] = ("claimed", "waiting_approval")
"""The states of a task its body holds."""


def _claim_audit_seq(task: Task) -> int:
    """The claiming body's audit chain head the brain held when it granted the task's current claim (its `claimed`
    history line); a claim recorded before the brain noted it: every event after seq 0."""
    for line in reversed(task.history):
        if line.kind == "claimed":
            seq = line.detail.get("audit_seq")
            return seq if isinstance(seq, int) else 0
    return 0


@dataclass(kw_only=True, frozen=True)
class SweepReport:
    """What one sweep did: decisions expired and tasks requeued, by id."""

    expired: list[str]
    requeued: list[str]


PARK_AFTER_ANSWER_S = 600
"""How long after a human (or the deadline) answered a decision a task may still be parked on it: the runner parks
once its run stops, and the answer may come first. Decision accuracy judges a decision by the tasks parked on it."""


def _check_park_decision(decision: decisions.Decision, now: datetime) -> None:
    """`NotPending` (409) unless a task parked on `decision` waits for it: pending, or answered moments ago by a
    human or its deadline. Linking an easy task to a decision answered long before (or by the rules on the spot,
    which nobody waits for) would make that decision look accurate."""
    if decision.state == "pending":
        return
    last = decision.answers[-1] if decision.answers else None
    if last is None or last.by == decisions.RULES or now - last.at > timedelta(seconds=PARK_AFTER_ANSWER_S):
        raise NotPending(
            f"decision '{decision.id}' was answered ({decision.state}) before this park: a task is parked on a "
            "decision it waits for (ask a new one)"
        )


class Brain:
    """The brain's operations on one state engine. Use inside `async with brain.running():`."""

    def __init__(
        self,
        settings: BrainSettings,
        *,
        state: StateEngine,
        clock: Clock = time.time,
        wake: WakeSetup | None = None,
    ) -> None:
        self.settings = settings
        self.state = state
        self.hub = EventHub(buffer=settings.event_buffer)
        self._clock = clock
        self._background: TaskGroup | None = None
        self.wake = wake or WakeSetup()
        self.privacy = open_protector(settings)
        """`[privacy]`: the brain's subject keys; what it stores from requests is protected with them."""
        self.escalator = Escalator(
            state, self.wake, now=self.now, redact=self.privacy.redact, protect=self.privacy.protect
        )
        self.telemetry = Telemetry(state, settings=settings, hub=self.hub, now=self.now)
        self.metrics = BrainMetrics(state, settings=settings, hub=self.hub, now=self.now)
        self.audit_feed = AuditFeed()
        """The audit events stored since the brain started, for the dashboard's live audit stream."""
        self.pauses = AgentPauses(state, hub=self.hub, lock=anyio.Lock(), now=self.now)
        self.anomaly = AnomalyWatch(
            state, config=settings.anomaly, pauses=self.pauses, alert=self.raise_alert, now=self.now
        )
        self.rollouts = Rollouts(state, config=settings.rollout, alert=self.raise_alert, now=self.now)
        """Each agent's rollout of a new logic version: shadow, canary steps, live (`rollouts.py`)."""
        self._usage_reads = SharedReads[tuple[str | None, str | None, str | None], UsageTotals]()
        self._started: datetime | None = None
        """When `running()` began: a body silent since before then is given the failsafe time to reconnect."""

    def now(self) -> datetime:
        """The brain's clock, as an aware UTC datetime."""
        return datetime.fromtimestamp(self._clock(), UTC)

    @property
    def background(self) -> TaskGroup | None:
        """The task group of `running()`, for work that must outlive a request; None when not running."""
        return self._background

    @asynccontextmanager
    async def running(self) -> AsyncGenerator[Brain]:
        """Background work runs while inside; leaving ends every event stream. The key store is checked first
        (`check_key_store`)."""
        self._started = self.now()
        await self.check_key_store()
        try:
            async with anyio.create_task_group() as group:
                self._background = group
                group.start_soon(self.audit_feed.run)
                try:
                    yield self
                finally:
                    self.hub.close()
                    group.cancel_scope.cancel()
        except BaseExceptionGroup as group_error:
            # Background work never raises, so this is the caller's own error: give it back unwrapped.
            if len(group_error.exceptions) == 1:
                raise group_error.exceptions[0] from None
            raise
        finally:
            self._background = None

    async def check_key_store(self) -> None:
        """Keep the check value of the key store the kept `Idempotency-Key`s are under when none is (they were kept
        before brain schema v26): this store's if it can be theirs (`key_store_mismatch`), else one no store has, so a
        keyed request is refused (503 `key_store_replaced`) as with a replaced store, until `swarm brain key-store
        accept`. Nothing to do once one is kept, or with no key kept."""
        kept = await self.state.unpinned_keys()
        if kept is None:
            return
        mismatch = key_store_mismatch(self.privacy, kept)
        if mismatch is None:
            await self.state.pin_key_store(key_store_check(self.privacy))
            return
        if await self.state.pin_key_store(KEY_STORE_UNVERIFIED):
            logger.warning(
                "the brain's key store is not the one its %d kept Idempotency-Keys were made under (%s): a request "
                "with an Idempotency-Key is refused until the old store is put back or `swarm brain key-store accept "
                "--reason ...`",
                kept.keys,
                mismatch,
            )

    # -- kill switch -----------------------------------------------------------------------

    async def kill_state(self, agent: str | None = None) -> KillState:
        """The kill switch a body of `agent` obeys (`pauses.py`): the brain's, or its agent's pause."""
        return await self.pauses.kill_state(agent)

    async def set_kill(self, by: Principal, *, engaged: bool, reason: str) -> KillState:
        """Engage or release the brain's kill switch; every event stream hears of it at once (`kill_event`: its
        reason's personal data redacted; what is stored is protected, `[privacy]`).

        A kill is noted beside the database (`note_kill`: one small file, synced after the publication, before the
        commit) and then published, before its commit: the bodies stop without waiting for the writers queued ahead of
        it (every body's audit batches share that queue), a brain that dies before the commit engages the noted kill
        again as it starts (a crash never un-kills the bodies that heard it; a power loss before the note's sync still
        can), and the captain's answer still waits until the kill is committed. Until the commit ends, every kill state
        the brain answers with (heartbeats, registrations, the first event of a stream that opens meanwhile) is that
        kill (`AgentPauses.committing`): a heartbeat read from the database before the commit would otherwise lift the
        kill on a body that had heard it. A kill whose commit fails has stopped the bodies anyway (fail closed: their
        next heartbeat brings back what the database says, and a restart commits the noted kill) and answers with the
        error. A release is published only once committed: nothing resumes on a release that could still be lost."""
        reason = self.privacy.protect(reason)
        async with self.pauses.lock:  # (kill-state changes in commit order, pauses included)
            now = self.now()
            state = KillState(engaged=engaged, reason=reason, by=by.name, at=now)
            log = by.entry("kill" if engaged else "resume", at=now, reason=reason)
            if engaged:
                try:
                    await self.state.note_kill(state, log)  # (before anyone hears it: a crash cannot un-kill them)
                except OSError as exc:  # (a full or failing disk: the bodies are stopped all the same, the commit says)
                    logger.error("the kill could not be noted ahead of its commit (%s); published all the same", exc)
                with self.pauses.committing(state):
                    await self.state.set_kill_state(state, log)
            else:
                await self.state.set_kill_state(state, log)
                await self.pauses.publish_release(state)
        return state

    async def pause_agent(self, by: Principal, agent: str, reason: str) -> tuple[AgentPause, bool]:
        """A captain pauses one agent: its bodies refuse as if killed until a human resumes it. An agent no token
        is bound to is `NotFound` (a typo would pause nothing); one paused already keeps its first pause."""
        await self._known_agent(agent)
        reason = self.privacy.protect(reason)  # ([privacy])
        now = self.now()
        pause = AgentPause(agent=agent, reason=reason, by=by.name, source="captain", at=now)
        return await self.pauses.pause(pause, by.entry("agent_pause", at=now, reason=reason, target=agent))

    async def resume_agent(self, by: Principal, agent: str, reason: str) -> KillState:
        """A human resumes a paused agent (never the detector); the kill state its bodies obey now."""
        reason = self.privacy.protect(reason)  # ([privacy])
        now = self.now()
        log = by.entry("agent_resume", at=now, reason=reason, target=agent)
        state = await self.pauses.resume(agent, by=by.name, reason=reason, log=log)
        if state is None:
            raise NotFound(f"agent '{agent}' is not paused")
        return state

    async def _known_agent(self, agent: str) -> None:
        if not any(t.agent == agent for t in await self.state.tokens()):
            raise NotFound(f"no token is bound to agent '{agent}' ({agent_token_command(agent)} makes one)")

    # -- bodies ----------------------------------------------------------------------------

    async def register(
        self, request: RegisterRequest, *, by: Principal | None = None, agent: str | None = None
    ) -> Registration:
        """Register (or re-register) a body; the answer tells it how often to heartbeat and the kill state.

        The first verification key a body id registers is kept (trust on first use, logged; a paired token's
        registration proved its pairing secret first, `auth.check_pairing`); another one is refused
        (`BodyKeyMismatch`, 409), nothing changed: a captain's rebind of the body forgets it."""
        now = self.now()
        body = BodyRecord(
            body_id=request.body_id,
            workspace=self.privacy.protect(request.workspace),  # (a path can name a person; [privacy])
            hostname=self.privacy.protect(request.hostname),
            version=request.version,
            registered_at=now,
            last_heartbeat=now,
            verify_key=request.verify_key,
        )
        paired = by is not None and by.pairing_hash is not None  # (`auth.check_pairing` checked the secret)
        reason = (
            "first registration with a verification key, proven by its token's pairing secret"
            if paired
            else "first registration with a verification key (trust on first use)"
        )
        key_log = (
            LogEntry(at=now, action="body_key", by="body", reason=reason, target=request.body_id)
            if by is None
            else by.entry("body_key", at=now, reason=reason, target=request.body_id)
        )
        await self.state.upsert_body(body, key_log=key_log)
        return Registration(
            body_id=request.body_id,
            heartbeat_interval_s=self.settings.heartbeat_interval_s,
            failsafe_s=self.settings.failsafe_s,
            kill=await self.kill_state(agent),
            max_audit_request_bytes=self.settings.max_audit_request_bytes,
        )

    async def rebind(self, by: Principal, body_id: str, request: RebindRequest) -> RebindResult:
        """A captain moves `body_id` to another body token; the token that held it is revoked (its streams end)."""
        reason = self.privacy.protect(request.reason)  # ([privacy])
        moved = await rebind_body(self.state, body_id, request.token_id, reason=reason, at=self.now(), by=by)
        previous = moved.previous
        return RebindResult(
            body_id=body_id, token_id=moved.token.id, revoked_token_id=None if previous is None else previous.id
        )

    async def deregister(self, by: Principal, body_id: str) -> Deregistration:
        """A body exiting cleanly: it is gone, not lost (no `body_lost` alert), until it registers again."""
        now = self.now()
        log = by.entry("body_deregister", at=now, reason="clean exit", target=body_id)
        if not await self.state.deregister_body(body_id, at=now, log=log):
            raise UnknownBody(f"body '{body_id}' is not registered")
        return Deregistration(body_id=body_id, left_at=now)

    async def heartbeat(self, body_id: str, *, agent: str | None = None) -> HeartbeatResponse:
        """Record a body's heartbeat and answer with the kill state; `UnknownBody` if it never registered, or
        deregistered since: a process of it still running (one of two on a workspace, the other left) registers
        again on that answer, so the brain knows the body is there and pages if it is lost."""
        if not await self.state.touch_body(body_id, self.now()):
            raise UnknownBody(
                f"body '{body_id}' is not registered (or deregistered since): POST /v1/bodies/register first"
            )
        return HeartbeatResponse(kill=await self.kill_state(agent))

    async def status(self, *, for_body: str | None = None, agent: str | None = None) -> BrainStatus:
        """Kill state, bodies (connected: streaming, or heartbeated within the failsafe time), counts.

        With `for_body` (a body token asking), the bodies listed are that one only: a body does not learn where
        the others run, and the paused agents listed are its own agent only (`agent`).
        """
        now = self.now()
        streaming = self.hub.connected()
        recent = now - timedelta(seconds=self.settings.failsafe_s)
        bodies = [
            BodyStatus(
                body_id=b.body_id,
                workspace=b.workspace,
                hostname=b.hostname,
                version=b.version,
                registered_at=b.registered_at,
                last_heartbeat=b.last_heartbeat,
                connected=b.left_at is None and (b.body_id in streaming or b.last_heartbeat >= recent),
                left_at=b.left_at,
            )
            for b in await self.state.bodies()
            if for_body is None or b.body_id == for_body
        ]
        tasks = await self.state.count_tasks()
        return BrainStatus(
            # (a kill published but not yet committed is engaged here too: a page's read in between would otherwise
            # keep the state from before it in its snapshot, `dashboard.snapshots`, after the commit)
            kill=await self.pauses.brain_kill(),
            bodies=bodies,
            pending_decisions=await self.state.count_pending_decisions(now),
            queued_tasks=tasks.get("queued", 0),
            claimed_tasks=tasks.get("claimed", 0),
            waiting_tasks=tasks.get("waiting_approval", 0),
            paused_agents=[
                p
                for p in await self.state.agent_pauses()
                if for_body is None or (agent is not None and p.agent == agent)
            ],
        )

    # -- audit -----------------------------------------------------------------------------

    async def ingest_audit(self, batch: AuditBatch) -> AuditAck:
        """Store what links to the body's chain; refuse (after keeping the good prefix) what does not."""
        for index, event in enumerate(batch.events):
            if event.body_id != batch.body_id:
                raise InvalidRequest(
                    f"event seq {event.seq} belongs to body '{event.body_id}', not '{batch.body_id}'",
                    field=f"events.{index}.body_id",
                )
        result = await self.state.append_audit(
            batch.body_id, batch.events, log_start_seq=batch.log_start_seq, at=self.now()
        )
        if result.stored:
            first_new = result.stored_through - result.stored
            stored = [e for e in batch.events if first_new < e.seq <= result.stored_through]
            agents = {t.agent for t in await self.state.tokens() if t.agent is not None and t.revoked_at is None}
            self.metrics.observe_audit(stored, agents=agents)
            self.audit_feed.publish(stored)
            await self._alert_on_events(stored)
        problem = result.problem
        if problem is None:
            return AuditAck(stored_through=result.stored_through)
        if problem.kind == "gap":
            raise ChainGap(
                f"event seq {problem.seq} does not follow seq {problem.expected_seq - 1}: "
                f"resend from seq {problem.expected_seq}",
                expected_seq=problem.expected_seq,
                stored_through=result.stored_through,
            )
        raise ChainMismatch(
            f"event seq {problem.seq} does not link to the stored chain of body '{batch.body_id}'",
            expected_seq=problem.expected_seq,
            stored_through=result.stored_through,
        )

    async def _alert_on_events(self, events: Sequence[AuditEvent]) -> None:
        """Wake a human when a body's circuit breaker refused a call, or a body failed closed without the brain.

        Only for registered bodies (a body token cannot invent bodies to page people about), and never at the
        cost of the upload: the events are stored already, and an alert that fails is logged.
        """
        flagged = [e for e in events if e.code in (RefusalCode.CIRCUIT_OPEN, RefusalCode.BRAIN_UNREACHABLE)]
        if not flagged:
            return
        known = {b.body_id for b in await self.state.bodies()}
        try:
            await self._raise_event_alerts([e for e in flagged if e.body_id in known])
        except StateBroken:
            raise
        except Exception:  # the batch is committed; failing the request would only make the body resend it
            logger.exception("could not raise an alert for audit events of body %s", flagged[0].body_id)

    async def _raise_event_alerts(self, events: Sequence[AuditEvent]) -> None:
        for event in events:
            if event.code == RefusalCode.CIRCUIT_OPEN:
                await self.raise_alert(
                    kind="breaker_open",
                    body_id=event.body_id,
                    title=f"Circuit breaker open on body {event.body_id}",
                    summary=event.message or "repeated limit breaches or failures opened the circuit breaker",
                    facts={"Agent": event.agent, "Event": event.id, "At": event.ts},
                )
            elif event.code == RefusalCode.BRAIN_UNREACHABLE:
                # Every call refused while the failsafe held is one event: the body says since when it held.
                since = event.detail.get("failsafe_since")
                await self.raise_alert(
                    kind="failsafe",
                    body_id=event.body_id,
                    title=f"Body {event.body_id} stopped itself: it could not reach the brain",
                    summary="The body's failsafe engaged its kill switch automatically (brain unreachable).",
                    facts={"Agent": event.agent, "Event": event.id, "At": event.ts, "Since": str(since or "?")},
                    episode=str(since) if since else f"session {event.session}",
                )

    # -- waking humans ---------------------------------------------------------------------

    async def raise_alert(
        self,
        *,
        kind: str,
        body_id: str,
        title: str,
        summary: str,
        facts: dict[str, str] | None = None,
        episode: str | None = None,
    ) -> Escalation | None:
        """Page humans about something wrong (deduplicated per kind and body while one is open, and for good per
        `episode` when given); None: no channel."""
        return await self.escalator.raise_alert(
            kind=kind, body_id=body_id, title=title, summary=summary, facts=facts, episode=episode
        )

    async def acknowledge(self, by: Principal, subject_id: str, reason: str = "") -> Escalation:
        """Someone is on it: stop paging about `subject_id` (a decision still needs its answer)."""
        reason = self.privacy.protect(reason)  # ([privacy])
        return await self.escalator.acknowledge(
            subject_id, by=by.entry("acknowledge", at=self.now(), reason=reason, target=subject_id)
        )

    async def _watch_bodies(self, now: datetime) -> None:
        """Raise a `body_lost` alert when a registered body goes silent past the failsafe time: once per loss (its
        last heartbeat names the episode), however long it stays lost, across restarts of the brain. A body that
        deregistered left; a body silent since before this brain started gets the failsafe time to reconnect."""
        silent_since = now - timedelta(seconds=self.settings.failsafe_s)
        streaming = self.hub.connected()
        for body in await self.state.bodies():
            if body.left_at is not None or body.body_id in streaming:
                continue
            heard = body.last_heartbeat if self._started is None else max(body.last_heartbeat, self._started)
            if heard >= silent_since:
                continue
            await self.raise_alert(
                kind="body_lost",
                body_id=body.body_id,
                title=f"Body {body.body_id} is lost",
                summary=f"No heartbeat for more than {self.settings.failsafe_s:g} s; the body has failed closed "
                "(its failsafe refuses every call) or stopped without saying so.",
                facts={"Last heartbeat": body.last_heartbeat.isoformat(timespec="seconds")},
                episode=body.last_heartbeat.isoformat(),
            )

    # -- decisions -------------------------------------------------------------------------

    async def request_decision(self, by: Principal, request: DecisionRequest) -> Decision:
        """Create a decision the rules classify; one that needs a human is pending and the wake-up ladder starts."""
        return (await self.ask(by, request))[0]

    async def ask(self, by: Principal, request: DecisionRequest) -> tuple[Decision, bool]:
        """`request_decision`, and whether it created the decision: the same question still pending from the
        same body (a retry) gets that decision back, and nobody is paged again.

        A decision at the consensus thresholds gets its panel (`governance.open_panel`): the rule reviewers vote at
        once, and may settle it; one naming fewer paths than it changes files also needs a human
        (`governance.paths_unnamed`)."""
        protect = self.privacy.protect  # (what a body sent is protected under its keys already: kept as it is)
        request = request.model_copy(
            update={
                "summary": protect(request.summary),
                "rationale": protect(request.rationale),
                "options": [protect(option) for option in request.options],
                "action": None if request.action is None else protect(request.action),
                "files": [protect(path) for path in request.files],
            }
        )
        now = self.now()
        decision = decisions.new_decision(
            request,
            decision_id=decisions.new_decision_id(),
            now=now,
            default_deadline_s=self.settings.decision_deadline_s,
            thresholds=self.settings.thresholds,
        )
        held = await self._held_task(decision)
        if held is not None:
            decision = decision.model_copy(update={"task_id": held.id})
        thresholds = self.settings.thresholds
        needs_human = governance.human_required(
            request.impact.usd, request.confidence, request.irreversible, thresholds
        )
        context = await self._governance_context(decision)
        decision = governance.open_panel(
            decision,
            consensus=self.settings.consensus,
            needs_human=needs_human,
            thresholds=thresholds,
            context=context,
            now=now,
        )
        detail: dict[str, object] = {"needs": decision.needs, "state": decision.state, "agent": request.agent}
        if decision.panel:
            detail["votes"] = {vote.voter: vote.value for vote in decision.votes}
        log = by.entry("decision_create", at=now, reason=request.summary, target=decision.id, detail=detail)
        stored = await self.state.insert_decision(decision, log, reuse_pending=True)
        if stored.id != decision.id:
            return stored, False
        self._published(decision)
        if decision.state == "pending" and (decision.needs == "human" or decision.human_required or decision.ladder):
            await self.escalator.start_decision(decision)
        return decision, True

    async def decision(self, decision_id: str, *, for_body: str | None = None) -> Decision:
        """The decision as of now: one past its deadline is expired on the way out.

        With `for_body` (a body token asking), another body's decision is `NotFound`, as if it did not exist.
        """
        decision = await self._load(decision_id)
        if for_body is not None and decision.body_id != for_body:
            raise NotFound(f"no decision '{decision_id}'")
        while decisions.is_due(decision, self.now()):
            decision = await self._expire(decision)
        return decision

    async def decisions(self, *, state: DecisionState | None = None, for_body: str | None = None) -> list[Decision]:
        """Decisions (in `state`, when given; a body token: its own only). Pending ones come most valuable task
        first (the priority orders the inbox, it never approves), then by deadline; others oldest first."""
        if state == "pending":
            found = [d for d in await self.state.pending_decisions() if not decisions.is_due(d, self.now())]
        else:
            found = [d for d in await self.state.decisions() if state is None or d.state == state]
        if for_body is not None:
            found = [d for d in found if d.body_id == for_body]
        if state != "pending":
            return found
        values = {d.id: (await self._governance_context(d)).priority or 0.0 for d in found}
        return sorted(found, key=lambda d: (-values[d.id], d.deadline, d.id))

    async def proposals(self, task_id: str) -> TaskProposals:
        """The task's decisions (any state) ranked as competing proposals: approval voting (`[consensus] quorum`
        approvals make one acceptable), Borda count over ballots derived from each seat's latest votes, and the
        documented tie-break (`shared_protocol.ranking`). `NotFound` for an unknown task."""
        task = await self.task(task_id)
        found = [d for d in await self.decisions() if d.task_id == task.id]
        votes = {d.id: {seat: vote.value for seat, vote in latest(d.votes).items()} for d in found}
        ids = [d.id for d in found]
        ballots = ranking.ballots_from_votes(ids, votes)
        candidates = [ranking.Candidate(id=d.id, proposed_at=d.created_at, priority=task.value_usd) for d in found]
        quorum = self.settings.consensus.quorum
        result = ranking.rank(candidates, ballots, quorum=quorum)
        by_id = {d.id: d for d in found}
        standings = [
            ProposalStanding(
                rank=place,
                decision_id=s.id,
                summary=by_id[s.id].summary,
                agent=by_id[s.id].agent,
                state=by_id[s.id].state,
                approvals=s.approvals,
                borda=s.borda,
                acceptable=s.acceptable,
            )
            for place, s in enumerate([*result.ranked, *result.rejected], start=1)
        ]
        return TaskProposals(
            task_id=task.id, quorum=quorum, voters=len(ballots), winner=result.winner, proposals=standings
        )

    def _voter(self, who: Principal) -> governance.Voter:
        """Who votes, from the token alone: a reviewer token's agent, or a human's label."""
        if who.role == "reviewer":
            if who.agent is None:  # (the schema and `issue_token` never make one; refuse rather than guess)
                raise Forbidden(f"reviewer token {who.token_id} is bound to no agent: it cannot vote")
            captain = who.agent in self.settings.captain_agents
            return governance.Voter(
                seat=who.agent,
                name=who.name,
                role=who.role,
                token_id=who.token_id,
                agent=who.agent,
                captain_agent=captain,
            )
        if who.role in governance.HUMAN_ROLES:
            return governance.Voter(
                seat=governance.human_seat(who.name), name=who.name, role=who.role, token_id=who.token_id
            )
        raise Forbidden("a body token cannot vote: votes come from reviewer, approver and captain tokens")

    async def _unpaused(self, voter: governance.Voter, *, doing: str) -> governance.Voter:
        """`voter`, unless it is a paused agent's (`AgentPaused`, 409): a paused agent steers nothing, neither by its
        panel seat nor as the captain agent, until a human resumes it."""
        if voter.agent is None:
            return voter
        pause = await self.pauses.pause_of(voter.agent)
        if pause is None:
            return voter
        raise AgentPaused(
            f"agent '{voter.agent}' is paused ({pause.reason}, by {pause.by}): it may not {doing} until a human "
            f"captain resumes it (swarm resume --agent {voter.agent})"
        )

    async def _governance_context(self, decision: Decision) -> governance.Context:
        """The captain agents, and the value of the task the proposing body holds (its priority), if any."""
        held = await self._held_tasks(decision)
        value = max((task.value_usd for task in held), default=None)
        return governance.Context(captain_agents=bool(self.settings.captain_agents), priority=value)

    async def _held_task(self, decision: Decision) -> Task | None:
        """The task the proposing body holds as the decision's agent (the most valuable, if it holds several)."""
        held = await self._held_tasks(decision)
        return max(held, key=lambda task: (task.value_usd, task.id)) if held else None

    async def _held_tasks(self, decision: Decision) -> list[Task]:
        """The tasks the proposing body holds as the decision's agent (claimed, or parked waiting for approval).

        Read by state (a few rows), not as the agent's whole history: the dashboard's inbox asks this for every
        pending decision on every poll."""
        return [
            task
            for state in _HELD
            for task in await self.state.tasks(state=state, agent=decision.agent)
            if task.claimed_by is not None and task.claimed_by.body_id == decision.body_id
        ]

    async def record_review_usage(self, by: Principal, batch: UsageBatch) -> UsageAck:
        """A reviewer agent's LLM spend on the decisions it reviews, charged to the proposing task: each record
        bills the reviewer's own agent (checked by the route) and names the `task_id` of a decision on whose panel
        that agent sits (or, for the captain agent, any decision); it is kept under the proposing body's id, so the
        task's and that body's spend include it. A record of a review of a decision made outside any task (no
        `task_id`) is kept under `reviewer:<agent>`. `InvalidRequest` (nothing of the batch kept) otherwise."""
        if batch.body_id is not None:
            raise InvalidRequest(
                "a reviewer's usage is charged to the proposing task's body: give no body_id", field="body_id"
            )
        agent = by.agent or ""
        captain = agent in self.settings.captain_agents
        bodies: dict[str, str] = {}
        for d in await self.state.decisions():
            if d.task_id is not None and (captain or agent in d.panel) and d.agent != agent:
                bodies.setdefault(d.task_id, d.body_id)
        by_body: dict[str, list[UsageRecord]] = {}
        for n, record in enumerate(batch.records):
            body_id = f"reviewer:{agent}" if record.task_id is None else bodies.get(record.task_id)
            if body_id is None:
                raise InvalidRequest(
                    f"usage record '{record.id}' names task '{record.task_id}': a reviewer's spend is charged to "
                    f"the task of a decision on whose panel agent '{agent}' sits",
                    field=f"records.{n}.task_id",
                )
            by_body.setdefault(body_id, []).append(record)
        stored = duplicates = 0
        for body_id, records in by_body.items():
            ack = await self.record_usage(body_id, UsageBatch(records=records), billed_by_reviewer=True)
            stored, duplicates = stored + ack.stored, duplicates + ack.duplicates
        return UsageAck(stored=stored, duplicates=duplicates)

    async def vote(
        self,
        by: Principal,
        decision_id: str,
        request: VoteRequest,
        *,
        action: Literal["vote", "approve", "deny"] = "vote",
    ) -> Decision:
        """A vote by `by`'s token (reviewer, approver or captain), audited (as `action`), and whatever it settles.

        `NotPending` if the decision is not pending; `Forbidden` for a voter who may not vote on it.

        A reviewer or captain agent's vote names its logic version (`InvalidRequest` otherwise), and counts only when
        that version votes live on this decision (`Rollouts.vote`); else it is kept on the decision as a shadow vote,
        audited as one, and counts for nothing."""
        voter = await self._unpaused(self._voter(by), doing="vote")
        request = request.model_copy(update={"reason": self.privacy.protect(request.reason)})  # ([privacy])
        shadow, version = False, None
        if voter.agent is not None:
            current = await self.decision(decision_id)
            context = await self._governance_context(current)
            # (refused here as the vote itself would be: no rollout moves for a vote that is never cast)
            governance.cast(current, voter, request.value, reason=request.reason, now=self.now(), context=context)
            version = _agent_version(voter.agent, request.logic_version, doing="vote")
            shadow = not await self.rollouts.vote(voter.agent, version, decision_id)
        detail: dict[str, object] = {"value": request.value, "voter": voter.seat}
        agent = voter.agent
        if agent is not None:
            detail.update(logic_version=version, shadow=shadow)

        async def recheck() -> None:
            # Under the rollout lock, just before the write: a rollback since `Rollouts.vote` answered keeps it shadow.
            nonlocal shadow
            if agent is not None and version is not None and not shadow:
                shadow = not await self.rollouts.still_counts(agent, version, decision_id)
                detail.update(shadow=shadow)

        return await self._change(
            by,
            decision_id,
            lambda current, now, context: governance.cast(
                current,
                voter,
                request.value,
                reason=request.reason,
                now=now,
                context=context,
                logic_version=version,  # (the version the rollout routed, stripped: the evaluation matches it)
                shadow=shadow,
            ),
            action=action,
            reason=request.reason,
            detail=detail,
            held=self.rollouts.held() if agent is not None else None,
            before=recheck,
        )

    async def override(
        self,
        by: Principal,
        decision_id: str,
        action: OverrideAction,
        reason: str,
        *,
        logic_version: str | None = None,
    ) -> Decision:
        """A captain's veto or force (see `governance.override`): at once, audited, with its reason.

        The captain agent's veto names its logic version (`InvalidRequest` otherwise) and goes through its rollout
        as a vote does (`Rollouts.vote`), but a veto has no shadow form (it settles the decision at once, nothing to
        keep uncounted): by a version that does not vote live on this decision it is refused (`InvalidTransition`,
        409), checked again under the rollout lock just before the write. A human captain's names none."""
        voter = await self._unpaused(self._voter(by), doing="override")
        reason = self.privacy.protect(reason)  # ([privacy])
        detail: dict[str, object] = {"override": action}
        agent, version = voter.agent, None
        if agent is not None:
            current = await self.decision(decision_id)
            governance.override(current, action, voter, reason=reason, now=self.now())  # (refused as it would be)
            version = _agent_version(agent, logic_version, doing="veto")
            detail.update(logic_version=version)
            if not await self.rollouts.vote(agent, version, decision_id):
                raise InvalidTransition(_not_live_veto(agent, version))

        async def recheck() -> None:
            if (
                agent is not None
                and version is not None
                and not await self.rollouts.still_counts(agent, version, decision_id)
            ):
                raise InvalidTransition(_not_live_veto(agent, version))

        return await self._change(
            by,
            decision_id,
            lambda current, now, _context: governance.override(current, action, voter, reason=reason, now=now),
            action="override",
            reason=reason,
            detail=detail,
            held=self.rollouts.held() if agent is not None else None,
            before=recheck,
        )

    async def answer(self, by: Principal, decision_id: str, verb: AnswerKind, reason: str) -> Decision:
        """A human's approve or deny (a vote: `vote`), or a captain's override (a veto: `override`), as the CLI's
        `swarm approve|deny|override`, Discord's buttons and the answer links give them.

        `NotPending` (approve, deny) or `AlreadyFinal` (override) when the decision's state no longer allows it.
        """
        if verb == "override":
            return await self.override(by, decision_id, "veto", reason)
        return await self.vote(by, decision_id, VoteRequest(value=verb, reason=reason), action=verb)

    async def _change(
        self,
        by: Principal,
        decision_id: str,
        step: Callable[[Decision, datetime, governance.Context], Decision],
        *,
        action: Literal["vote", "approve", "deny", "override"],
        reason: str,
        detail: dict[str, object],
        held: anyio.Lock | None = None,
        before: Callable[[], Awaitable[None]] | None = None,
    ) -> Decision:
        """Read the decision, `step` it, compare-and-set it (again on a lost race), then tell whom it concerns.

        `before` runs just before each read-step-write, all under `held` when given (a vote's rollout check)."""
        while True:
            async with held if held is not None else nullcontext():
                if before is not None:
                    await before()
                current = await self.decision(decision_id)
                now = self.now()
                updated = step(current, now, await self._governance_context(current))
                entry = {**detail, "from": current.state, "to": updated.state}
                if updated.ladder != current.ladder:
                    entry["ladder"] = [s.kind for s in updated.ladder[len(current.ladder) :]]
                log = by.entry(action, at=now, reason=reason, target=decision_id, detail=entry)
                replaced = await self.state.replace_decision(updated, expected=current.state, log=log, previous=current)
            if replaced is not None:
                await self._after_change(current, updated, replaced.ended, by=by.name, reason=f"{action}: {reason}")
                return updated
            # Someone else changed it between our read and write: judge the change again on what is there now.

    async def _after_change(
        self, before: Decision, after: Decision, ended: Sequence[Task], *, by: str, reason: str
    ) -> None:
        self._published(after)
        self._tasks_ended(ended, by=by)
        if after.state != "pending":
            await self.escalator.resolve(after.id, by=by, reason=reason)
            # A final decision is the reviewer agents' "outcome": each voter's candidate is judged on it now.
            for agent in sorted({v.agent for v in after.votes if v.agent is not None and v.logic_version}):
                await self.rollouts.tick(agent)
        elif governance.stage(after) == "human_captain" and governance.stage(before) != "human_captain":
            await self.escalator.start_decision(after)

    async def _advance(self, decision: Decision) -> Decision | None:
        """Take a pending decision's due ladder step (`governance.advance`); what is stored after, or None."""
        now = self.now()
        stepped = governance.advance(decision, now, context=await self._governance_context(decision))
        if stepped is None:
            return None
        steps = stepped.ladder[len(decision.ladder) :]
        log = LogEntry(
            at=now,
            action="deadlock",
            by=decisions.DEADLINE,
            reason=steps[0].reason,
            target=decision.id,
            detail={"ladder": [s.kind for s in steps]},
        )
        replaced = await self.state.replace_decision(stepped, expected="pending", log=log, previous=decision)
        if replaced is None:
            return None
        await self._after_change(decision, stepped, replaced.ended, by=decisions.DEADLINE, reason=steps[0].reason)
        return stepped

    async def _load(self, decision_id: str) -> Decision:
        decision = await self.state.decision(decision_id)
        if decision is None:
            raise NotFound(f"no decision '{decision_id}'")
        return decision

    async def _expire(self, decision: Decision) -> Decision:
        """Expire a due decision; returns what is stored afterwards (expired, or whatever beat us to it)."""
        now = self.now()
        expired = governance.expire(decision, now)
        by, reason = decisions.DEADLINE, decisions.EXPIRED_AT_DEADLINE
        log = LogEntry(at=now, action="expire", by=by, reason=reason, target=decision.id)
        replaced = await self.state.replace_decision(expired, expected="pending", log=log)
        if replaced is not None:
            self._published(expired)
            self._tasks_ended(replaced.ended, by=by)
            await self.escalator.resolve(decision.id, by=by, reason=reason)
            return expired
        return await self._load(decision.id)

    def _published(self, decision: Decision) -> None:
        self.hub.publish(BrainEvent(name="decision", data=decision.model_dump_json()), body_id=decision.body_id)

    def _tasks_ended(self, ended: Sequence[Task], *, by: str, reason: str | None = None) -> None:
        """Tell the holders of parked tasks the brain ended (a decision denied, expired or overridden) to drop them;
        a shadow claim's task is back in the queue, for the runners waiting for work."""
        for task in ended:
            # (a shadow claim's task is unclaimed again: its holder is the one its last claim names)
            claimed = next((e.detail.get("body_id") for e in reversed(task.history) if e.kind == "claimed"), None)
            body_id = claimed if isinstance(claimed, str) else None
            last = task.history[-1] if task.history else None
            why = reason or (str(last.detail.get("summary", "")) if last is not None else "")
            data = TaskEnded(task_id=task.id, state=task.state, reason=why, by=by, body_id=body_id)
            self.hub.publish(BrainEvent(name="task_ended", data=data.model_dump_json()), body_id=body_id)
            if task.state == "queued":
                self._task_available(task.id, "requeued")

    # -- tasks -----------------------------------------------------------------------------

    def _task_available(self, task_id: str, reason: Literal["created", "requeued", "resumed"]) -> None:
        """Wake the runners waiting on the event stream (after the commit, like every event)."""
        data = TaskAvailable(task_id=task_id, reason=reason).model_dump_json()
        self.hub.publish(BrainEvent(name="task_available", data=data))

    async def tasks(
        self, *, state: TaskState | None = None, agent: str | None = None, for_body: str | None = None
    ) -> list[Task]:
        """Every task (in `state`, last claimed by `agent`), oldest first; leases past their end requeued first.
        With `for_body` (a body token asking), only the tasks that body claimed (now or last)."""
        await self._requeue_expired(self.now())
        tasks = await self.state.tasks(state=state, agent=agent)
        if for_body is None:
            return tasks
        return [t for t in tasks if t.claimed_by is not None and t.claimed_by.body_id == for_body]

    async def task_page(
        self,
        *,
        limit: int,
        offset: int = 0,
        state: TaskState | None = None,
        agent: str | None = None,
        for_body: str | None = None,
    ) -> tuple[list[Task], int]:
        """The `limit` newest of `tasks(...)` after the `offset` newest (oldest first), and how many `tasks` lists:
        the dashboard's task list, which reads a page, not every task kept."""
        if for_body is not None:  # (a body's own tasks: few, and filtered here)
            every = await self.tasks(state=state, agent=agent, for_body=for_body)
            end = len(every) - offset
            return every[max(0, end - limit) : max(0, end)], len(every)
        await self._requeue_expired(self.now())
        return await self.state.task_page(state=state, agent=agent, limit=limit, offset=offset)

    async def task(self, task_id: str, *, for_body: str | None = None) -> Task:
        """One task; with `for_body` (a body token asking), only a task that body claimed (now or last): another
        is `NotFound`, as if it did not exist."""
        await self._requeue_expired(self.now())
        task = await self.state.task(task_id)
        holder = None if task is None else task.claimed_by
        if task is None or (for_body is not None and (holder is None or holder.body_id != for_body)):
            raise NotFound(f"no task '{task_id}'")
        return task

    async def create_task(self, by: Principal, request: TaskRequest) -> Task:
        """Queue a task."""
        return (await self.queue_task(by, request))[0]

    async def queue_task(
        self, by: Principal, request: TaskRequest, *, idempotency_key: str | None = None
    ) -> tuple[Task, bool]:
        """`create_task`, and whether it created the task: the same `idempotency_key` from the same token returns
        the task its first request created (`KeyReused` if this request differs)."""
        now = self.now()
        task = created(
            Task(
                id=f"task_{time.time_ns():x}{secrets.token_hex(4)}",
                title=self.privacy.protect(request.title),
                description=self.privacy.protect(request.description),
                value_usd=request.value_usd,
                state="queued",
                created_at=now,
                created_by=by.name,
                # Encrypted, not redacted: the runner must still run them (replies are revealed), until an erasure.
                acceptance=self.privacy.protect(request.acceptance),
                repo=self.privacy.protect(request.repo),  # (a path can name a person, as a workspace can)
                acceptance_inputs=None
                if request.acceptance_inputs is None
                else [self.privacy.protect(path) for path in request.acceptance_inputs],
                setup=self.privacy.protect(request.setup),
            )
        )
        log = by.entry("task_create", at=now, reason=task.title, target=task.id)
        key = None
        if idempotency_key is not None:
            digest = hashlib.sha256(request.model_dump_json().encode()).hexdigest()
            key = TaskKey(
                token_id=by.token_id,
                key=keyed_task_key(self.privacy, by.token_id, idempotency_key),
                request_sha256=keyed_request_digest(self.privacy, digest),
                sent=idempotency_key,
                request_bare=digest,
                secret_check=key_store_check(self.privacy),
            )
        stored = await self.state.insert_task(task, log, key=key)
        if stored.id == task.id:
            self._task_available(task.id, "created")
        return stored, stored.id == task.id

    async def claim_task(self, by: Principal, request: ClaimRequest) -> ClaimResponse:
        """The most valuable queued task, claimed for `lease_s`; none while the kill switch is engaged or the claiming
        agent is paused.

        A live claim is refused (`NotReady`) unless readiness passed or a captain overrode it for the agent and its
        logic version; a shadow claim skips the tasks this agent and logic version shadowed already; with
        `task_id`, only that task (`NotFound` if there is none).
        """
        if request.mode == "live":
            await self._check_live(request.agent, request.logic_version)
        # The kill switch and the agent's pause refuse a claim in the claim's own transaction (`state.claim_task`).
        # They are read here first only where a killed claim must stop before doing anything else: an agent's
        # claim ticks and routes its rollout (which may write), and a claim of one task says if there is none.
        if (request.mode != "ide" or request.task_id is not None) and (
            await self.kill_state(request.agent or None)
        ).engaged:
            return ClaimResponse(task=None)
        now = self.now()
        await self._requeue_expired(now)
        if request.task_id is not None and await self.state.task(request.task_id) is None:
            raise NotFound(f"no task '{request.task_id}'")
        # The agent's rollout decides which version may take which live task (the canary's share, by task id).
        if request.agent and request.mode != "ide":
            await self.rollouts.tick(request.agent)
        buckets = await self.rollouts.route(request.agent, request.logic_version, request.mode)
        grant = ClaimGrant(
            body_id=request.body_id,
            agent=request.agent,
            claim_token=f"clm_{secrets.token_urlsafe(24)}",
            at=now,
            lease_expires=now + timedelta(seconds=self.settings.lease_s),
            mode=request.mode,
            logic_version=request.logic_version,
            task_id=request.task_id,
            by=by.name,
            buckets=buckets,
            # The live version (whose share starts above 0) also takes a task the candidate's share left waiting
            # longer than a lease: the canary share is a preference, never a queue that only the candidate drains.
            waited_before=now - timedelta(seconds=self.settings.lease_s) if buckets and buckets[0] > 0 else None,
        )

        def log(task: Task) -> LogEntry:
            detail = {
                "body_id": request.body_id,
                "agent": request.agent,
                "attempt": task.attempts,
                "mode": request.mode,
                "logic_version": request.logic_version or None,
            }
            return by.entry("task_claim", at=now, target=task.id, detail=detail)

        task = await self.state.claim_task(grant, log, compensation=self._caused_by(request, body_id=request.body_id))
        if task is None:
            return ClaimResponse(task=None)
        return ClaimResponse(task=task, claim_token=grant.claim_token, lease_s=self.settings.lease_s)

    async def renew_lease(self, task_id: str, request: RenewRequest, *, holder: str | None = None) -> RenewResponse:
        """Hold a claimed task for another `lease_s` from now; a claim whose lease already ran out is stale."""
        now = self.now()
        await self._requeue_expired(now)  # (a lease past its end is requeued first, not revived)
        task = await self.state.renew_lease(
            task_id,
            claim_token=request.claim_token,
            lease_expires=now + timedelta(seconds=self.settings.lease_s),
            holder=holder,
        )
        return RenewResponse(task=task, lease_s=self.settings.lease_s)

    async def report_outcome(
        self, by: Principal, task_id: str, request: OutcomeRequest, *, holder: str | None = None
    ) -> Task:
        """Finish a claimed task; a stale claim token (the lease ran out, or it finished) is refused.

        With `holder`, a task claimed by another body is refused (`BodyMismatch`) in the same transaction.
        """
        protect = self.privacy.protect  # ([privacy]: the runner reports the acceptance command as it ran it, decrypted)
        request = request.model_copy(
            update={
                "summary": protect(request.summary),
                "verification": protect_verification(protect, request.verification),
                "evidence": protect_evidence(self.privacy, request.evidence),
                "spend": protect_spend(protect, request.spend),
            }
        )
        now = self.now()
        await self._requeue_expired(now)  # (a lease past its end is requeued first: its claim is stale)
        verification = request.verification
        if verification is not None:
            # The runner's `verified` is a claim: pending until the claiming body's audit event of the re-run is
            # here (already: settled in the outcome's own transaction; or when POST /v1/audit brings it). The claim
            # read here is the one the token must hold: the outcome's transaction refuses any other.
            current = await self.state.task(task_id)
            holder_of = None if current is None else current.claimed_by
            if current is not None and holder_of is not None:
                verification = pending(verification, body_id=holder_of.body_id, after_seq=_claim_audit_seq(current))
            else:  # (refused by the outcome's transaction: no claim to report on)
                verification = pending(verification.model_copy(update={"verified": False}), body_id="", after_seq=0)
        detail = {
            "outcome": request.outcome,
            "verified": False if verification is None else verification.verified,
            "verification": None if verification is None else verification.status,
        }
        log = by.entry("task_outcome", at=now, reason=request.summary, target=task_id, detail=detail)
        report = OutcomeReport(
            by=by.name,
            verification=verification,
            evidence=request.evidence,
            spend=request.spend,
            logic_version=request.logic_version,
            mode=request.mode,
        )
        task = await self.state.finish_task(
            task_id,
            claim_token=request.claim_token,
            outcome=request.outcome,
            summary=request.summary,
            at=now,
            log=log,
            compensation=self._caused_by(request, body_id=None),
            holder=holder,
            report=report,
        )
        if task.state == "queued":  # a shadow run: the task is there to be worked for real
            self._task_available(task.id, "requeued")
        if task.claimed_by is not None and task.claim_mode in ("shadow", "live"):
            await self.rollouts.tick(task.claimed_by.agent)  # (a failing metric rolls back at once)
        return task

    async def park_task(self, by: Principal, task_id: str, request: ParkRequest, *, holder: str) -> Task:
        """The holder waits for a decision of its own body: no lease (the sweeper leaves it), the claim kept."""
        request = request.model_copy(update={"reason": self.privacy.protect(request.reason)})  # ([privacy])
        task = await self.state.task(task_id)
        if task is None:
            raise NotFound(f"no task '{task_id}'")
        claimant = task.claimed_by
        if claimant is not None and claimant.body_id != holder:
            raise BodyMismatch(
                f"this token is bound to body '{holder}'; task '{task_id}' was claimed by body '{claimant.body_id}'"
            )
        decision = await self.state.decision(request.decision_id)
        if decision is None or decision.body_id != holder:
            raise InvalidRequest(f"no decision '{request.decision_id}' of this body", field="decision_id")
        now = self.now()
        _check_park_decision(decision, now)
        await self._requeue_expired(now)
        detail = {"decision_id": request.decision_id}
        log = by.entry("task_park", at=now, reason=request.reason, target=task_id, detail=detail)
        return await self.state.park_task(
            task_id,
            claim_token=request.claim_token,
            decision_id=request.decision_id,
            reason=request.reason,
            at=now,
            log=log,
            holder=holder,
        )

    async def resume_task(
        self, by: Principal, task_id: str, request: ResumeTaskRequest, *, holder: str
    ) -> RenewResponse:
        """A parked task is claimed again by its holder, under a new lease."""
        now = self.now()
        log = by.entry("task_resume", at=now, target=task_id)
        task = await self.state.resume_task(
            task_id,
            claim_token=request.claim_token,
            lease_expires=now + timedelta(seconds=self.settings.lease_s),
            at=now,
            log=log,
            holder=holder,
        )
        self._task_available(task.id, "resumed")
        return RenewResponse(task=task, lease_s=self.settings.lease_s)

    async def abandon_parked_task(self, by: Principal, task_id: str, request: AbandonRequest, *, holder: str) -> Task:
        """The body holding a parked task gives it up without its claim token (its runner lost the task's saved
        state): abandoned with the reason, as if its decision had been denied."""
        request = request.model_copy(update={"reason": self.privacy.protect(request.reason)})  # ([privacy])
        now = self.now()
        log = by.entry("task_outcome", at=now, reason=request.reason, target=task_id, detail={"outcome": "abandoned"})
        task = await self.state.abandon_parked_task(task_id, reason=request.reason, at=now, log=log, holder=holder)
        self._tasks_ended([task], by=by.name, reason=request.reason)
        return task

    async def cancel_task(self, by: Principal, task_id: str, request: CancelRequest) -> Task:
        """Cancel a task not finished (final): its holder hears `task_cancelled` and its claim token goes stale."""
        request = request.model_copy(update={"reason": self.privacy.protect(request.reason)})  # ([privacy])
        now = self.now()
        log = by.entry("task_cancel", at=now, reason=request.reason, target=task_id)
        task = await self.state.cancel_task(task_id, reason=request.reason, at=now, log=log)
        data = TaskCancelled(task_id=task.id, reason=request.reason, by=by.name).model_dump_json()
        self.hub.publish(BrainEvent(name="task_cancelled", data=data))
        return task

    # -- autonomous agents: the live gate, readiness, usage --------------------------------

    async def _check_live(self, agent: str, logic_version: str) -> None:
        now = self.now()
        refusal = live_refusal(
            await self.state.readiness_report(),
            await self.state.readiness_overrides(at=now),
            agent=agent,
            logic_version=logic_version,
            now=now,
            max_age_s=self.settings.readiness_max_age_s,
        )
        if refusal is not None:
            raise NotReady(refusal)

    async def record_readiness(self, by: Principal, request: ReadinessRequest) -> ReadinessStatus:
        """Keep a readiness report (the newest counts); logged with who sent it."""
        request = protect_readiness_items(self.privacy.protect, request)  # ([privacy])
        now = self.now()
        report = ReadinessReport(
            at=now, by=by.name, ready=request.ready, items=request.items, drill_at=request.drill_at
        )
        failing = [item.name for item in request.items if not item.ok]
        log = by.entry(
            "readiness_report",
            at=now,
            reason="ready" if request.ready else "not ready: " + ", ".join(failing),
            detail={"ready": request.ready, "failing": failing},
        )
        await self.state.add_readiness_report(report, log)
        return await self.readiness()

    async def readiness(self) -> ReadinessStatus:
        now = self.now()
        report = await self.state.readiness_report()
        max_age_s = self.settings.readiness_max_age_s
        return ReadinessStatus(
            report=report,
            live_ready=live_ready(report, now=now, max_age_s=max_age_s),
            max_age_s=max_age_s,
            overrides=await self.state.readiness_overrides(at=now),
        )

    async def override_readiness(self, by: Principal, request: OverrideRequest) -> ReadinessOverride:
        """A human captain lets one agent's logic version work live without a passing report, until it expires;
        written to the brain's log like every captain's action."""
        request = request.model_copy(update={"reason": self.privacy.protect(request.reason)})  # ([privacy])
        now = self.now()
        override = ReadinessOverride(
            id=f"ovr_{time.time_ns():x}{secrets.token_hex(4)}",
            agent=request.agent,
            logic_version=request.logic_version,
            reason=request.reason,
            by=by.name,
            at=now,
            expires_at=now + timedelta(seconds=request.for_s),
        )
        detail = {
            "id": override.id,
            "logic_version": override.logic_version,
            "expires_at": override.expires_at.isoformat(),
        }
        log = by.entry("readiness_override", at=now, reason=request.reason, target=request.agent, detail=detail)
        await self.state.add_readiness_override(override, log)
        return override

    async def record_usage(self, body_id: str, batch: UsageBatch, *, billed_by_reviewer: bool = False) -> UsageAck:
        """Keep a body's usage records (idempotent by record id).

        A record for a task is refused (`InvalidRequest`, nothing of the batch kept) unless this body claimed that
        task as the record's agent: a body does not bill another agent's work, nor a task it never held.
        (`billed_by_reviewer`: a reviewer's records, whose task `record_review_usage` checked.)"""
        latest = self.now() + timedelta(seconds=MAX_USAGE_AHEAD_S)
        for n, record in enumerate(batch.records):
            if record.at > latest:
                raise InvalidRequest(
                    f"usage record '{record.id}' is dated {record.at.isoformat()}, more than {MAX_USAGE_AHEAD_S} s "
                    "past the brain's clock: date records when the call was made (check the runner's clock)",
                    field=f"records.{n}.at",
                )
        claims: dict[str, set[str]] = {}
        for n, record in enumerate(batch.records):
            if record.task_id is None or billed_by_reviewer:
                continue
            if record.task_id not in claims:
                task = await self.state.task(record.task_id)
                events = task.history if task is not None else []
                claims[record.task_id] = {
                    e.agent or "" for e in events if e.kind == "claimed" and e.detail.get("body_id") == body_id
                }
            if record.agent not in claims[record.task_id]:
                raise InvalidRequest(
                    f"usage record '{record.id}' is for task '{record.task_id}', which body '{body_id}' never claimed "
                    f"as agent '{record.agent}'",
                    field=f"records.{n}.task_id",
                )
        redact = self.privacy.redact  # (telemetry's labels: personal data never kept, not even encrypted)
        records = [
            r.model_copy(update={"provider": redact(r.provider), "model": redact(r.model)}) for r in batch.records
        ]
        stored, duplicates = await self.state.record_usage(body_id, records)
        if stored:
            # (the engine does not say which records were new: the metrics count each record id once)
            agents = {t.agent for t in await self.state.tokens() if t.agent is not None and t.revoked_at is None}
            self.metrics.observe_usage(records, agents=agents)
        return UsageAck(stored=stored, duplicates=duplicates)

    async def usage(
        self,
        *,
        for_body: str | None = None,
        agent: str | None = None,
        task_id: str | None = None,
        by_task: bool = True,
    ) -> UsageTotals:
        """Totals of every body's usage, or with `for_body` (a body token asking) of that body's only (asked for while
        the same totals are being summed: that sum, `SharedReads`). Without `by_task` (its `by_task` left empty),
        every body's totals are the running totals the store keeps as records arrive: no record is read."""
        if not by_task and for_body is None and task_id is None:
            return running_totals(await self.state.usage_summary(), agent=agent)
        totals = await self._usage_reads.read(
            (for_body, agent, task_id), partial(self._usage, for_body, agent, task_id)
        )
        return totals if by_task else totals.model_copy(update={"by_task": {}})

    async def _usage(self, for_body: str | None, agent: str | None, task_id: str | None) -> UsageTotals:
        records = await self.state.usage(body_id=for_body)
        chosen = [
            r for r in records if (agent is None or r.agent == agent) and (task_id is None or r.task_id == task_id)
        ]
        # (summed on a worker thread: with every record ever kept, not on the event loop a kill fans out on)
        return await anyio.to_thread.run_sync(usage_totals, chosen)

    @staticmethod
    def _caused_by(request: ClaimRequest | OutcomeRequest, *, body_id: str | None) -> CompensationDraft | None:
        """What undoes a body's task update is kept only when the body names the action behind it."""
        if request.action_id is None:
            return None
        return CompensationDraft(action_id=request.action_id, decision_id=request.decision_id, body_id=body_id)

    async def _requeue_expired(self, now: datetime) -> list[Task]:
        def log(task: Task) -> LogEntry:
            holder = task.claimed_by
            return LogEntry(
                at=now,
                action="task_requeue",
                by="lease",
                reason="lease ran out",
                target=task.id,
                detail={} if holder is None else {"body_id": holder.body_id, "agent": holder.agent},
            )

        requeued = await self.state.requeue_expired(now, log)
        for task in requeued:
            self._task_available(task.id, "requeued")
        return requeued

    # -- reversal --------------------------------------------------------------------------

    async def reverse(
        self,
        by: Principal,
        target_id: str,
        reason: str,
        *,
        force: bool = False,
        dry_run: bool = False,
        as_action: str | None = None,
    ) -> ReversalResult:
        """Undo the brain updates of a body action or a whole decision, from their compensating records.

        All or nothing: a task changed since (requeued, claimed again, finished by someone else) is a conflict, and
        without `force` nothing is reversed. A reversed outcome leaves the task claimed by its body under its old
        lease, so the sweeper requeues it once the lease has passed; a reversed claim puts it back in the queue.
        The reversal is kept under `as_action` (else an id made here), returned as `undo_id`: undoing that redoes it.
        """
        reason = self.privacy.protect(reason)  # ([privacy])
        now = self.now()
        undo_id = None if dry_run else (as_action or f"rev_{time.time_ns():x}{secrets.token_hex(4)}")

        def log(record: Compensation) -> LogEntry:
            detail = {
                "kind": record.kind,
                "action_id": record.action_id,
                "decision_id": record.decision_id,
                "body_id": record.body_id,
                "undo": target_id,
                "forced": force,
                "undo_id": undo_id,
            }
            return by.entry("reverse", at=now, reason=reason, target=record.target, detail=detail)

        kept_as = as_action if dry_run else undo_id  # (a dry run refuses a taken id as the real one would)
        reversal = await self.state.reverse(target_id, force=force, at=now, log=log, dry_run=dry_run, as_action=kept_as)
        if reversal.conflicts and not force:
            raise ReverseConflict(
                f"nothing reversed for '{target_id}': " + "; ".join(reversal.conflicts) + ". Undo with force to "
                "overwrite those changes.",
                conflicts=reversal.conflicts,
            )
        if not reversal.reversed:
            raise NothingToReverse(
                f"the brain has nothing to reverse for '{target_id}' (no task update under that action or decision, "
                "or reversed already)"
            )
        return ReversalResult(
            target_id=target_id,
            reversed=[ReversedUpdate(kind=r.kind, task_id=r.target, action_id=r.action_id) for r in reversal.reversed],
            conflicts=reversal.conflicts,
            dry_run=dry_run,
            undo_id=undo_id,
        )

    # -- the daemon loop -------------------------------------------------------------------

    async def sweep(self) -> SweepReport:
        """Expire due decisions, take the deadlock ladder's due steps, and requeue tasks whose lease ran out."""
        now = self.now()
        expired: list[str] = []
        for decision in await self.state.due_decisions(now):
            if (await self._expire(decision)).state == "expired":
                expired.append(decision.id)
        for decision in await self.state.pending_decisions():
            await self._advance(decision)
        requeued = await self._requeue_expired(now)
        await self._watch_bodies(now)
        await self.telemetry.tick(now)
        return SweepReport(expired=expired, requeued=[t.id for t in requeued])

    async def prune_audit(self) -> dict[str, int]:
        """Delete the bodies' audit events older than `audit_retention_days` (each body keeps its newest)."""
        now = self.now()
        days = self.settings.audit_retention_days
        log = LogEntry(at=now, action="audit_prune", by="retention", reason=f"audit events older than {days} days")
        pruned = await self.state.prune_audit(now - timedelta(days=days), log)
        if pruned:
            logger.info("audit retention: pruned %s", ", ".join(f"{n} of {body}" for body, n in pruned.items()))
        return pruned

    async def run_retention(self, *, interval_s: float = 86_400.0) -> None:
        """Prune (audit events, then telemetry) at start and then every `interval_s` (a day), forever; a failure is
        logged and tried next time."""
        while True:
            try:
                await self.prune_audit()
                await self.telemetry.prune()
            except StateBroken:
                return  # the daemon stops
            except Exception:  # top of a daemon loop: the brain keeps serving; the events stay until next time
                logger.exception("audit retention failed; trying again in %.0f s", interval_s)
            await anyio.sleep(interval_s)

    async def run_sweeper(self) -> None:
        """Sweep every `sweep_interval_s`, forever."""
        while True:
            try:
                await self.sweep()
            except StateBroken:
                return  # the daemon stops
            except Exception:  # top of the daemon loop: log and retry; pending never means approved meanwhile
                logger.exception("sweep failed; retrying")
            await anyio.sleep(self.settings.sweep_interval_s)

    # -- privacy -----------------------------------------------------------------------------

    def _subject(self, text: str) -> Subject:
        try:
            return self.privacy.parse_subject(text)
        except MalformedSubject as exc:
            raise InvalidRequest(str(exc), field="subject") from None

    async def erase_subject(self, by: Principal, request: PrivacyRequest) -> PrivacyErasure:
        """Crypto-shredding: destroy the subject's key, so every copy of their data the brain holds (tasks,
        decisions, the log, its backups) is unreadable; the erasure is a log entry naming the subject's random id,
        never the subject. The subject is tombstoned whether or not a key was held (`erased` false: none was, never
        seen here or erased already), so nothing about them is kept from now on; that is logged too."""
        subject = self._subject(request.subject)
        before = self.privacy.keys.erased_at(subject.kind, subject.value)
        subject_id = self.privacy.keys.erase(subject.kind, subject.value)
        log = by.entry(
            "privacy_erase",
            at=self.now(),
            reason=self.privacy.redact(request.reason),
            target=subject_id,
            detail={"kind": subject.kind} if subject_id is not None else {"kind": subject.kind, "key_held": False},
        )
        await self.state.append_log(log)
        return PrivacyErasure(kind=subject.kind, erased=subject_id is not None, erased_before=before)

    async def unerase_subject(self, by: Principal, request: PrivacyRequest) -> PrivacyUnerasure:
        """Lift an erased subject's tombstone (a subject who came back): a captain's deliberate step with a reason,
        logged (`privacy_unerase`, naming the kind, never the subject). `NotFound` when the subject is not erased
        here."""
        if not request.reason.strip():
            raise InvalidRequest("lifting an erasure needs a reason", field="reason")
        subject = self._subject(request.subject)
        if not self.privacy.keys.unerase(subject.kind, subject.value):
            raise NotFound(f"that {subject.kind} is not erased on the brain: nothing to lift")
        log = by.entry(
            "privacy_unerase", at=self.now(), reason=self.privacy.redact(request.reason), detail={"kind": subject.kind}
        )
        await self.state.append_log(log)
        return PrivacyUnerasure(kind=subject.kind, unerased=True)

    async def migrate_privacy(self, by: Principal) -> PrivacyMigration:
        """The one-time migration of the audit events bodies shipped before `[privacy]` (or with it off): their
        personal data encrypted under the brain's subject keys, in one transaction, logged (`privacy_migrate`, with
        the count per body); their seq, id, `prev_mac` and `mac` unchanged, so each body's chain links as before and
        shipping goes on. A second run finds nothing to do."""
        if not self.privacy.enabled:
            raise InvalidRequest(
                "[privacy] redaction is off on this brain: nothing to migrate to (turn it on first)", field="privacy"
            )
        log = by.entry("privacy_migrate", at=self.now(), reason="personal data in stored audit events encrypted")
        events, bodies = await self.state.rewrite_audit_events(
            lambda text: protect_stored_event(self.privacy, text), log
        )
        log = by.entry(
            "privacy_migrate",
            at=self.now(),
            reason="personal data in the brain's tasks, decisions, escalations and log encrypted",
        )
        records = await self.state.rewrite_records(RecordProtection(self.privacy), log)
        deleted: list[str] = []
        db = sqlite_path(self.settings.database_url) if self.settings.database_url else None
        if db is not None:
            keep = self.settings.backup_keep
            deleted = await anyio.to_thread.run_sync(
                lambda: drop_backups_before_migration(db, db.parent / "backups", keep=keep)
            )
            if deleted:
                await self.state.append_log(
                    by.entry(
                        "privacy_migrate",
                        at=self.now(),
                        reason="backups taken before the migration deleted (a backup of the migrated database "
                        "was written first)",
                        detail={"backups_deleted": deleted},
                    )
                )
        return PrivacyMigration(
            events=events, rewritten=sum(bodies.values()), bodies=bodies, records=records, backups_deleted=deleted
        )

    async def export_subject(self, request: PrivacyRequest) -> PrivacyExport:
        """What the brain holds about the subject, decrypted: in tasks (and the task rows compensating records keep),
        decisions, escalation records, the log, the kill switch and agents' pauses, readiness reports and overrides,
        bodies' registrations and answer links' recipients. `NotFound` when no key is held."""
        subject = self._subject(request.subject)
        erased_at = self.privacy.keys.erased_at(subject.kind, subject.value)
        if erased_at is not None:  # (nothing is held since; when it was erased is all an export says)
            return PrivacyExport(kind=subject.kind, erased_at=erased_at)
        subject_id = self.privacy.keys.find(subject.kind, subject.value)
        if subject_id is None:
            raise NotFound(f"no data about that {subject.kind} is held by the brain (never seen, or erased)")

        def held(where: str, texts: list[tuple[str, str]]) -> list[HeldItem]:
            return held_in(self.privacy, subject_id, where, texts)

        state = self.state
        found: list[HeldItem] = []
        for task in await state.tasks():
            found += held(f"task {task.id}", task_texts(task))
        for record in await state.all_compensations():
            texts = row_texts(record.before, "before") + row_texts(record.after, "after")
            found += held(f"compensation {record.id} of task {record.target}", texts)
        for decision in await state.decisions():
            found += held(f"decision {decision.id}", decision_texts(decision))
        for escalation in await state.escalations():
            found += held(f"escalation {escalation.id}", escalation_texts(escalation))
        for entry in await state.log_entries(limit=100_000):
            found += held(f"log {entry.at.isoformat()} {entry.action}", log_texts(entry))
        kill = await state.kill_state()
        found += held("kill switch", [("reason", kill.reason or "")])
        for pause in await state.agent_pauses():
            found += held(f"pause of agent {pause.agent}", [("reason", pause.reason)])
        for report in await state.readiness_reports():
            found += held(f"readiness report {report.at.isoformat()}", readiness_texts(report))
        for override in await state.readiness_overrides(at=None):
            found += held(f"readiness override {override.id}", [("reason", override.reason)])
        for body in await state.bodies():
            found += held(f"body {body.body_id}", [("workspace", body.workspace), ("hostname", body.hostname)])
        for token in await state.answer_tokens():
            found += held(f"answer link of page {token.page_id} ({token.verb})", [("recipient", token.target)])
        return PrivacyExport(kind=subject.kind, held=found)


def _agent_version(agent: str, given: str | None, *, doing: str) -> str:
    """An agent's `logic_version` on a vote or veto, stripped (the one its rollout routes); `InvalidRequest` when
    missing, blank or not printable."""
    version = (given or "").strip()
    if not version:
        raise InvalidRequest(
            f"a {doing} by agent '{agent}' names its logic version (the agent runner sends it): a new version of a "
            "reviewer votes in shadow first",
            field="logic_version",
        )
    if not version.isprintable():  # (shown in `swarm show` and `swarm rollout status`: no forged lines)
        raise InvalidRequest(
            f"the logic version of agent '{agent}''s {doing} has a control character (a newline, a tab): the agent "
            "runner sends its logic version as one printable word",
            field="logic_version",
        )
    return version


def _not_live_veto(agent: str, version: str) -> str:
    return (
        f"logic version {version} of captain agent '{agent}' does not vote live on this decision (a new version "
        f"votes in shadow, a version rolled back never counts): a veto has no shadow form, so it is refused; see "
        f"`swarm rollout status {agent}`"
    )
