"""One task, worked by a model through its body: the tool-calling loop.

    run = TaskRun(task=..., profile=..., workspace=...)
    end = await work(run, provider=..., body=..., spending=..., gate=...)
    # end: Finished (the model stopped calling tools), Failed (a budget, the provider, the body) or Parked

Each step is one model call (reserved and settled through `spending`, cancelled at once when `gate` engages),
then the turn's tool calls, in the model's order, each sent to the body with the turn in its `_meta`. The body
refuses what the agent may not do (a tool outside its subset included) and audits everything; a refusal goes back
to the model as an error result, except the body's kill switch's or failsafe's (`KILLED`): that is the body's state,
not the call's fault, and the call is made again once the gate is released and the body had a moment to hear its
brain (a new body that has not reached its brain yet, or one that has not yet read the resume its runner read).
A call refused for want of approval parks the task: the runner asks for the approval itself (`request_approval`, its
own call) and keeps the run (conversation and held call) until the decision is answered, then replays the held call
with the `decision_id`.

`TaskRun` is the whole state of a task in progress, so a parked task resumes where it stopped, with a new body.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast

import anyio

from shared_protocol import RefusalCode

from .body import BodyFailed, BodySession, ToolReply, TurnMeta
from .conversation import (
    Message,
    ModelRequest,
    ModelTurn,
    ToolCall,
    ToolDefinition,
    ToolResult,
    ToolResultsMessage,
    UserMessage,
)
from .exceptions import BudgetRefused, ProviderError
from .providers import Provider

KILLED = (RefusalCode.KILL_SWITCH_ENGAGED.value, RefusalCode.BRAIN_UNREACHABLE.value)
"""The body's refusals for its kill switch or its failsafe (the brain's kill, a local kill, or its brain not heard)."""
BODY_KILL_RETRY_S = 0.5
"""How long a call the body's kill switch refused waits before it is made again (the body hears its brain itself)."""

WRITE_TOOLS = ("write_file", "edit_file", "create_directory", "move_file", "delete_file")
"""Tools whose `path` (or `destination`) names the file they change: the task's evidence lists them."""


@dataclass(kw_only=True, frozen=True)
class AgentProfile:
    """What the loop needs of an agent's configuration."""

    name: str
    logic_version: str
    system_prompt: str
    tools: tuple[str, ...]
    """The body tools the model is offered (the body enforces the same subset)."""
    max_steps: int
    max_usd_per_task: float
    max_output_tokens: int
    task_timeout_s: float
    confidence_floor: float = 0.70


class Spending(Protocol):
    """The task's wallet, as the loop uses it (`wallet.TaskWallet`)."""

    async def complete(self, provider: Provider, request: ModelRequest) -> ModelTurn:
        """`provider.complete(request)` with each attempt reserved before it and settled after, whatever happens
        (a cancelled call at its reservation); `BudgetRefused` when the money is not there."""
        ...


class Gate(Protocol):
    """The kill switch as the runner sees it (the brain's, or failsafe when the brain is out of reach)."""

    @property
    def engaged(self) -> bool: ...

    def watch(self) -> AbstractContextManager[anyio.CancelScope]:
        """A cancel scope the gate cancels the moment it engages (already cancelled if it is engaged)."""
        ...

    async def released(self) -> None:
        """Return once the gate is released."""
        ...


@dataclass(kw_only=True)
class HeldCall:
    """A model tool call refused for want of approval, kept to be replayed with the decision."""

    call: ToolCall
    step: int
    text: str


@dataclass(kw_only=True)
class TaskRun:
    """A task in progress: its conversation, where it stands, and what it has changed."""

    task_id: str
    title: str
    workspace: Path
    messages: list[Message] = field(default_factory=list[Message])
    steps: int = 0
    files: set[str] = field(default_factory=set[str])
    tool_calls: int = 0
    refusals: int = 0
    held: HeldCall | None = None
    decision_id: str | None = None
    """The decision the task waits for (parked), or waited for last."""
    approved: bool = False
    """Set by the runner when the decision came back approved: the next `work` replays the held call with it."""
    transcript: list[dict[str, Any]] = field(default_factory=list[dict[str, Any]])


@dataclass(kw_only=True, frozen=True)
class Finished:
    """The model stopped calling tools: its last words are the summary (verification decides success)."""

    summary: str


@dataclass(kw_only=True, frozen=True)
class Failed:
    reason: str


@dataclass(kw_only=True, frozen=True)
class Parked:
    decision_id: str
    reason: str


LoopEnd = Finished | Failed | Parked

Record = Callable[[dict[str, Any]], Awaitable[None] | None]


def first_message(title: str, description: str, acceptance: str, setup: str = "") -> UserMessage:
    lines = [f"Task: {title}"]
    if description:
        lines += ["", description]
    if acceptance:
        lines += ["", f"It is done when this command exits 0 in the workspace: {acceptance}"]
    if setup:
        lines += [
            "",
            f"The task's environment was built with `{setup}` before you start; it is built again, afresh, from the "
            "files it reads before that check runs.",
        ]
    lines += [
        "",
        "Work through the tools you are given; every call needs a `rationale` saying why. Paths are relative to the "
        "workspace. When the work is done, answer without calling a tool, with a short summary of what you did.",
    ]
    return UserMessage(content="\n".join(lines))


