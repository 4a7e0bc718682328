"""What a human does to a workspace's body state, from the CLI or a hook: the admin API of the body.

`Admin.open` opens only what these need — the state database, the audit chain (committing
what a body that died after a reply left in the journal), the undo store and the local
decisions — never limits, a pipeline, a sandbox or a brain link. A serving body builds its
`Admin` over its own parts, so what a human does while it runs lands in the same chain.
Every action is audited under `by`, the acting human, resolved once at the entry point.
"""

from __future__ import annotations

import dataclasses
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

from shared_protocol import AuditEvent, Impact
from shared_protocol.brain import Decision
from shared_protocol.config import PrivacyConfig, SwarmConfig, approval_thresholds
from shared_protocol.decisions import AnswerKind
from shared_protocol.privacy import (
    MalformedSubject,
    PrivacyErasure,
    PrivacyError,
    PrivacyExport,
    PrivacyUnerasure,
    Protector,
    Subject,
    UnknownSubject,
)
from shared_protocol.tools import BrainState, Budget

from ._db import Durability, StateDB, Writes
from ._limits_table import BreakerState
from .audit import (
    MIGRATE_BATCH,
    MIGRATED,
    Appended,
    AuditStore,
    AuditWriter,
    EventDraft,
    Migration,
    VerifyReport,
    held_exclusively,
    new_action_id,
    set_aside,
)
from .confinement import Workspace
from .decisions import LocalDecisionStore
from .exceptions import StateUnusable, UndoRefused, UserError
from .explain import explain_event
from .killswitch import KillState, LocalKillSwitch
from .limits import Limits
from .link_state import LinkView, view_link_record
from .outputs import OutputStore
from .privacy import (
    MIGRATED_COPIES,
    drop_clear_state_copies,
    held_about,
    migrate_local_decisions,
    open_protector,
)
from .settings import BodySettings
from .snapshots import Progress, SnapshotEvent, SnapshotSettings, Snapshotter
from .state import StatePaths, load_or_create_identity
from .undo import UndoStore


def new_session() -> str:
    return f"ses_{time.time_ns():x}{secrets.token_hex(2)}"


def open_trail(
    paths: StatePaths,
    body_id: str,
    *,
    durability: Durability,
    logic_version: str | None = None,
    privacy: PrivacyConfig | None = None,
) -> tuple[StateDB, AuditStore]:
    """The workspace's state database and its audit chain; a damaged database's error says how to set it aside.
    With `privacy` (`[privacy]`), every event's personal data is encrypted under the body's subject keys."""
    try:
        db = StateDB(paths.db, durability=durability)
    except StateUnusable as exc:
        if not exc.damaged:
            raise
        raise StateUnusable(
            paths.db,
            f"{exc.reason}; the audit chain in it cannot be verified: `swarm audit reset --reason TEXT` sets it "
            "aside as evidence and starts a new one",
            damaged=True,
        ) from None
    try:
        protector = open_protector(paths, privacy) if privacy is not None and privacy.redaction else None
    except PrivacyError:
        db.close()
        raise
    try:
        return db, AuditStore(db, files=paths.audit, body_id=body_id, logic_version=logic_version, privacy=protector)
    except BaseException:
        if protector is not None:
            protector.close()
        db.close()
        raise


@dataclass(kw_only=True, frozen=True)
class WorkspaceStatus:
    """What `swarm status` shows of a workspace's (or an agent's) body."""

    workspace: Path | None
    agent: str | None
    body_id: str
    kill: KillState
    """What the body obeys: the local kill, else (linked) the brain's kill or its failsafe, as last recorded."""
    mode: Literal["live", "shadow"]
    brain: BrainState
    breaker: BreakerState
    budgets: list[Budget]
    link: LinkView | None = None
    """A linked body's record of its brain, with how old it is and whether the body still runs; None: standalone."""


