"""A `tools/call` answered as the stdio transport reads it, never dispatched through the SDK's request machinery.

For each request the SDK builds a dispatch context, a request session and context, the middleware chain, validates the
params twice (its surface model, then the typed one), builds the result as a model, dumps it, and validates and dumps it
again through the version's surface: a `list_directory` call's server-side CPU was mostly that, not the body's own work
(see README, #22). Here a well-formed call is served directly: `Body.call_tool` runs in a task of its own (calls stay
concurrent, as the SDK runs them) and its reply, the exact `CallToolResult` the SDK would send for the session's version
(built as a plain dict), goes out on the SDK's own write stream, in order with its other messages. A call the kill
switch refuses is answered on the read loop itself, without a task (`Body.refuse_killed`: audited as the guard would,
journaled before the reply), so a kill landing on many bodies costs each refusal no more than that.

What the SDK does around a request is kept: `notifications/cancelled` for a call served here cancels it and no reply is
written (the SDK's "interrupt" mode); a handler's exception is the SDK's error reply (`handler_exception_to_error_data`,
else code 0 and its text); when the client closes the wire, calls still running are cancelled and answered "Connection
closed", as the SDK's dispatcher does at end of stream. Durability is the body's: `call_tool` returns a mutating call's
outcome once its event is durable, and what it leaves for after the reply runs when the wire says it was flushed.

Never on a connection whose first request carried the 2026-07-28 envelope (that era has no handshake; the SDK serves
and refuses its requests), nor a call carrying that envelope on a handshake connection (the SDK refuses it); only once
the session is initialized (before that the SDK answers, or refuses, every request, but a `tools/call` before any
`initialize`: answered here with -32600 saying so, where the SDK's -32602 said nothing of why) with a protocol version
whose tool result the reply is exactly (`_VERSIONS`: the SDK shapes a result to the version), only for a call whose
params are exactly what the SDK would accept here (a string `name`, an object or no `arguments`, an object or no `_meta`
without a progress token, nothing else: the SDK's progress channel and task-augmented calls are the SDK's), and
(`calls`) only while no middleware is installed (a tracer's span per request is the SDK's); anything else goes to the
SDK as before, and its error for a malformed call is the one it always sent.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import anyio
import anyio.abc
import mcp_types as types
from mcp.shared.dispatcher import coerce_request_id
from mcp.shared.jsonrpc_dispatcher import cancelled_request_id_from_params, handler_exception_to_error_data
from mcp.shared.message import SessionMessage
from pydantic import ValidationError

from .killswitch import KillSwitch
from .pipeline import CallOutcome

logger = logging.getLogger(__name__)

_VERSIONS = frozenset({"2025-06-18", "2025-11-25"})
"""The handshake versions a reply is built for here (a result with `structuredContent`, nothing more)."""

_PARAMS = frozenset({"name", "arguments", "_meta"})

_NOT_INITIALIZED = types.ErrorData(
    code=types.INVALID_REQUEST,
    message="tools/call before initialize: the session is not initialized (send initialize, then "
    "notifications/initialized); nothing was run",
)

_LATEST_KEPT = 4096
"""How many request ids whose latest request was served here are remembered (`_latest_here`), the oldest dropped
first: a session's ids are not kept for ever."""

_SHUTDOWN_WRITE_S = 10.0
"""How long the answers still owed as the wire closes may take to be handed to the write stream: a bound for a wire
that takes nothing more (a client that closed stdin and reads no more), never for one that is slow. Queued behind the
replies of a burst on a loaded machine, 2 s lost answers (review 20)."""


def _enveloped(params: Mapping[str, Any] | None) -> bool:
    """Whether a request carries the 2026-07-28 envelope (the SDK's test for the era its first request opens)."""
    meta = params.get("_meta") if params else None
    return isinstance(meta, dict) and types.PROTOCOL_VERSION_META_KEY in meta


