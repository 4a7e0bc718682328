"""`swarm init --ide`'s files: merged into what is there, never clobbered, and stable on a second run."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from body_mcp.gitignore import GitIgnore, parse
from body_mcp.ide import (
    ConfigFileUnreadable,
    Environment,
    Launch,
    MergeConflict,
    SetupIde,
    apply_write,
    managed_variant,
    plan_ide,
    plan_write,
)
from body_mcp.ide.configs import claude_desktop_config_path, is_swarm_hook, unscoped_read_allows
from body_mcp.ide.merge import set_claude_hook, set_cursor_hooks
from body_mcp.ide.tools import CLAUDE_CODE_FILE_READERS
from shared_protocol.config import DEFAULT_DENIED_PATHS

SWARM = ("/opt/swarm/bin/swarm",)


def machine(home: Path, platform: str = "linux") -> Environment:
    return Environment(
        platform=platform, env={}, user_home=home.parent, swarm_home=home, denied_paths=DEFAULT_DENIED_PATHS
    )


def launch(workspace: Path, swarm: tuple[str, ...] = SWARM) -> Launch:
    return Launch(swarm=swarm, workspace=workspace)


def write_json(path: Path, value: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value))


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def run_init(workspace: Path, home: Path, ide: SetupIde, backups: Path) -> list[Path]:
    """Plan and apply like `init_ide` does; return the files that changed."""
    plan = plan_ide(ide, launch(workspace), machine(home))
    writes = [plan_write(edit) for edit in plan.edits]
    for write in writes:
        apply_write(write, backup_dir=backups)
    return [w.path for w in writes if w.changed]


def test_init_keeps_every_other_server_setting_and_hook_and_a_second_run_changes_nothing(
    workspace: Path, home: Path, tmp_path: Path
) -> None:
    write_json(workspace / ".mcp.json", {"mcpServers": {"github": {"command": "gh-mcp", "args": ["serve"]}}})
    user_settings: dict[str, Any] = {
        "model": "opus",
        "permissions": {"allow": ["Bash(npm test)"], "deny": ["Read(./secrets/**)"], "defaultMode": "default"},
        "hooks": {
            "PreToolUse": [{"matcher": "Bash", "hooks": [{"type": "command", "command": "./lint.sh"}]}],
            "Stop": [{"hooks": [{"type": "command", "command": "notify"}]}],
        },
    }
    write_json(workspace / ".claude" / "settings.json", user_settings)
    write_json(workspace / ".claude" / "settings.local.json", {"enabledMcpjsonServers": ["github"], "env": {"A": "1"}})
    write_json(workspace / ".cursor" / "mcp.json", {"mcpServers": {"db": {"url": "http://localhost:9"}}})
    write_json(
        workspace / ".cursor" / "hooks.json",
        {"version": 1, "hooks": {"afterFileEdit": [{"command": "prettier --write"}], "stop": [{"command": "x"}]}},
    )
    write_json(workspace / ".vscode" / "mcp.json", {"inputs": [], "servers": {"other": {"type": "http", "url": "u"}}})
    backups = tmp_path / "backups"

    ides: tuple[SetupIde, ...] = ("claude-code", "cursor", "vscode")
    for ide in ides:
        assert run_init(workspace, home, ide, backups)
    snapshot = {p: p.read_bytes() for p in workspace.rglob("*.json")}
    for ide in ides:
        assert run_init(workspace, home, ide, backups) == []
    assert {p: p.read_bytes() for p in workspace.rglob("*.json")} == snapshot

    mcp = read_json(workspace / ".mcp.json")["mcpServers"]
    assert mcp["github"] == {"command": "gh-mcp", "args": ["serve"]}
    assert mcp["swarm"] == {"type": "stdio", "command": SWARM[0], "args": ["body", "--workspace", str(workspace)]}
    settings = read_json(workspace / ".claude" / "settings.json")
    assert settings["model"] == "opus" and settings["permissions"]["defaultMode"] == "default"
    assert settings["permissions"]["allow"][0] == "Bash(npm test)" and "mcp__swarm" in settings["permissions"]["allow"]
    assert settings["permissions"]["deny"][0] == "Read(./secrets/**)"
    assert {"Bash", "Edit", "Write", "NotebookEdit"} <= set(settings["permissions"]["deny"])
    assert "Read(**/.env*)" in settings["permissions"]["deny"]
    assert settings["hooks"]["Stop"] == user_settings["hooks"]["Stop"]
    pre = settings["hooks"]["PreToolUse"]
    assert pre[0] == user_settings["hooks"]["PreToolUse"][0] and len(pre) == 2
    assert pre[1]["matcher"] == "*" and is_swarm_hook(pre[1]["hooks"][0]["command"], "claude-code")
    local = read_json(workspace / ".claude" / "settings.local.json")
    assert local == {"enabledMcpjsonServers": ["github", "swarm"], "env": {"A": "1"}}
    cursor_hooks = read_json(workspace / ".cursor" / "hooks.json")
    assert cursor_hooks["hooks"]["stop"] == [{"command": "x"}]
    assert cursor_hooks["hooks"]["afterFileEdit"][0] == {"command": "prettier --write"}
    assert all(cursor_hooks["hooks"][e][-1]["failClosed"] for e in ("preToolUse", "beforeShellExecution"))
    assert read_json(workspace / ".cursor" / "mcp.json")["mcpServers"]["db"] == {"url": "http://localhost:9"}
    vscode = read_json(workspace / ".vscode" / "mcp.json")
    assert vscode["inputs"] == [] and vscode["servers"]["swarm"]["type"] == "stdio" and "other" in vscode["servers"]
    # Every file that existed before was backed up once, outside the workspace.
    assert len(list(backups.iterdir())) == 6


def test_a_moved_swarm_replaces_swarms_own_entries_instead_of_adding_more(
    workspace: Path, home: Path, tmp_path: Path
) -> None:
    ides: tuple[SetupIde, ...] = ("claude-code", "cursor")
    for swarm in (SWARM, ("/usr/local/bin/swarm",)):
        for ide in ides:
            plan = plan_ide(ide, launch(workspace, swarm), machine(home))
            for edit in plan.edits:
                apply_write(plan_write(edit), backup_dir=tmp_path / "b")
    hooks = read_json(workspace / ".claude" / "settings.json")["hooks"]["PreToolUse"]
    assert len(hooks) == 1 and "/usr/local/bin/swarm" in hooks[0]["hooks"][0]["command"]
    cursor = read_json(workspace / ".cursor" / "hooks.json")["hooks"]
    assert all(len(entries) == 1 for entries in cursor.values())


def test_swarms_hook_is_moved_out_of_a_users_group_without_losing_the_users_hook() -> None:
    ours = "/opt/swarm/bin/swarm hook claude-code --workspace /w"
    doc = {"hooks": {"PreToolUse": [{"matcher": "*", "hooks": [{"command": "./mine.sh"}, {"command": ours}]}]}}
    group = {"matcher": "*", "hooks": [{"type": "command", "command": ours, "timeout": 10}]}
    merged = set_claude_hook(
        doc, event="PreToolUse", group=group, is_ours=lambda c: is_swarm_hook(c, "claude-code"), where="s"
    )
    assert merged["hooks"]["PreToolUse"] == [{"matcher": "*", "hooks": [{"command": "./mine.sh"}]}, group]
    assert doc["hooks"]["PreToolUse"][0]["hooks"][1] == {"command": ours}  # the input is untouched


def test_a_key_of_the_wrong_shape_is_a_conflict_not_an_overwrite() -> None:
    with pytest.raises(MergeConflict):
        set_cursor_hooks(
            {"hooks": []}, entries={"preToolUse": {"command": "swarm hook cursor"}}, is_ours=bool, where="h"
        )


def test_a_file_that_is_not_json_is_left_untouched(workspace: Path, home: Path) -> None:
    text = '{\n  // my servers\n  "mcpServers": {}\n}\n'
    (workspace / ".mcp.json").write_text(text)
    plan = plan_ide("claude-code", launch(workspace), machine(home))
    with pytest.raises(ConfigFileUnreadable):
        plan_write(plan.edits[0])
    assert (workspace / ".mcp.json").read_text() == text


def test_claude_desktop_config_lives_where_each_os_keeps_it_and_is_printed_on_linux(tmp_path: Path) -> None:
    user = tmp_path / "u"
    mac = claude_desktop_config_path("darwin", {}, user)
    win = claude_desktop_config_path("win32", {"APPDATA": str(tmp_path / "Roaming")}, user)
    assert mac == user / "Library/Application Support/Claude/claude_desktop_config.json"
    assert win == tmp_path / "Roaming" / "Claude" / "claude_desktop_config.json"
    assert claude_desktop_config_path("linux", {}, user) is None
    linux = plan_ide("claude-desktop", launch(tmp_path / "ws"), machine(tmp_path / "h"))
    assert linux.edits == [] and linux.snippets[0][1]["mcpServers"]["swarm"]["command"] == SWARM[0]


def test_claude_desktop_registration_merges_into_its_config_with_absolute_paths(tmp_path: Path, home: Path) -> None:
    home_dir = home.parent
    config = home_dir / "Library/Application Support/Claude/claude_desktop_config.json"
    write_json(config, {"mcpServers": {"fs": {"command": "npx"}}, "globalShortcut": "Ctrl+Space"})
    plan = plan_ide("claude-desktop", launch(tmp_path / "ws"), machine(home, platform="darwin"))
    apply_write(plan_write(plan.edits[0]), backup_dir=tmp_path / "b")
    merged = read_json(config)
    assert merged["globalShortcut"] == "Ctrl+Space" and "fs" in merged["mcpServers"]
    entry = merged["mcpServers"]["swarm"]
    assert Path(entry["command"]).is_absolute() and Path(entry["args"][-1]).is_absolute()


def test_managed_variants_take_the_workspace_from_the_event_and_lock_bypass_mode(workspace: Path) -> None:
    claude = managed_variant("claude-code", launch(workspace), DEFAULT_DENIED_PATHS)
    hook = claude.content["hooks"]["PreToolUse"][0]["hooks"][0]["command"]
    assert "--workspace" not in hook and is_swarm_hook(hook, "claude-code")
    assert claude.content["disableBypassPermissionsMode"] == "disable"
    assert "Bash" in claude.content["permissions"]["deny"]
    assert "/etc/claude-code/managed-settings.json" in claude.paths.values()
    cursor = managed_variant("cursor", launch(workspace), DEFAULT_DENIED_PATHS)
    assert cursor.content["version"] == 1 and cursor.content["hooks"]["preToolUse"][0]["failClosed"] is True
    assert "/etc/cursor/hooks.json" in cursor.paths.values()


def test_swarm_home_and_config_set_at_init_are_pinned_into_every_command(workspace: Path, home: Path) -> None:
    pinned = Launch(swarm=SWARM, workspace=workspace, env={"SWARM_HOME": str(home)})
    assert pinned.server_entry(typed=True)["env"] == {"SWARM_HOME": str(home)}
    command = pinned.hook_command("cursor")
    assert command.startswith(f"env SWARM_HOME={home} ") and is_swarm_hook(command, "cursor")


def test_backups_are_named_by_time_and_original_path(tmp_path: Path) -> None:
    target = tmp_path / "ws" / ".mcp.json"
    write_json(target, {"a": 1})
    plan = plan_ide("claude-code", launch(tmp_path / "ws"), machine(tmp_path / "h"))
    backup = apply_write(plan_write(plan.edits[0]), backup_dir=tmp_path / "b", now=datetime(2025, 1, 2, tzinfo=UTC))
    assert backup is not None and backup.name.startswith("20250102T000000000000Z_")
    assert backup.name.endswith("ws__.mcp.json") and json.loads(backup.read_text()) == {"a": 1}


def claude_reads_unprompted(allow: list[str], path: Path) -> bool:
    """Whether Claude Code's allow rules let its `Read` open `path` with no prompt (path rules follow gitignore)."""
    for rule in allow:
        name, _, spec = rule.partition("(")
        if name != "Read":
            continue
        if not spec:
            return True
        assert spec.startswith("//"), rule  # what swarm writes: an absolute rule
        if GitIgnore(parse(spec.removesuffix(")")[2:])).ignored(path.as_posix().lstrip("/")):
            return True
    return False


