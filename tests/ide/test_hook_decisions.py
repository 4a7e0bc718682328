"""The hooks' answers to real Claude Code and Cursor events, decided and rendered without I/O."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from body_mcp.ide import HookCode, MemoryAuditSink, handle
from body_mcp.ide.tools import BODY_TOOLS
from body_mcp.tools import ALL_TOOLS

from .conftest import claude_event, cursor_event, encode, make_runtime


def claude(
    workspace: Path, home: Path, tool: str, tool_input: dict[str, Any]
) -> tuple[dict[str, Any], MemoryAuditSink]:
    sink = MemoryAuditSink()
    answer = handle(
        make_runtime("claude-code", workspace, home, sink), encode(claude_event(tool, tool_input, cwd=workspace))
    )
    return answer, sink


def cursor(workspace: Path, home: Path, event: str, **fields: Any) -> tuple[dict[str, Any], MemoryAuditSink]:
    sink = MemoryAuditSink()
    answer = handle(
        make_runtime("cursor", workspace, home, sink), encode(cursor_event(event, root=workspace, **fields))
    )
    return answer, sink


def decision_of(answer: dict[str, Any]) -> str:
    return answer["hookSpecificOutput"]["permissionDecision"]


def only_code(sink: MemoryAuditSink) -> HookCode:
    assert len(sink.records) == 1
    return sink.records[0][1].code


@pytest.mark.parametrize(
    "tool,tool_input,instead",
    [
        ("Write", {"file_path": "{ws}/src/new.py", "content": "print(1)\n"}, "write_file"),
        ("Edit", {"file_path": "{ws}/src/app.py", "old_string": "1", "new_string": "2"}, "edit_file"),
        ("MultiEdit", {"file_path": "{ws}/src/app.py", "edits": [{"old_string": "1", "new_string": "2"}]}, "edit_file"),
        ("NotebookEdit", {"notebook_path": "{ws}/n.ipynb", "new_source": "x = 1"}, "edit_file"),
        ("Bash", {"command": "rm -rf build", "description": "clean"}, "run_command"),
        ("PowerShell", {"command": "Remove-Item build"}, "run_command"),
        ("Monitor", {"command": "tail -f log"}, "run_command"),
    ],
)
def test_claude_code_built_in_writes_and_shells_are_denied_with_the_body_tool_to_use(
    workspace: Path, home: Path, tool: str, tool_input: dict[str, Any], instead: str
) -> None:
    filled = {k: v.format(ws=workspace) if isinstance(v, str) else v for k, v in tool_input.items()}
    answer, sink = claude(workspace, home, tool, filled)
    assert decision_of(answer) == "deny"
    assert f"mcp__swarm__{instead}" in answer["hookSpecificOutput"]["permissionDecisionReason"]
    assert answer["hookSpecificOutput"]["hookEventName"] == "PreToolUse"
    assert only_code(sink) == HookCode.BUILTIN_TOOL_DENIED
    assert sink.records[0][1].instead == instead


def test_claude_code_body_tools_are_allowed_and_left_to_the_body_to_audit(workspace: Path, home: Path) -> None:
    for tool in ("mcp__swarm__write_file", "mcp__swarm__run_command", "mcp__swarm__read_text_file"):
        answer, sink = claude(workspace, home, tool, {"path": "a.txt", "rationale": "r"})
        assert decision_of(answer) == "allow"
        assert sink.records == []


def test_claude_code_read_only_built_ins_are_allowed_inside_the_workspace_and_audited(
    workspace: Path, home: Path
) -> None:
    for tool, tool_input in [
        ("Read", {"file_path": str(workspace / "src" / "app.py")}),
        ("Glob", {"pattern": "**/*.py", "path": str(workspace)}),
        ("Grep", {"pattern": "def main", "path": str(workspace), "glob": "*.py"}),
        ("Read", {"file_path": "README.md"}),
    ]:
        answer, sink = claude(workspace, home, tool, tool_input)
        assert decision_of(answer) == "allow", tool
        assert only_code(sink) == HookCode.READ_ONLY_BUILTIN


@pytest.mark.parametrize(
    "tool,tool_input",
    [
        ("Read", {"file_path": "{ws}/.env"}),
        ("Read", {"file_path": "{ws}/config/.env.local"}),
        ("Read", {"file_path": "{home}/workspaces/x/audit.key"}),
        ("Glob", {"pattern": "**/.env*"}),
        ("Grep", {"pattern": "SECRET", "path": "{ws}", "glob": ".env*"}),
        ("Read", {"file_path": "/elsewhere/deploy/id_rsa"}),
    ],
)
def test_claude_code_reads_of_protected_paths_and_swarm_home_are_denied(
    workspace: Path, home: Path, tool: str, tool_input: dict[str, Any]
) -> None:
    filled = {k: v.format(ws=workspace, home=home) for k, v in tool_input.items()}
    answer, sink = claude(workspace, home, tool, filled)
    assert decision_of(answer) == "deny"
    assert only_code(sink) == HookCode.PROTECTED_PATH


def test_a_symlink_cannot_launder_a_protected_name(workspace: Path, home: Path) -> None:
    (workspace / "notes.txt").symlink_to(workspace / ".env")
    answer, _ = claude(workspace, home, "Read", {"file_path": str(workspace / "notes.txt")})
    assert decision_of(answer) == "deny"


def test_claude_code_defers_to_its_own_prompts_outside_the_workspace_and_for_other_servers(
    workspace: Path, home: Path, outside: Path
) -> None:
    for tool, tool_input, code in [
        ("Read", {"file_path": str(outside / "secret.txt")}, HookCode.OUTSIDE_WORKSPACE),
        ("WebFetch", {"url": "https://example.com", "prompt": "summarise"}, HookCode.NETWORK_BUILTIN),
        ("mcp__github__create_issue", {"title": "x"}, HookCode.OTHER_MCP_TOOL),
    ]:
        answer, sink = claude(workspace, home, tool, tool_input)
        assert answer == {}, tool  # no decision: Claude Code's own rules and prompts apply
        assert only_code(sink) == code


def test_claude_code_bookkeeping_tools_pass_unaudited(workspace: Path, home: Path) -> None:
    for tool in ("TodoWrite", "Agent", "ExitPlanMode", "AskUserQuestion"):
        answer, sink = claude(workspace, home, tool, {})
        assert answer == {}
        assert sink.records == []


def test_an_unknown_built_in_tool_is_denied(workspace: Path, home: Path) -> None:
    answer, sink = claude(workspace, home, "QuantumShell", {"command": "ls"})
    assert decision_of(answer) == "deny"
    assert only_code(sink) == HookCode.UNKNOWN_TOOL


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"not json",
        b"\xff\xfe",
        b"[]",
        b'{"hook_event_name": "PostToolUse", "tool_name": "Bash", "tool_input": {}}',
        b'{"hook_event_name": "PreToolUse", "tool_input": {}}',
        b'{"hook_event_name": "PreToolUse", "tool_name": "Read", "tool_input": "README.md"}',
        b'{"hook_event_name": "PreToolUse", "tool_name": 7, "tool_input": {}}',
    ],
)
def test_malformed_claude_code_input_is_denied_in_claude_codes_format(workspace: Path, home: Path, raw: bytes) -> None:
    sink = MemoryAuditSink()
    answer = handle(make_runtime("claude-code", workspace, home, sink), raw)
    assert decision_of(answer) == "deny"
    assert only_code(sink) == HookCode.MALFORMED_EVENT


def test_a_call_that_cannot_be_audited_is_denied_and_a_denial_stays_one(workspace: Path, home: Path) -> None:
    sink = MemoryAuditSink(fail=True)
    runtime = make_runtime("claude-code", workspace, home, sink)
    read = handle(runtime, encode(claude_event("Read", {"file_path": str(workspace / "README.md")}, cwd=workspace)))
    bash = handle(runtime, encode(claude_event("Bash", {"command": "ls"}, cwd=workspace)))
    assert decision_of(read) == "deny" and decision_of(bash) == "deny"


def test_an_error_inside_the_hook_is_a_deny(workspace: Path, home: Path) -> None:
    def broken_guard(_ws: Path | None) -> Any:
        raise RuntimeError("config unreadable")

    runtime = make_runtime("cursor", workspace, home)
    runtime.guard_for = broken_guard
    answer = handle(runtime, encode(cursor_event("preToolUse", root=workspace, tool_name="Read", tool_input={})))
    assert answer["permission"] == "deny"


# -- Cursor -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "tool,tool_input,instead",
    [
        ("Shell", {"command": "npm install", "working_directory": "{ws}"}, "run_command"),
        ("Write", {"file_path": "{ws}/a.txt", "contents": "hi"}, "write_file"),
        ("StrReplace", {"file_path": "{ws}/src/app.py", "old_string": "1", "new_string": "2"}, "edit_file"),
        ("Edit", {"file_path": "{ws}/src/app.py"}, "edit_file"),
        ("Delete", {"file_path": "{ws}/README.md"}, "delete_file"),
        ("run_terminal_cmd", {"command": "ls"}, "run_command"),
    ],
)
def test_cursor_built_in_writes_and_shells_are_denied_in_cursors_flat_format(
    workspace: Path, home: Path, tool: str, tool_input: dict[str, Any], instead: str
) -> None:
    filled = {k: v.format(ws=workspace) for k, v in tool_input.items()}
    answer, sink = cursor(
        workspace, home, "preToolUse", tool_name=tool, tool_input=filled, tool_use_id="t1", cwd=str(workspace)
    )
    assert answer["permission"] == "deny" and answer["decision"] == "deny"
    assert instead in answer["agent_message"] and answer["user_message"]
    assert only_code(sink) == HookCode.BUILTIN_TOOL_DENIED


def test_cursor_shell_gate_denies_every_command(workspace: Path, home: Path) -> None:
    answer, sink = cursor(workspace, home, "beforeShellExecution", command="git status", cwd=str(workspace))
    assert answer["permission"] == "deny" and "run_command" in answer["agent_message"]
    assert only_code(sink) == HookCode.BUILTIN_TOOL_DENIED


def test_cursor_body_tools_and_read_only_tools_are_allowed(workspace: Path, home: Path) -> None:
    for tool, tool_input in [
        ("MCP:write_file", {"path": "a.txt", "content": "x", "rationale": "r"}),
        ("mcp__swarm__run_command", {"argv": ["ls"]}),
        ("Read", {"file_path": str(workspace / "README.md")}),
        ("Grep", {"pattern": "main", "path": str(workspace)}),
        ("LS", {"path": str(workspace)}),
    ]:
        answer, _ = cursor(workspace, home, "preToolUse", tool_name=tool, tool_input=tool_input, cwd=str(workspace))
        assert answer["permission"] == "allow", tool


def test_cursor_mcp_gate_allows_the_body_and_asks_a_human_for_other_servers(workspace: Path, home: Path) -> None:
    body = f"/opt/venv/bin/swarm body --workspace {workspace}"
    ours, _ = cursor(workspace, home, "beforeMCPExecution", tool_name="write_file", tool_input="{}", command=body)
    theirs, sink = cursor(
        workspace,
        home,
        "beforeMCPExecution",
        tool_name="write_file",
        tool_input='{"path": "/etc/passwd"}',
        command="npx -y @modelcontextprotocol/server-filesystem /",
    )
    assert ours == {"permission": "allow"}
    assert theirs["permission"] == "ask"
    assert only_code(sink) == HookCode.OTHER_MCP_TOOL


def test_cursor_read_gate_denies_protected_files_and_never_keeps_their_content(workspace: Path, home: Path) -> None:
    secret, sink = cursor(
        workspace, home, "beforeReadFile", file_path=str(workspace / ".env"), content="SECRET=hunter2", attachments=[]
    )
    plain, quiet = cursor(workspace, home, "beforeReadFile", file_path=str(workspace / "README.md"), content="# x")
    assert secret["permission"] == "deny" and set(secret) == {"permission", "user_message"}
    assert plain == {"permission": "allow"}
    assert "hunter2" not in repr(sink.records)
    assert quiet.records == []


def test_cursor_after_file_edit_is_audited_and_answered_with_nothing(workspace: Path, home: Path) -> None:
    answer, sink = cursor(
        workspace,
        home,
        "afterFileEdit",
        file_path=str(workspace / "src" / "app.py"),
        edits=[{"old_string": "return 1", "new_string": "return 2"}],
    )
    assert answer == {}
    assert only_code(sink) == HookCode.BUILTIN_EDIT_OBSERVED


@pytest.mark.parametrize(
    "raw",
    [b"{", b"42", b'{"hook_event_name": "stop", "status": "completed"}', b'{"hook_event_name": "preToolUse"}'],
)
def test_malformed_cursor_input_is_denied_in_cursors_format(workspace: Path, home: Path, raw: bytes) -> None:
    answer = handle(make_runtime("cursor", workspace, home), raw)
    assert answer["permission"] == "deny" and answer["decision"] == "deny"


def test_the_hooks_know_every_tool_the_body_serves() -> None:
    assert {spec.name for spec in ALL_TOOLS} <= BODY_TOOLS