class _Replies(Protocol):
    """Where the SDK's messages go out (its write stream)."""

    async def send(self, item: SessionMessage, /) -> None: ...


class ServedTools(Protocol):
    """What serves the calls: the `Body` (or, in the benches, the same tools with no guard at all)."""

    @property
    def kill_switch(self) -> KillSwitch: ...

    async def call_tool(
        self,
        name: str,
        arguments: dict[str, Any] | None,
        *,
        client: str | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> CallOutcome: ...

    async def refuse_killed(
        self,
        name: str,
        arguments: dict[str, Any] | None,
        *,
        client: str | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> CallOutcome | None: ...


@dataclass(eq=False)
class _InFlight:
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    cancel_requested: bool = False
    answering: bool = False
    """Its call has returned: what is left is handing its answer to the write stream."""
    answer: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    """Around the call and its answer both."""


def call_result(outcome: CallOutcome) -> dict[str, Any]:
    """The `CallToolResult` the SDK sends for `_VERSIONS` (its surface keeps these three fields), as a plain dict, its
    keys in the order the SDK writes them (its surface models' fields are declared by name)."""
    return {
        "content": [{"text": outcome.text, "type": "text"}],
        "isError": outcome.is_error,
        "structuredContent": outcome.structured,
    }


class DirectCalls:
    """Serves the tool calls of one stdio session that need nothing of the SDK's (`_Recovering` asks it); entered as
    an async context (its calls' task group) around the SDK's `run`."""

    def __init__(self, body: ServedTools, write_stream: _Replies, *, calls: bool = True) -> None:
        self._body = body
        self._write = write_stream
        self._calls = calls
        """Whether calls other than the kill's refusals are served here (False: the SDK's middleware is wanted)."""
        self._client: str | None = None
        """The client's name from an `initialize` the SDK accepts (whatever its version); None: none seen yet."""
        self._opened = False
        """A request has been seen: the connection's era is decided (`note`)."""
        self._modern = False
        """Opened in the 2026-07-28 envelope: nothing is served here, `initialize` is the SDK's to refuse."""
        self._versioned = False
        self._initialized = False
        """Initialized with one of `_VERSIONS`: the direct path is open."""
        self._in_flight: dict[types.RequestId, _InFlight] = {}
        """The calls running here by request id, for `notifications/cancelled` (a duplicate id: the later call)."""
        self._latest_here: OrderedDict[types.RequestId, None] = OrderedDict()
        """Ids whose latest request was served here, running or done (the last `_LATEST_KEPT`): a cancellation of one
        is never the SDK's, even once the call ended. The SDK's table keeps an id's latest request and drops it when
        that ends; an earlier request it still serves under the same id is not what the client cancels."""
        self._running: set[_InFlight] = set()
        self._tasks: anyio.abc.TaskGroup | None = None
        self._idle = anyio.Event()
        self._idle.set()

    async def __aenter__(self) -> DirectCalls:
        self._tasks = anyio.create_task_group()
        await self._tasks.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        tasks, self._tasks = self._tasks, None
        assert tasks is not None
        tasks.cancel_scope.cancel()
        return await tasks.__aexit__(*exc_info)

    def note(self, message: object) -> bool:
        """Follow the session, from every message the SDK would be given: the protocol era its first request opens (a
        connection opened in the 2026-07-28 envelope has no handshake: nothing of it is served here), the client's
        name and version from `initialize`, then `notifications/initialized`; a `notifications/cancelled` for a call
        served here; and a request the SDK takes under the id of a call served here, which takes that id's
        cancellation over, as a reused id does in the SDK's table. True: the message was for a call served here (a
        cancellation), and is not the SDK's: a call the SDK holds under the same id, taken before this one reused it,
        is not cancelled with it (the SDK's table keeps the latest request of an id, as `_in_flight` does)."""
        if isinstance(message, types.JSONRPCNotification):
            if message.method == "notifications/initialized":
                self._initialized = self._versioned
            elif message.method == "notifications/cancelled":
                request_id = cancelled_request_id_from_params(message.params)
                if request_id is None:
                    return False
                key = coerce_request_id(request_id)
                call = self._in_flight.get(key)
                if call is not None:
                    call.cancel_requested = True
                    call.scope.cancel()
                return key in self._latest_here
        elif isinstance(message, types.JSONRPCRequest):
            if not self._opened:  # (the SDK's rule: the first request decides the era, for good)
                self._opened = True
                self._modern = message.method != "initialize" and _enveloped(message.params)
            key = coerce_request_id(message.id)
            self._in_flight.pop(key, None)
            self._latest_here.pop(key, None)
            if message.method == "initialize" and not self._modern:
                try:
                    init = types.InitializeRequestParams.model_validate(message.params or {}, by_name=False)
                except ValidationError:
                    return False  # (the SDK refuses it and keeps the session as it was)
                self._client = init.client_info.name
                self._versioned = init.protocol_version in _VERSIONS
                self._initialized = self._initialized and self._versioned  # (the SDK's session takes the new version)
        return False

    async def answered(self, request: types.JSONRPCRequest) -> bool:
        """Whether `request` (a `tools/call`) is served here (answered, or its task started); False: the SDK's."""
        if not self._initialized:
            modern = self._modern if self._opened else _enveloped(request.params)  # (`note` has not seen it yet)
            if modern or self._client is not None:
                return False  # (the SDK's: its era's rules, or a session between initialize and initialized)
            # Before any `initialize`, the SDK's answer is -32602 "Invalid request parameters" with nothing to say why.
            await self._send(types.JSONRPCError(jsonrpc="2.0", id=request.id, error=_NOT_INITIALIZED))
            return True
        params = request.params or {}
        name, arguments, meta = params.get("name"), params.get("arguments"), params.get("_meta")
        if not isinstance(name, str) or not (arguments is None or isinstance(arguments, dict)):
            return False  # (the SDK says what is wrong with the request)
        if meta is not None and (
            not isinstance(meta, dict) or "progressToken" in meta or types.PROTOCOL_VERSION_META_KEY in meta
        ):
            return False  # (the SDK's progress channel; the 2026-07-28 envelope, which it refuses on this connection)
        if not _PARAMS.issuperset(params):
            return False  # (`task`, or a field of a later version: the SDK's to read)
        arguments = cast("dict[str, Any] | None", arguments)
        meta = cast("dict[str, Any] | None", meta)
        key = coerce_request_id(request.id)
        if self._engaged() and await self._refused(request, name, arguments, meta):
            self._took(key)
            return True
        if not self._calls or self._tasks is None:
            return False
        call = _InFlight()
        self._in_flight[key] = call  # (a duplicate id overwrites, as the SDK's table does)
        self._took(key)
        if not self._running:
            self._idle = anyio.Event()
        self._running.add(call)
        self._tasks.start_soon(self._serve, request.id, key, call, name, arguments, meta)
        return True

    def _took(self, key: types.RequestId) -> None:
        """Request id `key` is this side's now (its latest request served here), for `note`'s cancellations."""
        latest = self._latest_here
        latest[key] = None
        latest.move_to_end(key)
        if len(latest) > _LATEST_KEPT:
            latest.popitem(last=False)

    def _engaged(self) -> bool:
        """Whether the kill switch is engaged; False when its state cannot be read here: the whole call then meets the
        same in the guard, which refuses it (fail closed, audited), rather than the transport's read loop raising."""
        try:
            return self._body.kill_switch.state().engaged
        except Exception:
            logger.exception("the kill switch's state could not be read on the read loop; the guard reads it again")
            return False

    async def _refused(
        self, request: types.JSONRPCRequest, name: str, arguments: dict[str, Any] | None, meta: dict[str, Any] | None
    ) -> bool:
        """The kill switch's refusal, answered on the read loop; False when `refuse_killed` declines the call."""
        try:
            outcome = await self._body.refuse_killed(name, arguments, client=self._client, meta=meta)
        except Exception:  # (the refusal could not be audited: `call_tool`'s path meets the same and answers)
            logger.exception("the kill switch's short path could not refuse %s; the full call serves it", name)
            return False
        if outcome is None:
            return False
        reply = types.JSONRPCResponse(jsonrpc="2.0", id=request.id, result=call_result(outcome))
        await self._write.send(SessionMessage(reply))
        return True

    async def _serve(
        self,
        request_id: types.RequestId,
        key: types.RequestId,
        call: _InFlight,
        name: str,
        arguments: dict[str, Any] | None,
        meta: dict[str, Any] | None,
    ) -> None:
        answer_started = False
        try:
            with call.answer:  # (`closing` gives up on a wire that takes nothing more)
                try:
                    with call.scope:
                        try:
                            outcome = await self._body.call_tool(name, arguments, client=self._client, meta=meta)
                        finally:
                            self._finished(key, call)
                        if not call.cancel_requested:
                            answer_started = True
                            reply = types.JSONRPCResponse(jsonrpc="2.0", id=request_id, result=call_result(outcome))
                            await self._send(reply)
                except anyio.get_cancelled_exc_class():
                    if not answer_started and not call.cancel_requested:
                        await self._closed(request_id)
                    raise
                except Exception as exc:  # (the SDK's one boundary from a handler's exception to the wire, kept)
                    error = handler_exception_to_error_data(exc)
                    if error is None:
                        logger.exception("handler for 'tools/call' raised")
                        error = types.ErrorData(code=0, message=str(exc))
                    if not call.cancel_requested:
                        await self._send(types.JSONRPCError(jsonrpc="2.0", id=request_id, error=error))
                else:
                    if call.scope.cancelled_caught and not answer_started and not call.cancel_requested:
                        await self._closed(request_id)  # (`closing`: the wire closed under the call)
        finally:
            self._left(call)  # (its answer handed to the write stream, or given up: `closing` may go on)

    async def _closed(self, request_id: types.RequestId) -> None:
        """The SDK's answer to a request still running as the wire closes (shielded: the call is being cancelled)."""
        closed = types.ErrorData(code=types.CONNECTION_CLOSED, message="Connection closed")
        with anyio.move_on_after(_SHUTDOWN_WRITE_S, shield=True):
            await self._send(types.JSONRPCError(jsonrpc="2.0", id=request_id, error=closed))

    def _finished(self, key: types.RequestId, call: _InFlight) -> None:
        """The call returned (or raised): no cancellation reaches it now, and the wire closing leaves its answer be."""
        if self._in_flight.get(key) is call:
            del self._in_flight[key]
        call.answering = True

    def _left(self, call: _InFlight) -> None:
        self._running.discard(call)
        if not self._running:
            self._idle.set()

    async def _send(self, message: types.JSONRPCResponse | types.JSONRPCError) -> None:
        try:
            await self._write.send(SessionMessage(message))
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            logger.debug("dropped the reply to %r: the write stream is closed", message.id)

    async def closing(self) -> None:
        """The client closed the wire: calls still running here are cancelled (each answered "Connection closed"),
        as the SDK cancels its own at end of stream, and every answer owed (a finished call's, a "Connection closed")
        is handed to the write stream before this returns and the SDK closes it; one the wire will not take within
        `_SHUTDOWN_WRITE_S` is dropped, as the SDK drops its own."""
        for call in self._running:
            if not call.answering:
                call.scope.cancel()
        with anyio.move_on_after(_SHUTDOWN_WRITE_S):
            await self._idle.wait()
        for call in self._running:  # (a wire that takes nothing more: what is left unsent is dropped)
            call.answer.cancel()
        await self._idle.wait()