def test_claude_code_reads_are_allowed_unprompted_inside_the_workspace_only(
    workspace: Path, home: Path, tmp_path: Path
) -> None:
    run_init(workspace, home, "claude-code", tmp_path / "backups")
    allow = read_json(workspace / ".claude" / "settings.json")["permissions"]["allow"]
    assert claude_reads_unprompted(allow, workspace / "src" / "app.py")
    assert not claude_reads_unprompted(allow, home.parent / ".aws" / "credentials")
    assert not claude_reads_unprompted(allow, Path(f"{workspace}-other") / "x.py")
    # Glob, Grep and LSP rules take no path: any rule for them would let them read anywhere.
    assert [rule for rule in allow if rule.partition("(")[0] in CLAUDE_CODE_FILE_READERS] == [
        f"Read(//{workspace.as_posix().lstrip('/')}/**)"
    ]


def test_init_takes_out_the_unscoped_read_rules_an_earlier_init_wrote(
    workspace: Path, home: Path, tmp_path: Path
) -> None:
    earlier = ["Bash(npm test)", "mcp__swarm", "Read", "Glob", "Grep", "LSP", "Read(./docs/**)"]
    write_json(workspace / ".claude" / "settings.json", {"permissions": {"allow": earlier}})
    run_init(workspace, home, "claude-code", tmp_path / "backups")
    allow = read_json(workspace / ".claude" / "settings.json")["permissions"]["allow"]
    assert allow == ["Bash(npm test)", "mcp__swarm", "Read(./docs/**)", f"Read(//{workspace.as_posix()[1:]}/**)"]
    assert run_init(workspace, home, "claude-code", tmp_path / "backups") == []


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (None, ".claude/settings.local.json\n"),
        ("node_modules/\n*.log", "node_modules/\n*.log\n.claude/settings.local.json\n"),
        (
            "*.local.json\n!.claude/settings.local.json\n",
            "*.local.json\n!.claude/settings.local.json\n.claude/settings.local.json\n",
        ),
        (".claude/\n", None),
        ("/.claude/settings.local.json\n", None),
        ("# ours\nsettings.local.json\n", None),
    ],
)
def test_init_keeps_claude_codes_personal_settings_out_of_git_appending_only_what_is_missing(
    workspace: Path, home: Path, tmp_path: Path, before: str | None, after: str | None
) -> None:
    gitignore = workspace / ".gitignore"
    if before is not None:
        gitignore.write_text(before)
    changed = run_init(workspace, home, "claude-code", tmp_path / "backups")
    assert (gitignore in changed) == (after is not None)
    expected = after if after is not None else before
    assert (gitignore.read_text() if gitignore.exists() else None) == expected
    assert run_init(workspace, home, "claude-code", tmp_path / "backups") == []


