"""The pipeline every `tools/call` passes, whatever the tool, and the audit event it ends in.

    audit (outermost: records every call, allowed, refused or failed; fails closed)
      → kill switch → input validation → confinement and policy → blast radius and budgets
      → approval gate → the tool (shadow or live) → undo record (committed with the audit event)

Each stage is a `Guard` (`guards.py`): `(ctx, call_next) -> result`, raising `ToolRefused`
to refuse; it is given what it needs when it is built. `Pipeline` chains them and hands
the outcome to `CallAuditor`, which writes the call's audit event (and its undo records)
and settles its budget. A new rule is a new guard, not an edit to every tool.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal, Protocol

import anyio

from shared_protocol import NO_IMPACT, Impact, Refusal, RefusalCode, ToolArgs
from shared_protocol.refusals import Rule

from . import _json
from ._factories import empty_dict
from .audit import Appended, AuditStore, AuditWriter, EventDraft, redact_arguments
from .confinement import WorkspacePath
from .exceptions import KillSwitchEngaged, RefusedWithResult, ToolRefused
from .limits import Limits, Reservation
from .names import printable
from .origin import NO_ORIGIN, CallOrigin
from .policy import PathPolicy
from .tools._spec import Effects, Mode, ReportProgress, ToolOutput, ToolSpec

logger = logging.getLogger(__name__)

Next = Callable[["CallContext"], Awaitable[ToolOutput]]
Outcome = Literal["ok", "refused", "failed", "shadow"]

_AFTER_REPLY_AT_MOST_S = 0.005
"""How long work left for after a reply may wait when no reply is written (a cancelled call)."""


@dataclass(kw_only=True)
class CallContext:
    """One tool call as it passes the guards; the guards fill it in, the audit event is built from it."""

    action_id: str
    tool: str
    raw_arguments: dict[str, Any]
    agent: str
    session: str
    started: float = field(default_factory=time.perf_counter)
    spec: ToolSpec | None = None
    args: ToolArgs | None = None
    paths: dict[str, WorkspacePath] = field(default_factory=empty_dict)
    planned: Impact = NO_IMPACT
    changes_paths: Sequence[str] = ()
    """The files the call changes that count toward approval (planned, then measured)."""
    approved: bool = False
    """A decision granted the call's impact (planned or measured)."""
    reservation: Reservation | None = None
    mode: Mode = "live"
    effects: Effects = field(default_factory=Effects)
    progress: ReportProgress | None = None
    """The client's progress channel for this call (`ToolContext.progress`)."""
    origin: CallOrigin = NO_ORIGIN
    """What the request's `_meta` says of the call (`origin.py`); its turn goes on the audit event."""
    logic_version: str | None = None
    """The agent's logic version (agent mode), recorded on the audit event."""
    policy: PathPolicy | None = None
    """The path policy of this call when it is not the body's (a model's call: its task's acceptance inputs)."""

    @property
    def mutating(self) -> bool:
        # An unknown or unvalidated tool is treated as mutating: refusals err on the safe side.
        return self.spec is None or not self.spec.read_only


@dataclass(kw_only=True, frozen=True)
class CallOutcome:
    """A finished call, independent of MCP: the server turns it into a `CallToolResult`."""

    is_error: bool
    structured: dict[str, Any]
    text: str
    action_id: str


def refused_outcome(refusal: ToolRefused, action_id: str, *, audited: bool = True) -> CallOutcome:
    """A refusal as the client sees it: `{code, rule, message, action_id}`, and the same as text (a line, then JSON).

    A message naming a file whose name is not UTF-8 (a symlink's, a directory's on the way) is written as results
    show such names (`names.printable`): a lone surrogate in a reply would kill a body serving over stdio."""
    message = printable(refusal.message)
    data = Refusal(
        code=refusal.code, rule=refusal.rule, message=message, action_id=action_id, ask=refusal.ask
    ).model_dump(mode="json", exclude_none=True)
    where = f"action {action_id}" if audited else f"action {action_id}, not audited"
    # The JSON in the text too: a client that reads only text (or drops structured content) still sees the code.
    return CallOutcome(
        is_error=True,
        structured=data,
        text=f"Refused [{refusal.code.value}] {message} ({where})\n" + _json.plain(data),
        action_id=action_id,
    )


class Guard(Protocol):
    async def __call__(self, ctx: CallContext, call_next: Next) -> ToolOutput: ...


