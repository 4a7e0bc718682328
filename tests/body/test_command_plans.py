"""A command's spec and sandbox plan are used again while nothing they were made from changed, and never across a
change: a secret written between two commands is hidden from the second, a virtualenv made by one command is
activated for the next (it lives outside the workspace: the plan's host paths say so)."""

from __future__ import annotations

from pathlib import Path

import pytest
from mcp import Client

from body_mcp import Body, build_server
from sandbox import BwrapOverlaySandbox

from ..conftest import make_body, require_binary
from ..sandbox._support import ended as _ended
from .helpers import call, ok

pytestmark = pytest.mark.anyio


async def _sh(client: Client, script: str) -> dict[str, object]:
    data = ok(await call(client, "run_command", argv=["/bin/sh", "-c", script], timeout_s=60))
    assert data["exit_code"] == 0, data["stderr"]
    return data


async def test_a_plan_is_used_again_while_nothing_changed_and_never_across_a_change(
    client: Client, body: Body, workspace: Path
) -> None:
    require_binary("bwrap", "bubblewrap")
    (workspace / "app.py").write_text("print(1)\n")
    # (the first makes the env and cache dirs after the stamps it was planned with: the second plans again)
    for script in ("true", "true", "cat app.py"):
        await _sh(client, script)
    sandbox = body.sandbox()
    assert isinstance(sandbox, BwrapOverlaySandbox)
    assert body.command_specs.hits >= 1 and sandbox.plans.hits >= 1, "nothing changed: planned once"
    hits = body.command_specs.hits
    (workspace / ".env.local").write_text("TOKEN=planted-between-commands\n")
    seen = await _sh(client, "cat .env.local; echo end")
    assert "planted" not in str(seen["stdout"]) and str(seen["stdout"]).strip() == "end"
    assert body.command_specs.hits == hits, "the workspace changed: specced afresh"
    # Unchanged since: remembered again, still hiding it.
    seen = await _sh(client, "cat .env.local; echo end")
    assert "planted" not in str(seen["stdout"]) and body.command_specs.hits == hits + 1


async def test_a_command_sees_what_the_one_before_wrote_and_what_was_written_between(
    client: Client, body: Body, workspace: Path
) -> None:
    """A run prepared ahead has the overlay mounted over the live workspace: any change since (a command's applied
    changes, a host write) discards it, and the next command sees the workspace as it is."""
    require_binary("bwrap", "bubblewrap")
    for script in ("true", "true", "true"):
        await _sh(client, script)
    for n in range(3):
        written = await _sh(client, f"echo one-{n} > made-{n}.txt")
        assert written["applied"] is True and (workspace / f"made-{n}.txt").read_text() == f"one-{n}\n"
        seen = await _sh(client, f"cat made-{n}.txt")
        assert seen["stdout"] == f"one-{n}\n"
        (workspace / f"host-{n}.txt").write_text(f"host-{n}\n")
        seen = await _sh(client, f"cat host-{n}.txt && ls")
        assert str(seen["stdout"]).startswith(f"host-{n}\n") and f"made-{n}.txt" in str(seen["stdout"])
    sandbox = body.sandbox()
    assert isinstance(sandbox, BwrapOverlaySandbox)
    assert sandbox.standby.made >= 3, "runs were prepared ahead meanwhile"


async def test_closing_the_body_ends_the_runs_made_ahead(workspace: Path, home: Path) -> None:
    require_binary("bwrap", "bubblewrap")
    body = make_body(workspace, home)
    try:
        async with Client(build_server(body)) as client:
            for script in ("true", "true", "true"):
                await _sh(client, script)
        sandbox = body.sandbox()
        assert isinstance(sandbox, BwrapOverlaySandbox)
        made = [s for s in (sandbox.standby.wait_ready(10), sandbox.spare.wait_ready(10)) if s is not None]
        assert made and any(s.prepared is not None for s in made)
    finally:
        body.close()
    for standby in made:
        assert _ended(standby.started.pid) and not standby.staging.exists()