def test_a_personal_file_ignored_by_a_nested_gitignore_needs_no_line_at_the_root(
    workspace: Path, home: Path, tmp_path: Path
) -> None:
    (workspace / ".claude").mkdir()
    (workspace / ".claude" / ".gitignore").write_text("settings.local.json\n")
    run_init(workspace, home, "claude-code", tmp_path / "backups")
    assert not (workspace / ".gitignore").exists()


@pytest.mark.parametrize(
    ("rule", "scoped"),
    [
        ("Read(//{ws}/**)", True),
        ("Read(//{ws}/src/*.py)", True),
        ("Read(./src/**)", True),
        ("Read(/docs/**)", True),
        ("Grep(src/**)", True),
        ("Read(~/ws/**)", True),
        ("Bash", True),
        ("mcp__swarm", True),
        ("Read", False),
        ("Glob", False),
        ("Grep", False),
        ("LS", False),
        ("LSP", False),
        ("Read(*)", False),
        ("Read(**)", False),
        ("Read(//**)", False),
        ("Read(~/**)", False),
        ("Read(~/.aws/**)", False),
        ("Read(//etc/**)", False),
        ("Read(../**)", False),
        ("Read(//{ws}/../**)", False),
        ("Read(//{ws}*/**)", False),
        ("Read(//{ws}-other/**)", False),
    ],
)
def test_an_allow_rule_is_scoped_only_when_its_paths_stay_in_the_workspace(
    tmp_path: Path, rule: str, scoped: bool
) -> None:
    workspace = tmp_path / "ws"
    concrete = rule.format(ws=workspace.as_posix().lstrip("/"))
    assert (unscoped_read_allows([concrete], workspace, tmp_path) == []) == scoped