class Admin:
    def __init__(
        self,
        *,
        paths: StatePaths,
        db: StateDB,
        audit: AuditStore,
        undo: UndoStore,
        decisions: LocalDecisionStore,
        workspace: Workspace | None,
        session: str,
        by: str,
        config_file: Path | None = None,
        owned: Sequence[StateDB | AuditStore | Workspace] = (),
        writer: AuditWriter | None = None,
    ) -> None:
        """`writer`: a serving body's, through which its admin events are appended (in order with its calls'
        events, never on its event loop); without one (the CLI, a hook), on the caller's thread."""
        self._writer = writer
        self.paths = paths
        self.db = db
        self.audit = audit
        self.undo_store = undo
        self.decisions = decisions
        self._workspace = workspace
        self.session = session
        self.by = by
        self._config_file = config_file
        self._owned = list(owned)

    @classmethod
    def open(cls, settings: BodySettings, *, by: str) -> Admin:
        """The workspace's state, for a human named `by` (e.g. `human:alice`)."""
        paths = settings.paths
        if settings.workspace is not None:
            # A restore killed between its two renames leaves no directory here; `finish_interrupted` below does
            # the rest.
            Snapshotter(SnapshotSettings.for_workspace(paths)).reinstate_workspace()
            if not settings.workspace.is_dir():
                raise UserError(f"the workspace {settings.workspace} is not a directory")
        identity = load_or_create_identity(paths)
        config = settings.config
        profile = settings.agent_profile
        db, audit = open_trail(
            paths,
            identity.body_id,
            durability=config.audit.durability,
            logic_version=profile.logic_version if profile is not None else None,
            privacy=config.privacy,
        )
        try:
            audit.recover()
        except BaseException:
            audit.close()
            db.close()
            raise
        admin = cls(
            paths=paths,
            db=db,
            audit=audit,
            undo=UndoStore(db, blob_dir=paths.blobs),
            decisions=LocalDecisionStore(
                db,
                rules=approval_thresholds(config),
                deadline_s=config.policy.decision_deadline_s,
            ),
            workspace=None,
            session=new_session(),
            by=by,
            config_file=settings.config_file,
            owned=[audit, db],
        )
        try:
            if settings.workspace is not None:
                admin.snapshotter().finish_interrupted()  # a restore killed part way: finished or rolled back, audited
        except BaseException:
            admin.close()
            raise
        return admin

    def close(self) -> None:
        owned, self._owned = self._owned, []
        for part in owned:  # (the workspaces first)
            if isinstance(part, Workspace):
                part.close()
        for part in owned:
            if not isinstance(part, Workspace):
                part.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def workspace(self) -> Workspace:
        if self._workspace is None:
            self._workspace = Workspace(self.paths.require_workspace())
            self._owned.append(self._workspace)
        return self._workspace

    def _undo_workspace(self, target_id: str) -> Workspace:
        """Where `target_id` changed files: this workspace, or for an agent's state without one (the CLI), the
        workspace its task worked in, which must still be there."""
        if self.paths.agent is None or self.paths.workspace is not None:
            return self.workspace
        where = self.undo_store.workspaces_of(target_id)
        if not where:
            raise UndoRefused(
                f"nothing to undo for '{target_id}' in agent {self.paths.agent}'s trail (unknown id, read-only "
                "action, or already undone)"
            )
        if len(where) > 1:
            raise UserError(
                f"'{target_id}' changed files in {len(where)} workspaces ({', '.join(sorted(where))}); "
                "undo its actions one by one"
            )
        (path,) = where
        if not Path(path).is_dir():
            raise UserError(
                f"'{target_id}' changed files in the workspace {path}, which no longer exists; nothing was undone"
            )
        workspace = Workspace(Path(path))
        self._owned.append(workspace)
        return workspace

    def status(self, config: SwarmConfig) -> WorkspaceStatus:
        limits = Limits(self.paths.limits, config.limits)
        try:
            breaker, budgets = limits.breaker_state(), limits.budgets()
        finally:
            limits.close()
        local = LocalKillSwitch(self.paths.kill_file).state()
        link = view_link_record(self.paths.link_state, now=time.time())
        return WorkspaceStatus(
            workspace=self.paths.workspace,
            agent=self.paths.agent,
            body_id=load_or_create_identity(self.paths).body_id,
            kill=local if local.engaged or link is None else link.record.kill(),
            mode=config.policy.mode,
            brain="standalone" if link is None else link.record.link,
            breaker=breaker,
            budgets=budgets,
            link=link,
        )

    # -- the audit trail ----------------------------------------------------------------

    def verify(self) -> VerifyReport:
        """The whole chain against its anchor and key, then the rest of the state it vouches for: the database's
        pages and indexes (`integrity_check`) and every undo pre-image against its hash."""
        report = self.audit.verify()
        damage = (*self.db.integrity_problems(), *self.undo_store.check())
        return dataclasses.replace(report, ok=False, damage=damage) if damage else report

    def tail(self, count: int = 20) -> list[AuditEvent]:
        return self.audit.tail(count)

    def get(self, action_id: str) -> AuditEvent | None:
        return self.audit.get(action_id)

    def explain(self, action_id: str) -> str | None:
        event = self.audit.get(action_id)
        return explain_event(event) if event is not None else None

    def record(
        self,
        *,
        action: str,
        rationale: str,
        detail: dict[str, Any] | None = None,
        arguments: dict[str, Any] | None = None,
        files: list[str] | None = None,
        impact: Impact | None = None,
        writes: Writes | None = None,
        action_id: str | None = None,
        outcome: str = "ok",
    ) -> Appended:
        """Audit something a human (or Swarm itself, for `by="swarm"`) did: durable, committed and anchored when
        it returns."""
        draft = self.draft(
            action=action,
            rationale=rationale,
            detail=detail,
            arguments=arguments,
            files=files,
            impact=impact,
            action_id=action_id,
            outcome=outcome,
        )
        if self._writer is not None:
            return self._writer.append_waiting(draft, writes=writes)
        return self.audit.append(draft, writes=writes) if writes is not None else self.audit.append(draft)

    async def record_async(self, *, action: str, rationale: str, detail: dict[str, Any] | None = None) -> Appended:
        """`record`, from a coroutine of a serving body: appended by its writer's thread while the loop goes on."""
        draft = self.draft(action=action, rationale=rationale, detail=detail)
        if self._writer is None:
            raise RuntimeError("record_async needs a serving body's audit writer")
        return await self._writer.append_now(draft, writes=None)

    def draft(
        self,
        *,
        action: str,
        rationale: str,
        detail: dict[str, Any] | None = None,
        arguments: dict[str, Any] | None = None,
        files: list[str] | None = None,
        impact: Impact | None = None,
        action_id: str | None = None,
        outcome: str = "ok",
    ) -> EventDraft:
        """The event of something a human did, as `record` appends it."""
        return EventDraft(
            id=action_id or new_action_id(),
            kind="human",
            agent=self.by,
            session=self.session,
            rationale=rationale,
            outcome=outcome,  # type: ignore[arg-type]
            tool=action,
            arguments=arguments or {},
            files=files or [],
            impact=impact or Impact(),
            detail=detail or {},
        )

    # -- privacy ------------------------------------------------------------------------

    def _protector(self) -> tuple[Protector, bool]:
        """The chain's protector, else (`[privacy] redaction` off) one over the same key store: (it, owned)."""
        if self.audit.privacy is not None:
            return self.audit.privacy, False
        return open_protector(self.paths, PrivacyConfig()), True

    def _subject(self, protector: Protector, text: str) -> Subject:
        try:
            return protector.parse_subject(text)
        except MalformedSubject as exc:
            raise UserError(str(exc)) from None

    def privacy_erase(self, subject: str, *, reason: str = "") -> PrivacyErasure:
        """Destroy a subject's key (crypto-shredding): what this body's trail, kept outputs and snapshots hold of
        them, and what it shipped to its brain, can no longer be read. The subject is tombstoned whether or not a key
        was held (`erased` false: none was), so nothing about them is kept from now on, not even by work under way
        that names them for the first time. Audited (`privacy.erase`, naming the kind and the destroyed key's random
        id, never the subject)."""
        protector, owned = self._protector()
        try:
            found = self._subject(protector, subject)
            before = protector.keys.erased_at(found.kind, found.value)
            subject_id = protector.keys.erase(found.kind, found.value)
            why = f": {protector.redact(reason)}" if reason else ""
            if subject_id is not None:
                done, detail = "a data subject's key was destroyed", {"subject_id": subject_id}
            elif before is None:
                done, detail = "a data subject was tombstoned, no key being held here", {"key_held": False}
            else:
                done, detail = "a data subject was erased again, erased here before", {"key_held": False}
            self.record(
                action="privacy.erase", rationale=f"{done} ({found.kind}){why}", detail={"kind": found.kind, **detail}
            )
            return PrivacyErasure(kind=found.kind, erased=subject_id is not None, erased_before=before)
        finally:
            if owned:
                protector.close()

    def privacy_unerase(self, subject: str, *, reason: str) -> PrivacyUnerasure:
        """Lift an erased subject's tombstone: a subject who came back (a new customer with the same email, consent
        given again), a deliberate human step with its reason, audited (`privacy.unerase`, naming the kind, never
        the subject). What is written about them afterwards is encrypted under a new key; what was erased stays
        unreadable. `UnknownSubject` when the subject is not erased here."""
        if not reason.strip():
            raise UserError("give --reason: lifting an erasure is a deliberate step, audited with its reason")
        protector, owned = self._protector()
        try:
            found = self._subject(protector, subject)
            if not protector.keys.unerase(found.kind, found.value):
                raise UnknownSubject(f"that {found.kind} is not erased on this body: nothing to lift")
            self.record(
                action="privacy.unerase",
                rationale=f"an erased data subject's tombstone was lifted ({found.kind}): {protector.redact(reason)}",
                detail={"kind": found.kind},
            )
            return PrivacyUnerasure(kind=found.kind, unerased=True)
        finally:
            if owned:
                protector.close()

    def privacy_migrate(
        self, *, progress: Callable[[int, int], None] = lambda done, total: None, batch: int = MIGRATE_BATCH
    ) -> Migration:
        """Encrypt, per subject, the personal data of the events and kept outputs written before `[privacy]` (or
        with it off): the one-time migration `swarm privacy migrate` runs (`audit._migrate`). The chain still
        verifies; each batch is recorded by a `privacy.migrate` event. Freed pages are zeroed and the WAL and the
        journal emptied afterwards, so no old text is left in the files. A second run finds nothing to do."""
        protector = self.audit.privacy
        if protector is None:
            raise UserError(
                "[privacy] redaction is off in this configuration: new events are kept as written, so there is "
                "nothing to migrate to (turn it on first)"
            )
        report = self.audit.verify()
        if not report.ok:
            raise UserError(f"{report.summary()}: a migration rewrites only a chain that verifies")
        with self.db.read() as conn:
            conn.execute("PRAGMA secure_delete = ON")  # (this connection's writes zero what they free)

        def record(detail: dict[str, Any], writes: Writes) -> Appended:
            return self.record(
                action=MIGRATED,
                rationale=(
                    f"personal data in {detail['rewritten']} events written before [privacy] encrypted per subject "
                    f"(events {detail['first_seq']}-{detail['last_seq']}); their MACs and the chain's links are "
                    "unchanged"
                ),
                detail=detail,
                writes=writes,
            )

        result = self.audit.migrate_privacy(protector, record=record, progress=progress, batch=batch)
        result.outputs = OutputStore(self.db, directory=self.paths.outputs).migrate_privacy(protector)
        result.decisions = migrate_local_decisions(self.db, protector)
        with self.db.read() as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        result.snapshots = drop_clear_state_copies(self.paths, self.db, protector)
        if result.outputs or result.decisions or result.snapshots:
            self.record(
                action=MIGRATED_COPIES,
                rationale=(
                    f"personal data in {result.outputs} kept output(s) and {result.decisions} approval request(s) "
                    f"written before [privacy] encrypted per subject; {len(result.snapshots)} snapshot(s) taken "
                    "before it lost their copy of state.db, which held it in clear (their workspace files are kept: "
                    "they still restore)"
                ),
                detail={
                    "outputs": result.outputs,
                    "decisions": result.decisions,
                    "snapshots_state_db_dropped": result.snapshots,
                },
            )
            self.audit.scrub_journal()  # (a kept output is journaled with its call's event: its old text too)
        return result

    def privacy_export(self, subject: str, *, elsewhere: Iterable[tuple[str, str]] = ()) -> PrivacyExport:
        """What this body's trail and kept outputs hold about a subject, decrypted; `UnknownSubject` when no key is
        held. `elsewhere`: (where, text) of other records protected with this body's keys (an agent's runner's
        files), searched too."""
        protector, owned = self._protector()
        try:
            found = self._subject(protector, subject)
            erased_at = protector.keys.erased_at(found.kind, found.value)
            if erased_at is not None:  # (nothing is held since; when it was erased is all an export says)
                return PrivacyExport(kind=found.kind, erased_at=erased_at)
            outputs = OutputStore(self.db, directory=self.paths.outputs).kept_texts()
            held = held_about(self.db, protector, found, outputs, elsewhere)
            if held is None:
                raise UnknownSubject(f"no data about that {found.kind} is held by this body (never seen, or erased)")
            return PrivacyExport(kind=found.kind, held=held)
        finally:
            if owned:
                protector.close()

    # -- undo ---------------------------------------------------------------------------

    def has_undo(self, target_id: str) -> bool:
        return bool(self.undo_store.pending_records(target_id))

    def undo(self, target_id: str, *, force: bool) -> tuple[Appended, list[str]]:
        """Reverse an action or decision; works even while killed, and is audited."""
        recorder, actions, changes, rows = self.undo_store.reverse(
            self._undo_workspace(target_id), target_id, force=force
        )
        action_id = new_action_id()
        writes = Writes()
        recorder.flush(writes, action_id=action_id, decision_id=None)
        UndoStore.mark_undone(writes, rows, action_id)
        event = self.record(
            action="undo",
            rationale=f"undo {target_id}" + (" (forced)" if force else ""),
            arguments={"id": target_id, "force": force},
            files=[c.path for c in changes],
            impact=Impact(files=len(changes)),
            detail={"undid": actions},
            writes=writes,
            action_id=action_id,
        )
        return event, actions

    # -- decisions -----------------------------------------------------------------------

    def answer(self, decision_id: str, kind: AnswerKind, *, reason: str) -> Decision:
        """A standalone body's decision, answered on this machine (approve, deny, or a captain's override)."""
        decision = self.decisions.answer(decision_id, kind, by=self.by, reason=reason)
        self.record(action=kind, rationale=reason, detail={"decision_id": decision_id, "state": decision.state})
        return decision

    # -- snapshots ----------------------------------------------------------------------

    def snapshotter(self, *, exclude: Sequence[str] = (), progress: Progress | None = None) -> Snapshotter:
        settings = SnapshotSettings.for_workspace(self.paths, config_file=self._config_file, exclude=exclude)
        return Snapshotter(settings, record=self.record_snapshot, progress=progress)

    def record_snapshot(self, event: SnapshotEvent) -> Appended:
        return self.record(action=event.action, rationale=event.rationale, detail=event.detail, outcome=event.outcome)