async def work(
    run: TaskRun,
    *,
    profile: AgentProfile,
    provider: Provider,
    body: BodySession,
    spending: Spending,
    gate: Gate,
    ask_approval: Callable[[TaskRun, ToolCall, ToolReply], Awaitable[str | None]],
) -> LoopEnd:
    """Work `run` until the model finishes, a budget ends it, or it parks. The caller bounds the wall clock."""
    tools = tuple(t for t in body.tools if t.name in profile.tools)
    while True:
        if run.approved:
            await _resume_approved(run, body=body)
        if run.steps >= profile.max_steps:
            return Failed(reason=f"step budget used up: {profile.max_steps} model turns without finishing")
        await gate.released()
        request = ModelRequest(
            system=profile.system_prompt,
            messages=tuple(run.messages),
            tools=tools,
            max_output_tokens=profile.max_output_tokens,
        )
        with gate.watch() as scope:
            try:
                turn = await spending.complete(provider, request)
            except BudgetRefused as refused:
                return Failed(reason=f"money budget: {refused}")
            except ProviderError as error:
                return Failed(reason=f"the model call failed: {error}")
        if scope.cancelled_caught:
            # Cut off by the kill switch (or failsafe): the wallet settled the attempt at its reservation; the
            # step is taken again once the gate is released.
            continue
        run.steps += 1
        run.messages.append(turn.as_message())
        run.transcript.append(
            {
                "step": run.steps,
                "content": turn.content,
                "tool_calls": [{"id": c.id, "name": c.name, "arguments": dict(c.arguments)} for c in turn.tool_calls],
                "usage": None if turn.usage is None else vars(turn.usage),
            }
        )
        if not turn.tool_calls:
            return Finished(summary=turn.content.strip() or "(the model gave no summary)")
        results: list[ToolResult] = []
        parked: Parked | None = None
        for call in turn.tool_calls:
            if parked is not None:
                results.append(
                    ToolResult(call_id=call.id, content="not run: the task waits for approval", is_error=True)
                )
                continue
            meta = TurnMeta(step=run.steps, text=turn.content, tool_call_id=call.id)
            reply = await _call(body, call, meta)
            while reply.refusal_code in KILLED:
                # Shown to the model, this refusal would read as the call's answer and the model would go on
                # without the change (a scripted one does: its task then fails its check). Bounded by the task's
                # wall clock, like any wait for a release.
                await anyio.sleep(BODY_KILL_RETRY_S)
                await gate.released()
                reply = await _call(body, call, meta)
            _note(run, call, reply)
            results.append(ToolResult(call_id=call.id, content=reply.text, is_error=reply.is_error))
            if reply.refusal_code == "approval_required":
                run.held = HeldCall(call=call, step=run.steps, text=turn.content)
                decision_id = await ask_approval(run, call, reply)
                if decision_id is not None:
                    run.decision_id = decision_id
                    parked = Parked(decision_id=decision_id, reason=f"{call.name} needs approval")
            elif call.name == "request_approval" and not reply.is_error:
                state = reply.structured.get("state")
                decision = reply.structured.get("decision_id")
                if state == "pending" and isinstance(decision, str):
                    run.decision_id = decision
                    parked = Parked(decision_id=decision, reason="the model asked for approval")
        run.messages.append(ToolResultsMessage(results=tuple(results)))
        if parked is not None:
            return parked


async def _call(body: BodySession, call: ToolCall, meta: TurnMeta) -> ToolReply:
    try:
        return await body.call(call.name, call.arguments, turn=meta)
    except BodyFailed:
        raise
    except Exception as exc:  # noqa: BLE001 - an argument the SDK cannot send: the model's mistake, shown to it
        return ToolReply(text=f"the call could not be sent: {exc}", is_error=True)


def _note(run: TaskRun, call: ToolCall, reply: ToolReply) -> None:
    run.tool_calls += 1
    if reply.is_error:
        run.refusals += 1
        return
    if call.name in WRITE_TOOLS:
        for key in ("path", "destination", "source"):
            value = call.arguments.get(key)
            if isinstance(value, str):
                run.files.add(value)
    changes = reply.structured.get("changes")
    if isinstance(changes, list) and reply.structured.get("applied", True):
        for change in cast(list[object], changes):
            path = cast(Mapping[str, object], change).get("path") if isinstance(change, Mapping) else None
            if isinstance(path, str):
                run.files.add(path)


async def _resume_approved(run: TaskRun, *, body: BodySession) -> None:
    """The decision came back approved: run the held call with it (if the body held one back), and tell the model."""
    decision_id = run.decision_id
    run.approved = False
    held, run.held = run.held, None
    if held is None:
        run.messages.append(
            UserMessage(
                content=f"Decision {decision_id} was approved: pass decision_id={decision_id} to the call it covers."
            )
        )
        return
    call = ToolCall(id=held.call.id, name=held.call.name, arguments={**held.call.arguments, "decision_id": decision_id})
    reply = await _call(body, call, TurnMeta(step=held.step, text=held.text, tool_call_id=held.call.id))
    _note(run, call, reply)
    outcome = "it was refused again" if reply.is_error else "done"
    run.messages.append(
        UserMessage(
            content=f"Decision {decision_id} was approved, and your held call {held.call.name} was run with it "
            f"({outcome}):\n{reply.text}"
        )
    )


def offered(tools: tuple[ToolDefinition, ...], profile: AgentProfile) -> tuple[str, ...]:
    """The agent's tools the body does not offer (a configuration mistake, said before any money is spent)."""
    names = {t.name for t in tools}
    return tuple(t for t in profile.tools if t not in names)
