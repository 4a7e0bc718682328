"""`swarm body --agent NAME`: one identity, audit chain and set of limit windows per agent, whatever workspace each
task gives it; the model's calls (MCP `_meta` `swarm/origin` = model) held to the agent's tool subset."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from mcp import Client

from body_mcp import Admin, UserError, build_server
from body_mcp.state import StatePaths, all_workspace_states
from shared_protocol.config import parse_config

from ..conftest import require_binary
from .agent_helpers import AGENT, MODEL, TOOLS, agent_body, agent_config, agent_settings, model_meta, profile
from .helpers import call, ok, refused

pytestmark = pytest.mark.anyio


def task_dir(tmp_path: Path, name: str) -> Path:
    ws = tmp_path / name
    (ws / "src").mkdir(parents=True)
    (ws / "src" / "app.py").write_text("def main():\n    return 1\n")
    (ws / "README.md").write_text("# task\n")
    return ws.resolve()


async def test_an_agents_body_keeps_one_chain_identity_and_limit_windows_across_workspaces(
    tmp_path: Path, home: Path
) -> None:
    config = agent_config(limits={"file_mods_per_hour": 3})
    first, second = task_dir(tmp_path, "task-1"), task_dir(tmp_path, "task-2")
    body = agent_body(first, home, config)
    try:
        first_id = body.identity.body_id
        async with Client(build_server(body)) as client:
            ok(await call(client, "write_file", path="a.txt", content="a\n"))
            ok(await call(client, "write_file", path="b.txt", content="b\n"))
    finally:
        body.close()
    shutil.rmtree(first)  # the task is over and its directory gone: its audit data is not

    body = agent_body(second, home, config)
    try:
        assert body.identity.body_id == first_id
        async with Client(build_server(body)) as client:
            ok(await call(client, "write_file", path="c.txt", content="c\n"))
            # The hour's window counts the first task's two files: the fourth file is over the limit.
            refused(await call(client, "write_file", path="d.txt", content="d\n"), "rate_limited")
    finally:
        body.close()

    paths = StatePaths.for_agent(home, "w1")
    assert paths.dir.parent == home / "agents" and not (home / "workspaces").exists()
    with Admin.open(agent_settings(None, home, config), by="human:test") as admin:
        report = admin.verify()
        assert report.ok and report.events == 4, report.summary()
        events = admin.tail(10)
    assert {e.body_id for e in events} == {first_id}
    assert {e.agent for e in events} == {"w1"} and {e.logic_version for e in events} == {profile(config).logic_version}
    found, unreadable = all_workspace_states(home)
    assert [p.agent for p in found] == ["w1"] and unreadable == []


async def test_undo_of_a_finished_tasks_action_is_refused_clearly_once_its_workspace_is_gone(
    tmp_path: Path, home: Path
) -> None:
    config = agent_config()
    first, second = task_dir(tmp_path, "task-1"), task_dir(tmp_path, "task-2")
    body = agent_body(first, home, config)
    try:
        async with Client(build_server(body)) as client:
            written = ok(await call(client, "write_file", path="a.txt", content="a\n"))
    finally:
        body.close()

    body = agent_body(second, home, config)
    try:
        async with Client(build_server(body)) as client:
            # The task's body works in another workspace: the action is not undone there.
            data = refused(await call(client, "undo", id=written["action_id"]), "undo_unavailable")
            assert str(first) in data["message"]
            assert not (second / "a.txt").exists()
    finally:
        body.close()

    with Admin.open(agent_settings(None, home, config), by="human:test") as admin:
        # While the first task's directory is there, the agent's state undoes the action in it...
        assert admin.has_undo(written["action_id"])
        shutil.copytree(first, tmp_path / "kept")
        admin.undo(written["action_id"], force=False)
        assert not (first / "a.txt").exists()
        redo = admin.tail(1)[0]
        assert redo.tool == "undo"
        shutil.rmtree(first)
        # ...and once it is gone, undoing (here: the undo) says so, and nothing is half done.
        with pytest.raises(UserError) as gone:
            admin.undo(redo.id, force=False)
        assert "no longer exists" in str(gone.value) and str(first) in str(gone.value)
        assert admin.verify().ok


async def test_a_model_call_outside_the_agents_tools_or_to_a_runner_tool_is_refused_and_audited(
    tmp_path: Path, home: Path
) -> None:
    config = agent_config()
    ws = task_dir(tmp_path, "task")
    body = agent_body(ws, home, config)
    try:
        async with Client(build_server(body)) as client:
            for tool in ("delete_file", "next_task", "report_outcome", "no_such_tool"):
                result = await client.call_tool(tool, {"path": "src/app.py", "rationale": "try"}, meta=model_meta())
                data = refused(result, "tool_not_allowed")
                assert data["rule"] == "agents.tools"
                event = body.audit.get(data["action_id"])
                assert event is not None and event.outcome == "refused" and event.code == "tool_not_allowed"
                assert event.turn is not None and event.turn.tool_call_id == "call_1"
            assert (ws / "src" / "app.py").exists()
            # The same tools called by the runner itself (no model origin) pass this rule.
            result = await call(client, "delete_file", path="src/app.py")
            ok(result)
            result = await client.call_tool(
                "next_task", {"rationale": "runner"}, meta={"swarm/origin": "runner", "progressToken": 7}
            )
            assert (result.structured_content or {}).get("code") != "tool_not_allowed"
            # A tool of the subset, called for the model, runs.
            ok(await client.call_tool("read_text_file", {"path": "README.md", "rationale": "look"}, meta=model_meta()))
    finally:
        body.close()


@pytest.fixture
def readme(tmp_path: Path) -> Path:
    return task_dir(tmp_path, "task")


async def test_the_model_turn_is_kept_on_the_event_cut_to_a_cap_and_explained(readme: Path, home: Path) -> None:
    config = agent_config()
    body = agent_body(readme, home, config)
    long_text = "Because the test fails. " * 400
    try:
        async with Client(build_server(body)) as client:
            result = await client.call_tool(
                "read_text_file",
                {"path": "README.md", "rationale": "see the readme"},
                meta=model_meta(step=3, text=long_text, tool_call_id="toolu_42"),
            )
            action_id = ok(result)["action_id"]
    finally:
        body.close()
    with Admin.open(agent_settings(None, home, config), by="human:test") as admin:
        event = admin.get(action_id)
        explained = admin.explain(action_id)
    assert event is not None and event.turn is not None
    assert event.turn.step == 3 and event.turn.tool_call_id == "toolu_42"
    assert event.turn.text.startswith("Because the test fails.") and len(event.turn.text) < 4200
    assert event.turn.text.endswith(f"[{len(long_text) - 4096} more characters]")
    assert explained is not None
    assert "Model turn: step 3 — Because the test fails." in explained
    assert "(tool call toolu_42)" in explained and profile(config).logic_version in explained


async def test_the_task_a_runners_own_call_names_is_kept_on_its_event_and_signed(readme: Path, home: Path) -> None:
    """The runner's re-run of a task's acceptance command names the task (`swarm/task`): the brain takes the event as
    the evidence of that task only."""
    body = agent_body(readme, home, agent_config())
    try:
        async with Client(build_server(body)) as client:
            meta = {"swarm/origin": "runner", "swarm/task": "task_42"}
            result = await client.call_tool("read_text_file", {"path": "README.md", "rationale": "look"}, meta=meta)
            named = ok(result)["action_id"]
            plain = ok(await client.call_tool("read_text_file", {"path": "README.md", "rationale": "look"}))
        event, other = body.audit.get(named), body.audit.get(plain["action_id"])
        assert event is not None and (event.task_id, event.turn) == ("task_42", None)
        assert other is not None and other.task_id is None
        assert "task_id" not in other.signed_payload(), "events naming no task sign as they always did"
        assert body.audit.verify().ok
    finally:
        body.close()


@pytest.mark.parametrize(
    "meta",
    [
        {"swarm/origin": "robot"},
        {"swarm/origin": 1},
        {"swarm/turn": "step one"},
        {"swarm/turn": {"step": "1", "text": "x", "tool_call_id": "c"}},
        {"swarm/turn": {"step": True, "text": "x", "tool_call_id": "c"}},
        {"swarm/turn": {"step": -1, "text": "x", "tool_call_id": "c"}},
        {"swarm/turn": {"step": 1, "text": ["x"], "tool_call_id": "c"}},
        {"swarm/turn": {"step": 1, "text": "x", "tool_call_id": "c", "extra": 1}},
        {"swarm/origin": "model", "swarm/turn": [1, "x", "c"]},
        {"swarm/env": "elsewhere"},
        {"swarm/env": "task", "swarm/fresh_env": True},
        {"swarm/env": "check", "swarm/fresh_env": "yes"},
        {"swarm/fresh_env": True},
        {"swarm/origin": "model", "swarm/env": "check"},
        {"swarm/env": "check", "swarm/turn": {"step": 1, "text": "x", "tool_call_id": "c"}},
        {"swarm/origin": "runner", "swarm/task": ""},
        {"swarm/origin": "runner", "swarm/task": 7},
        {"swarm/origin": "runner", "swarm/task": "t" * 201},
        {"swarm/origin": "model", "swarm/task": "task_1"},
        {"swarm/task": "task_1", "swarm/turn": {"step": 1, "text": "x", "tool_call_id": "c"}},
    ],
)
async def test_a_malformed_swarm_meta_is_a_clear_audited_refusal(
    readme: Path, home: Path, meta: dict[str, object]
) -> None:
    body = agent_body(readme, home, agent_config())
    try:
        async with Client(build_server(body)) as client:
            result = await client.call_tool("read_text_file", {"path": "README.md", "rationale": "look"}, meta=meta)
            data = refused(result, "invalid_arguments")
            assert data["rule"] == "input.meta" and "_meta" in data["message"]
            event = body.audit.get(data["action_id"])
            assert event is not None and event.outcome == "refused" and event.rule == "input.meta"
            assert body.audit.verify().ok
    finally:
        body.close()


async def test_outside_agent_mode_events_carry_no_logic_version_and_model_calls_are_not_restricted(
    workspace: Path, home: Path
) -> None:
    from ..conftest import make_body

    body = make_body(workspace, home)
    try:
        async with Client(build_server(body)) as client:
            result = await client.call_tool(
                "delete_file", {"path": "README.md", "rationale": "tidy"}, meta=model_meta(step=0)
            )
            event = body.audit.get(ok(result)["action_id"])
    finally:
        body.close()
    assert event is not None and event.logic_version is None and event.turn is not None
    assert "logic_version" not in event.signed_payload()


def test_an_agents_snapshots_are_kept_apart_per_workspace(tmp_path: Path, home: Path) -> None:
    config = agent_config()
    first, second = task_dir(tmp_path, "task-1"), task_dir(tmp_path, "task-2")
    (second / "only-here.txt").write_text("2\n")
    made: list[str] = []
    for ws in (first, second):
        body = agent_body(ws, home, config)
        try:
            made.append(body.snapshotter.create(reason="test").id)
            assert [s.id for s in body.snapshotter.list_snapshots()] == [made[-1]]  # (not the other task's)
        finally:
            body.close()
    roots = {StatePaths.for_agent(home, "w1", ws).snapshot_root for ws in (first, second)}
    assert len(roots) == 2 and all(root.is_relative_to(StatePaths.for_agent(home, "w1").dir) for root in roots)


async def test_the_runners_own_command_gets_the_models_env_the_checks_fresh_one_or_none(
    workspace: Path, home: Path
) -> None:
    """`swarm/env: task` (the runner's setup at the start of a task) writes where the model's commands do;
    `swarm/env: check` is the check's own, which no model command sees, emptied by `swarm/fresh_env`; without
    `swarm/env` the runner's command sees neither."""
    require_binary("bwrap", "bubblewrap")
    config = parse_config({"models": {"fast": MODEL}, "agents": [{**AGENT, "tools": [*TOOLS, "run_command"]}]})
    body = agent_body(workspace, home, config)
    show = ["sh", "-c", "cat .venv/mark 2>/dev/null || echo none"]
    try:
        async with Client(build_server(body)) as client:

            async def run(argv: list[str], meta: dict[str, object]) -> str:
                args = {"argv": argv, "rationale": "env"}
                result = ok(await client.call_tool("run_command", args, meta=meta))
                assert result["exit_code"] == 0, result["stderr"]
                return result["stdout"].strip()

            await run(["sh", "-c", "echo task > .venv/mark"], {"swarm/env": "task"})
            assert await run(show, model_meta()) == "task"
            await run(["sh", "-c", "echo check > .venv/mark"], {"swarm/env": "check"})
            assert await run(show, {"swarm/env": "check"}) == "check"
            assert await run(show, model_meta(step=2)) == "task"  # (the model never sees the check's)
            assert await run(show, {"swarm/env": "check", "swarm/fresh_env": True}) == "none"
            assert await run(show, {}) == "none"
    finally:
        body.close()
    assert not (workspace / ".venv").exists()


async def test_the_checks_commands_run_with_the_installers_project_config_off(workspace: Path, home: Path) -> None:
    """The runner's own check (`swarm/env: check`: its setup and the acceptance re-run) gets `UV_NO_CONFIG=1` and
    `PIP_CONFIG_FILE=/dev/null`, so a `uv.toml` or `pip.conf` of the model's does not choose what it installs; the
    model's commands and the task's setup keep the project's config."""
    require_binary("bwrap", "bubblewrap")
    config = parse_config({"models": {"fast": MODEL}, "agents": [{**AGENT, "tools": [*TOOLS, "run_command"]}]})
    body = agent_body(workspace, home, config)
    show = ["sh", "-c", 'echo "${UV_NO_CONFIG:-unset} ${PIP_CONFIG_FILE:-unset}"']
    try:
        async with Client(build_server(body)) as client:

            async def run(meta: dict[str, object]) -> str:
                result = ok(await client.call_tool("run_command", {"argv": show, "rationale": "env"}, meta=meta))
                assert result["exit_code"] == 0, result["stderr"]
                return result["stdout"].strip()

            assert await run({"swarm/env": "check", "swarm/fresh_env": True}) == "1 /dev/null"
            assert await run({"swarm/env": "check"}) == "1 /dev/null"
            assert await run({"swarm/env": "task"}) == "unset unset"
            assert await run(model_meta()) == "unset unset"
    finally:
        body.close()
