"""A command's output: its result shows the start and the end, the whole is kept and read back in pages,
and a long command reports progress to a client that asks for it."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp_types import TextContent

from body_mcp import Body, build_server
from body_mcp.outputs import OutputStore
from sandbox import ChangeKind, InMemorySandbox, RunResult, SandboxSpec, ScriptedChange, scripted_result

from ..conftest import make_body
from .helpers import call, ok, refused

pytestmark = pytest.mark.anyio

HEAD, TAIL = 1000, 3000
LONG = "start of the output\n" + "é" * 1_500_000 + "\nend of the output\n"  # 3 MB, two-byte characters


def printing(stdout: str, stderr: str = "") -> Callable[[SandboxSpec], tuple[RunResult, list[ScriptedChange]]]:
    def script(spec: SandboxSpec) -> tuple[RunResult, list[ScriptedChange]]:
        return scripted_result(stdout=stdout, stderr=stderr), []

    return script


def body_with(workspace: Path, home: Path, script: Any, **sandbox: Any) -> Body:
    config = {"sandbox": {"reply_head_bytes": HEAD, "reply_tail_bytes": TAIL, "max_output_bytes": 10**7, **sandbox}}
    return make_body(workspace, home, config, sandbox=InMemorySandbox(script))


@pytest.fixture
async def long_run(workspace: Path, home: Path) -> AsyncIterator[tuple[Body, Client]]:
    body = body_with(workspace, home, printing(LONG, stderr="a warning\n"))
    try:
        async with Client(build_server(body)) as client:
            yield body, client
    finally:
        body.close()


async def test_a_long_stdout_comes_back_as_its_start_and_its_end_with_its_size_and_where_the_rest_is(
    long_run: tuple[Body, Client],
) -> None:
    _, client = long_run
    result = await call(client, "run_command", argv=["build"])
    data = ok(result)
    size = len(LONG.encode())
    stdout = data["output"]["stdout"]
    assert stdout["printed"] == stdout["kept"] == size
    assert 0 < stdout["omitted_from"] <= HEAD and size - TAIL <= stdout["omitted_to"] < size
    assert data["stdout"].startswith("start of the output\n") and data["stdout"].endswith("\nend of the output\n")
    assert len(data["stdout"].encode()) < HEAD + TAIL + 500 and data["truncated"] is True
    assert data["stderr"] == "a warning\n" and data["output"]["stderr"]["omitted_from"] is None
    [text] = result.content
    assert isinstance(text, TextContent) and len(text.text.encode()) < 2 * (HEAD + TAIL + 500)


async def test_read_command_output_pages_through_all_that_was_kept_never_splitting_a_character(
    long_run: tuple[Body, Client],
) -> None:
    _, client = long_run
    run = ok(await call(client, "run_command", argv=["build"]))
    omitted = run["output"]["stdout"]
    whole = LONG.encode()
    offset, pages = omitted["omitted_from"], []
    while offset < omitted["omitted_to"]:
        page = ok(await call(client, "read_command_output", action_id=run["action_id"], offset=offset, limit=200_001))
        assert page["offset"] == offset and page["total"] == len(whole) and not page["truncated"]
        pages.append(page["content"])
        offset = page["next_offset"]
    assert "".join(pages).encode() == whole[omitted["omitted_from"] : offset]
    last = ok(await call(client, "read_command_output", action_id=run["action_id"], offset=offset, limit=262_144))
    assert last["eof"] and (pages[-1] + last["content"]).endswith("\nend of the output\n")
    # An offset inside a two-byte character starts at the next one; a one-byte page still holds a whole one.
    inside = ok(await call(client, "read_command_output", action_id=run["action_id"], offset=21, limit=1))
    assert (inside["offset"], inside["content"], inside["next_offset"]) == (22, "é", 24)
    err = ok(await call(client, "read_command_output", action_id=run["action_id"], stream="stderr"))
    assert (err["content"], err["eof"], err["total"]) == ("a warning\n", True, 10)


async def test_read_command_output_refuses_an_unknown_action_and_a_call_that_ran_no_command(client: Client) -> None:
    refused(await call(client, "read_command_output", action_id="act_0123456789abcdef"), "not_found")
    written = ok(await call(client, "write_file", path="notes.txt", content="x"))
    refused(await call(client, "read_command_output", action_id=written["action_id"]), "not_found")


async def test_kept_output_is_checked_against_its_hash_before_it_is_served(
    long_run: tuple[Body, Client], home: Path
) -> None:
    body, client = long_run
    run = ok(await call(client, "run_command", argv=["build"]))
    with sqlite3.connect(body.paths.db) as conn:
        conn.execute("UPDATE command_outputs SET data = ? WHERE stream = 'stderr'", (b"a warnin!\n",))
    refused(await call(client, "read_command_output", action_id=run["action_id"], stream="stderr"), "io_error")
    (big,) = list(body.paths.outputs.iterdir())  # (3 MB: kept in a file, not in the database)
    big.write_bytes(big.read_bytes()[:-1] + b"!")
    refused(await call(client, "read_command_output", action_id=run["action_id"]), "io_error")


async def test_kept_output_goes_with_the_audit_retention(long_run: tuple[Body, Client]) -> None:
    body, client = long_run
    run = ok(await call(client, "run_command", argv=["build"]))
    assert list(body.paths.outputs.iterdir())
    assert OutputStore(body.db, directory=body.paths.outputs).prune(older_than=0.0) == 0  # nothing that old
    assert OutputStore(body.db, directory=body.paths.outputs).prune(older_than=float("inf")) == 2
    assert not list(body.paths.outputs.iterdir())
    refused(await call(client, "read_command_output", action_id=run["action_id"]), "not_found")


async def test_the_output_of_a_refused_command_is_kept_too(workspace: Path, home: Path) -> None:
    def script(spec: SandboxSpec) -> tuple[RunResult, list[ScriptedChange]]:
        return scripted_result(stdout=LONG), [ScriptedChange(path=".env", kind=ChangeKind.MODIFIED, content=b"x")]

    body = body_with(workspace, home, script)
    try:
        async with Client(build_server(body)) as client:
            result = await call(client, "run_command", argv=["build"])
            assert result.is_error and isinstance(result.structured_content, dict)
            data: dict[str, Any] = result.structured_content  # pyright: ignore[reportUnknownVariableType]
            assert data["refusal"]["code"] == "protected_path" and data["output"]["stdout"]["omitted_from"]
            page = ok(await call(client, "read_command_output", action_id=data["action_id"], offset=0, limit=20))
            assert page["content"] == "start of the output\n"
    finally:
        body.close()


# -- progress ----------------------------------------------------------------------------


Report = tuple[float, float | None, str | None]


def waiting_for(reports: int) -> tuple[Callable[..., Any], Callable[..., Any], list[Report]]:
    """A command that prints 2,000 bytes, then runs until the client has had `reports` progress notifications;
    the client's progress callback; what it was told."""
    seen: list[Report] = []
    enough = anyio.Event()

    async def script(spec: SandboxSpec) -> tuple[RunResult, list[ScriptedChange]]:
        assert spec.on_output is not None
        spec.on_output(1500)
        spec.on_output(500)
        await enough.wait()
        return scripted_result(stdout="done\n"), []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))
        if len(seen) >= reports:
            enough.set()

    return script, on_progress, seen


