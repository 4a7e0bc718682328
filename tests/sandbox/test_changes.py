# pyright: strict
"""Both real backends report exactly what a command changed, and never touch the real workspace."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from sandbox import ChangeKind, EntryType, wait_discarded
from sandbox._bwrap_backend import BwrapBackend

from ._support import by_path, make_spec, sh, snapshot, summary

pytestmark = [pytest.mark.anyio, pytest.mark.bwrap]

C, M, D = ChangeKind.CREATED, ChangeKind.MODIFIED, ChangeKind.DELETED
FILE, DIR, LINK, SPECIAL = EntryType.FILE, EntryType.DIR, EntryType.SYMLINK, EntryType.SPECIAL


async def test_created_modified_and_deleted_files_are_reported_with_their_new_content(
    backend: BwrapBackend, ws: Path
) -> None:
    before = snapshot(ws)
    script = "echo new > new.txt; echo more >> a.txt; rm docs/guide.md; mkdir -p build/out; echo o > build/out/o.txt"
    async with await backend.run(sh(ws, script)) as staged:
        assert staged.result.exit_code == 0, staged.result.stderr
        assert summary(staged.changes) == [
            ("a.txt", M, FILE),
            ("build", C, DIR),
            ("build/out", C, DIR),
            ("build/out/o.txt", C, FILE),
            ("docs/guide.md", D, FILE),
            ("new.txt", C, FILE),
        ]
        changes = by_path(staged.changes)
        assert _read(changes["new.txt"].source) == b"new\n"
        assert _read(changes["a.txt"].source) == b"alpha\nmore\n"
        assert changes["docs/guide.md"].source is None
        assert changes["new.txt"].mode == 0o644
    assert snapshot(ws) == before


async def test_rm_rf_of_a_directory_lists_the_directory_and_every_child(backend: BwrapBackend, ws: Path) -> None:
    before = snapshot(ws)
    async with await backend.run(sh(ws, "rm -rf docs")) as staged:
        assert summary(staged.changes) == [
            ("docs", D, DIR),
            ("docs/guide.md", D, FILE),
            ("docs/img", D, DIR),
            ("docs/img/logo.txt", D, FILE),
        ]
    assert snapshot(ws) == before


async def test_a_renamed_directory_is_the_old_tree_deleted_and_the_new_tree_created(
    backend: BwrapBackend, ws: Path
) -> None:
    async with await backend.run(sh(ws, "mv docs manual")) as staged:
        assert summary(staged.changes) == [
            ("docs", D, DIR),
            ("docs/guide.md", D, FILE),
            ("docs/img", D, DIR),
            ("docs/img/logo.txt", D, FILE),
            ("manual", C, DIR),
            ("manual/guide.md", C, FILE),
            ("manual/img", C, DIR),
            ("manual/img/logo.txt", C, FILE),
        ]
        assert _read(by_path(staged.changes)["manual/img/logo.txt"].source) == b"logo\n"
    assert (ws / "docs" / "guide.md").exists()


async def test_chmod_of_files_and_directories_is_a_modification_with_the_new_mode(
    backend: BwrapBackend, ws: Path
) -> None:
    async with await backend.run(sh(ws, "chmod 600 a.txt; chmod 700 docs; chmod -x run.sh")) as staged:
        assert summary(staged.changes) == [("a.txt", M, FILE), ("docs", M, DIR), ("run.sh", M, FILE)]
        modes = {c.path: c.mode for c in staged.changes}
        assert modes == {"a.txt": 0o600, "docs": 0o700, "run.sh": 0o644}
    assert (ws / "run.sh").stat().st_mode & 0o777 == 0o755


async def test_setuid_setgid_and_sticky_bits_are_reported_stripped_and_named(backend: BwrapBackend, ws: Path) -> None:
    script = "cp /bin/true su; chmod 4755 su; mkdir sg; chmod 2755 sg; chmod 1777 docs; chmod u+s run.sh"
    async with await backend.run(sh(ws, script)) as staged:
        assert staged.result.exit_code == 0, staged.result.stderr
        changes = by_path(staged.changes)
        modes = {path: (c.mode, c.stripped_mode_bits) for path, c in changes.items()}
        assert modes == {
            "docs": (0o777, 0o1000),
            "run.sh": (0o755, 0o4000),
            "sg": (0o755, 0o2000),
            "su": (0o755, 0o4000),
        }
        assert changes["run.sh"].kind is M and changes["su"].kind is C


async def test_new_symlinks_are_reported_with_their_targets_even_outside_the_workspace(
    backend: BwrapBackend, ws: Path
) -> None:
    script = "ln -s /etc/passwd abs-out; ln -s a.txt inside; ln -s ../../outside/secret src/rel-out"
    async with await backend.run(sh(ws, script)) as staged:
        assert summary(staged.changes) == [
            ("abs-out", C, LINK),
            ("inside", C, LINK),
            ("src/rel-out", C, LINK),
        ]
        targets = {c.path: c.symlink_target for c in staged.changes}
        assert targets == {"abs-out": "/etc/passwd", "inside": "a.txt", "src/rel-out": "../../outside/secret"}


async def test_touching_or_rewriting_identical_content_is_not_a_change(backend: BwrapBackend, ws: Path) -> None:
    script = "touch a.txt docs; cp a.txt /tmp/copy; cat /tmp/copy > a.txt; chmod 644 src/app.py"
    async with await backend.run(sh(ws, script)) as staged:
        assert staged.result.exit_code == 0, staged.result.stderr
        assert staged.changes == ()


async def test_a_directory_deleted_and_recreated_loses_its_old_children(backend: BwrapBackend, ws: Path) -> None:
    async with await backend.run(sh(ws, "rm -rf docs; mkdir docs; echo rewritten > docs/guide.md")) as staged:
        assert summary(staged.changes) == [
            ("docs/guide.md", M, FILE),
            ("docs/img", D, DIR),
            ("docs/img/logo.txt", D, FILE),
        ]


async def test_a_type_change_is_a_deletion_then_a_creation_of_the_same_path(backend: BwrapBackend, ws: Path) -> None:
    async with await backend.run(sh(ws, "rm a.txt; mkdir a.txt; echo in > a.txt/inner; rm -r docs/img")) as staged:
        assert summary(staged.changes) == [
            ("a.txt", D, FILE),
            ("a.txt", C, DIR),
            ("a.txt/inner", C, FILE),
            ("docs/img", D, DIR),
            ("docs/img/logo.txt", D, FILE),
        ]


async def test_a_fifo_created_by_the_command_is_a_special_entry(backend: BwrapBackend, ws: Path) -> None:
    async with await backend.run(sh(ws, "mkfifo pipe")) as staged:
        assert summary(staged.changes) == [("pipe", C, SPECIAL)]


async def test_a_python_run_writing_pycache_reports_the_created_files(backend: BwrapBackend, ws: Path) -> None:
    (ws / "tests").mkdir()
    (ws / "tests" / "test_app.py").write_text(
        "import sys, unittest\nsys.path.insert(0, 'src')\nimport app\n\n"
        "class T(unittest.TestCase):\n    def test_main(self):\n        self.assertEqual(app.main(), 1)\n"
    )
    spec = make_spec(ws, ["python3", "-m", "unittest", "discover", "-s", "tests"])
    async with await backend.run(spec) as staged:
        assert staged.result.exit_code == 0, staged.result.stderr
        created = {c.path for c in staged.changes if c.kind is C}
        assert {"src/__pycache__", "tests/__pycache__"} <= created
        assert any(p.startswith("src/__pycache__/app.") and p.endswith(".pyc") for p in created)
        assert all(c.kind is C and "__pycache__" in c.path for c in staged.changes)
    assert not (ws / "src" / "__pycache__").exists()


async def test_git_status_in_a_repository_changes_nothing_outside_dot_git(backend: BwrapBackend, ws: Path) -> None:
    git_env = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    for argv in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "init"]):
        subprocess.run(argv, cwd=ws, env={"PATH": "/usr/bin:/bin", **git_env}, check=True)
    (ws / "a.txt").write_text("changed after commit\n")
    before = snapshot(ws)
    spec = make_spec(ws, ["git", "status", "--porcelain"], env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent"})
    async with await backend.run(spec) as staged:
        assert staged.result.exit_code == 0, staged.result.stderr
        assert " M a.txt" in staged.result.stdout
        assert all(c.path.startswith(".git/") for c in staged.changes), staged.changes
    assert snapshot(ws) == before


async def test_hidden_content_never_reaches_the_staging_area(backend: BwrapBackend, ws: Path) -> None:
    async with await backend.run(sh(ws, "cat .env > leaked.txt || true; cp -r . /tmp/all")) as staged:
        leaked = by_path(staged.changes)["leaked.txt"]
        assert _read(leaked.source) == b""
        staging_dir, write_area = staged.staging_dir, staged.write_area
        assert staging_dir is not None and write_area is not None
        for path in [*staging_dir.rglob("*"), *write_area.rglob("*")]:
            if path.is_file() and not path.is_symlink():
                assert b"hunter2" not in path.read_bytes(), path
    assert not staging_dir.exists() and staged.write_area is None


async def test_a_run_discarded_soon_releases_its_write_area_at_once_and_its_staging_area_after(
    backend: BwrapBackend, ws: Path
) -> None:
    staged = await backend.run(sh(ws, "echo staged > new.txt"))
    staging_dir, write_area = staged.staging_dir, staged.write_area
    assert staging_dir is not None and write_area is not None
    assert _read(by_path(staged.changes)["new.txt"].source) == b"staged\n"
    staged.discard_soon()  # (a run's reply does not wait for the removal)
    assert staged.staging_dir is None and staged.write_area is None
    assert wait_discarded(10)
    assert not staging_dir.exists()
    await staged.aclose()  # nothing more to do
    assert not (ws / "new.txt").exists()


def _read(source: Path | None) -> bytes:
    assert source is not None
    return source.read_bytes()
