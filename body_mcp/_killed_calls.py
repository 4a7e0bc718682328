"""A `tools/call` that arrives while the kill switch is engaged, answered before the SDK dispatches it.

While the kill is engaged every mutating call is refused by the first guard, yet each still cost its body the SDK's
whole request path (a task, a request context, the params and the result built as models and dumped): about a third of a
refused call's CPU (1.18 -> 0.77 ms, medians, measured alternating). When a kill lands on many bodies at once that CPU
is what the other bodies' refusals wait for. Here the call is answered as the stdio transport reads it:
`Body.refuse_killed` audits the refusal as the guard would (its rationale, the rule, journaled before the reply) and the
reply, the `CallToolResult` the SDK would send (built as a plain dict), goes out on the SDK's own write stream (in order
with its other messages).

Only once the session is initialized (before that the SDK answers, or refuses, every request) with a protocol version
whose tool result the reply is exactly (`_VERSIONS`: the SDK shapes a result to the version), only for a call with no
progress token (the SDK's progress channel is not built here) and only while the kill is engaged; anything else goes to
the SDK as before, and so does a call the short path declines (`refuse_killed` returns None).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Protocol, cast

import mcp_types as types
from mcp.shared.message import SessionMessage

from .body import Body

logger = logging.getLogger(__name__)

_VERSIONS = frozenset({"2025-06-18", "2025-11-25"})
"""The handshake versions a refusal's reply is built for here (a result with `structuredContent`, nothing more)."""


class _Replies(Protocol):
    """Where the SDK's messages go out (its write stream)."""

    async def send(self, item: SessionMessage, /) -> None: ...


class KilledCalls:
    """Answers the tool calls the kill switch refuses, for one stdio session (`_Recovering` asks it)."""

    def __init__(self, body: Body, write_stream: _Replies) -> None:
        self._body = body
        self._write = write_stream
        self._client: str | None = None
        self._versioned = False
        self._initialized = False
        """Initialized with one of `_VERSIONS`: the short path is open."""

    def note(self, message: object) -> None:
        """Follow the session's handshake: the client's name from `initialize`, then `notifications/initialized`."""
        if isinstance(message, types.JSONRPCRequest) and message.method == "initialize":
            params = message.params or {}
            info = params.get("clientInfo")
            name = cast("Mapping[str, Any]", info).get("name") if isinstance(info, Mapping) else None
            self._client = name if isinstance(name, str) else None
            self._versioned = params.get("protocolVersion") in _VERSIONS
        elif isinstance(message, types.JSONRPCNotification) and message.method == "notifications/initialized":
            self._initialized = self._versioned

    async def answered(self, request: types.JSONRPCRequest) -> bool:
        """Whether `request` (a `tools/call`) was refused and answered here; False: the SDK is to serve it."""
        if not self._initialized or not self._body.kill_switch.state().engaged:
            return False
        params = request.params or {}
        name, arguments, meta = params.get("name"), params.get("arguments"), params.get("_meta")
        if not isinstance(name, str) or not (arguments is None or isinstance(arguments, dict)):
            return False  # (the SDK says what is wrong with the request)
        if meta is not None and (not isinstance(meta, dict) or "progressToken" in meta):
            return False
        try:
            outcome = await self._body.refuse_killed(
                name,
                cast("dict[str, Any] | None", arguments),
                client=self._client,
                meta=cast("dict[str, Any] | None", meta),
            )
        except Exception:  # (the refusal could not be audited: the SDK's path meets the same and answers, as before)
            logger.exception("the kill switch's short path could not refuse %s; the SDK serves it", name)
            return False
        if outcome is None:
            return False
        # What the SDK sends for these versions' `CallToolResult` (its sieve keeps these three fields), built as is.
        result = {
            "content": [{"type": "text", "text": outcome.text}],
            "structuredContent": outcome.structured,
            "isError": True,
        }
        reply = types.JSONRPCResponse(jsonrpc="2.0", id=request.id, result=result)
        await self._write.send(SessionMessage(reply))
        return True