class AfterReply:
    """Work a call leaves for after its reply is written (asking the audit writer for its commit and anchor).

    A transport that says when each reply is flushed (stdio) sets `flushed` and calls `run()`
    after each write; the next call, closing, and a short timer make sure the work happens
    even when no reply is written.
    """

    def __init__(self) -> None:
        self.flushed = False
        self._work: list[Callable[[], object]] = []
        self._timer: asyncio.TimerHandle | None = None

    def __bool__(self) -> bool:
        return bool(self._work)

    def defer(self, item: Callable[[], object]) -> None:
        self._work.append(item)

    def run(self) -> None:
        work = self._work
        while work:
            item = work.pop(0)  # one at a time: an interrupt leaves the rest for `close`
            try:
                item()
            except Exception:  # (an anchor that failed is owed still: the next call retries it before running)
                logger.exception("work left for after a reply failed")
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def soon(self) -> None:
        if self._timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # (not on an asyncio loop: nothing could run it later, so now)
                self.run()
                return
            self._timer = loop.call_later(_AFTER_REPLY_AT_MOST_S, self._due)

    def _due(self) -> None:
        self._timer = None
        self.run()


class CallAuditor:
    """Writes a call's audit event with its undo records, then settles its budget.

    The store's writes run in the `AuditWriter`'s thread: the event loop never waits on the audit
    lock, and concurrent calls share a journal sync. A mutating call's event is durable before its
    reply; a read's is journaled before it and made durable with the next batch (`lazy`), and so is the refusal of
    a call the kill switch stopped before it ran (it changed nothing).
    """

    def __init__(
        self,
        audit: AuditStore,
        limits: Limits,
        after_reply: AfterReply,
        *,
        writer: AuditWriter,
    ) -> None:
        self._audit = audit
        self._limits = limits
        self._after_reply = after_reply
        self._writer = writer
        self.in_flight = 0
        """Calls between the pipeline's start and their event's append (`Pipeline.call` counts them): a call alone
        syncs its event on the event loop's thread; with others in flight, in the writer's, where they share it."""

    async def record(
        self, ctx: CallContext, *, outcome: Outcome, refusal: ToolRefused | None, failed: bool, cancelled: bool = False
    ) -> Appended:
        args = ctx.args
        effects = ctx.effects
        raw_rationale = ctx.raw_arguments.get("rationale")
        raw_decision = ctx.raw_arguments.get("decision_id")
        digests: list[str] = []
        arguments = redact_arguments(ctx.raw_arguments, digests)
        privacy = self._audit.privacy
        if privacy is not None:
            for digest in digests:  # (made here from the content: no personal data to scan for)
                privacy.known_clean(digest)
        draft = EventDraft(
            id=ctx.action_id,
            kind="tool_call",
            agent=ctx.agent,
            session=ctx.session,
            rationale=args.rationale if args is not None else (raw_rationale if isinstance(raw_rationale, str) else ""),
            outcome=outcome,
            tool=ctx.tool,
            arguments=arguments,
            decision_id=args.decision_id
            if args is not None
            else (raw_decision if isinstance(raw_decision, str) else None),
            mode=ctx.mode,
            code=refusal.code.value if refusal is not None else None,
            rule=refusal.rule if refusal is not None else None,
            message=refusal.message if refusal is not None else None,
            files=effects.files,
            impact=effects.impact,
            duration_ms=round((time.perf_counter() - ctx.started) * 1000, 3),
            detail=effects.detail,
            logic_version=ctx.logic_version,
            turn=ctx.origin.turn,
            task_id=ctx.origin.task_id,
        )
        reservation, recorder = ctx.reservation, effects.recorder
        if recorder is not None and recorder.records:
            recorder.flush(effects.writes, action_id=ctx.action_id, decision_id=draft.decision_id)

        # Settled after the audit append (dying in between leaves the call in flight, counted in full until
        # reclaimed), and even if it failed: what the call did still counts, and its slot is freed.
        settle = (
            None
            if reservation is None
            else partial(self._limits.settle, reservation, effects.impact, failed=failed, cancelled=cancelled)
        )
        # A read that changed nothing: its event may wait for the next sync and commit (the design's durability:
        # a mutating call's event is durable before its reply, a read's is journaled before it). So may a call the
        # kill switch refused before it ran: it changed nothing either, and its refusal is what a kill waits for.
        stopped = isinstance(refusal, KillSwitchEngaged)
        lazy = (not ctx.mutating or stopped) and not effects.writes.statements
        writer = self._writer
        later = self._after_reply.flushed and not cancelled
        try:
            if cancelled:
                # Shielded: a cancelled task's awaits are cancelled again (anyio) and the call must be recorded
                # before the cancellation goes on; the event loop serves other calls meanwhile.
                shielded: Appended | None = None
                with anyio.CancelScope(shield=True):
                    shielded = await writer.append_now(draft, writes=effects.writes)
                assert shielded is not None  # (a shielded scope is never cancelled: it swallows nothing)
                event = shielded
            elif not later:  # (no transport that says when a reply is written: everything before returning)
                event = await writer.append_now(draft, writes=effects.writes)
            else:
                writes = effects.writes if effects.writes.statements else None
                event = await writer.append(
                    draft, writes=writes, durable=not lazy, lazy=lazy, alone=self.in_flight <= 1
                )
        except BaseException:
            if settle is not None:
                settle()
            writer.finish_soon(lazy=False)  # (it may be journaled: the sync or an owed commit failed)
            raise
        if settle is not None:
            settle()
        if later:
            # The commit and the anchor follow the reply (a read's a little later, shared with the next ones).
            self._after_reply.defer(partial(writer.finish_soon, lazy=lazy))
            self._after_reply.soon()
        return event


