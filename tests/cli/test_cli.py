"""The `swarm` CLI: exit codes, one-line errors that name the problem, and the commands' effects.

`swarm` starts the real CLI, a process per command: for what only a process shows (a body's working directory, the
demo's processes). The other commands run its entry point in the test's process (`swarm_here`,
`tests/cli/inprocess.py`: the same `main`, its exit status, stdout and stderr; an exception escaping it fails the
test), which spares a new Python's start (some 2 s of CPU) per command."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from shared_protocol.config import SwarmConfig, parse_config

from ..conftest import make_body
from .inprocess import swarm_here


def swarm(
    *args: str, home: Path, cwd: Path | None = None, env: dict[str, str] | None = None, timeout_s: float = 60
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "SWARM_HOME": str(home), **(env or {})}
    full_env.pop("SWARM_CONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "swarm_cli", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        timeout=timeout_s,
        check=False,
    )


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_body_refuses_the_root_and_the_home_directory(home: Path, tmp_path: Path) -> None:
    assert "refusing to use /" in one_line_error(swarm_here("body", "--workspace", "/", home=home))
    fake_home = tmp_path / "userhome"
    fake_home.mkdir()
    result = swarm("body", home=home, cwd=fake_home, env={"HOME": str(fake_home)})
    assert "home directory" in one_line_error(result)
    assert "not a directory" in one_line_error(swarm_here("body", "--workspace", str(tmp_path / "nope"), home=home))


def test_a_workspace_overlapping_swarm_home_is_refused(home: Path) -> None:
    assert "SWARM_HOME" in one_line_error(swarm_here("status", "--workspace", str(home.parent), home=home))


@pytest.mark.parametrize(
    "text,names",
    [
        ("[limits]\ncalls_per_minut = 5\n", "limits.calls_per_minut"),
        ("[limits]\ncalls_per_minute = -1\n", "limits.calls_per_minute"),
        ("[policy]\nmode = 'yolo'\n", "policy.mode"),
        ("[brain]\ndatabase_url = 'brain.db'\n", "brain.database_url"),
        ("[brain]\ndatabase_url = 'memory://'\ndb = 'brain.db'\n", "brain.database_url"),
        ("[nonsense]\nx = 1\n", "nonsense"),
        ("[limits\n", "not valid TOML"),
    ],
)
def test_a_bad_config_is_an_error_that_names_the_key(
    home: Path, workspace: Path, tmp_path: Path, text: str, names: str
) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(text)
    assert names in one_line_error(
        swarm_here("status", "--workspace", str(workspace), "--config", str(config), home=home)
    )
    assert not (home / "workspaces").exists()  # nothing was created on the way to the error


def test_init_writes_every_default_and_prints_the_mcp_snippet(home: Path, workspace: Path) -> None:
    result = swarm_here("init", "--workspace", str(workspace), home=home)
    assert result.returncode == 0, result.stderr
    written = tomllib.loads((home / "swarm.toml").read_text())
    assert parse_config(written) == SwarmConfig()
    assert written["limits"]["calls_per_minute"] == 100 and written["audit"]["retention_days"] == 90
    assert written["brain"]["database_url"] == "" and "db" not in written["brain"], "the older key is read, not written"
    snippet = json.loads(result.stdout[result.stdout.index("{") :])
    server = snippet["mcpServers"]["swarm"]
    assert os.path.isabs(server["command"]) and server["args"][-3:] == ["body", "--workspace", str(workspace)]
    (home / "swarm.toml").write_text("[limits]\ncalls_per_minute = 7\n")
    again = swarm_here("init", "--workspace", str(workspace), home=home)
    assert again.returncode == 0 and "kept existing" in again.stdout
    assert tomllib.loads((home / "swarm.toml").read_text())["limits"]["calls_per_minute"] == 7


def test_undo_from_the_cli_works_while_killed_and_errors_cleanly(home: Path, workspace: Path) -> None:
    body = make_body(workspace, home)
    try:
        recorder = body.undo.recorder(body.workspace)
        before = recorder.before(("README.md",))
        (workspace / "README.md").write_text("changed\n")
        recorder.changed(("README.md",), before)
        from body_mcp._db import Writes
        from body_mcp.audit import EventDraft, new_action_id

        action_id = new_action_id()
        writes = Writes()
        recorder.flush(writes, action_id=action_id, decision_id=None)
        body.audit.append(
            EventDraft(id=action_id, kind="tool_call", agent="a", session="s", rationale="r", outcome="ok"),
            writes=writes,
        )
    finally:
        body.close()
    assert swarm_here("kill", "--reason", "stop", home=home).returncode == 0
    result = swarm_here("undo", action_id, "--workspace", str(workspace), home=home)
    assert result.returncode == 0, result.stderr
    assert (workspace / "README.md").read_text() == "# sample\n"
    assert "nothing to undo" in one_line_error(swarm_here("undo", action_id, "--workspace", str(workspace), home=home))
    tail = swarm_here("audit", "tail", "--workspace", str(workspace), home=home)
    assert "kill" in tail.stdout and "undo" in tail.stdout
    assert "no audit event" in one_line_error(
        swarm_here("audit", "explain", "act_none", "--workspace", str(workspace), home=home)
    )
    explained = swarm_here("audit", "explain", action_id, "--workspace", str(workspace), home=home)
    assert explained.returncode == 0 and action_id in explained.stdout
    status = swarm_here("status", "--workspace", str(workspace), home=home)
    assert "ENGAGED" in status.stdout and "audit chain OK" in status.stdout
    assert swarm_here("resume", home=home).returncode == 0
    assert "released" in swarm_here("status", "--workspace", str(workspace), home=home).stdout


def test_demo_runs_the_whole_loop(home: Path) -> None:
    result = swarm("demo", home=home, timeout_s=240)  # several processes: slow on a loaded 2-core machine
    assert result.returncode == 0, result.stderr
    for expected in (
        "next_task claims 'Lift gadget conversion'",
        "report_outcome: task is succeeded",
        "REFUSED protected_path",
        "REFUSED path_outside_workspace",
        "REFUSED rate_limited",
        "REFUSED kill_switch_engaged",
        "audit chain OK",
        "old price again: True",
    ):
        assert expected in result.stdout
    if shutil.which("bwrap"):
        assert "the same command with the decision: ok" in result.stdout
        # Who approved is told as it happened: the panel's rule reviewers answer as the decision is made, and the
        # demo said "a human approves it" of a decision approved already.
        said = re.search(r"is (\w+) \(needs consensus\); it returns at once\n\s+\[approval\] (.*)\n", result.stdout)
        assert said is not None, result.stdout
        if said.group(1) == "pending":
            assert said.group(2).startswith("a human approves it on the brain"), said.group(2)
        else:
            assert said.group(2).startswith(f"the brain's consensus panel had answered it already: {said.group(1)}")
    else:
        assert "commands are refused, never run bare" in result.stdout
    # Autonomy: two agents in their own processes, nobody typing.
    out = result.stdout
    # What takes seconds (a process starting its own body) is announced before it starts, not only after.
    for starting, started in (
        ("starting the body", "[connect] body over stdio"),
        ("starting worker-1", "claimed task"),
    ):
        assert -1 < out.index(starting) < out.index(started), out
    assert "claimed task" in out and "Bulk discount (live)" in out
    assert "worker-1 went live on a readiness override a captain recorded for its logic version lv-" in out
    if shutil.which("bwrap"):
        assert "task succeeded; verified by the body re-running the acceptance command: True (exit code 0)" in out
        handed = r"its work is on branch swarm/worker-1/task_\w+, commit [0-9a-f]{12} \(swarm agent worker-1: Bulk"
        assert re.search(handed, out)
    else:
        assert "the body cannot run the acceptance command" in out
    kill = re.search(
        r"the kill reached worker-2 in (\d+) ms; its model call was cancelled and it made 0 model calls", out
    )
    assert kill is not None and int(kill.group(1)) < 1000, out
    assert "worker-1's audit chain: audit chain OK" in out and "worker-2's audit chain: audit chain OK" in out
    assert re.search(r"model spend recorded by the brain: worker-1 \$0\.\d+", out)


def test_swarm_body_is_parsed_by_its_own_parser_as_by_the_whole_one() -> None:
    """`swarm body` builds only its own parser (`_body_parser`, part of its start-up): the same help, the same
    arguments parsed, the same error for a bad one."""
    import contextlib
    import io

    from swarm_cli.main import _body_parser, build_parser  # pyright: ignore[reportPrivateUsage]

    argv = ["body", "--workspace", "w", "--agent", "a", "--no-network", "--protect", "x", "--protect", "y"]
    assert vars(_body_parser().parse_args(argv)) == vars(build_parser().parse_args(argv))
    for bad in (["body", "--help"], ["body", "--nope"]):
        outputs: list[tuple[str, str]] = []
        for parser in (_body_parser(), build_parser()):
            out, err = io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), pytest.raises(SystemExit):
                parser.parse_args(bad)
            outputs.append((out.getvalue(), err.getvalue()))
        assert outputs[0] == outputs[1] and "usage: swarm" in "".join(outputs[0])
