"""`--agent NAME` on the commands that read a body's state: an agent's state, whatever workspace its tasks used."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from mcp import Client

from body_mcp import build_server
from shared_protocol.config import render_config

from ..body.agent_helpers import agent_body, agent_config, model_meta, profile
from ..body.helpers import ok
from .inprocess import run_swarm, swarm_here
from .test_cli import one_line_error

pytestmark = pytest.mark.anyio


@pytest.fixture
def config_env(tmp_path: Path) -> dict[str, str]:
    path = tmp_path / "swarm.toml"
    path.write_text(render_config(agent_config()))
    return {"SWARM_CONFIG": str(path)}


async def _one_write(workspace: Path, home: Path) -> str:
    body = agent_body(workspace, home, agent_config())
    try:
        async with Client(build_server(body)) as client:
            result = await client.call_tool(
                "write_file", {"path": "new.txt", "content": "n\n", "rationale": "add"}, meta=model_meta(step=4)
            )
            return str(ok(result)["action_id"])
    finally:
        body.close()


def in_process(*args: str, home: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`swarm ARGS --config` the agents' config, in this process (`tests/cli/inprocess.py`; SWARM_CONFIG is dropped:
    --config says where the agents are)."""
    full_env = {**os.environ, "SWARM_HOME": str(home)}
    full_env.pop("SWARM_CONFIG", None)
    return run_swarm([*args, "--config", env["SWARM_CONFIG"]], full_env)


def run(*args: str, home: Path, env: dict[str, str]) -> tuple[int, str, str]:
    result = in_process(*args, home=home, env=env)
    return result.returncode, result.stdout, result.stderr


async def test_status_audit_and_undo_take_an_agent_instead_of_a_workspace(
    tmp_path: Path, home: Path, config_env: dict[str, str]
) -> None:
    task = tmp_path / "task"
    task.mkdir()
    (task / "README.md").write_text("# task\n")
    action_id = await _one_write(task.resolve(), home)
    lv = profile(agent_config()).logic_version

    code, out, err = run("audit", "verify", "--agent", "w1", home=home, env=config_env)
    assert code == 0 and "audit chain OK: 1 events verified" in out, err
    code, out, err = run("audit", "tail", "--agent", "w1", home=home, env=config_env)
    assert code == 0 and action_id in out and " w1 write_file ok" in out, err
    code, out, err = run("audit", "explain", action_id, "--agent", "w1", home=home, env=config_env)
    assert code == 0 and "Model turn: step 4 — I will fix it." in out and lv in out, err
    code, out, err = run("status", "--agent", "w1", home=home, env=config_env)
    assert code == 0 and f"agent:           w1 ({lv})" in out and "audit chain OK" in out, err

    code, out, err = run("undo", action_id, "--agent", "w1", home=home, env=config_env)
    assert code == 0 and "undone" in out and not (task / "new.txt").exists(), err
    undo_id = out.split("recorded as ")[1].split(";")[0]
    shutil.rmtree(task)
    result = swarm_here("undo", undo_id, "--agent", "w1", "--config", config_env["SWARM_CONFIG"], home=home)
    line = one_line_error(result)
    assert "no longer exists" in line and str(task.resolve()) in line
    code, out, err = run("audit", "verify", "--agent", "w1", home=home, env=config_env)
    assert code == 0 and "2 events verified" in out, err  # (the write and its undo; the refusal changed nothing)


async def test_kill_and_resume_are_recorded_in_every_agents_trail(
    tmp_path: Path, home: Path, config_env: dict[str, str]
) -> None:
    task = tmp_path / "task"
    task.mkdir()
    await _one_write(task.resolve(), home)
    shutil.rmtree(task)
    assert swarm_here("kill", "--reason", "drill", home=home).returncode == 0
    code, out, err = run("audit", "tail", "--agent", "w1", home=home, env=config_env)
    assert code == 0 and " kill ok — drill" in out, err
    assert swarm_here("resume", home=home).returncode == 0


def test_an_unknown_agent_or_both_flags_is_a_one_line_error(
    home: Path, workspace: Path, config_env: dict[str, str]
) -> None:
    for command in (["status"], ["audit", "verify"], ["audit", "tail"], ["undo", "act_x"]):
        line = one_line_error(in_process(*command, "--agent", "nobody", home=home, env=config_env))
        assert "no agent named 'nobody'" in line and "configured agents: w1" in line
    both = swarm_here("status", "--agent", "w1", "--workspace", str(workspace), home=home)
    assert "not both" in one_line_error(both)
    body = swarm_here("body", "--agent", "nobody", "--workspace", str(workspace), home=home)
    assert "no agent named 'nobody'" in one_line_error(body) and "none" in one_line_error(body)


async def test_an_agents_chain_is_reset_by_name_and_gets_a_new_body_id(
    tmp_path: Path, home: Path, config_env: dict[str, str]
) -> None:
    task = tmp_path / "task"
    task.mkdir()
    await _one_write(task.resolve(), home)
    code, before, err = run("status", "--agent", "w1", home=home, env=config_env)
    assert code == 0, err
    code, out, err = run("audit", "reset", "--agent", "w1", "--reason", "drill", home=home, env=config_env)
    assert code == 1 and "the audit chain verifies" in err and "--force" in err, err  # (a sound chain is kept)
    code, out, err = run("audit", "reset", "--agent", "w1", "--reason", "drill", "--force", home=home, env=config_env)
    assert code == 0 and "a new chain starts" in out, err
    code, after, err = run("status", "--agent", "w1", home=home, env=config_env)
    body_line = next(line for line in before.splitlines() if line.startswith("body:"))
    assert code == 0 and body_line not in after and "audit chain OK: 1 events verified" in after, err
