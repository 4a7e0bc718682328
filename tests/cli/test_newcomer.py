"""A newcomer's first commands: mistakes a user makes early (a typo in a name, a bad URL, a bad flag value) get one
line on stderr that names the problem, never a traceback, a "this is a bug" line or a half-written state."""

from __future__ import annotations

from pathlib import Path

from .inprocess import swarm_here
from .test_cli import one_line_error


def test_agent_run_with_an_unknown_agent_names_it_and_the_configured_ones(home: Path, tmp_path: Path) -> None:
    result = swarm_here("agent", "run", "--agent", "nope", "--brain", "http://127.0.0.1:9", home=home)
    line = one_line_error(result)
    assert result.returncode == 1
    assert "--agent: no agent named 'nope'" in line and "[[agents]]" in line
    assert "bug" not in line
