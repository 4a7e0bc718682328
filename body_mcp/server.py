"""The body as an MCP server (official SDK, low-level `Server`).

The low-level server hands `tools/call` to us with the raw arguments, before any
validation, so the guard sees every call: one with a missing `rationale` or a wrong type
is refused and audited like any other refusal, not rejected by the SDK unseen.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import gc
import hashlib
import io
import json
import os
import re
import select
import sys
import tempfile
from collections.abc import Callable, Generator, Iterable
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO, cast

import anyio
import mcp_types as types
import pydantic
from mcp.server import Server
from mcp.server._otel import OpenTelemetryMiddleware  # pyright: ignore[reportPrivateUsage]  (no public name)
from mcp.server.context import ServerRequestContext
from mcp.server.stdio import stdio_server
from mcp.shared.message import SessionMessage
from opentelemetry import trace
from pydantic import ValidationError
from pydantic.json_schema import models_json_schema

from shared_protocol import Refusal, ToolArgs, ToolResult

from ._direct_calls import DirectCalls, ServedTools
from ._stdin import claimed_stdin, pipe_fd
from .body import Body
from .origin import flag_unreadable_meta
from .tools._spec import ToolSpec

INSTRUCTIONS = (
    "These tools are your only hands in this workspace. Every call needs a rationale (why you want it); "
    "it is audited. Mutating calls are budgeted, reversible with `undo`, and refused while the kill switch is "
    "engaged. A refusal names its rule and code: read it and adapt rather than retrying the same call."
)


def output_schema(result_model: type[ToolResult]) -> dict[str, Any]:
    """What a tool's structured content can be: its result, or the `Refusal` of an `isError` result.

    Clients built on the TypeScript SDK (the MCP Inspector among them) validate structured content
    against the output schema even when `isError` is true, so a schema naming the result alone would turn
    every refusal into a protocol error the agent never sees. The root stays `type: object`, as the
    specification requires of an output schema.
    """
    refs, definitions = models_json_schema([(result_model, "validation"), (Refusal, "validation")])
    return _inline_refs(
        {
            "type": "object",
            "description": f"{result_model.__name__}; when the call is refused (isError), a Refusal instead.",
            "anyOf": [refs[result_model, "validation"], refs[Refusal, "validation"]],
            **definitions,
        }
    )


_ANNOTATIONS = frozenset({"title", "description", "default", "examples"})


def _inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` with each `$ref` to its `$defs` replaced by the definition itself, except where a model contains
    itself (those keep their `$ref` and definition): the same schema, admitting the same documents.

    Why: the SDK's client validates every successful result against the output schema with `jsonschema`, whose
    `$ref` lookups dominate its cost, one per item of a list (a `list_directory` of 50 entries took 5.2 ms
    through `$ref`s and 1.7 ms inlined, loaded machine); our runner is such a client.
    """
    definitions: dict[str, Any] = schema.get("$defs", {})
    kept: set[str] = set()

    def walk(node: Any, path: frozenset[str]) -> Any:
        if isinstance(node, list):
            return [walk(item, path) for item in cast("list[Any]", node)]
        if not isinstance(node, dict):
            return node
        node = cast("dict[str, Any]", node)
        ref = node.get("$ref")
        name = ref.removeprefix("#/$defs/") if isinstance(ref, str) and ref.startswith("#/$defs/") else None
        if name is None or name not in definitions or name in path:
            if name is not None:
                kept.add(name)
            return {key: walk(value, path) for key, value in node.items() if key != "$defs"}
        inlined = cast("dict[str, Any]", walk(definitions[name], path | {name}))
        siblings = {key: walk(value, path) for key, value in node.items() if key != "$ref"}
        if all(key in _ANNOTATIONS or key not in inlined for key in siblings):
            return {**inlined, **siblings}  # (an annotation sibling overrides one of the definition's: no check)
        return {**siblings, "allOf": [inlined]}

    out = cast("dict[str, Any]", walk(schema, frozenset()))
    pending = set(kept)
    while pending:  # a kept definition may itself refer to others, kept in turn
        name = pending.pop()
        before = set(kept)
        walk(definitions[name], frozenset({name}))
        pending |= kept - before
    if kept:
        out["$defs"] = {name: walk(definitions[name], frozenset({name})) for name in sorted(kept)}
    return out


