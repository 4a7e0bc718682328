"""gitignore semantics, and the cached workspace scan noticing every change that matters."""

from __future__ import annotations

import os
import subprocess
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


def _scanner(root: Path, *, watch: bool = True) -> WorkspaceScanner:
    return WorkspaceScanner(
        root, PathPolicy(denied=DEFAULT_DENIED_PATHS, read_only=DEFAULT_READ_ONLY_PATHS), watch=watch
    )


@pytest.mark.parametrize("watch", [True, False], ids=["watched", "walked"])
def test_the_scan_sees_new_secrets_and_gitignore_edits_after_caching(tmp_path: Path, watch: bool) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / ".env").write_text("x")
    scanner = _scanner(tmp_path, watch=watch)
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
    assert scanner.watching is watch and scanner.full_scans == (1 if watch else 0)
    scanner.close()


def test_a_watched_scan_sees_a_secret_in_a_directory_made_just_before_and_one_moved_in(tmp_path: Path) -> None:
    ws, outside = tmp_path / "ws", tmp_path / "outside"
    (ws / "a").mkdir(parents=True)
    scanner = _scanner(ws)
    assert scanner.scan().denied == [] and scanner.watching
    # Created faster than any watch on the new directories could be added: read once watched, nothing missed.
    (ws / "a" / "b" / "c").mkdir(parents=True)
    (ws / "a" / "b" / "c" / "id_rsa").write_text("k")
    (outside / "d").mkdir(parents=True)
    (outside / "d" / ".env.prod").write_text("k")
    (outside).rename(ws / "moved")
    assert scanner.scan().denied == ["a/b/c/id_rsa", "moved/d/.env.prod"]
    # Renamed inside the workspace, then replaced by a fresh directory with a secret of its own.
    (ws / "a" / "b").rename(ws / "b2")
    (ws / "a" / "b").mkdir()
    (ws / "a" / "b" / "key.pem").write_text("k")
    assert scanner.scan().denied == ["a/b/key.pem", "b2/c/id_rsa", "moved/d/.env.prod"]
    # Gone, and a gitignore rewritten in place with the same mtime still counts (the event says so).
    for path in (ws / "b2" / "c" / "id_rsa", ws / "b2" / "c"):
        path.unlink() if path.is_file() else path.rmdir()
    gitignore = ws / ".gitignore"
    gitignore.write_text("*.o\n")
    assert scanner.scan().gitignore.ignored("x.o")
    mtime = gitignore.stat().st_mtime_ns
    gitignore.write_text("*.a\n")
    os.utime(gitignore, ns=(mtime, mtime))
    after = scanner.scan()
    assert after.gitignore.ignored("x.a") and not after.gitignore.ignored("x.o")
    assert after.denied == ["a/b/key.pem", "moved/d/.env.prod"]
    assert scanner.full_scans == 1, "all of it from events, no walk again"
    scanner.close()


def test_the_scan_takes_no_thread_only_when_nothing_is_queued_or_changed(tmp_path: Path) -> None:
    """`scan_if_quiet` (the drain without a worker-thread hop) answers only when the full scan would read nothing:
    before the first walk, with an event queued, a `.gitignore` changed without an event yet, or the git index
    changed, it leaves the work to `scan()`, so a command never gets a list older than itself."""
    (tmp_path / ".gitignore").write_text("*.o\n")
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    scanner = _scanner(tmp_path)
    assert scanner.scan_if_quiet() is None  # (no walk yet)
    first = scanner.scan()
    quiet = scanner.scan_if_quiet()
    assert quiet is not None and quiet.denied == first.denied == [] and quiet.gitignore.ignored("a.o")
    (tmp_path / "id_rsa").write_text("k")
    assert scanner.scan_if_quiet() is None  # (an event is queued)
    assert scanner.scan().denied == ["id_rsa"]
    assert (quiet := scanner.scan_if_quiet()) is not None and quiet.denied == ["id_rsa"]
    gitignore = tmp_path / ".gitignore"
    os.utime(gitignore, ns=(1, 1))  # (attributes only: no event is watched for it, the mtime says it changed)
    assert scanner.scan_if_quiet() is None
    scanner.scan()
    assert scanner.scan_if_quiet() is not None
    subprocess.run(["git", "-C", str(tmp_path), "add", ".gitignore"], check=True)  # (.git is not watched)
    assert scanner.scan_if_quiet() is None
    assert scanner.scan().tracked == {".gitignore"}
    assert (quiet := scanner.scan_if_quiet()) is not None and quiet.tracked == {".gitignore"}
    scanner.close()


def test_the_scan_generation_moves_with_every_change_the_watch_sees_and_only_then(tmp_path: Path) -> None:
    """What is planned from a scan is used again only under the same generation (`build_spec`): a quiet scan keeps
    it, any event moves it (a file's content written, a file made or removed); an unwatched scan has none."""
    (tmp_path / "pyproject.toml").write_text("[project]\n")
    scanner = _scanner(tmp_path)
    first = scanner.scan().generation
    assert first is not None
    assert (quiet := scanner.scan_if_quiet()) is not None and quiet.generation == first
    assert scanner.scan().generation != first, "a scan that read (nothing, here) moves it all the same"
    now = scanner.scan().generation
    (tmp_path / "pyproject.toml").write_text('[project]\nrequires-python = ">=3.12"\n')  # (content only)
    assert scanner.scan_if_quiet() is None
    assert (after := scanner.scan().generation) != now
    (tmp_path / "pyproject.toml").unlink()
    assert scanner.scan().generation not in (now, after)
    scanner.close()
    unwatched = _scanner(tmp_path, watch=False)
    assert unwatched.scan().generation is None
    unwatched.close()


def test_an_unwatched_scan_always_takes_the_full_path(tmp_path: Path) -> None:
    scanner = _scanner(tmp_path, watch=False)
    scanner.scan()
    assert scanner.scan_if_quiet() is None  # (without events, only a walk can tell what changed)
    scanner.close()


def test_an_overflowed_event_queue_makes_the_next_scan_read_everything_again(tmp_path: Path) -> None:
    queued = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    if queued > 100_000:
        pytest.skip(f"max_queued_events is {queued}: too many files to make here")
    (tmp_path / "flood").mkdir()
    scanner = _scanner(tmp_path)
    assert scanner.scan().denied == [] and scanner.full_scans == 1
    # Each file queues a create and a close-after-write: more than the kernel keeps, so the queue overflows.
    for n in range(queued // 2 + 100):
        (tmp_path / "flood" / f"f{n}").write_bytes(b"")
    (tmp_path / "flood" / "late.pem").write_text("k")
    assert scanner.scan().denied == ["flood/late.pem"]
    assert scanner.full_scans == 2 and scanner.watching
    (tmp_path / "after.key").write_text("k")
    assert scanner.scan().denied == ["after.key", "flood/late.pem"], "watching again after the walk"
    scanner.close()


def test_a_workspace_directory_swapped_for_another_is_walked_again(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / ".env").write_text("x")
    scanner = _scanner(ws)
    assert scanner.scan().denied == [".env"]
    ws.rename(tmp_path / "old")  # as a snapshot restore swaps it
    assert scanner.scan().denied == [], "no workspace directory: nothing to hide, nothing stale"
    ws.mkdir()
    (ws / "id_ed25519").write_text("k")
    assert scanner.scan().denied == ["id_ed25519"] and scanner.watching
    (ws / "new.pem").write_text("k")
    assert scanner.scan().denied == ["id_ed25519", "new.pem"]
    scanner.close()
