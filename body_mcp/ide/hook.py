"""`swarm hook claude-code|cursor`: read one event on stdin, decide, audit, answer on stdout.

These IDEs let a call through when a hook crashes, hangs or prints nonsense, so this hook
must always answer, in time, in the IDE's format: the work runs in a worker thread and the
caller answers "deny" itself if the worker has not answered within the budget. Any error,
an audit that cannot be written included, becomes a deny. Exactly one answer is printed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol, TextIO

from shared_protocol.refusals import Rule

from ..audit import EventDraft, new_action_id, redact_arguments
from ..exceptions import SwarmError, UserError
from .answers import render
from .decide import Decision, HookCode, PathGuard, decide, denied_for_error
from .events import Attempt, Ide, parse_event
from .exceptions import MalformedEvent

if TYPE_CHECKING:
    from ..admin import Admin
    from ..settings import BodySettings

logger = logging.getLogger(__name__)

MAX_EVENT_BYTES = 32 * 1024 * 1024
"""A `Write` event carries the whole file; beyond this the event is refused, not truncated."""
DEFAULT_BUDGET_S = 4.0
"""Well inside the 10 s timeout `swarm init` gives the hook, leaving room for interpreter start-up."""

# Built-in tools name file contents differently from the body (Claude Code's Edit, Cursor's edits);
# the trail keeps their hash and size, never the text.
_CONTENT_KEYS = frozenset({"content", "old_string", "new_string", "new_source", "contents", "code_edit", "command"})
_KEEP_COMMANDS = 4096


class AuditSink(Protocol):
    """Where hook decisions are recorded: the workspace's audit trail, or a list in tests."""

    def record(self, attempt: Attempt, decision: Decision, *, workspace: Path | None) -> str:
        """Append one event; return its action id. Raises when it cannot (the hook then denies)."""
        ...


@dataclass(kw_only=True)
class MemoryAuditSink:
    """An in-memory sink: what would have been audited, and a switch to make auditing fail."""

    records: list[tuple[Attempt, Decision]] = field(default_factory=list[tuple[Attempt, Decision]])
    fail: bool = False

    def record(self, attempt: Attempt, decision: Decision, *, workspace: Path | None) -> str:
        if self.fail:
            raise OSError("audit store unavailable")
        self.records.append((attempt, decision))
        return f"act_mem{len(self.records)}"


class BodyAuditSink:
    """Records in the workspace's own audit trail, through the body (the same chain as its tool calls).

    With `finish_later` (the CLI's hook), `record` returns once the event is durable in the trail's journal (one
    `fdatasync`), and its commit and anchor wait for `close()`, which the CLI calls after the answer is out: as a
    serving body commits a call's event after its reply. Should the process die first, the next store to open the
    trail commits it from the journal."""

    def __init__(self, settings_for: Callable[[Path], BodySettings], *, finish_later: bool = False) -> None:
        self._settings_for = settings_for
        self._finish_later = finish_later
        self._open: list[Admin] = []

    def record(self, attempt: Attempt, decision: Decision, *, workspace: Path | None) -> str:
        if workspace is None:
            raise UserError("no workspace: pass --workspace, or run the hook from the IDE")
        from ..admin import Admin

        admin = Admin.open(self._settings_for(workspace), by="swarm:hook")
        if not self._finish_later:
            with admin:
                return admin.audit.append(audit_draft(attempt, decision, default_session=admin.session)).id
        try:
            event = admin.audit.append(audit_draft(attempt, decision, default_session=admin.session), finish_later=True)
            admin.audit.sync_journal(event.seq)
        except BaseException:
            admin.close()
            raise
        self._open.append(admin)
        return event.id

    def close(self) -> None:
        """Commit and anchor what `record` left in the journal, and close the trail; raises if that failed (the
        events stay in the journal)."""
        while self._open:
            admin = self._open.pop(0)
            try:
                admin.audit.finish()
            finally:
                admin.close()


def redact_builtin_input(value: Any) -> Any:
    """Like the body's `redact_arguments`, for built-in tools' argument names too."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():  # pyright: ignore[reportUnknownVariableType]
            if key in _CONTENT_KEYS and isinstance(item, str):
                if key == "command" and len(item) <= _KEEP_COMMANDS:
                    out[key] = item  # a command is what was attempted; kept unless huge
                else:
                    data = item.encode()
                    out[str(key)] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}  # pyright: ignore[reportUnknownArgumentType]
            else:
                out[str(key)] = redact_builtin_input(item)  # pyright: ignore[reportUnknownArgumentType]
        return redact_arguments(out)
    if isinstance(value, list):
        return [redact_builtin_input(item) for item in value]  # pyright: ignore[reportUnknownVariableType]
    return value


def audit_draft(attempt: Attempt, decision: Decision, *, default_session: str) -> EventDraft:
    """The audit event of one hook decision, in the same trail (and shape) as the body's own calls."""
    refused = decision.verdict == "deny"
    prefix, kind = ("mcp", "MCP") if decision.code == HookCode.OTHER_MCP_TOOL else ("builtin", "built-in")
    notable = refused or decision.code == HookCode.BUILTIN_EDIT_OBSERVED
    return EventDraft(
        id=new_action_id(),
        kind="tool_call",
        agent=attempt.ide,
        session=attempt.session or default_session,
        rationale=f"{kind} tool {attempt.tool} via {attempt.ide} hook",
        outcome="refused" if refused else "ok",
        tool=f"{prefix}:{attempt.tool}",
        arguments=redact_builtin_input(attempt.tool_input),
        code=decision.code.value if notable else None,
        rule=Rule.IDE_HOOKS,
        message=decision.reason,
        files=[f for f in decision.files if f],
        detail={"event": attempt.event, "verdict": decision.verdict, "decision": decision.code.value},
    )


