"""End to end: the body as a subprocess over real stdio, driven by the official MCP client."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from ..cli.inprocess import run_swarm
from ..conftest import make_body, require_binary
from .helpers import call, ok, refused

pytestmark = pytest.mark.anyio


def _params(workspace: Path, home: Path, *, pidfile: Path | None = None) -> StdioServerParameters:
    env = {**os.environ, "SWARM_HOME": str(home), "SWARM_AGENT": "stdio-test"}
    body = [sys.executable, "-m", "swarm_cli", "body", "--workspace", str(workspace)]
    if pidfile is None:
        return StdioServerParameters(command=body[0], args=body[1:], env=env)
    # exec keeps the pid, so the test can SIGKILL the body itself.
    script = f'echo $$ > "{pidfile}"; exec "$@"'
    return StdioServerParameters(command="/bin/sh", args=["-c", script, "sh", *body], env=env)


async def test_every_tool_works_over_stdio_and_refusals_name_their_rule(workspace: Path, home: Path) -> None:
    async with Client(_params(workspace, home)) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert names >= {
            "read_text_file",
            "list_directory",
            "directory_tree",
            "search_files",
            "get_file_info",
            "write_file",
            "edit_file",
            "create_directory",
            "move_file",
            "delete_file",
            "undo",
            "status",
            "explain",
        }
        ok(await call(client, "read_text_file", path="README.md"))
        ok(await call(client, "list_directory", path="."))
        ok(await call(client, "directory_tree", path="src"))
        ok(await call(client, "search_files", path=".", pattern="*.md"))
        ok(await call(client, "get_file_info", path="src/app.py"))
        ok(await call(client, "create_directory", path="docs"))
        written = ok(await call(client, "write_file", path="docs/a.md", content="alpha\n"))
        ok(await call(client, "edit_file", path="docs/a.md", edits=[{"old_text": "alpha", "new_text": "beta"}]))
        ok(await call(client, "move_file", source="docs/a.md", destination="docs/b.md"))
        deleted = ok(await call(client, "delete_file", path="docs/b.md"))
        status = ok(await call(client, "status"))
        assert status["kill_switch"] == "released" and status["mode"] == "live" and status["brain"] == "standalone"
        explained = await call(client, "explain", id=written["action_id"])
        assert not explained.is_error and "write_file" in explained.content[0].text  # type: ignore[union-attr]
        ok(await call(client, "undo", id=deleted["action_id"]))
        assert (workspace / "docs/b.md").read_text() == "beta\n"
        refused(await call(client, "read_text_file", path=".env"), "protected_path")
        refused(await call(client, "write_file", path="../x", content="x"), "path_outside_workspace")
        refused(await client.call_tool("write_file", {"path": "a", "content": "b"}), "invalid_arguments")
        refused(
            await client.call_tool("write_file", {"path": "a", "content": 1, "rationale": "r"}), "invalid_arguments"
        )
        refused(await call(client, "no_such_tool"), "unknown_tool")

        # `swarm kill` from another process (this one: the CLI's entry point, `tests/cli/inprocess.py`) takes effect
        # from the body's next call.
        env = {**os.environ, "SWARM_HOME": str(home)}
        assert run_swarm(["kill", "--reason", "test"], env).returncode == 0
        refused(await call(client, "write_file", path="after.txt", content="x"), "kill_switch_engaged")
        ok(await call(client, "read_text_file", path="README.md"))
        assert run_swarm(["resume"], env).returncode == 0
        ok(await call(client, "write_file", path="after.txt", content="x"))
    body = make_body(workspace, home)
    try:
        events = body.audit.tail(100)
        assert {e.agent for e in events if e.kind == "tool_call"} == {"stdio-test"}
        assert [e.tool for e in events if e.kind == "human"] == ["kill", "resume"]
        assert body.audit.verify().ok
    finally:
        body.close()


async def test_sigkill_during_a_stream_of_writes_keeps_the_chain_valid_and_every_completed_call(
    workspace: Path, home: Path, tmp_path: Path
) -> None:
    pidfile = tmp_path / "body.pid"
    completed: list[str] = []
    enough = anyio.Event()

    async def writer(client: Client) -> None:
        n = 0
        while True:
            result = await client.call_tool(
                "write_file", {"path": f"stream/{n % 20}.txt", "content": f"{n}\n" * 50, "rationale": "stream"}
            )
            data: dict[str, Any] = result.structured_content or {}
            if not result.is_error:
                completed.append(str(data["action_id"]))
            n += 1
            if len(completed) >= 40:
                enough.set()

    config = home / "swarm.toml"
    config.write_text("[limits]\nfile_mods_per_hour = 100000\ncalls_per_minute = 100000\n")
    with pytest.raises(BaseException):  # noqa: B017 - however the dead server surfaces in the client
        with anyio.fail_after(30):
            async with Client(_params(workspace, home, pidfile=pidfile)) as client, anyio.create_task_group() as tg:
                tg.start_soon(writer, client)
                await enough.wait()
                os.kill(int(pidfile.read_text()), signal.SIGKILL)
                await anyio.sleep_forever()  # until the killed server surfaces as an error here
    assert len(completed) >= 40
    result = run_swarm(["audit", "verify", "--workspace", str(workspace)], {**os.environ, "SWARM_HOME": str(home)})
    assert result.returncode == 0, result.stderr
    body = make_body(workspace, home)
    try:
        missing = [aid for aid in completed if body.audit.get(aid) is None]
        assert missing == []
    finally:
        body.close()


def test_stray_output_while_serving_goes_to_stderr_not_into_the_wire() -> None:
    script = (
        "import os, sys\n"
        "from body_mcp.server import _claimed_stdout\n"
        "with _claimed_stdout() as wire:\n"
        "    print('stray print', flush=True)\n"
        "    os.write(1, b'stray fd write\\n')\n"
        "    wire.write('message\\n'); wire.flush()\n"
        "print('after serving')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout == "message\nafter serving\n"
    assert "stray print" in done.stderr and "stray fd write" in done.stderr


def test_with_stderr_closed_stray_output_is_dropped_not_written_into_the_wire() -> None:
    script = (
        "import os\n"
        "from body_mcp.server import _claimed_stdout\n"
        "with _claimed_stdout() as wire:\n"
        "    os.write(1, b'stray\\n')\n"
        "    wire.write('message\\n'); wire.flush()\n"
    )
    done = subprocess.run(
        ["/bin/sh", "-c", f'exec "{sys.executable}" -c "$0" 2>&-', script], capture_output=True, text=True, check=True
    )
    assert done.stdout == "message\n"


async def test_a_long_command_reports_progress_over_stdio_to_a_client_that_asks(workspace: Path, home: Path) -> None:
    require_binary("bwrap", "bubblewrap")
    (home / "swarm.toml").write_text("[sandbox]\nprogress_interval_s = 0.1\n")
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    # It prints, then runs until its timeout: meanwhile it reports every 0.1 s.
    arguments = {"argv": ["/bin/sh", "-c", "head -c 5000 /dev/zero; exec sleep 60"], "timeout_s": 1.5, "rationale": "t"}
    async with Client(_params(workspace, home)) as client:
        with anyio.fail_after(30):
            result = await client.call_tool("run_command", arguments, progress_callback=on_progress)
    assert ok(result)["timed_out"] is True and len(seen) >= 3
    progress = [p for p, _, _ in seen]
    assert progress == sorted(progress) and all(total == 1.5 for _, total, _ in seen)
    assert any(message is not None and "5,000 bytes" in message for _, _, message in seen)


def test_collection_is_off_only_while_a_body_starts(workspace: Path, home: Path) -> None:
    """`swarm body` starts with the garbage collector off (`swarm_cli.entry`): serving turns it back on after
    freezing the start-up heap, and a body that fails before serving gives it back on its way out."""
    import gc

    from body_mcp.server import _freeze_startup_heap  # pyright: ignore[reportPrivateUsage]

    env = {**os.environ, "SWARM_HOME": str(home)}
    done = run_swarm(["body", "--workspace", str(workspace), "--protect", "check.py"], env)
    assert done.returncode != 0 and "--protect" in done.stderr
    assert gc.isenabled()
    gc.disable()
    try:
        _freeze_startup_heap()
        assert gc.isenabled()
    finally:
        gc.enable()
        gc.unfreeze()
