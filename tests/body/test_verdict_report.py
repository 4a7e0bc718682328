"""The body's side of a pytest check's verdict: the runner's re-run of a task's acceptance command (its own call
naming the task) runs with the body's pytest reporter and gets a report, kept on the audit event; a model's pytest
run does not. A real agent body over the MCP SDK's in-memory client, the real bubblewrap sandbox."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from body_mcp import build_server
from shared_protocol.config import parse_config

from ..conftest import require_binary
from .agent_helpers import AGENT, MODEL, TOOLS, agent_body, model_meta
from .helpers import ok

pytestmark = pytest.mark.anyio

RUNNER = {"swarm/origin": "runner", "swarm/task": "task_1"}
CHECK = {"argv": ["python3", "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], "rationale": "check"}


def project(tmp_path: Path, main_returns: int) -> Path:
    """A project whose test wants main() == 2, its `.python-version` this interpreter's (which has pytest)."""
    ws = tmp_path / "ws"
    (ws / "tests").mkdir(parents=True)
    (ws / "app.py").write_text(f"def main():\n    return {main_returns}\n")
    (ws / "tests" / "test_app.py").write_text("import app\n\n\ndef test_main():\n    assert app.main() == 2\n")
    (ws / ".python-version").write_text(".".join(str(n) for n in sys.version_info[:3]) + "\n")
    return ws


async def run(ws: Path, home: Path, meta: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    require_binary("bwrap", "bubblewrap")
    config = parse_config({"models": {"fast": MODEL}, "agents": [AGENT | {"tools": [*TOOLS, "run_command"]}]})
    body = agent_body(ws, home, config)
    try:
        async with Client(build_server(body)) as client:
            result = ok(await client.call_tool("run_command", CHECK, meta=meta))
        event = body.audit.get(result["action_id"])
        assert event is not None
        return result, dict(event.detail)
    finally:
        body.close()


async def test_the_runners_pytest_check_is_judged_from_its_report(tmp_path: Path, home: Path) -> None:
    result, detail = await run(project(tmp_path, 2), home, RUNNER)
    assert result["exit_code"] == 0, result["stderr"] or result["stdout"]
    assert (result["report"]["verdict"], result["report"]["collected"], result["report"]["passed"]) == ("passed", 1, 1)
    assert detail["report"] == result["report"], "the audit event the brain confirms from holds the same report"
    assert not list(home.rglob("verdict-*")), "the reporter's directory goes with the run"


async def test_a_failing_pytest_check_is_a_failed_report(tmp_path: Path, home: Path) -> None:
    result, detail = await run(project(tmp_path, 1), home, RUNNER)
    assert (result["exit_code"], result["report"]["verdict"], result["report"]["failed"]) == (1, "failed", 1)
    assert detail["report"]["verdict"] == "failed"


async def test_a_models_pytest_run_gets_no_reporter(tmp_path: Path, home: Path) -> None:
    result, detail = await run(project(tmp_path, 2), home, model_meta())
    assert result["exit_code"] == 0, result["stderr"] or result["stdout"]
    assert result["report"] is None and "report" not in detail
