"""The body: wires one workspace's parts together and owns their lifetime.

Nothing below this module imports it: the guards get their parts in their constructors,
the tools get a `ToolContext` (`tools/_spec.py`), the CLI uses the admin API (`admin.py`).
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import httpx

from sandbox import (
    NoIsolationAvailable,
    Sandbox,
    ToolchainNotFound,
    select_sandbox,
    wait_discarded,
)
from shared_protocol import RefusalCode
from shared_protocol.brain import Decision
from shared_protocol.config import SwarmConfig, approval_thresholds, secret_references
from shared_protocol.refusals import Rule
from shared_protocol.tools import BrainState

from .admin import Admin, new_session, open_trail
from .approval import ApprovalGate
from .audit import Appended, AuditWriter, EventDraft, keep_retention, new_action_id
from .brain_client import BrainClient
from .brain_link import BrainDecisionStore, BrainLink
from .compliance import WINDOWS_FILE, Compliance, preset_hosts
from .confinement import Workspace
from .decisions import DecisionStore, LocalDecisionStore
from .exceptions import ConfigError, ToolRefused, UserError
from .guards import default_guards, kill_refusal
from .held import HeldRuns
from .killswitch import CombinedKillSwitch, KillSwitch, LocalKillSwitch
from .limits import Limits
from .link_state import forget_link_record
from .origin import read_meta
from .outputs import OutputStore, keep_outputs_pruned
from .pipeline import AfterReply, CallAuditor, CallContext, CallOutcome, Guard, Pipeline, refused_outcome
from .policy import PathPolicy
from .scan import WorkspaceScanner
from .settings import BodySettings
from .snapshots import SnapshotEvent, SnapshotSettings, Snapshotter, run_hourly
from .state import Identity, StatePaths, load_or_create_identity
from .tools import ALL_TOOLS
from .tools._spec import ReportProgress, ToolDeps, ToolSpec
from .tools.exec import configured_toolchains
from .undo import UndoStore

logger = logging.getLogger(__name__)


def secret_files(config: SwarmConfig) -> list[Path]:
    """The files `config`'s `file:` secret references name (model API keys, tokens, a Vault secret id...)."""
    return [Path(ref.removeprefix("file:")) for _, ref in secret_references(config) if ref.startswith("file:")]


_GLOB_SPECIAL = frozenset("*?[]\\")


def workspace_globs(files: Sequence[Path], root: Path) -> list[str]:
    """Anchored policy globs (`/conf/token.txt`) for the `files` inside the workspace `root` (as resolved)."""
    resolved_root = root.resolve()
    globs: list[str] = []
    for file in files:
        try:
            relative = file.resolve().relative_to(resolved_root)
        except ValueError:
            continue
        if relative.parts:
            globs.append("/" + "".join("\\" + c if c in _GLOB_SPECIAL else c for c in relative.as_posix()))
    return globs


__all__ = ["Body", "BodySettings"]


