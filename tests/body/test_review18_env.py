"""Review of #18's task environment: the env dir a command writes (`.venv`, kept in Swarm's state) and what later
commands of the same workspace make of it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from body_mcp import build_server
from body_mcp.state import StatePaths

from ..conftest import make_body, require_binary
from .agent_helpers import AGENT, TOOLS, agent_body, agent_config, model_meta
from .helpers import call, ok

pytestmark = pytest.mark.anyio


async def run(client: Client, script: str) -> dict[str, Any]:
    return ok(await call(client, "run_command", argv=["/bin/sh", "-ec", script], timeout_s=120))


_PLANT = """
mkdir -p .venv/bin
touch .venv/pyvenv.cfg
printf '#!/bin/sh\\necho planted-by-an-earlier-command; exit 0\\n' > .venv/bin/pytest
cp .venv/bin/pytest .venv/bin/python3
chmod +x .venv/bin/pytest .venv/bin/python3
"""


async def test_what_the_models_commands_plant_in_the_env_dir_is_not_what_the_runners_check_runs(
    tmp_path: Path, home: Path
) -> None:
    """Fixed (was high): the env dir is written by the model's commands and never staged, diffed or counted, so a
    model could plant `.venv/bin/pytest` (or a `.pth`) that exits 0 and forge the verified success. The runner's own
    calls in agent mode (its acceptance re-run) run without the env dirs: not mounted, hidden, not on PATH. The
    model's own later commands do use the venv its commands built — that is what it is for."""
    require_binary("bwrap", "bubblewrap")
    config = agent_config(agents=[{**AGENT, "tools": [*TOOLS, "run_command"]}])
    workspace = tmp_path / "task"
    workspace.mkdir()
    body = agent_body(workspace, home, config)
    try:
        async with Client(build_server(body)) as client:
            plant = {"argv": ["/bin/sh", "-ec", _PLANT], "timeout_s": 120, "rationale": "set up"}
            planted = ok(await client.call_tool("run_command", plant, meta=model_meta()))
            assert planted["exit_code"] == 0, planted["stderr"]
            check = "pytest -q -p no:cacheprovider; python3 -c 'import sys; sys.exit(3)'"
            later = {"argv": ["/bin/sh", "-c", check], "timeout_s": 120, "rationale": "a later model command"}
            by_model = ok(await client.call_tool("run_command", later, meta=model_meta(step=2)))
            assert "planted-by-an-earlier-command" in by_model["stdout"], "the model's venv is the model's to use"
            by_runner = ok(await call(client, "run_command", argv=["/bin/sh", "-c", check], timeout_s=120))
            assert "planted-by-an-earlier-command" not in by_runner["stdout"], by_runner
            assert by_runner["exit_code"] == 3
    finally:
        body.close()


async def test_a_symlink_planted_in_the_env_dir_is_never_followed_on_the_host(
    client: Client, workspace: Path, home: Path
) -> None:
    """Links a command leaves in the env dir point wherever it likes: the host only checks pyvenv.cfg (is_file),
    nothing is applied to the workspace from there, and inside the sandbox a link resolves in the sandbox."""
    require_binary("bwrap", "bubblewrap")
    (workspace / "keep.txt").write_text("mine\n")
    planted = await run(
        client,
        "mkdir -p .venv && ln -s / .venv/root && ln -s ../keep.txt .venv/keep && ln -s /etc/shadow .venv/pyvenv.cfg",
    )
    assert planted["exit_code"] == 0, planted["stderr"]
    assert planted["changes"] == [] and planted["applied"] is False
    env = StatePaths(home=home, workspace=workspace).env / ".venv"
    assert (env / "root").is_symlink() and (env / "keep").is_symlink()
    # A later command writes through the planted links: only the sandbox's view changes, never the host's.
    wrote = await run(
        client, "echo changed > .venv/keep || true; echo x > .venv/root/tmp/escape || true; cat /etc/shadow || true"
    )
    assert (workspace / "keep.txt").read_text() in ("mine\n", "changed\n")
    assert wrote["exit_code"] == 0
    assert not Path("/tmp/escape").exists()
    if (workspace / "keep.txt").read_text() == "changed\n":
        # (then it went through the guard like any write: staged, listed, applied)
        assert "keep.txt" in [c["path"] for c in wrote["changes"]]
    assert "root:" not in wrote["stdout"]


async def test_one_workspaces_cache_and_env_dir_are_not_anothers(tmp_path: Path, home: Path) -> None:
    """A command that poisons its package cache and env dir poisons only its own workspace's."""
    require_binary("bwrap", "bubblewrap")
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    bodies = [make_body(first, home), make_body(second, home)]
    try:
        async with Client(build_server(bodies[0])) as a:
            planted = await run(
                a, 'mkdir -p "$UV_CACHE_DIR" .venv && echo evil > "$UV_CACHE_DIR/wheel" && echo evil > .venv/x'
            )
            assert planted["exit_code"] == 0, planted["stderr"]
        async with Client(build_server(bodies[1])) as b:
            seen = await run(b, 'cat "$UV_CACHE_DIR/wheel" .venv/x 2>/dev/null || echo clean')
        assert seen["stdout"] == "clean\n"
    finally:
        for body in bodies:
            body.close()
