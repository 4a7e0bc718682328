"""Where one `list_directory` call's CPU goes, end to end, in process: the body's call, the SDK server's shaping of
the reply, and the SDK client's parse of the reply and its check against the tool's output schema.

    uv run python bench/profile_list_call.py [--entries 50] [--calls 300]

Each step is run `--calls` times, five times over, and timed by the CPU time of this thread (not wall time: the
machine is shared): the median per call is printed. The body is a real one on a workspace of `--entries` files;
the body's step includes its audit event (journaled on the event loop, as a serving body's read is) and, after
each call, what a serving body does once the reply is written. The client's steps are what the official Python
SDK's client does with each `tools/call` reply: parse the JSON-RPC line, then check the structured content
against the tool's output schema with `jsonschema` (the compiled validator is cached by the SDK, as here).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import anyio
import mcp_types as types
from jsonschema import exceptions as jsonschema_exceptions
from jsonschema.validators import validator_for
from mcp_types import methods
from referencing import Registry

from body_mcp import Body, BodySettings
from body_mcp.pipeline import CallOutcome
from body_mcp.server import tool_definition
from shared_protocol.config import parse_config

VERSION = "2025-11-25"


def _cpu_us(step: Callable[[], object], calls: int) -> float:
    times: list[float] = []
    for _ in range(5):
        start = time.thread_time_ns()
        for _ in range(calls):
            step()
        times.append((time.thread_time_ns() - start) / calls / 1000)
    return statistics.median(times)


async def _body_calls(body: Body, calls: int) -> CallOutcome:
    body.replies.flushed = True
    out: CallOutcome | None = None
    for _ in range(calls):
        out = await body.call_tool("list_directory", {"path": "d", "rationale": "bench"})
        assert not out.is_error, out.text
        body.replies.run()
        await body.audit_writer.settled()
    assert out is not None
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=50)
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()
    calls: int = args.calls
    with tempfile.TemporaryDirectory() as tmp:
        workspace, home = Path(tmp, "ws"), Path(tmp, "home")
        (workspace / "d").mkdir(parents=True)
        home.mkdir()
        for n in range(args.entries):
            (workspace / "d" / f"f{n}.txt").write_text(f"line {n}\n" * 20)
        config = parse_config({"limits": {"calls_per_minute": 10**6, "file_mods_per_hour": 10**6}})
        body = Body(BodySettings(workspace=workspace, home=home, config=config))
        try:
            out = anyio.run(_body_calls, body, 30)  # (warm-up)
            body_us: list[float] = []
            for _ in range(5):
                start = time.thread_time_ns()
                anyio.run(_body_calls, body, calls)
                body_us.append((time.thread_time_ns() - start) / calls / 1000)
            schema = tool_definition(body.tools["list_directory"]).output_schema
        finally:
            body.close()
    assert schema is not None
    result = types.CallToolResult(
        content=[types.TextContent(text=out.text)], structured_content=out.structured, is_error=False
    )
    wire = methods.serialize_server_result(
        "tools/call", VERSION, result.model_dump(by_alias=True, mode="json", exclude_none=True)
    )
    line = types.JSONRPCResponse(jsonrpc="2.0", id=1, result=wire).model_dump_json(by_alias=True, exclude_unset=True)
    validator = validator_for(schema)(schema, registry=Registry())

    def server_shapes() -> str:
        shaped = types.CallToolResult(
            content=[types.TextContent(text=out.text)], structured_content=out.structured, is_error=False
        )
        dumped = methods.serialize_server_result(
            "tools/call", VERSION, shaped.model_dump(by_alias=True, mode="json", exclude_none=True)
        )
        return types.JSONRPCResponse(jsonrpc="2.0", id=1, result=dumped).model_dump_json(
            by_alias=True, exclude_unset=True
        )

    def client_parses() -> Any:
        message = types.jsonrpc_message_adapter.validate_json(line, by_name=False)
        return types.CallToolResult.model_validate(message.result, by_name=False)  # pyright: ignore[reportAttributeAccessIssue, reportUnknownMemberType]

    def client_checks() -> None:
        error = cast(  # (untyped upstream; the SDK's client makes the same call)
            "Exception | None",
            jsonschema_exceptions.best_match(validator.iter_errors(out.structured)),  # pyright: ignore[reportUnknownMemberType]
        )
        assert error is None, error

    print(
        f"list_directory of {args.entries} entries: reply line {len(line)} bytes "
        f"(text {len(out.text)}, structured content {len(json.dumps(out.structured))}); CPU per call, µs"
    )
    print(f"  body: the guarded call (its audit event journaled)   {statistics.median(body_us):8.1f}")
    print(f"  SDK server: result to JSON-RPC line                   {_cpu_us(server_shapes, calls):8.1f}")
    print(f"  SDK client: parse the line                            {_cpu_us(client_parses, calls):8.1f}")
    print(f"  SDK client: check against the output schema          {_cpu_us(client_checks, calls):8.1f}")


if __name__ == "__main__":
    main()
