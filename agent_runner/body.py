"""The runner's hands: a `swarm body` it starts for a task and talks to as an MCP client over stdio.

The runner has no other way to touch files, run commands or reach the network: every tool call, the model's and
its own (the acceptance check, an approval request), goes through the body's guard and is audited there. The
model's calls carry MCP request `_meta` saying so (`swarm/origin: model`) with the turn that led to them, so the
body refuses a model call outside the agent's tool subset, and `swarm audit explain` shows the model's reasoning.

    launch = BodyLaunch(argv=[...], env={...})
    async with open_body(launch) as body:
        tools = body.tools                                  # the body's tools/list, as ToolDefinitions
        reply = await body.call("read_text_file", {...}, turn=TurnMeta(step=1, text="…", tool_call_id="c1"))
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp_types import TextContent

from .conversation import ToolDefinition
from .exceptions import RunnerError

ORIGIN_KEY = "swarm/origin"
TURN_KEY = "swarm/turn"
ENV_KEY = "swarm/env"
FRESH_ENV_KEY = "swarm/fresh_env"
TASK_KEY = "swarm/task"
"""Names the task of the runner's own call (its acceptance re-run), kept on the body's audit event: the brain takes
that re-run as the evidence of that task only."""
TURN_TEXT_CAP = 4096
"""The model's reasoning sent with a call is cut to this many characters (the body caps it too)."""


class BodyFailed(RunnerError):
    """The body could not be started, or stopped answering: the task cannot go on through it."""


@dataclass(kw_only=True, frozen=True)
class BodyLaunch:
    """How to start the agent's body on a workspace: the command line and its whole environment."""

    argv: Sequence[str]
    env: Mapping[str, str]


@dataclass(kw_only=True, frozen=True)
class TurnMeta:
    """The model turn a tool call comes from, sent in the call's `_meta` and kept on its audit event."""

    step: int
    text: str
    tool_call_id: str

    def as_meta(self) -> dict[str, Any]:
        return {
            ORIGIN_KEY: "model",
            TURN_KEY: {"step": self.step, "text": self.text[:TURN_TEXT_CAP], "tool_call_id": self.tool_call_id},
        }


@dataclass(kw_only=True, frozen=True)
class EnvMeta:
    """The env dirs the runner's own `run_command` runs with, in its `_meta`: the task's (`task`, which its model's
    commands write) or the check's own (`check`, which no model command sees; `fresh`: emptied first)."""

    env: Literal["task", "check"]
    fresh: bool = False

    def as_meta(self) -> dict[str, Any]:
        return {ENV_KEY: self.env, FRESH_ENV_KEY: self.fresh}


@dataclass(kw_only=True, frozen=True)
class ToolReply:
    """What a tool call came back with: its text for the model, and the structured content for the runner."""

    text: str
    is_error: bool
    structured: Mapping[str, Any] = field(default_factory=dict[str, Any])

    @property
    def refusal(self) -> Mapping[str, Any]:
        """The refusal's structured content (`{code, rule, message, action_id, ask?}`; a refused command's result
        carries it as `refusal`), or empty."""
        if not self.is_error:
            return {}
        nested = self.structured.get("refusal")
        if isinstance(nested, Mapping):
            return cast(Mapping[str, Any], nested)
        return self.structured

    @property
    def refusal_code(self) -> str | None:
        """The refusal's `code` when the body refused the call."""
        code = self.refusal.get("code")
        return code if isinstance(code, str) else None

    @property
    def action_id(self) -> str | None:
        found = self.structured.get("action_id")
        return found if isinstance(found, str) else None


class BodySession:
    """An open MCP session with one body process."""

    def __init__(self, client: Client, tools: Sequence[ToolDefinition]) -> None:
        self._client = client
        self.tools = tuple(tools)

    def offers(self, name: str) -> bool:
        return any(tool.name == name for tool in self.tools)

    async def call(
        self,
        name: str,
        arguments: Mapping[str, Any],
        *,
        turn: TurnMeta | None = None,
        timeout_s: float | None = None,
        env: EnvMeta | None = None,
        task_id: str | None = None,
    ) -> ToolReply:
        """Call `name`; with `turn` as the model's call (the body checks it against the agent's tool subset),
        without as the runner's own (`env`: the env dirs the runner's own command runs with; `task_id`: the task it
        is for, kept on the audit event). A refusal is a reply (`is_error`), not an exception."""
        if turn is not None and (env is not None or task_id is not None):
            raise ValueError("a model's call runs with the task's env dirs for the task at hand: it names neither")
        meta: dict[str, Any] | None = None
        if turn is not None:
            meta = turn.as_meta()
        elif env is not None or task_id is not None:
            meta = {
                **(env.as_meta() if env is not None else {}),
                **({ORIGIN_KEY: "runner", TASK_KEY: task_id} if task_id is not None else {}),
            }
        try:
            result = await self._client.call_tool(
                name,
                dict(arguments),
                read_timeout_seconds=timeout_s,
                meta=meta,  # pyright: ignore[reportArgumentType]
            )
        except Exception as exc:
            raise BodyFailed(f"the body did not answer {name}: {exc}") from exc
        texts = [block.text for block in result.content if isinstance(block, TextContent)]
        raw = result.structured_content
        structured: dict[str, Any] = dict(cast(dict[str, Any], raw)) if isinstance(raw, dict) else {}
        text = "\n".join(texts) or json.dumps(structured)
        return ToolReply(text=text, is_error=bool(result.is_error), structured=structured)


@asynccontextmanager
async def open_body(launch: BodyLaunch) -> AsyncGenerator[BodySession]:
    """Start the body, list its tools, and stop it (closing its stdin: a clean exit) when the block ends."""
    params = StdioServerParameters(command=launch.argv[0], args=list(launch.argv[1:]), env=dict(launch.env))
    try:
        client = Client(params)
        await client.__aenter__()
    except Exception as exc:
        raise BodyFailed(f"the body did not start ({' '.join(launch.argv[:4])} …): {exc}") from exc
    try:
        listed = await client.list_tools()
        tools = [
            ToolDefinition.from_mcp(
                {"name": tool.name, "description": tool.description, "inputSchema": tool.input_schema}
            )
            for tool in listed.tools
        ]
        yield BodySession(client, tools)
    finally:
        await client.__aexit__(None, None, None)
