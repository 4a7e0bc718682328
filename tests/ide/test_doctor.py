"""`swarm doctor`: each missing piece is reported with its fix; the body is started for real."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from body_mcp.ide import DoctorCheck, Finding, Launch, SetupIde, apply_write, plan_ide, plan_write
from body_mcp.ide.doctor import check_claude_code, check_cursor, check_files, run_doctor
from body_mcp.ide.probe import BodyLaunch, probe_body

from .test_setup_files import machine

pytestmark = pytest.mark.anyio

SWARM = (sys.executable, "-m", "swarm_cli")


def set_up(workspace: Path, home: Path, tmp_path: Path, *ides: SetupIde) -> Launch:
    launch = Launch(swarm=SWARM, workspace=workspace, env={"SWARM_HOME": str(home)})
    for ide in ides:
        for edit in plan_ide(ide, launch, machine(home)).edits:
            apply_write(plan_write(edit), backup_dir=tmp_path / "backups")
    return launch


def failures(findings: list[Finding]) -> set[tuple[str, str]]:
    return {(f.check.value, f.subject) for f in findings if not f.ok}


def edit_json(path: Path, change: Callable[[Any], object]) -> None:
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


def test_a_complete_setup_passes_every_file_check(workspace: Path, home: Path, tmp_path: Path) -> None:
    set_up(workspace, home, tmp_path, "claude-code", "cursor", "vscode")
    ides: tuple[SetupIde, ...] = ("claude-code", "cursor", "vscode")
    for ide in ides:
        findings, launches = check_files(ide, workspace, machine(home))
        assert failures(findings) == set(), ide
        assert launches and launches[0].argv[-1] == str(workspace)


def test_a_missing_deny_rule_is_reported_with_its_fix(workspace: Path, home: Path, tmp_path: Path) -> None:
    set_up(workspace, home, tmp_path, "claude-code")
    edit_json(workspace / ".claude/settings.json", lambda d: d["permissions"]["deny"].remove("Bash"))
    findings, _ = check_files("claude-code", workspace, machine(home))
    assert failures(findings) == {(DoctorCheck.DENY_RULE.value, "Bash")}
    (missing,) = [f for f in findings if not f.ok]
    assert missing.fix and '"Bash"' in missing.fix


def test_a_missing_hook_and_an_unapproved_server_are_reported(workspace: Path, home: Path, tmp_path: Path) -> None:
    set_up(workspace, home, tmp_path, "claude-code", "cursor")
    edit_json(workspace / ".claude/settings.json", lambda d: d.pop("hooks"))
    edit_json(workspace / ".claude/settings.local.json", lambda d: d.update(disabledMcpjsonServers=["swarm"]))
    edit_json(workspace / ".cursor/hooks.json", lambda d: d["hooks"].pop("beforeShellExecution"))
    edit_json(workspace / ".cursor/hooks.json", lambda d: d["hooks"]["preToolUse"][0].pop("failClosed"))
    claude, _ = check_files("claude-code", workspace, machine(home))
    cursor, _ = check_files("cursor", workspace, machine(home))
    assert failures(claude) == {("hook", "PreToolUse"), ("mcp_approval", "swarm")}
    assert failures(cursor) == {("hook", "beforeShellExecution"), ("hook", "preToolUse")}
    assert all(f.fix for f in claude + cursor if not f.ok)


def test_unscoped_read_rules_and_a_personal_file_git_would_commit_are_reported(
    workspace: Path, home: Path, tmp_path: Path
) -> None:
    set_up(workspace, home, tmp_path, "claude-code")
    edit_json(workspace / ".claude/settings.json", lambda d: d["permissions"]["allow"].append("Read"))
    edit_json(
        workspace / ".claude/settings.local.json", lambda d: d.update(permissions={"allow": ["Grep", "Read(~/**)"]})
    )
    (workspace / ".gitignore").unlink()
    findings, _ = check_files("claude-code", workspace, machine(home))
    assert failures(findings) == {
        ("allow_rule", "Read"),
        ("allow_rule", "Grep"),
        ("allow_rule", "Read(~/**)"),
        ("gitignore", ".claude/settings.local.json"),
    }
    assert all(f.fix for f in findings if not f.ok)
    set_up(workspace, home, tmp_path, "claude-code")  # init takes out the rule it used to write, and ignores the file
    assert failures(check_files("claude-code", workspace, machine(home))[0]) == {
        ("allow_rule", "Grep"),
        ("allow_rule", "Read(~/**)"),
    }


def test_missing_files_are_reported_not_crashed_on(workspace: Path, home: Path) -> None:
    findings = check_claude_code(None, None, workspace=workspace, machine=machine(home))
    assert {f.check for f in findings if not f.ok} == {
        DoctorCheck.DENY_RULE,
        DoctorCheck.ALLOW_RULE,
        DoctorCheck.HOOK,
        DoctorCheck.MCP_APPROVAL,
    }
    assert ("hook", "version") in failures(check_cursor({"hooks": {}}, workspace=workspace))


def test_a_registration_for_another_workspace_or_a_vanished_swarm_is_reported(
    workspace: Path, home: Path, tmp_path: Path
) -> None:
    set_up(workspace, home, tmp_path, "claude-code", "vscode")
    edit_json(workspace / ".mcp.json", lambda d: d["mcpServers"]["swarm"]["args"].__setitem__(-1, str(tmp_path)))
    edit_json(workspace / ".vscode/mcp.json", lambda d: d["servers"]["swarm"].update(command="/gone/swarm"))
    claude, _ = check_files("claude-code", workspace, machine(home))
    vscode, _ = check_files("vscode", workspace, machine(home))
    assert ("registration", ".mcp.json") in failures(claude)
    assert ("registration", ".vscode/mcp.json") in failures(vscode)


async def test_a_body_that_fails_to_start_is_reported_with_its_fix(workspace: Path, home: Path) -> None:
    launch = BodyLaunch(argv=(*SWARM, "body", "--workspace", "/"), env=(("SWARM_HOME", str(home)),))
    finding = await probe_body(launch, timeout_s=20, ide="claude-code")
    assert (finding.check, finding.ok) == (DoctorCheck.BODY_STARTS, False)
    assert finding.fix and finding.subject.endswith("--workspace /")


async def test_doctor_starts_the_registered_body_and_lists_its_tools(
    workspace: Path, home: Path, tmp_path: Path
) -> None:
    launch = set_up(workspace, home, tmp_path, "claude-code", "cursor")
    findings = await run_doctor([], launch, machine(home), timeout_s=20)
    assert failures(findings) == set()
    # Both IDEs register the same command line: it is started once.
    assert [f.ide for f in findings if f.check == DoctorCheck.BODY_STARTS] == ["cursor"]


async def test_doctor_with_nothing_set_up_says_how_to_start_and_still_tries_the_body(
    workspace: Path, home: Path
) -> None:
    probed: list[BodyLaunch] = []

    async def probe(body: BodyLaunch, *, timeout_s: float, ide: str) -> Finding:
        probed.append(body)
        return Finding(ide=ide, check=DoctorCheck.BODY_STARTS, ok=True, subject="", message="")

    launch = Launch(swarm=SWARM, workspace=workspace, env={"SWARM_HOME": str(home)})
    findings = await run_doctor([], launch, machine(home), timeout_s=20, probe=probe)
    assert failures(findings) == {(DoctorCheck.SETUP.value, str(workspace))}
    assert [b.argv for b in probed] == [(*SWARM, "body", "--workspace", str(workspace))]