async def _end(ctx: CallContext) -> ToolOutput:
    raise AssertionError(f"the guard chain ended without running {ctx.tool}: its last guard must not call on")


class Pipeline:
    """Runs the guards around a call and turns the outcome into an audited result."""

    def __init__(self, guards: Sequence[Guard], auditor: CallAuditor) -> None:
        self._auditor = auditor
        # Each guard bound to the stage after it, once (a C partial: no Python frame per stage).
        self._run: Next = _end
        for guard in reversed(guards):
            self._run = partial(guard, call_next=self._run)

    async def refuse(self, ctx: CallContext, refusal: ToolRefused) -> CallOutcome:
        """Refuse a call before any guard runs (the kill switch's short path, `Body.refuse_killed`): audited as the
        guard's refusal would be, and answered the same."""
        event = await self._auditor.record(ctx, outcome="refused", refusal=refusal, failed=False)
        return refused_outcome(refusal, event.id)

    async def call(self, ctx: CallContext) -> CallOutcome:
        auditor = self._auditor
        auditor.in_flight += 1
        try:
            return await self._call(ctx, auditor)
        finally:
            auditor.in_flight -= 1

    async def _call(self, ctx: CallContext, auditor: CallAuditor) -> CallOutcome:
        refusal: ToolRefused | None = None
        failed = False
        result: ToolOutput | None = None
        try:
            result = await self._run(ctx)
        except ToolRefused as exc:
            refusal = exc
        except OSError as exc:
            failed = True
            refusal = ToolRefused(
                f"the operating system refused: {exc.strerror or exc}", code=RefusalCode.IO_ERROR, rule=Rule.FS
            )
        except Exception as exc:
            logger.exception("internal error in %s", ctx.tool)
            failed = True
            refusal = ToolRefused(
                f"internal error; the call was refused ({type(exc).__name__})",
                code=RefusalCode.INTERNAL_ERROR,
                rule=Rule.FAIL_CLOSED,
            )
        except BaseException:
            # Cancelled (the client gave up, or the body is stopping): what the call did so far is still
            # audited and its budget settled (synchronously) before the cancellation goes on.
            cancelled = ToolRefused(
                "the call was cancelled before it finished", code=RefusalCode.CANCELLED, rule=Rule.CANCELLED
            )
            try:
                await auditor.record(ctx, outcome="failed", refusal=cancelled, failed=False, cancelled=True)
            except Exception:
                logger.exception("could not record the cancelled call %s", ctx.action_id)  # the cancellation goes on
            raise
        outcome: Outcome
        if refusal is not None:
            outcome = "failed" if failed else "refused"
        else:
            outcome = "shadow" if ctx.mode == "shadow" else "ok"
        event = await auditor.record(ctx, outcome=outcome, refusal=refusal, failed=failed)
        if isinstance(refusal, RefusedWithResult):
            data = refusal.result.model_dump(mode="json")
            return CallOutcome(
                is_error=True,
                structured=data,
                text=f"Refused [{refusal.code.value}] {refusal.message} (action {event.id})\n" + _json.plain(data),
                action_id=event.id,
            )
        if refusal is not None:
            return refused_outcome(refusal, event.id)
        assert result is not None and ctx.spec is not None
        data = result if isinstance(result, dict) else result.model_dump(mode="json")
        text = ctx.spec.text(result) if ctx.spec.text is not None else _json.plain(data)
        return CallOutcome(is_error=False, structured=data, text=text, action_id=event.id)
