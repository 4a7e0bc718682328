"""The hook's runner: one answer, within its time bound, recorded in the workspace's own audit trail."""

from __future__ import annotations

import io
import json
import os
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from body_mcp import BodySettings
from body_mcp.ide import BodyAuditSink, HookCode, run_hook
from shared_protocol.config import SwarmConfig

from ..conftest import make_body
from .conftest import claude_event, cursor_event, encode, make_runtime


def test_a_hook_whose_input_never_ends_still_answers_deny_within_its_budget(workspace: Path, home: Path) -> None:
    read_end, write_end = os.pipe()  # the writer stays open: the worker blocks reading stdin
    out = io.StringIO()
    runtime = replace(make_runtime("claude-code", workspace, home), budget_s=0.3)
    started = time.monotonic()
    with os.fdopen(read_end, "rb") as stdin:
        finished = run_hook(runtime, stdin, out)
        os.close(write_end)
    assert time.monotonic() - started < 2
    assert finished is False
    answer = json.loads(out.getvalue())
    assert answer["hookSpecificOutput"]["permissionDecision"] == "deny"


def test_the_runner_prints_exactly_one_answer(workspace: Path, home: Path) -> None:
    out = io.StringIO()
    event = cursor_event("beforeShellExecution", root=workspace, command="ls", cwd=str(workspace))
    assert run_hook(make_runtime("cursor", workspace, home), io.BytesIO(encode(event)), out)
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["permission"] == "deny"


def settings_for(home: Path) -> Callable[[Path], BodySettings]:
    return lambda ws: BodySettings(workspace=ws, home=home, config=SwarmConfig(), agent="claude-code")


def test_decisions_land_in_the_workspace_audit_trail_with_contents_redacted(workspace: Path, home: Path) -> None:
    runtime = replace(make_runtime("claude-code", workspace, home), sink=BodyAuditSink(settings_for(home)))
    write = claude_event(
        "Edit",
        {"file_path": str(workspace / "src/app.py"), "old_string": "return 1", "new_string": "return 2"},
        cwd=workspace,
    )
    read = claude_event("Read", {"file_path": str(workspace / "README.md")}, cwd=workspace)
    for event in (write, read):
        run_hook(runtime, io.BytesIO(encode(event)), io.StringIO())
    body = make_body(workspace, home)
    try:
        denied, allowed = body.audit.tail(2)
        assert body.audit.verify().ok
    finally:
        body.close()
    assert (denied.outcome, denied.code, denied.tool, denied.rule) == (
        "refused",
        HookCode.BUILTIN_TOOL_DENIED.value,
        "builtin:Edit",
        "ide.hooks",
    )
    assert denied.agent == "claude-code" and denied.session == "ses-claude-1" and denied.rationale
    assert denied.arguments["new_string"]["size"] == len("return 2")  # hashed, not kept
    assert (allowed.outcome, allowed.tool, allowed.files) == ("ok", "builtin:Read", [str(workspace / "README.md")])


def test_an_unusable_workspace_means_nothing_can_be_audited_so_reads_are_denied(home: Path, tmp_path: Path) -> None:
    gone = tmp_path / "deleted-workspace"
    runtime = replace(make_runtime("claude-code", gone, home), sink=BodyAuditSink(settings_for(home)))
    out = io.StringIO()
    run_hook(runtime, io.BytesIO(encode(claude_event("Read", {"file_path": str(gone / "a")}, cwd=gone))), out)
    assert json.loads(out.getvalue())["hookSpecificOutput"]["permissionDecision"] == "deny"