def tool_definition(spec: ToolSpec) -> types.Tool:
    input_schema, result_schema = _schemas(spec.args_model, spec.result_model)
    return types.Tool(
        name=spec.name,
        description=spec.description,
        input_schema=input_schema,
        output_schema=result_schema,
        annotations=types.ToolAnnotations(
            read_only_hint=spec.read_only,
            destructive_hint=spec.destructive if not spec.read_only else False,
            idempotent_hint=spec.idempotent if not spec.read_only else True,
            open_world_hint=False,
        ),
    )


@functools.cache
def _schemas(args_model: type[ToolArgs], result_model: type[ToolResult]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A tool's input and output schemas, made once a process: pydantic builds them anew each time it is asked (some
    4 ms a tool), and every server lists them all (a test process builds hundreds of in-memory servers)."""
    return args_model.model_json_schema(), output_schema(result_model)


_CACHED_PACKAGES = ("body_mcp", "shared_protocol", "sandbox")


def _code_fingerprint() -> str:
    """What the tool schemas are made from: this code's modules (path, size, modification time: an edit changes
    the last), pydantic's and the SDK's versions, Python's. A few ms of `stat`s."""
    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256(f"{sys.version}|{pydantic.VERSION}|{types.__file__}".encode())
    for package in _CACHED_PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            stat = path.stat()
            digest.update(f"|{path}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    for module in (types, pydantic):
        stat = Path(cast("str", module.__file__)).stat()
        digest.update(f"|{module.__file__}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:32]


def cached_tool_definitions(specs: Iterable[ToolSpec], cache_dir: Path) -> list[types.Tool]:
    """The tools' definitions, read from `cache_dir` when this same code made them before, else made (pydantic's
    JSON schemas: ~160 ms of a body's start) and written there for the next start. A cache that is missing,
    unreadable or names other tools is remade, never an error."""
    specs = list(specs)
    names = [spec.name for spec in specs]
    path = cache_dir / f"tool-definitions-{_code_fingerprint()}.json"
    with contextlib.suppress(OSError, ValueError, ValidationError):
        cached = [types.Tool.model_validate(item) for item in json.loads(path.read_bytes())]
        if [tool.name for tool in cached] == names:
            return cached
    definitions = [tool_definition(spec) for spec in specs]
    with contextlib.suppress(OSError):
        cache_dir.mkdir(parents=True, exist_ok=True)
        for stale in cache_dir.glob("tool-definitions-*.json"):
            stale.unlink(missing_ok=True)
        dumped = [tool.model_dump(mode="json", by_alias=True, exclude_none=True) for tool in definitions]
        with tempfile.NamedTemporaryFile("wb", dir=cache_dir, prefix=".tool-definitions-", delete=False) as tmp:
            tmp.write(json.dumps(dumped).encode())
        os.replace(tmp.name, path)
    return definitions


def build_server(body: Body, definitions: list[types.Tool] | None = None) -> Server[Any]:
    """The server for `body`; `definitions`: its tools' (`cached_tool_definitions`), else made here."""
    if definitions is None:
        definitions = [tool_definition(spec) for spec in body.tools.values()]

    async def list_tools(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=definitions)

    async def call_tool(ctx: ServerRequestContext[Any], params: types.CallToolRequestParams) -> types.CallToolResult:
        client_params = ctx.session.client_params
        client = client_params.client_info.name if client_params is not None else None
        # The SDK sends a progress notification only when the caller asked for one: a progress token on the wire,
        # a callback in process (where no token is visible to us); otherwise reporting is a no-op.
        outcome = await body.call_tool(
            params.name,
            params.arguments,
            client=client,
            progress=ctx.session.report_progress,
            meta=cast("dict[str, Any] | None", params.meta),
        )
        return types.CallToolResult(
            content=[types.TextContent(text=outcome.text)],
            structured_content=outcome.structured,
            is_error=outcome.is_error,
        )

    server = Server(
        "swarm-body",
        version="0.1.0",
        instructions=INSTRUCTIONS,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
    )
    return without_idle_spans(server)


def without_idle_spans(server: Server[Any]) -> Server[Any]:
    """`server` without the SDK's span per message (its `OpenTelemetryMiddleware`) unless something traces this
    process: with no tracer installed the span is a no-op, yet costs every call its attributes, context and span
    objects (and a server with middleware serves no call on the direct path, `DirectCalls`)."""
    if not _tracing():
        server.middleware = [m for m in server.middleware if not isinstance(m, OpenTelemetryMiddleware)]
    return server


def _tracing() -> bool:
    """Whether an OpenTelemetry tracer provider is installed (e.g. by `opentelemetry-instrument`), as the server is
    built."""
    provider = trace.get_tracer_provider()
    return not isinstance(provider, (trace.ProxyTracerProvider, trace.NoOpTracerProvider))


_MAX_DEPTH = 64
_MAX_INT = 2**63


def _tame(value: Any, depth: int = 0, *, text: bool = False) -> Any:
    """What JSON allows and the SDK's parser does not (lone surrogates, huge integers, deep nesting), made into
    values the guard can read and refuse: escaped text (or, with `text`, the text as sent), a string of digits,
    a marker."""
    if isinstance(value, str):
        return value if text else value.encode("utf-8", "surrogatepass").decode("utf-8", "backslashreplace")
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return value
    if isinstance(value, int):
        return value if -_MAX_INT <= value < _MAX_INT else str(value)
    if depth >= _MAX_DEPTH:
        return "<nested too deep>"
    if isinstance(value, list):
        return [_tame(item, depth + 1, text=text) for item in cast("list[Any]", value)]
    if isinstance(value, dict):
        items = cast("dict[str, Any]", value).items()
        return {_tame(k, depth + 1, text=text): _tame(v, depth + 1, text=text) for k, v in items}
    return value


def _tame_message(value: Any) -> Any:
    """`_tame`, except a tool call's arguments keep their text as sent: a lone surrogate there is the guard's to
    refuse (`invalid_arguments`), never quietly made into another name (the reply does not echo it)."""
    tamed = _tame(value)
    if isinstance(value, dict) and value.get("method") == "tools/call":  # pyright: ignore[reportUnknownMemberType]
        params = cast("dict[str, Any]", value).get("params")
        if isinstance(params, dict) and isinstance(arguments := cast("dict[str, Any]", params).get("arguments"), dict):
            tamed["params"]["arguments"] = _tame(arguments, 2, text=True)
    return tamed


def recover_message(exc: Exception) -> SessionMessage | None:
    """A line the SDK could not parse (its JSON parser is stricter than JSON), read with the standard library's and
    tamed, so that a tool call in it still reaches the guard: refused and audited, never left unanswered."""
    if not isinstance(exc, ValidationError):
        return None
    errors = exc.errors()
    line = errors[0].get("input") if errors and errors[0].get("type") in _UNPARSED else None
    if not isinstance(line, str) or len(line) > _MAX_LINE:
        return None
    try:
        value = json.loads(line, parse_int=_parse_int)
    except (ValueError, RecursionError):
        value = _unreadable_call(line)
        if value is None:
            return None
    try:
        return SessionMessage(types.jsonrpc_message_adapter.validate_python(_tame_message(value), by_name=False))
    except ValidationError:
        return None


_MAX_LINE = 64 * 1024 * 1024
_UNPARSED = frozenset({"json_invalid", "string_unicode"})
"""The SDK's errors for a line it could not read: not JSON to its parser, or text holding bytes that are not UTF-8
(kept by the stdin reader as lone surrogates, which the guard refuses by name)."""
_ID = re.compile(r'"id"\s*:\s*(-?\d{1,18}|"[^"\\]{0,200}")')
_CALL = re.compile(r'"method"\s*:\s*"tools/call"')
_NAME = re.compile(r'"name"\s*:\s*"([A-Za-z0-9_.-]{1,128})"')


def _parse_int(text: str) -> int | str:
    return int(text) if len(text) <= 18 else text  # (a longer one is text the guard will refuse, not a crash)


def _unreadable_call(line: str) -> dict[str, Any] | None:
    """A tools/call too deeply nested to parse at all: the same call with arguments the guard will refuse, so it
    is answered and audited (found by its id and tool name; anything else stays unanswered, as JSON-RPC allows)."""
    if not _CALL.search(line) or (ident := _ID.search(line)) is None:
        return None
    name = _NAME.search(line)
    return {
        "jsonrpc": "2.0",
        "id": json.loads(ident.group(1)),
        "method": "tools/call",
        "params": {"name": name.group(1) if name else "unknown", "arguments": {"unreadable": "nested too deep"}},
    }


class _Recovering:
    """The SDK's read stream, with lines it could not parse recovered where they hold a request (`recover_message`);
    with `direct`, a tool call it serves (`DirectCalls`) is served from there, never handed to the SDK."""

    def __init__(self, inner: Any, direct: DirectCalls | None = None) -> None:
        self._inner = inner
        self._direct = direct

    def __getattr__(self, name: str) -> Any:  # (`last_context`, which the server reads if present)
        return getattr(self._inner, name)

    async def receive(self) -> SessionMessage | Exception:
        while True:
            item = await self._inner.receive()
            if isinstance(item, Exception) and (recovered := recover_message(item)) is not None:
                item = recovered
            if isinstance(item, SessionMessage):
                message = item.message
                if isinstance(message, types.JSONRPCRequest) and message.method == "tools/call" and message.params:
                    flag_unreadable_meta(message.params)
                    if self._direct is not None and await self._direct.answered(message):
                        continue
                if self._direct is not None and self._direct.note(message):
                    continue  # (a cancellation of a call served directly: not the SDK's, whatever it holds)
            return item

    async def aclose(self) -> None:
        await self._inner.aclose()

    def __aiter__(self) -> _Recovering:
        return self

    async def __anext__(self) -> SessionMessage | Exception:
        try:
            return await self.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            if self._direct is not None:
                await self._direct.closing()  # (its calls answered before the SDK's write stream closes)
            raise StopAsyncIteration from None

    async def __aenter__(self) -> _Recovering:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc_val: BaseException | None, exc_tb: TracebackType | None
    ) -> bool | None:
        await self.aclose()
        return None


class _ReplyWire(anyio.AsyncFile[str]):
    """The stdout the SDK writes messages to, telling the body each time one has been flushed to the client.

    The SDK writes a message, then flushes it, each a trip to a worker thread; here the write is kept and done with
    the flush, in one trip (a blocking write to the pipe stays off the event loop all the same). A reply of at most
    `PIPE_BUF` bytes to a pipe with room for it is written on the loop, with no trip at all: such a write is whole
    and cannot block (a pipe that polls writable has a free buffer of a page), and a trip costs two thread switches
    and a wake-up of the loop, on every call."""

    def __init__(self, fp: TextIO, after_reply: Callable[[], None]) -> None:
        super().__init__(fp)
        self._fp_text = fp
        self._after_reply = after_reply
        self._pending: list[str] = []
        self._pipe_fd = pipe_fd(fp)  # (not a socket: only a pipe keeps a write of `PIPE_BUF` bytes whole)

    async def write(self, b: str) -> int:
        self._pending.append(b)
        return len(b)

    async def flush(self) -> None:
        data = "".join(self._pending)
        self._pending.clear()
        if not self._written_now(data):
            await anyio.to_thread.run_sync(self._write_out, data)
        self._after_reply()

    def _written_now(self, data: str) -> bool:
        fd = self._pipe_fd
        if fd is None or not data:
            return False
        encoded = data.encode("utf-8")
        if len(encoded) > select.PIPE_BUF:
            return False
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        if not poller.poll(0):
            return False
        self._fp_text.flush()  # (nothing is buffered there: every write to it is flushed at once)
        os.write(fd, encoded)
        return True

    def _write_out(self, data: str) -> None:
        if data:
            self._fp_text.write(data)
        self._fp_text.flush()


@contextmanager
def _claimed_stdout() -> Generator[TextIO]:
    """fd 1 is the wire: messages go to a private duplicate of it while fd 1 points at stderr (or, with no
    stderr, the null device), so that stray output (ours, a library's, a child's) cannot land in the middle
    of a message. Restored on exit."""
    _flush_stdout()
    try:
        wire = fcntl.fcntl(1, fcntl.F_DUPFD_CLOEXEC, 3)
    except OSError:
        wire = 1  # no descriptor to spare: serve fd 1 itself, undiverted
    else:
        _divert_fd1()
    try:
        # closefd=False, and never closed: a worker thread may still be blocked writing to it when serving ends.
        yield io.TextIOWrapper(os.fdopen(wire, "wb", closefd=False), encoding="utf-8")
    finally:
        if wire != 1:
            _flush_stdout()  # stray output still buffered belongs where it went while serving, not on the wire
            with contextlib.suppress(OSError):
                os.dup2(wire, 1)


def _flush_stdout() -> None:
    if sys.stdout is not None:  # pyright: ignore[reportUnnecessaryComparison]  (None without a console)
        with contextlib.suppress(OSError, ValueError):
            sys.stdout.flush()


def _divert_fd1() -> None:
    try:
        os.fstat(2)
        os.dup2(2, 1)
        return
    except OSError:
        pass
    with contextlib.suppress(OSError):  # (failing that too: served undiverted, as the SDK does)
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(null, 1)
        finally:
            os.close(null)


async def serve_stdio(body: Body) -> None:
    server = build_server(body, cached_tool_definitions(body.tools.values(), body.paths.home / "cache"))
    async with anyio.create_task_group() as background:
        background.start_soon(body.background)
        replies = body.replies
        replies.flushed = True
        try:
            await serve_wire(server, body, replies.run)
        finally:
            replies.flushed = False
            replies.run()
        await body.leave()  # (reached on a clean exit only: stdin closed)
        background.cancel_scope.cancel()


async def serve_wire(server: Server[Any], served: ServedTools, after_reply: Callable[[], None]) -> None:
    """`server` over this process's stdin and stdout until the client closes stdin: the wire claimed
    (`_claimed_stdout`, `claimed_stdin`), `after_reply` told each time a message has been written, and `served`'s
    tool calls answered on the direct path (`DirectCalls`). What `serve_stdio` serves the body with; the benches
    serve their unguarded tools the same way, so that the guard's cost is measured on one serving path."""
    _freeze_startup_heap()
    with _claimed_stdout() as stdout, claimed_stdin() as stdin:
        wire = _ReplyWire(stdout, after_reply)
        async with (
            stdio_server(stdin=stdin, stdout=wire) as (read_stream, write_stream),
            DirectCalls(served, write_stream, calls=not server.middleware) as direct,
        ):
            await server.run(_Recovering(read_stream, direct), write_stream, server.create_initialization_options())


def _freeze_startup_heap() -> None:
    """Leave what start-up built (modules, models, schemas, the body: some 110,000 objects) out of every later
    garbage collection: a full collection over them took 67 ms of CPU (load 16; the machine shared) and ran on
    whatever call was under way; after `gc.freeze()` it scans only what serving made since. Collected first, so
    no start-up garbage is kept for good. Collection is then on, whether or not start-up turned it off (`swarm
    body` does while it imports: `swarm_cli.entry`)."""
    gc.collect()
    gc.freeze()
    gc.enable()


def run_stdio(body: Body) -> None:
    try:
        anyio.run(serve_stdio, body)
    finally:
        body.close()
