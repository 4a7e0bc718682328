"""`swarm body --agent NAME --protect GLOB`: the task's acceptance inputs are refused to the model (`acceptance_input`,
audited) whatever tool it changes them with, commands included; the runner's own calls are not affected."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from shared_protocol.config import render_config

from ..cli.inprocess import run_swarm
from ..conftest import require_binary
from .agent_helpers import AGENT, MODEL, model_meta
from .helpers import call, ok, refused

pytestmark = pytest.mark.anyio

TOOLS = ["read_text_file", "write_file", "edit_file", "move_file", "delete_file", "run_command"]
CHECK = "import sys\nsys.exit(0)\n"


def _params(workspace: Path, home: Path, config: Path, *protect: str) -> StdioServerParameters:
    env = {**os.environ, "SWARM_HOME": str(home)}
    env.pop("SWARM_AGENT", None)
    args = ["-m", "swarm_cli", "body", "--workspace", str(workspace), "--agent", "w1", "--config", str(config)]
    for pattern in protect:
        args += ["--protect", pattern]
    return StdioServerParameters(command=sys.executable, args=args, env=env)


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    from shared_protocol.config import parse_config

    config = parse_config({"models": {"fast": MODEL}, "agents": [{**AGENT, "tools": TOOLS}]})
    path = tmp_path / "swarm.toml"
    path.write_text(render_config(config))
    return path


@pytest.fixture
def repo(workspace: Path) -> Path:
    (workspace / "check.py").write_text(CHECK)
    (workspace / "tests").mkdir()
    (workspace / "tests" / "test_app.py").write_text("def test_it():\n    assert True\n")
    return workspace


async def test_the_models_changes_to_acceptance_inputs_are_refused_and_audited_and_the_runners_are_not(
    tmp_path: Path, home: Path, repo: Path, config_file: Path
) -> None:
    async with Client(_params(repo, home, config_file, "check.py", "tests/**")) as client:
        model = model_meta()
        attempts = [
            ("write_file", {"path": "check.py", "content": "import sys\nsys.exit(0)\n# mine\n"}),
            ("edit_file", {"path": "tests/test_app.py", "edits": [{"old_text": "True", "new_text": "1"}]}),
            ("delete_file", {"path": "check.py"}),
            ("move_file", {"source": "check.py", "destination": "elsewhere.py"}),
            ("move_file", {"source": "tests", "destination": "moved"}),
            ("write_file", {"path": "tests/conftest.py", "content": "x = 1\n"}),
        ]
        for tool, arguments in attempts:
            result = await client.call_tool(tool, {**arguments, "rationale": "make it pass"}, meta=model)
            data = refused(result, "acceptance_input")
            assert "input of the task's acceptance check" in data["message"], data
            assert data["rule"] == "task.acceptance_inputs"
        ok(
            await client.call_tool(
                "write_file", {"path": "src/app.py", "content": "x = 2\n", "rationale": "fix"}, meta=model
            )
        )
        ok(await client.call_tool("read_text_file", {"path": "check.py", "rationale": "read"}, meta=model))
        ok(await call(client, "write_file", path="check.py", content=CHECK + "# the runner's\n"))
    assert (repo / "check.py").read_text() == CHECK + "# the runner's\n"
    assert (repo / "tests" / "test_app.py").read_text() == "def test_it():\n    assert True\n"
    assert not (repo / "tests" / "conftest.py").exists()
    done = run_swarm(
        ["audit", "tail", "--agent", "w1"], {**os.environ, "SWARM_HOME": str(home), "SWARM_CONFIG": str(config_file)}
    )
    assert done.returncode == 0, done.stderr
    tail = done.stdout
    assert tail.count("acceptance_input") == len(attempts), tail


async def test_a_models_command_that_changes_an_acceptance_input_applies_nothing(
    tmp_path: Path, home: Path, repo: Path, config_file: Path
) -> None:
    require_binary("bwrap", "bubblewrap")
    script = ["/bin/sh", "-c", "echo 'import sys; sys.exit(0)' > check.py; echo ok > src/new.txt"]
    async with Client(_params(repo, home, config_file, "check.py")) as client:
        result = await client.call_tool("run_command", {"argv": script, "rationale": "green"}, meta=model_meta())
        assert result.is_error and result.structured_content is not None
        data = result.structured_content["refusal"]  # (a refused command reports what it did, and why)
        assert data["code"] == "acceptance_input", data
        assert "check.py" in data["message"] and "acceptance check" in data["message"], data
        assert not (repo / "src" / "new.txt").exists(), "nothing of the set is applied"
        ran = ok(await call(client, "run_command", argv=script))  # the runner's own command: applied
        assert ran["applied"] is True
    assert (repo / "check.py").read_text() == "import sys; sys.exit(0)\n"


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["--protect", "check.py"], "needs --agent NAME"),
        (["--agent", "w1", "--protect", "/etc/passwd"], "must be relative to the repository"),
        (["--agent", "w1", "--protect", "../up.py"], "must stay inside the repository"),
        (["--agent", "w1", "--protect", " "], "must not be empty"),
    ],
)
def test_a_bad_protect_is_one_clear_line(
    home: Path, workspace: Path, config_file: Path, args: list[str], problem: str
) -> None:
    argv = ["body", "--workspace", str(workspace), "--config", str(config_file), *args]
    done = run_swarm(argv, {**os.environ, "SWARM_HOME": str(home)})  # (in this process: tests/cli/inprocess.py)
    assert done.returncode != 0 and problem in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