# -- a new chain -----------------------------------------------------------------------------


@dataclass(kw_only=True, frozen=True)
class ResetResult:
    set_aside: Path
    """Where the old chain is kept: its database, key, anchor, journal, checkpoint, identity and blobs."""
    previous_body_id: str
    previous_head: str
    body_id: str
    """A new chain is a new body identity: a linked body's brain keeps the old one's chain as it was."""
    event: Appended
    """The new chain's first event, recording the reset."""


def reset_trail(settings: BodySettings, *, reason: str, by: str) -> ResetResult:
    """Set the workspace's audit chain aside as evidence and start a new one (`swarm audit reset`).

    Refused while any body or command has the chain open. Works whatever state the old chain is in
    (no key, a database SQLite cannot open): it is moved, never read through a store, never changed.
    """
    if not reason.strip():
        raise UserError("a reset needs a reason (--reason TEXT): it is the new chain's first event")
    paths = settings.paths
    try:
        previous_body_id = load_or_create_identity(paths).body_id
    except StateUnusable:  # (set aside with the rest: the new chain gets a new identity)
        previous_body_id = "unreadable"
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    aside = paths.dir / f"audit-reset-{stamp}"
    try:
        with held_exclusively(paths.audit.lock) as held:
            previous_head = _head_of(paths.db)
            anchor = _first_line(paths.anchor)
            wal = [paths.db.with_name(paths.db.name + suffix) for suffix in ("-wal", "-shm")]
            set_aside([paths.db, *wal, *paths.audit.chain, paths.identity, paths.blobs], aside)
            held.share()  # (the new chain's store takes it shared as well; no other reset can start meanwhile)
            with Admin.open(settings, by=by) as admin:
                event = admin.record(
                    action="audit.reset",
                    rationale=reason,
                    detail={
                        "previous_body_id": previous_body_id,
                        "previous_chain": str(aside),
                        "previous_head": previous_head,
                        "previous_anchor": anchor,
                    },
                )
                body_id = admin.audit.body_id
    except BlockingIOError:
        raise UserError(
            "a body or another swarm command has this workspace's audit trail open: stop it (the IDE's session "
            "of `swarm body`) and run the reset again"
        ) from None
    return ResetResult(
        set_aside=aside, previous_body_id=previous_body_id, previous_head=previous_head, body_id=body_id, event=event
    )


def _head_of(db: Path) -> str:
    """The last event a database holds, read without writing to it (it is evidence)."""
    if not db.exists():
        return "no database"
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            row = conn.execute("SELECT seq, mac FROM audit_events ORDER BY seq DESC LIMIT 1").fetchone()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return f"unreadable ({exc})"
    return "no events" if row is None else f"event {row[0]} (mac {row[1]})"


def _first_line(path: Path) -> str:
    try:
        with open(path, "rb") as fh:
            return fh.read(256).decode(errors="backslashreplace").split("\n")[0]
    except FileNotFoundError:
        return "no anchor"
