"""Review of issue #17 (pass e): the logic version a runner claims under is the one its body enforces and audits.
The real brain, the real `swarm agent run` and its real body, the scripted model."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

from shared_protocol.agents import agent_logic_version
from shared_protocol.config import load_config

from .stack import TOOLS, stack

pytestmark = pytest.mark.anyio


async def test_review17e_a_config_edited_while_the_runner_runs_does_not_split_the_logic_version(
    tmp_path: Path,
) -> None:
    """Was a hole (medium): the runner computes its logic version (and its prompt and tool subset) once, when it
    starts, but starts a new `swarm body --agent NAME --config FILE` per task, which reads the config afresh. Edit
    `swarm.toml` while the runner runs (a new prompt being rolled out, a tool added) and the next task's body
    enforces and audits the new version while the runner claims, works and reports under the old one: the audit
    trail attributes the work to a version that never claimed it (the live gate and the readiness override saw the
    old one), and the model may call the new tools, which the body allows though the runner never offered them.
    Fixed: the runner checks, before it starts each task's body, that the config still gives its logic version, and
    stops in one line if not (its claimed task is requeued when the lease runs out; `swarm agents up` restarts it
    with the config as it is now); and it hands its version to the body (`SWARM_LOGIC_VERSION`), which refuses to
    start as another."""
    old_tools = [t for t in TOOLS if t != "run_command"]
    async with stack(tmp_path, tools=old_tools) as s:
        repo = s.repo_with_bug()
        call = {"argv": ["touch", "made-by-a-tool-never-offered"], "rationale": "try the new tool"}
        s.script([{"content": "try", "tool_calls": [{"name": "run_command", "arguments": call}]}, {"content": "done"}])
        old_version = agent_logic_version(load_config(s.config), "worker-1")
        log = s.log("runner").open("wb")
        process = await anyio.open_process(s.argv("worker-1", "--once", "--wait", "60"), env=s.env(), stderr=log)
        try:
            with anyio.fail_after(60):
                while "works for" not in s.log("runner").read_text():
                    await anyio.sleep(0.1)
            s.config.write_text(s.config.read_text().replace(json.dumps(old_tools), json.dumps(TOOLS)))
            assert agent_logic_version(load_config(s.config), "worker-1") != old_version
            task = await s.add_task(repo=str(repo))
            with anyio.fail_after(120):
                code = await process.wait()
        finally:
            if process.returncode is None:
                process.kill()
            log.close()
        said = s.log("runner").read_text().strip().splitlines()
        assert code == 1 and "changed since its runner started" in said[-1] and old_version in said[-1], said
        assert "Traceback" not in "\n".join(said)
        claimed = await s.task(task["id"])
        assert claimed["shadow_runs"] == [] and claimed["state"] == "claimed", "not worked: requeued by its lease"
        trail = s.here("audit", "tail", "--agent", "worker-1", "--json").stdout
        events = [json.loads(line) for line in trail.splitlines() if line.strip()]
        assert not [e for e in events if e.get("tool") == "run_command"], "the model ran a tool never offered to it"
        assert not (repo / "made-by-a-tool-never-offered").exists()


async def test_review17e_a_body_started_as_another_logic_version_refuses_to_start(tmp_path: Path) -> None:
    """The fix's other half (the config edited between the runner's check and the body's start): `swarm body
    --agent NAME` told by its runner to work as another logic version than its config's says so in one line and
    does not start."""
    async with stack(tmp_path) as s:
        workspace = tmp_path / "ws"
        workspace.mkdir()
        s.extra_env |= {"SWARM_LOGIC_VERSION": "lv-0000000000000000", "SWARM_TOKEN": s.tokens["worker-1"]}
        done = s.cli("body", "--workspace", str(workspace), "--agent", "worker-1")
        assert done.returncode == 1 and done.stdout == ""
        assert done.stderr.count("\n") == 1 and "lv-0000000000000000" in done.stderr, done.stderr
        assert "config changed since the runner started" in done.stderr
