"""A newcomer's first commands: mistakes a user makes early (a typo in a name, a bad URL, a bad flag value) get one
line on stderr that names the problem, never a traceback, a "this is a bug" line or a half-written state."""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import cast

import pytest

from swarm_cli.main import build_parser

from .inprocess import run_swarm, swarm_here
from .test_cli import one_line_error, swarm


def test_agent_run_with_an_unknown_agent_names_it_and_the_configured_ones(home: Path, tmp_path: Path) -> None:
    result = swarm_here("agent", "run", "--agent", "nope", "--brain", "http://127.0.0.1:9", home=home)
    line = one_line_error(result)
    assert result.returncode == 1
    assert "--agent: no agent named 'nope'" in line and "[[agents]]" in line
    assert "bug" not in line


@pytest.mark.parametrize(
    "url,source",
    [
        ("127.0.0.1:8765", "--brain"),
        ("ftp://127.0.0.1:8765", "--brain"),
        ("http://", "--brain"),
        ("http://h:x", "--brain"),
    ],
)
def test_a_brain_url_that_is_not_one_is_named_before_anything_is_asked(home: Path, url: str, source: str) -> None:
    for args in (("task", "list", "--brain", url), ("kill", "--brain", url), ("kpi", "--brain", url)):
        line = one_line_error(swarm_here(*args, "--token", "t", home=home))
        assert f"{source} {url!r} is not a brain URL" in line, (args, line)
    assert not (home / "kill.json").exists() and not (home / "workspaces").exists()  # nothing engaged, nothing made


def test_a_bad_swarm_brain_url_in_the_environment_is_named_as_such(home: Path) -> None:
    env = {**os.environ, "SWARM_HOME": str(home), "SWARM_BRAIN_URL": "localhost:8765", "SWARM_TOKEN": "t"}
    line = one_line_error(run_swarm(["task", "list"], env))
    assert "SWARM_BRAIN_URL 'localhost:8765' is not a brain URL" in line


def test_a_stopped_brain_is_named_with_its_url_and_why(home: Path) -> None:
    with socket.socket() as probe:  # a port nobody listens on once this closes: connections are refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    line = one_line_error(swarm_here("task", "list", "--brain", url, "--token", "t", home=home))
    assert line == f"swarm: brain {url} unreachable: Connection refused (ConnectError)"


def test_init_with_a_workspace_it_refuses_writes_no_config(home: Path, tmp_path: Path) -> None:
    assert "refusing to use /" in one_line_error(swarm_here("init", "--workspace", "/", home=home))
    assert "not a directory" in one_line_error(swarm_here("init", "--workspace", str(tmp_path / "typo"), home=home))
    assert not (home / "swarm.toml").exists(), "a refused init leaves no config for the next command to pick up"


def test_init_writes_a_config_into_a_directory_not_made_yet(home: Path, workspace: Path, tmp_path: Path) -> None:
    config = tmp_path / "etc" / "swarm" / "swarm.toml"
    result = swarm_here("init", "--workspace", str(workspace), "--config", str(config), home=home)
    assert result.returncode == 0, result.stderr
    assert f"wrote {config}" in result.stdout and "[limits]" in config.read_text()


def test_brain_serve_names_a_bad_port_flag_a_host_it_cannot_use_and_a_port_in_use(home: Path, tmp_path: Path) -> None:
    db = str(tmp_path / "brain.db")
    for port in ("99999", "-1", "http"):
        result = swarm_here("brain", "serve", "--port", port, "--db", db, home=home)
        assert result.returncode == 2 and "argument --port" in result.stderr, result.stderr
        assert "swarm.toml" not in result.stderr  # (it blamed [brain] port in a file that says 8765)
    line = one_line_error(swarm_here("brain", "serve", "--host", "999.1.1.1", "--port", "0", "--db", db, home=home))
    assert line.startswith("swarm: cannot listen on 999.1.1.1:0: ")
    with socket.socket() as taken:  # a real process, as a user starts it, against a port another program holds
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = swarm("brain", "serve", "--port", str(port), "--db", db, home=home, timeout_s=60)
    assert one_line_error(result) == f"swarm: cannot listen on 127.0.0.1:{port}: Address already in use"
    assert result.returncode == 1