async def test_a_long_command_reports_its_time_and_output_to_a_client_that_asks(workspace: Path, home: Path) -> None:
    script, on_progress, seen = waiting_for(3)
    body = body_with(workspace, home, script, progress_interval_s=0.01)
    try:
        async with Client(build_server(body)) as client:
            with anyio.fail_after(10):
                result = await client.call_tool(
                    "run_command",
                    {"argv": ["build"], "rationale": "test", "timeout_s": 60},
                    progress_callback=on_progress,
                )
        assert ok(result)["stdout"] == "done\n"
        progress = [p for p, _, _ in seen]
        assert progress == sorted(progress) and len(set(progress)) == len(progress)
        assert all(total == 60 for _, total, _ in seen)
        assert all(message is not None and "2,000 bytes" in message for _, _, message in seen)
    finally:
        body.close()


async def test_a_command_whose_client_asks_no_progress_runs_the_same(workspace: Path, home: Path) -> None:
    def script(spec: SandboxSpec) -> tuple[RunResult, list[ScriptedChange]]:
        if spec.on_output is not None:
            spec.on_output(10)
        return scripted_result(stdout="done\n"), []

    body = body_with(workspace, home, script, progress_interval_s=0.01)
    try:
        outcome = await body.call_tool("run_command", {"argv": ["build"], "rationale": "no client, no progress"})
        assert not outcome.is_error and outcome.structured["stdout"] == "done\n"
        async with Client(build_server(body)) as client:
            assert ok(await call(client, "run_command", argv=["build"]))["stdout"] == "done\n"
    finally:
        body.close()
