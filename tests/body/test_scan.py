"""gitignore semantics, and the cached workspace scan noticing every change that matters."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from body_mcp.gitignore import GitIgnore, parse
from body_mcp.policy import PathPolicy
from body_mcp.scan import WorkspaceScanner
from body_mcp.staging import symlink_escapes
from shared_protocol.config import DEFAULT_DENIED_PATHS, DEFAULT_READ_ONLY_PATHS

RULES = """
# comment
*.log
build/
/dist
!keep.log
docs/**/*.tmp
node_modules
"""


@pytest.mark.parametrize(
    "path,is_dir,ignored",
    [
        ("a.log", False, True),
        ("x/keep.log", False, False),
        ("build", True, True),
        ("build", False, False),
        ("src/build/x.o", False, True),
        ("dist/a", False, True),
        ("src/dist/a", False, False),
        ("docs/a/b/c.tmp", False, True),
        ("docs/c.tmp", False, True),
        ("src/node_modules/x/y.js", False, True),
        ("src/app.py", False, False),
    ],
)
def test_gitignore_rules_follow_git(path: str, is_dir: bool, ignored: bool) -> None:
    assert GitIgnore(parse(RULES)).ignored(path, is_dir=is_dir) is ignored


def test_a_nested_gitignore_applies_below_its_directory_only() -> None:
    rules = GitIgnore(parse("*.gen\n", "pkg"))
    assert rules.ignored("pkg/a.gen") and not rules.ignored("a.gen")


@pytest.mark.parametrize(
    "path,target,escapes",
    [
        ("a", "/etc/passwd", True),
        ("a", "../x", True),
        ("d/a", "../x", False),
        ("d/a", "../../x", True),
        ("a", "b/c", False),
    ],
)
def test_symlink_escape_detection(path: str, target: str, escapes: bool) -> None:
    assert symlink_escapes(path, target) is escapes


def test_the_scan_sees_new_secrets_and_gitignore_edits_after_caching(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / ".env").write_text("x")
    scanner = WorkspaceScanner(tmp_path, PathPolicy(denied=DEFAULT_DENIED_PATHS, read_only=DEFAULT_READ_ONLY_PATHS))
    first = scanner.scan()
    assert first.denied == [".env"] and not first.gitignore.ignored("src/a.o")
    (tmp_path / "src" / "server.pem").write_text("k")
    (tmp_path / ".gitignore").write_text("*.o\n")
    second = scanner.scan()
    assert sorted(second.denied) == [".env", "src/server.pem"] and second.gitignore.ignored("src/a.o")
    gi = tmp_path / ".gitignore"
    gi.write_text("*.tmp\n")
    os.utime(gi, ns=(1, 1))  # a different mtime, even on coarse clocks
    third = scanner.scan()
    assert third.gitignore.ignored("x.tmp") and not third.gitignore.ignored("a.o")
    (tmp_path / "src" / "server.pem").unlink()
    assert scanner.scan().denied == [".env"]