def _commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    found = [(path, parser)]
    for action in parser._actions:  # pyright: ignore[reportPrivateUsage]
        if isinstance(action, argparse._SubParsersAction):  # pyright: ignore[reportPrivateUsage]
            children = cast("dict[str, argparse.ArgumentParser]", action.choices)  # pyright: ignore[reportUnknownMemberType]
            for name, child in children.items():
                found += _commands(child, (*path, name))
    return found


def test_every_commands_help_says_what_it_does_and_what_each_argument_is(home: Path) -> None:
    commands = _commands(build_parser())
    assert len(commands) > 60
    for path, parser in commands:
        if not path:
            continue
        assert parser.description, f"`swarm {' '.join(path)} --help` says nothing of what it does"
        for action in parser._actions:  # pyright: ignore[reportPrivateUsage]
            if not action.option_strings and action.nargs != argparse.PARSER:
                assert action.help, f"swarm {' '.join(path)}: {action.dest} has no help"
    shown = swarm_here("undo", "--help", home=home)
    assert shown.returncode == 0 and "reverse an action" in shown.stdout and "an action id (act_" in shown.stdout
    shown = swarm_here("snapshot", "create", "--help", home=home)
    assert "prints the new ID as its last line" in shown.stdout


def test_token_create_says_which_token_it_made_in_plain_english(home: Path, tmp_path: Path) -> None:
    db = str(tmp_path / "brain.db")
    made = swarm_here("brain", "token", "create", "--role", "approver", "--db", db, home=home)
    assert made.returncode == 0 and made.stdout.startswith("swb_") and len(made.stdout.splitlines()) == 1
    assert made.stderr.startswith(f"created an approver token in {db}")
    made = swarm_here("brain", "token", "create", "--role", "captain", "--db", db, home=home)
    assert made.stderr.startswith(f"created a captain token in {db}")


def test_a_hook_fed_garbage_denies_and_says_why_in_one_line_without_a_traceback(home: Path, tmp_path: Path) -> None:
    env = {**os.environ, "SWARM_HOME": str(home)}
    for name in ("SWARM_CONFIG", "CLAUDE_PROJECT_DIR"):
        env.pop(name, None)
    done = subprocess.run(
        [sys.executable, "-m", "swarm_cli", "hook", "claude-code"],
        input="garbage",
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    answer = json.loads(done.stdout)["hookSpecificOutput"]
    assert answer["permissionDecision"] == "deny" and "not JSON" in answer["permissionDecisionReason"]
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "no workspace" in done.stderr


def test_audit_reset_keeps_a_chain_that_verifies_unless_forced(home: Path, workspace: Path) -> None:
    assert swarm_here("status", "--workspace", str(workspace), home=home).returncode == 0  # (a chain, and its key)
    line = one_line_error(swarm_here("audit", "reset", "--reason", "tidy", "--workspace", str(workspace), home=home))
    assert "the audit chain verifies" in line and "--force" in line
    state = next((home / "workspaces").iterdir())
    assert not list(state.glob("audit-reset-*")), "nothing was set aside"
    forced = swarm_here("audit", "reset", "--reason", "tidy", "--force", "--workspace", str(workspace), home=home)
    assert forced.returncode == 0 and "a new chain starts" in forced.stdout, forced.stderr
    assert len(list(state.glob("audit-reset-*"))) == 1


def test_a_restore_run_inside_the_workspace_says_to_cd_back_and_the_next_command_says_why(
    home: Path, workspace: Path
) -> None:
    assert swarm_here("snapshot", "create", "--workspace", str(workspace), home=home).returncode == 0
    (workspace / "later.txt").write_text("made after the snapshot\n")
    env = {**os.environ, "SWARM_HOME": str(home), "PWD": str(workspace)}
    env.pop("SWARM_CONFIG", None)
    swarm_cmd = f"{sys.executable} -m swarm_cli"
    script = f"{swarm_cmd} snapshot restore latest && {swarm_cmd} status"  # as a user types them, in the workspace
    done = subprocess.run(
        ["/bin/sh", "-c", script], cwd=workspace, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert "restored snap-" in done.stdout and not (workspace / "later.txt").exists()
    lines = done.stderr.strip().splitlines()
    assert lines[0] == f"swarm: note: this shell's directory was swapped out with the old tree: `cd {workspace}`"
    assert len(lines) == 2 and lines[1].startswith("swarm: the current directory no longer exists"), done.stderr
    assert f"`cd {workspace}`" in lines[1] and done.returncode == 1
