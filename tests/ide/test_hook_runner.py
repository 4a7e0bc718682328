"""The hook's runner: one answer, within its time bound, recorded in the workspace's own audit trail."""

from __future__ import annotations

import io
import json
import os
import sqlite3
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


def test_with_finish_later_the_event_is_journaled_before_the_answer_and_committed_and_anchored_on_close(
    workspace: Path, home: Path
) -> None:
    sink = BodyAuditSink(settings_for(home), finish_later=True)
    runtime = replace(make_runtime("claude-code", workspace, home), sink=sink)
    out = io.StringIO()
    event = claude_event("Write", {"file_path": str(workspace / "x.py"), "content": "x"}, cwd=workspace)
    assert run_hook(runtime, io.BytesIO(encode(event)), out)
    assert json.loads(out.getvalue())["hookSpecificOutput"]["permissionDecision"] == "deny"
    paths = settings_for(home)(workspace).paths
    with sqlite3.connect(paths.db) as conn:  # answered: the event is in the journal only, not committed yet
        assert conn.execute("SELECT count(*) FROM audit_events").fetchone() == (0,)
    assert paths.audit.journal.stat().st_size > 0
    sink.close()
    with sqlite3.connect(paths.db) as conn:
        assert conn.execute("SELECT count(*) FROM audit_events").fetchone() == (1,)
    body = make_body(workspace, home)
    try:
        assert body.audit.verify().ok
        (denied,) = body.audit.tail(1)
        assert (denied.tool, denied.code) == ("builtin:Write", HookCode.BUILTIN_TOOL_DENIED.value)
    finally:
        body.close()


def test_an_event_journaled_by_a_hook_that_died_before_its_commit_is_committed_by_the_next_store(
    workspace: Path, home: Path
) -> None:
    sink = BodyAuditSink(settings_for(home), finish_later=True)
    runtime = replace(make_runtime("claude-code", workspace, home), sink=sink)
    event = claude_event("Read", {"file_path": str(workspace / ".env")}, cwd=workspace)
    assert run_hook(runtime, io.BytesIO(encode(event)), io.StringIO())
    # (the process exits here without `close()`: the watchdog's `os._exit`, a kill)
    body = make_body(workspace, home)
    try:
        (protected,) = body.audit.tail(1)
        assert protected.code == HookCode.PROTECTED_PATH.value
        assert body.audit.verify().ok
    finally:
        body.close()
        sink.close()
