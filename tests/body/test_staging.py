"""Sorting a command's staged changes: what counts toward the blast radius and the hourly limit, pure."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from body_mcp.gitignore import GitIgnore
from body_mcp.policy import PathPolicy
from body_mcp.staging import SortedChanges, quota_refusal, sort_changes
from sandbox import ChangeKind, EntryType, Quota, RunResult, StagedChange
from shared_protocol import RefusalCode
from shared_protocol.config import DEFAULT_ARTIFACT_PATHS, DEFAULT_DENIED_PATHS, DEFAULT_READ_ONLY_PATHS


def change(path: str, kind: ChangeKind, entry_type: EntryType = EntryType.FILE) -> StagedChange:
    deleted = kind is ChangeKind.DELETED
    return StagedChange(
        path=path,
        kind=kind,
        entry_type=entry_type,
        mode=None if deleted else 0o755,
        symlink_target=None,
        source=None if deleted else Path("/nonexistent") / path,
    )


def sort(changes: list[StagedChange]) -> SortedChanges:
    policy = PathPolicy(denied=DEFAULT_DENIED_PATHS, read_only=DEFAULT_READ_ONLY_PATHS)
    return sort_changes(changes, policy=policy, gitignore=GitIgnore([]), artifact_names=DEFAULT_ARTIFACT_PATHS)


def test_two_thousand_created_directories_count_as_two_thousand_modifications() -> None:
    sorted_ = sort([change(f"d{i}", ChangeKind.CREATED, EntryType.DIR) for i in range(2000)])
    assert sorted_.counted_files == 2000


def test_deleted_and_re_moded_directories_count_like_files() -> None:
    sorted_ = sort(
        [
            change("old", ChangeKind.DELETED, EntryType.DIR),
            change("old/a.txt", ChangeKind.DELETED),
            change("src", ChangeKind.MODIFIED, EntryType.DIR),
        ]
    )
    assert sorted_.counted_files == 3


def test_a_path_whose_type_changed_counts_once() -> None:
    sorted_ = sort([change("x", ChangeKind.DELETED), change("x", ChangeKind.CREATED, EntryType.DIR)])
    assert sorted_.counted_files == 1


def test_artifact_directories_stay_uncounted_and_git_and_bytecode_cache_directories_discarded() -> None:
    sorted_ = sort(
        [
            change("node_modules", ChangeKind.CREATED, EntryType.DIR),
            change("node_modules/pkg", ChangeKind.CREATED, EntryType.DIR),
            change("src/__pycache__", ChangeKind.CREATED, EntryType.DIR),
            change(".git/refs/new", ChangeKind.CREATED, EntryType.DIR),
        ]
    )
    assert sorted_.counted_files == 0
    assert len(sorted_.artifacts) == 2
    assert [c.path for c in sorted_.discarded] == ["src/__pycache__", ".git/refs/new"]


def test_the_sorted_set_names_each_path_whose_special_mode_bits_were_stripped() -> None:
    setuid = StagedChange(
        path="bin/tool",
        kind=ChangeKind.CREATED,
        entry_type=EntryType.FILE,
        mode=0o755,
        symlink_target=None,
        source=Path("/nonexistent/bin/tool"),
        stripped_mode_bits=0o4000,
    )
    sorted_ = sort([change("bin", ChangeKind.CREATED, EntryType.DIR), setuid])
    assert sorted_.stripped_modes == {"bin/tool": 0o4000}


def test_a_run_that_used_up_a_quota_is_refused_as_too_large_and_one_within_them_is_not() -> None:
    within = RunResult(
        exit_code=0,
        stdout="",
        stderr="",
        stdout_truncated=False,
        stderr_truncated=False,
        timed_out=False,
        killed=False,
        duration_s=0.1,
    )
    assert quota_refusal(within) is None
    refusal = quota_refusal(dataclasses.replace(within, quotas_exceeded=(Quota.TMP_INODES, Quota.WRITE_BYTES)))
    assert refusal is not None
    assert refusal.code is RefusalCode.TOO_LARGE and refusal.rule == "sandbox.max_tmp_inodes"


def test_tool_caches_anywhere_are_discarded_whatever_they_hold_and_a_lookalike_name_is_not() -> None:
    """pytest's, mypy's and ruff's caches (each with a `.gitignore`, a read-only name) are dropped, not refused: a
    symlink leading out inside one is dropped too (never applied); `.pytest_cache_x` is no cache."""
    escaping = dataclasses.replace(
        change(".pytest_cache/out", ChangeKind.CREATED, EntryType.SYMLINK), symlink_target="/etc"
    )
    sorted_ = sort(
        [
            change(".pytest_cache", ChangeKind.CREATED, EntryType.DIR),
            change(".pytest_cache/.gitignore", ChangeKind.CREATED),
            change("sub/.mypy_cache/.gitignore", ChangeKind.CREATED),
            change(".ruff_cache/CACHEDIR.TAG", ChangeKind.CREATED),
            escaping,
            change(".pytest_cache_x/.gitignore", ChangeKind.CREATED),
        ]
    )
    assert [c.path for c in sorted_.discarded] == [
        ".pytest_cache",
        ".pytest_cache/.gitignore",
        "sub/.mypy_cache/.gitignore",
        ".ruff_cache/CACHEDIR.TAG",
        ".pytest_cache/out",
    ]
    assert [p.path for p in sorted_.problems] == [".pytest_cache_x/.gitignore"], "a protected name outside a cache"
    assert sorted_.refusal_code == RefusalCode.PROTECTED_PATH