@dataclass(kw_only=True)
class HookRuntime:
    """The hook's edges, resolved by the CLI: the workspace flag, the environment, the guard and the sink."""

    ide: Ide
    workspace: Path | None
    env: Mapping[str, str]
    guard_for: Callable[[Path | None], PathGuard]
    sink: AuditSink
    budget_s: float = DEFAULT_BUDGET_S

    def resolve_workspace(self, attempt: Attempt | None) -> Path | None:
        """`--workspace`, else the project directory the IDE names (env, then event)."""
        if self.workspace is not None:
            return self.workspace
        env_key = "CLAUDE_PROJECT_DIR" if self.ide == "claude-code" else "CURSOR_PROJECT_DIR"
        for raw in (self.env.get(env_key), attempt and attempt.workspace_hint, attempt and attempt.cwd):
            if raw:
                return Path(raw).expanduser().absolute()
        return None


def handle(runtime: HookRuntime, raw: bytes) -> dict[str, Any]:
    """Parse, decide, audit and render one event. Never raises: every failure is a deny."""
    attempt: Attempt | None = None
    try:
        if len(raw) > MAX_EVENT_BYTES:
            raise MalformedEvent(f"hook input larger than {MAX_EVENT_BYTES} bytes")
        attempt = parse_event(runtime.ide, raw)
        workspace = runtime.resolve_workspace(attempt)
        decision = decide(attempt, runtime.guard_for(workspace))
    except MalformedEvent as exc:
        decision = Decision(
            verdict="deny", code=HookCode.MALFORMED_EVENT, reason=f"Swarm's hook refused this call: {exc}.", audit=True
        )
        workspace = runtime.resolve_workspace(None)
        attempt = Attempt(ide=runtime.ide, event="?", tool="?", tool_input={"bytes": len(raw)})
    except Exception as exc:  # the top of the hook: whatever went wrong, the call is refused
        logger.exception("hook failed")
        return render(runtime.ide, attempt.event if attempt else None, denied_for_error(HookCode.HOOK_ERROR, repr(exc)))
    if decision.audit:
        try:
            runtime.sink.record(attempt, decision, workspace=workspace)
        except Exception as exc:  # an unaudited call must not go through, whatever broke the audit
            if isinstance(exc, SwarmError):  # (a condition Swarm names, e.g. no workspace: its line, no traceback)
                logger.warning("hook could not audit: %s", exc)
            else:
                logger.exception("hook could not audit")
            if decision.verdict != "deny":
                decision = denied_for_error(HookCode.HOOK_ERROR, f"it could not be audited: {exc}")
    return render(runtime.ide, attempt.event, decision)


@dataclass
class _OneAnswer:
    """Prints exactly one answer, whichever of the worker and the watchdog comes first."""

    out: TextIO
    lock: threading.Lock = field(default_factory=threading.Lock)
    sent: bool = False

    def send(self, answer: dict[str, Any]) -> None:
        with self.lock:
            if self.sent:
                return
            self.sent = True
            self.out.write(json.dumps(answer) + "\n")
            self.out.flush()


def run_hook(runtime: HookRuntime, stdin: BinaryIO, stdout: TextIO) -> bool:
    """Answer the event on `stdin` within the budget. Returns False when the watchdog had to answer
    (the worker may still be blocked: the caller should exit without waiting for it)."""
    answer = _OneAnswer(stdout)

    def work() -> None:
        try:
            raw = stdin.read(MAX_EVENT_BYTES + 1)
            answer.send(handle(runtime, raw))
        except Exception as exc:  # even reading stdin may fail: still answer, and deny
            logger.exception("hook failed")
            answer.send(render(runtime.ide, None, denied_for_error(HookCode.HOOK_ERROR, repr(exc))))

    worker = threading.Thread(target=work, name="swarm-hook", daemon=True)
    worker.start()
    worker.join(runtime.budget_s)
    if worker.is_alive():
        answer.send(
            render(
                runtime.ide,
                None,
                denied_for_error(HookCode.HOOK_TIMEOUT, f"no decision within {runtime.budget_s:g} s"),
            )
        )
        return False
    return True
