"""The body: one workspace, its state, and the guard every tool call passes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal

import anyio
import httpx

from sandbox import NoIsolationAvailable, Sandbox, select_sandbox
from shared_protocol import Impact, RefusalCode
from shared_protocol.brain import Decision
from shared_protocol.config import SwarmConfig, approval_thresholds
from shared_protocol.decisions import classify
from shared_protocol.tools import BrainState

from ._db import StateDB, Writes
from .audit import Appended, AuditStore, EventDraft, keep_retention, new_action_id, redact_arguments
from .brain_client import BrainClient
from .brain_link import BrainDecisionStore, BrainLink
from .confinement import Workspace
from .decisions import DecisionStore, LocalDecisionStore, require_approval
from .exceptions import ToolRefused, UserError
from .guard import CallContext, CallOutcome, Guard, Pipeline, default_guards, refused_outcome
from .killswitch import CombinedKillSwitch, KillSwitch, LocalKillSwitch
from .limits import Limits
from .policy import PathPolicy
from .scan import WorkspaceScanner
from .snapshots import SnapshotEvent, SnapshotSettings, Snapshotter, run_hourly
from .state import Identity, StatePaths, load_or_create_identity, load_or_create_key
from .tools import ALL_TOOLS
from .tools._spec import ToolSpec
from .tools.exec import HeldKey, HeldRun
from .undo import UndoStore

logger = logging.getLogger(__name__)

_AFTER_REPLY_AT_MOST_S = 0.005
"""How long work left for after a reply may wait when no reply is written (a cancelled call)."""


@dataclass(kw_only=True, frozen=True)
class BodySettings:
    """Everything a body needs, resolved at the entry point (CLI), never read from the environment here."""

    workspace: Path
    home: Path
    config: SwarmConfig
    agent: str | None = None
    """Overrides the MCP client's name as the audited agent (`SWARM_AGENT`)."""
    brain_url: str | None = None
    """Link to this brain (`--brain`); None: a standalone body."""
    brain_token: str | None = None
    """The body's bearer token for the brain (`SWARM_TOKEN`)."""
    config_file: Path | None = None
    """Where `config` came from, so snapshots can keep a copy of it."""


