"""`swarm audit tail [--follow] [--json] [--agent A] [--task T] [--code C]`: the real CLI on a real body's trail;
a follow prints each new event as the body writes it and ends with exit 0 on Ctrl-C. The follow is a `swarm` process
of its own; the filters run the same entry point in the test's process (`tests/cli/inprocess.py`)."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from body_mcp import Body
from tests.cli.inprocess import swarm_here
from tests.conftest import make_body

pytestmark = pytest.mark.anyio


def _swarm(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return swarm_here("audit", "tail", *args, home=home)


async def _act(body: Body) -> None:
    """Three events: a write (ok), an outcome for a task this body does not hold (refused, not_found), a write to
    a protected path (refused, protected_path)."""
    await body.call_tool("write_file", {"path": "a.txt", "content": "x", "rationale": "first"})
    await body.call_tool(
        "report_outcome", {"task_id": "task_abc", "outcome": "succeeded", "summary": "s", "rationale": "done"}
    )
    await body.call_tool("write_file", {"path": ".env", "content": "x", "rationale": "sneaky"})


def _events(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines()]


async def test_filters_and_json(workspace: Path, home: Path) -> None:
    body = make_body(workspace, home)
    try:
        await _act(body)
    finally:
        body.close()
    ws = ("--workspace", str(workspace))
    every = _events(_swarm(home, "--json", *ws).stdout)
    assert [(e["tool"], e["outcome"], e["code"]) for e in every][-3:] == [
        ("write_file", "ok", None),
        ("report_outcome", "refused", "not_found"),
        ("write_file", "refused", "protected_path"),
    ]
    assert [e["rationale"] for e in _events(_swarm(home, "--json", "--code", "protected_path", *ws).stdout)] == [
        "sneaky"
    ]
    assert [e["tool"] for e in _events(_swarm(home, "--json", "--task", "task_abc", *ws).stdout)] == ["report_outcome"]
    assert _swarm(home, "--json", "--task", "task_other", *ws).stdout == ""
    assert len(_events(_swarm(home, "--json", "--agent", "unknown", *ws).stdout)) == len(every)
    assert _swarm(home, "--json", "--agent", "somebody-else", *ws).stdout == ""
    last = _swarm(home, "--json", "-n", "1", "--agent", "unknown", *ws).stdout
    assert [e["rationale"] for e in _events(last)] == ["sneaky"]
    plain = _swarm(home, "--code", "not_found", *ws)
    assert plain.returncode == 0 and "report_outcome refused [not_found] — done" in plain.stdout
    bad = _swarm(home, "-n", "-1", *ws)
    assert bad.returncode != 0 and bad.stderr.strip().splitlines() == ["swarm: -n must be 0 or more (got -1)"]


def _read_line(process: subprocess.Popen[str], timeout_s: float = 60) -> str:
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout_s)
    assert ready, "no line from swarm audit tail --follow"
    return process.stdout.readline()


async def test_follow_prints_new_events_and_ctrl_c_exits_0(workspace: Path, home: Path) -> None:
    body = make_body(workspace, home)
    await body.call_tool("write_file", {"path": ".env", "content": "x", "rationale": "before"})
    env = {**os.environ, "SWARM_HOME": str(home)}
    env.pop("SWARM_CONFIG", None)
    argv = [sys.executable, "-m", "swarm_cli", "audit", "tail", "--follow", "--json", "-n", "1", "--code",
            "protected_path", "--workspace", str(workspace), "--interval", "0.05"]  # fmt: skip
    # A shell without job control starts a background job with SIGINT ignored, and a child inherits that (Python
    # then installs no KeyboardInterrupt handler): give the follow the default a user's terminal gives it.
    process = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert json.loads(_read_line(process))["rationale"] == "before"  # (the last one: it has read the trail)
        await _act(body)
        followed = json.loads(_read_line(process))
        assert (followed["tool"], followed["code"], followed["rationale"]) == ("write_file", "protected_path", "sneaky")
        await body.call_tool("write_file", {"path": ".env", "content": "y", "rationale": "again"})
        assert json.loads(_read_line(process))["rationale"] == "again"
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0
        assert process.stdout is not None and process.stdout.read() == ""
        assert process.stderr is not None and process.stderr.read() == ""
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        body.close()