class Body:
    def __init__(
        self,
        settings: BodySettings,
        *,
        kill_switch: KillSwitch | None = None,
        outer_guards: Sequence[Guard] = (),
        clock: Callable[[], float] = time.time,
        sandbox: Sandbox | None = None,
        brain_transport: httpx.AsyncBaseTransport | None = None,
        link_clock: Callable[[], float] = time.monotonic,
        human: str = "swarm",
    ) -> None:
        """`outer_guards` run before the default ones (tests hold calls with them); `human` is who the
        admin actions taken through this body are audited as; `link_clock` times the brain link's failsafe
        and lease renewals (tests drive it instead of waiting)."""
        self.settings = settings
        config = settings.config
        profile = settings.agent_profile
        self.logic_version: str | None = profile.logic_version if profile is not None else None
        """Recorded on every audit event this body writes (None outside agent mode)."""
        self.paths: StatePaths = settings.paths
        workspace = self.paths.require_workspace()
        try:
            configured_toolchains(config.sandbox, workspace)  # before anything is created
        except ToolchainNotFound as exc:
            raise ConfigError(f"{exc} (`swarm doctor` lists the toolchains found here)") from None
        self.identity: Identity = load_or_create_identity(self.paths)
        self.db, self.audit = open_trail(
            self.paths,
            self.identity.body_id,
            durability=config.audit.durability,
            logic_version=self.logic_version,
            privacy=config.privacy,
        )
        try:
            self.audit.recover()  # what a body that died after a reply left uncommitted
            # From the last verified point: a body on a chain that does not verify refuses mutating calls.
            if not self.audit.check().ok:
                logger.error(
                    "the audit chain does not verify (%s): mutating calls are refused until "
                    "`swarm audit reset --reason TEXT` starts a new chain",
                    self.audit.broken,
                )
        except BaseException:
            self.audit.close()
            self.db.close()
            raise
        self.session = new_session()
        self.undo = UndoStore(self.db, blob_dir=self.paths.blobs)
        self.outputs = OutputStore(self.db, directory=self.paths.outputs, privacy=self.audit.privacy)
        self.limits = Limits(self.paths.limits, config.limits, clock=clock)
        self.link: BrainLink | None = None
        if settings.brain_url:
            if not settings.brain_token:
                raise UserError("a linked body needs its brain token: set SWARM_TOKEN (or pass --token)")
            client = BrainClient(settings.brain_url, settings.brain_token, transport=brain_transport)
            self.link = BrainLink(
                client,
                self.db,
                body_id=self.identity.body_id,
                workspace=str(workspace),
                clock=link_clock,
                record=self.paths.link_state,
                brain_url=settings.brain_url,
                attester=self.audit.attester(),
                pairing=settings.brain_pairing,
            )
            self.link.on_kill = self._kill_running_commands
        on_event = self.link.events_committed if self.link is not None else None
        self.audit_writer = AuditWriter(self.audit, on_committed=on_event)
        """The audit writes of tool calls, snapshots and admin actions, off the event loop (in one worker thread,
        in order)."""
        local_kill: KillSwitch = kill_switch or LocalKillSwitch(self.paths.kill_file)
        self.kill_switch: KillSwitch = local_kill if self.link is None else CombinedKillSwitch(local_kill, self.link)
        snap = config.snapshots
        self.snapshotter = Snapshotter(
            SnapshotSettings(
                workspace=workspace.resolve(),
                state_dir=self.paths.snapshot_root,
                state_db=self.paths.db,
                config_file=settings.config_file,
                exclude=tuple(snap.exclude),
                keep_last=snap.keep_last,
                keep_daily=snap.keep_daily,
            ),
            record=self._record_snapshot,
        )
        # A restore killed part way: finish it or roll it back (no hidden copy left) before holding the workspace.
        self.snapshotter.reinstate_workspace()
        self.snapshotter.finish_interrupted()
        self.workspace = Workspace(workspace)
        # The files the config reads secrets from (`file:` references) are the secrets themselves: no tool reads
        # one inside the workspace (denied, so commands' sandboxes hide it too), and commands never see one
        # wherever else it is exposed (a toolchain path: `extra_hidden_abs`).
        self.secret_files = secret_files(config)
        denied = [*config.policy.denied_paths, *workspace_globs(self.secret_files, self.workspace.root)]
        self.policy = PathPolicy(denied=denied, read_only=config.policy.read_only_paths)
        self.shadow = config.policy.mode == "shadow"
        self.local_decisions = LocalDecisionStore(
            self.db, rules=approval_thresholds(config), deadline_s=config.policy.decision_deadline_s, clock=clock
        )
        self.decisions: DecisionStore = (
            self.local_decisions if self.link is None else BrainDecisionStore(self.link.client)
        )
        self.admin = Admin(
            paths=self.paths,
            db=self.db,
            audit=self.audit,
            undo=self.undo,
            decisions=self.local_decisions,
            workspace=self.workspace,
            session=self.session,
            by=human,
            config_file=settings.config_file,
            writer=self.audit_writer,
        )
        self.scanner = WorkspaceScanner(self.workspace.root, self.policy)
        self.held_runs = HeldRuns(
            max_count=config.sandbox.max_held_runs, max_bytes=config.sandbox.max_held_mb * 1024 * 1024
        )
        self._sandbox: Sandbox | None = sandbox
        self._owns_sandbox = sandbox is None
        """Whether `close` closes the sandbox: one this body selected, never one it was given."""
        self._sandbox_error: str | None = None
        self.replies = AfterReply()
        """A transport that says when each reply is written (stdio) sets `replies.flushed`: a call's commit,
        anchor and budget settling then happen after its reply is on its way."""
        self.workspace_lock = anyio.Lock(fast_acquire=True)
        self.tools: dict[str, ToolSpec] = {spec.name: spec for spec in ALL_TOOLS}
        deps = ToolDeps(
            workspace=self.workspace,
            policy=self.policy,
            undo=self.undo,
            audit=self.audit,
            limits=self.limits,
            kill_switch=self.kill_switch,
            decisions=self.decisions,
            link=self.link,
            identity=self.identity,
            session=self.session,
            shadow=self.shadow,
            home=settings.home,
            env_root=self.paths.env,
            cache_root=self.paths.cache,
            check_root=self.paths.check,
            files=config.workspace,
            sandbox_config=config.sandbox,
            max_api_calls_per_action=config.limits.max_api_calls_per_action,
            decision_ttl_s=config.policy.decision_deadline_s,
            sandbox=self.sandbox,
            scanner=self.scanner,
            held_runs=self.held_runs,
            outputs=self.outputs,
            notify_human=self._notify_human,
            git=config.git,
            compliance=Compliance(
                config.compliance,
                exempt_hosts=preset_hosts(config.sandbox.allowed_domains),
                windows=settings.home / WINDOWS_FILE,  # (shared by every body of this home: one cap per machine)
            ),
            agent_profile=settings.agent_profile,
            secret_files=tuple(self.secret_files),
        )
        self.command_specs = deps.specs
        """Commands' sandbox specs, remembered while nothing they were built from changed (tests, benches)."""
        gate = ApprovalGate(
            self.decisions,
            approval_thresholds(config),
            self.db,
            approve_irreversible=config.policy.approve_irreversible,
            cumulative_window_s=config.policy.cumulative_window_s,
            clock=clock,
        )
        self.gate = gate
        """The approval gate every mutating call passes (planned, then measured)."""
        guards = default_guards(
            tools=self.tools,
            kill_switch=self.kill_switch,
            audit=self.audit,
            workspace=self.workspace,
            policy=self.policy,
            limits=self.limits,
            gate=gate,
            deps=deps,
            workspace_lock=self.workspace_lock,
            shadow=self.shadow,
            agent=settings.agent_profile,
        )
        self._outer_guards = bool(outer_guards)
        self.pipeline = Pipeline(
            [*outer_guards, *guards], CallAuditor(self.audit, self.limits, self.replies, writer=self.audit_writer)
        )

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
                self._owns_sandbox = True
            except NoIsolationAvailable as exc:
                self._sandbox_error = str(exc)
        if self._sandbox is not None and not (availability := self._sandbox.available()).ok:
            if self._owns_sandbox:
                self._sandbox.close()
            self._sandbox, self._sandbox_error = None, availability.reason
        if self._sandbox is None:
            raise ToolRefused(
                f"no sandbox can isolate commands on this machine, so none is run: {self._sandbox_error}",
                code=RefusalCode.SANDBOX_UNAVAILABLE,
                rule=Rule.SANDBOX_BACKEND,
            )
        return self._sandbox

    def close(self) -> None:
        self.replies.run()
        # What this body staged goes with it: the runs held for an approval, and (a backend it selected) the
        # launcher made ahead with its staging area and cgroup, and the launcher server.
        self.held_runs.discard_all()
        if self._sandbox is not None and self._owns_sandbox:
            self._sandbox.close()
        wait_discarded()  # (the staging areas of the last commands and of the held runs, removed in the background)
        self.scanner.close()
        self.audit_writer.close()
        self.workspace.close()
        self.audit.close()
        self.limits.close()
        self.db.close()

    # -- serving ---------------------------------------------------------------------------

    def _record_snapshot(self, event: SnapshotEvent) -> None:
        """A snapshot's event (hourly: from a worker thread), through the writer: durable when it returns."""
        self.audit_writer.append_waiting(
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
        """A restore swaps the workspace directory (`call_tool` saw it): hold the new one instead."""
        async with self.workspace_lock:
            if not self.workspace.replaced():
                return
            if not self.workspace.root.is_dir():
                raise ToolRefused(
                    "the workspace is being restored from a snapshot; retry in a moment",
                    code=RefusalCode.IO_ERROR,
                    rule=Rule.SNAPSHOTS_RESTORE,
                )
            self.workspace.reopen()
            self.scanner.reset()
            await self.admin.record_async(
                action="workspace.reopened", rationale="the workspace was restored from a snapshot"
            )

    async def background(self) -> None:
        """What a serving body runs besides answering calls: the brain link, hourly snapshots, audit retention
        (commands' kept output with it)."""
        self.audit_writer.bind()  # (snapshots' events, appended from worker threads, are told of on this loop)
        stop = anyio.Event()
        interval = self.settings.config.snapshots.interval_s
        if self.link is None:
            forget_link_record(self.paths.link_state)  # (a linked body's old record says nothing of this one)
        retention_days = self.settings.config.audit.retention_days
        try:
            async with anyio.create_task_group() as tg:
                # First: the workspace walk that commands' sandboxes hide secrets by (a command waits for it).
                tg.start_soon(self._first_scan)
                if self.link is not None:
                    tg.start_soon(self.link.run)
                tg.start_soon(
                    partial(
                        keep_retention,
                        self.audit,
                        retention_days=retention_days,
                        stop=stop,
                        # Linked: never prune what the brain has not acknowledged (its copy must stay whole).
                        through_at_most=self.link.shipped_through if self.link is not None else lambda: None,
                        on_error=lambda exc: logger.warning("audit retention failed: %s", exc),
                    )
                )
                tg.start_soon(
                    partial(
                        keep_outputs_pruned,
                        self.outputs,
                        retention_days=retention_days,
                        stop=stop,
                        on_error=lambda exc: logger.warning("pruning commands' output failed: %s", exc),
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

    async def _first_scan(self) -> None:
        try:
            await self.scanner.current()
        except OSError as exc:
            logger.warning("the first workspace scan failed (%s): each command scans for itself", exc)
            return
        logger.info("workspace scanned in %.3f s", self.scanner.first_scan_s or 0.0)

    async def leave(self) -> None:
        """A clean exit (the client closed stdin): a linked body deregisters, so its brain pages nobody about it.

        What the last replies left owed is committed first (a read's commit waits `LAZY_FINISH_S` after its reply, a
        write's runs in the writer's thread): the link ships the committed chain, and would leave those events for the
        body's next start (never, for a workspace that is not served again)."""
        if self.link is not None:
            try:
                await self.audit_writer.finish()
            except Exception as exc:  # noqa: BLE001 - still safe in the journal: the next start commits and ships it
                logger.warning("the audit events owed could not be committed before leaving: %s", exc)
            await self.link.leave()

    async def call_tool(
        self,
        name: str,
        arguments: dict[str, Any] | None,
        *,
        client: str | None = None,
        progress: ReportProgress | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> CallOutcome:
        """One `tools/call`; `progress` is the caller's progress channel (`ToolContext.progress`), `meta` its
        request's `_meta` (where the agent runner says a call is its model's, `origin.py`)."""
        if self.replies:
            self.replies.run()
        action_id = new_action_id()
        if self.audit.sealed:
            # No key, or a database that cannot be read: nothing can be recorded, so nothing runs (read-only
            # tools included: a call that cannot be audited is denied).
            message = (
                f"the audit trail cannot be written ({self.audit.broken}); nothing ran. A human starts a new chain "
                "with `swarm audit reset`"
            )
            refusal = ToolRefused(message, code=RefusalCode.AUDIT_BROKEN, rule=Rule.AUDIT_INTEGRITY)
            return refused_outcome(refusal, action_id, audited=False)
        spec = self.tools.get(name)
        if self.audit_writer.settling and (
            (spec is not None and spec.read_only) or not self.kill_switch.state().engaged
        ):
            await self.audit_writer.settled()  # (the commit an earlier reply asked for, still under way)
        # (else the kill switch refuses the call, first in the guard: it waits for no earlier commit to be told; the
        # kill state is read here only when there is a commit to wait for: else the guard's check is the first)
        if self.audit.failing:
            # Committing or anchoring an earlier call's event failed after its reply. Until it works, nothing
            # runs: the trail could not be kept whole, so this refusal cannot be audited either.
            try:
                await self.audit_writer.finish()
            except (OSError, sqlite3.Error) as exc:
                why = (exc.strerror if isinstance(exc, OSError) else None) or str(exc)
                message = f"the audit trail cannot be written ({why}); nothing ran"
                refusal = ToolRefused(message, code=RefusalCode.IO_ERROR, rule=Rule.AUDIT_WRITE)
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
            progress=progress,
            origin=read_meta(meta),
            logic_version=self.logic_version,
        )
        return await self.pipeline.call(ctx)

    async def refuse_killed(
        self,
        name: str,
        arguments: dict[str, Any] | None,
        *,
        client: str | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> CallOutcome | None:
        """The kill switch's short path: a mutating `tools/call` that arrives while the kill switch is engaged,
        refused and audited (its rationale, the rule `kill_switch_engaged`, journaled before the reply as the
        guard's refusal is) with nothing else done; None when the call is not one (not engaged, a read-only tool,
        an audit trail with a problem of its own, a workspace being replaced, test guards in front): `call_tool`
        then answers it, as it would have."""
        spec = self.tools.get(name)
        if (spec is not None and spec.read_only) or self._outer_guards:
            return None
        state = self.kill_switch.state()
        if not state.engaged:
            return None
        audit = self.audit
        if audit.sealed or audit.failing or audit.broken is not None or self.workspace.replaced():
            return None
        if self.replies:
            self.replies.run()
        ctx = CallContext(
            action_id=new_action_id(),
            tool=name,
            raw_arguments=dict(arguments or {}),
            agent=self.settings.agent or client or "unknown",
            session=self.session,
            origin=read_meta(meta),
            logic_version=self.logic_version,
        )
        refusal = kill_refusal(state, ctx)
        assert refusal is not None  # (engaged)
        return await self.pipeline.refuse(ctx, refusal)

    def _notify_human(self, decision: Decision) -> None:
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

    def record_human(self, *, action: str, rationale: str, detail: dict[str, Any] | None = None) -> Appended:
        """Audit something a human did through this body (tests and the demo; the CLI uses `Admin`)."""
        return self.admin.record(action=action, rationale=rationale, detail=detail)