class Body:
    def __init__(
        self,
        settings: BodySettings,
        *,
        kill_switch: KillSwitch | None = None,
        guards: Sequence[Guard] | None = None,
        clock: Callable[[], float] = time.time,
        sandbox: Sandbox | None = None,
        brain_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = settings
        self.paths = StatePaths(home=settings.home, workspace=settings.workspace)
        self.identity: Identity = load_or_create_identity(self.paths)
        config = settings.config
        self.db = StateDB(self.paths.db, durability=config.audit.durability)
        self.audit = AuditStore(
            self.db,
            key=load_or_create_key(self.paths.audit_key),
            anchor_path=self.paths.anchor,
            journal_path=self.paths.journal,
            body_id=self.identity.body_id,
        )
        try:
            self.audit.recover()  # what a body that died after a reply left uncommitted
        except BaseException:
            self.audit.close()
            self.db.close()
            raise
        self.undo = UndoStore(self.db, blob_dir=self.paths.blobs)
        self.limits = Limits(self.paths.limits, config.limits, clock=clock)
        local_kill: KillSwitch = kill_switch or LocalKillSwitch(self.paths.kill_file)
        self.link: BrainLink | None = None
        if settings.brain_url:
            if not settings.brain_token:
                raise UserError("a linked body needs its brain token: set SWARM_TOKEN (or pass --token)")
            client = BrainClient(settings.brain_url, settings.brain_token, transport=brain_transport)
            self.link = BrainLink(client, self.db, body_id=self.identity.body_id, workspace=str(settings.workspace))
            self.link.on_kill = self._kill_running_commands
        self.kill_switch: KillSwitch = local_kill if self.link is None else CombinedKillSwitch(local_kill, self.link)
        self.workspace = Workspace(settings.workspace)
        self.policy = PathPolicy(denied=config.policy.denied_paths, read_only=config.policy.read_only_paths)
        self.shadow = config.policy.mode == "shadow"
        self.session = f"ses_{time.time_ns():x}{secrets.token_hex(2)}"
        self.tools: dict[str, ToolSpec] = {spec.name: spec for spec in ALL_TOOLS}
        self.pipeline = Pipeline(self, default_guards() if guards is None else guards)
        self.workspace_lock = anyio.Lock(fast_acquire=True)
        self.replies_flushed = False
        """Set by a transport that calls `after_reply()` once each reply is written (stdio): a call's anchor
        write and budget settling then happen after its reply is on its way, not before."""
        self._after_reply: list[Callable[[], object]] = []
        self._after_reply_timer: asyncio.TimerHandle | None = None
        self.held_runs: dict[HeldKey, HeldRun] = {}
        self.rules = approval_thresholds(config)
        self.local_decisions = LocalDecisionStore(
            self.db, rules=self.rules, deadline_s=config.policy.decision_deadline_s, clock=clock
        )
        self.decisions: DecisionStore = (
            self.local_decisions if self.link is None else BrainDecisionStore(self.link.client)
        )
        snap = config.snapshots
        self.snapshotter = Snapshotter(
            SnapshotSettings(
                workspace=self.workspace.root,
                state_dir=self.paths.dir,
                state_db=self.paths.db,
                config_file=settings.config_file,
                exclude=tuple(snap.exclude),
                keep_last=snap.keep_last,
                keep_daily=snap.keep_daily,
            ),
            record=self._record_snapshot,
        )
        self.scanner = WorkspaceScanner(self.workspace.root, self.policy)
        self._sandbox: Sandbox | None = sandbox
        self._sandbox_error: str | None = None

    @property
    def brain_state(self) -> BrainState:
        return "standalone" if self.link is None else self.link.status

    def _kill_running_commands(self) -> None:
        if self._sandbox is not None:
            self._sandbox.kill_all()

    def sandbox(self) -> Sandbox:
        """The sandbox backend, chosen on first use; refuses (never runs bare) when none can isolate."""
        if self._sandbox is None and self._sandbox_error is None:
            cfg = self.settings.config.sandbox
            staging = Path(cfg.staging_dir) if cfg.staging_dir else None
            try:
                self._sandbox = select_sandbox(cfg.backend, staging)
            except NoIsolationAvailable as exc:
                self._sandbox_error = str(exc)
        if self._sandbox is not None and not (availability := self._sandbox.available()).ok:
            self._sandbox, self._sandbox_error = None, availability.reason
        if self._sandbox is None:
            raise ToolRefused(
                f"no sandbox can isolate commands on this machine, so none is run: {self._sandbox_error}",
                code=RefusalCode.SANDBOX_UNAVAILABLE,
                rule="sandbox.backend",
            )
        return self._sandbox

    def close(self) -> None:
        self.after_reply()
        self.workspace.close()
        self.audit.close()
        self.limits.close()
        self.db.close()

    # -- calls -------------------------------------------------------------------------

    def _record_snapshot(self, event: SnapshotEvent) -> None:
        self.audit.append(
            EventDraft(
                id=new_action_id(),
                kind="system",
                agent="swarm:snapshots",
                session=self.session,
                rationale=event.rationale,
                outcome=event.outcome,
                tool=f"snapshot.{event.action}",
                detail=event.detail,
            )
        )

    async def _reopen_if_replaced(self) -> None:
        """A restore swaps the workspace directory (`call_tool` saw it): drop the stale descriptor, open the new one."""
        async with self.workspace_lock:
            if not self.workspace.replaced():
                return
            if not self.workspace.root.is_dir():
                raise ToolRefused(
                    "the workspace is being restored from a snapshot; retry in a moment",
                    code=RefusalCode.IO_ERROR,
                    rule="snapshots.restore",
                )
            old = self.workspace
            self.workspace = Workspace(old.root)
            old.close()
            self.scanner = WorkspaceScanner(self.workspace.root, self.policy)
            self.record_human(
                action="workspace.reopened", rationale="the workspace was restored from a snapshot", by="swarm"
            )

    async def background(self) -> None:
        """What a serving body runs besides answering calls: the brain link, hourly snapshots, audit retention."""
        stop = anyio.Event()
        interval = self.settings.config.snapshots.interval_s
        try:
            async with anyio.create_task_group() as tg:
                if self.link is not None:
                    tg.start_soon(self.link.run)
                tg.start_soon(
                    partial(
                        keep_retention,
                        self.audit,
                        retention_days=self.settings.config.audit.retention_days,
                        stop=stop,
                        # Linked: never prune what the brain has not acknowledged (its copy must stay whole).
                        through_at_most=self.link.shipped_through if self.link is not None else lambda: None,
                        on_error=lambda exc: logger.warning("audit retention failed: %s", exc),
                    )
                )
                if interval > 0:
                    tg.start_soon(
                        partial(
                            run_hourly,
                            self.snapshotter,
                            stop=stop,
                            interval_s=interval,
                            pause=self.workspace_lock,
                            on_error=lambda exc: logger.warning("hourly snapshot failed: %s", exc),
                        )
                    )
        finally:
            stop.set()

    def after_reply(self) -> None:
        """Do what earlier calls left for after their replies: the transport calls this once a reply is written;
        the next call, `close` and a short timer make sure it happens even when no reply was written."""
        work = self._after_reply
        while work:
            item = work.pop(0)  # one at a time: an interrupt leaves the rest for `close`
            try:
                item()
            except Exception:  # (an anchor that failed is owed still: the next call retries it before running)
                logger.exception("work left for after a reply failed")
        if self._after_reply_timer is not None:
            self._after_reply_timer.cancel()
            self._after_reply_timer = None

    def _after_reply_soon(self) -> None:
        if self._after_reply_timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # (not on an asyncio loop: nothing could run it later, so now)
                self.after_reply()
                return
            self._after_reply_timer = loop.call_later(_AFTER_REPLY_AT_MOST_S, self._after_reply_due)

    def _after_reply_due(self) -> None:
        self._after_reply_timer = None
        self.after_reply()

    async def call_tool(self, name: str, arguments: dict[str, Any] | None, *, client: str | None = None) -> CallOutcome:
        if self._after_reply:
            self.after_reply()
        action_id = new_action_id()
        if self.audit.owed:
            # Committing or anchoring an earlier call's event failed after its reply. Until it works, nothing
            # runs: the trail could not be kept whole, so this refusal cannot be audited either.
            try:
                self.audit.finish()
            except (OSError, sqlite3.Error) as exc:
                why = (exc.strerror if isinstance(exc, OSError) else None) or str(exc)
                message = f"the audit trail cannot be written ({why}); nothing ran"
                refusal = ToolRefused(message, code=RefusalCode.IO_ERROR, rule="audit.write")
                return refused_outcome(refusal, action_id, audited=False)
        if self.workspace.replaced():
            # If the workspace is missing mid-restore, the guard meets that too and refuses the call, audited.
            with contextlib.suppress(ToolRefused):
                await self._reopen_if_replaced()
        ctx = CallContext(
            action_id=action_id,
            tool=name,
            raw_arguments=dict(arguments or {}),
            agent=self.settings.agent or client or "unknown",
            session=self.session,
        )
        return await self.pipeline.call(ctx)

    async def require_approval_for(self, ctx: CallContext, impact: Impact) -> None:
        """The approval gate: an impact that needs a human or consensus needs an approved, covering decision."""
        needs = classify(impact, 1.0, self.rules)
        if needs in ("human", "consensus"):
            decision_id = ctx.args.decision_id if ctx.args is not None else None
            await require_approval(self.decisions, decision_id, impact, needs)

    async def check_measured(self, ctx: CallContext, impact: Impact) -> None:
        """Hold a measured impact (known only while executing) to the same rules as the planned one."""
        self.limits.check_blast_radius(impact)
        await self.require_approval_for(ctx, impact)
        if ctx.reservation is not None:
            extra = Impact(
                files=max(impact.files - ctx.planned.files, 0),
                api_calls=max(impact.api_calls - ctx.planned.api_calls, 0),
                usd=max(impact.usd - ctx.planned.usd, 0.0),
            )
            if extra != Impact():
                self.limits.extend(ctx.reservation, extra)

    def record(
        self,
        ctx: CallContext,
        *,
        outcome: Literal["ok", "refused", "failed", "shadow"],
        refusal: ToolRefused | None,
        failed: bool,
        cancelled: bool = False,
    ) -> Appended:
        args = ctx.args
        raw_rationale = ctx.raw_arguments.get("rationale")
        raw_decision = ctx.raw_arguments.get("decision_id")
        draft = EventDraft(
            id=ctx.action_id,
            kind="tool_call",
            agent=ctx.agent,
            session=ctx.session,
            rationale=args.rationale if args is not None else (raw_rationale if isinstance(raw_rationale, str) else ""),
            outcome=outcome,
            tool=ctx.tool,
            arguments=redact_arguments(ctx.raw_arguments),
            decision_id=args.decision_id
            if args is not None
            else (raw_decision if isinstance(raw_decision, str) else None),
            mode=ctx.mode,
            code=refusal.code.value if refusal is not None else None,
            rule=refusal.rule if refusal is not None else None,
            message=refusal.message if refusal is not None else None,
            files=ctx.files,
            impact=ctx.impact,
            duration_ms=round((time.perf_counter() - ctx.started) * 1000, 3),
            detail=ctx.detail,
        )
        reservation, recorder = ctx.reservation, ctx.recorder
        if recorder is not None and recorder.records:
            recorder.flush(ctx.writes, action_id=ctx.action_id, decision_id=draft.decision_id)

        # Settled after the audit append (dying in between leaves the call in flight, counted in full until
        # reclaimed), and even if it failed: what the call did still counts, and its slot is freed.
        settle = (
            None
            if reservation is None
            else partial(self.limits.settle, reservation, ctx.impact, failed=failed, cancelled=cancelled)
        )
        # With a transport that says when the reply is written, the commit, the anchor and the settling wait
        # for it: the event is durable (journaled) before the reply, and the next call does all three first
        # if they have not happened.
        later = self.replies_flushed and not cancelled
        try:
            event = self.audit.append(draft, writes=ctx.writes, finish_later=later, happened=True)
        except BaseException:
            if settle is not None:
                settle()
            if self.link is not None:
                self.link.new_events.set()  # (it may be committed: the anchor failed after)
            raise
        if later:
            self._after_reply.append(self.audit.finish)
            if settle is not None:
                self._after_reply.append(settle)
            if self.link is not None:
                self._after_reply.append(self.link.new_events.set)  # (once it is in the database to ship)
            self._after_reply_soon()
            return event
        if settle is not None:
            settle()
        if self.link is not None:
            self.link.new_events.set()
        return event

    def human_undo(self, target_id: str, *, force: bool, by: str | None = None) -> tuple[Appended, list[str]]:
        """`swarm undo`: a human reverses an action or decision; works even while killed, and is audited."""
        recorder, actions, changes, rows = self.undo.reverse(self.workspace, target_id, force=force)
        action_id = new_action_id()
        writes = Writes()
        recorder.flush(writes, action_id=action_id, decision_id=None)
        UndoStore.mark_undone(writes, rows, action_id)

        event = self.audit.append(
            EventDraft(
                id=action_id,
                kind="human",
                agent=by or f"human:{os.environ.get('USER', 'unknown')}",
                session=self.session,
                rationale=f"undo {target_id}" + (" (forced)" if force else ""),
                outcome="ok",
                tool="undo",
                arguments={"id": target_id, "force": force},
                files=[c.path for c in changes],
                impact=Impact(files=len(changes)),
                detail={"undid": actions},
            ),
            writes=writes,
        )
        return event, actions

    def notify_human(self, decision: Decision) -> None:
        """Tell a human a decision waits (standalone: the body's log; a linked body's brain pages people)."""
        if self.link is not None:
            return
        logger.warning(
            "decision %s needs %s: %s — answer with `swarm approve %s` or `swarm deny %s`",
            decision.id,
            decision.needs,
            decision.summary,
            decision.id,
            decision.id,
        )

    def record_human(
        self, *, action: str, rationale: str, by: str | None = None, detail: dict[str, Any] | None = None
    ) -> Appended:
        """Audit something a human did from the CLI (kill, resume, undo)."""
        return self.audit.append(
            EventDraft(
                id=new_action_id(),
                kind="human",
                agent=by or f"human:{os.environ.get('USER', 'unknown')}",
                session=self.session,
                rationale=rationale,
                outcome="ok",
                tool=action,
                detail=detail or {},
            )
        )
