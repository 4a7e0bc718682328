"""Sorting what a sandboxed command changed, before anything is applied (PRODUCT.md, "Sandbox design").

- changes under `.git/` are discarded and reported, never applied;
- artifacts (git-ignored paths and the configured artifact names) are applied without
  counting toward the blast radius;
- everything else counts, directories like files (created, deleted or with a new mode).
If any change touches a protected path, is a special file, or is a symlink leading outside
the workspace, nothing at all is applied; nor when the command used up a write or `/tmp`
quota (`quota_refusal`).
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

from sandbox import ChangeKind, EntryType, Quota, RunResult, StagedChange
from shared_protocol import RefusalCode

from .exceptions import ToolRefused
from .gitignore import GitIgnore
from .policy import PathPolicy

# Each sandbox quota and the `[sandbox]` key that sets it.
_QUOTA_KEYS = {
    Quota.WRITE_BYTES: "max_write_mb",
    Quota.WRITE_INODES: "max_write_inodes",
    Quota.TMP_BYTES: "max_tmp_mb",
    Quota.TMP_INODES: "max_tmp_inodes",
}


@dataclass(kw_only=True)
class SortedChanges:
    counted: list[StagedChange] = field(default_factory=list[StagedChange])
    artifacts: list[StagedChange] = field(default_factory=list[StagedChange])
    discarded: list[StagedChange] = field(default_factory=list[StagedChange])
    problems: list[str] = field(default_factory=list[str])
    """One line per change that forbids applying anything: the path and why."""
    protected: bool = False
    """Whether a problem is a protected path (else: special file or symlink escape)."""

    @property
    def to_apply(self) -> list[StagedChange]:
        return self.counted + self.artifacts

    @property
    def stripped_modes(self) -> dict[str, int]:
        """Paths to apply whose setuid, setgid or sticky bits were stripped (never applied), and those bits."""
        return {c.path: c.stripped_mode_bits for c in self.to_apply if c.stripped_mode_bits}

    @property
    def counted_files(self) -> int:
        """File modifications that count: every counted path, directories included (2,000 `mkdir`s are 2,000
        modifications); a path whose type changed (deleted, then created) counts once."""
        return len({c.path for c in self.counted})


def symlink_escapes(path: str, target: str) -> bool:
    """Whether a symlink at `path` (workspace-relative) with `target` leads outside the workspace."""
    if target.startswith("/"):
        return True  # absolute targets are never applied: the workspace may move, and most lead out
    joined = posixpath.normpath(posixpath.join(posixpath.dirname(path), target))
    return joined == ".." or joined.startswith("../")


def sort_changes(
    changes: Sequence[StagedChange], *, policy: PathPolicy, gitignore: GitIgnore, artifact_names: Sequence[str]
) -> SortedChanges:
    out = SortedChanges()
    for change in changes:
        parts = tuple(change.path.split("/"))
        if ".git" in parts:
            out.discarded.append(change)
            continue
        is_dir = change.entry_type == EntryType.DIR
        level, pattern = policy.classify_parts(parts)
        if level != "none":
            out.problems.append(f"{change.path} ({change.kind.value}; protected by '{pattern}')")
            out.protected = True
            continue
        if change.kind != ChangeKind.DELETED and change.entry_type == EntryType.SPECIAL:
            out.problems.append(f"{change.path} (a device, FIFO or socket)")
            continue
        if (
            change.kind != ChangeKind.DELETED
            and change.entry_type == EntryType.SYMLINK
            and symlink_escapes(change.path, change.symlink_target or "")
        ):
            out.problems.append(f"{change.path} (symlink leading outside the workspace: {change.symlink_target})")
            continue
        artifact = any(fnmatchcase(part, name) for part in parts for name in artifact_names) or gitignore.ignored(
            change.path, is_dir=is_dir
        )
        (out.artifacts if artifact else out.counted).append(change)
    return out


def quota_refusal(run: RunResult) -> ToolRefused | None:
    """The refusal for a run that used up a write or `/tmp` quota: its writes past the quota failed, so what it
    staged may be cut short, and nothing of it is applied. None when the run stayed within its quotas."""
    if not run.quotas_exceeded:
        return None
    keys = [f"[sandbox] {_QUOTA_KEYS[quota]}" for quota in run.quotas_exceeded]
    return ToolRefused(
        f"the command used up its quota ({', '.join(keys)}): its writes past it failed, so nothing was applied",
        code=RefusalCode.TOO_LARGE,
        rule=f"sandbox.{_QUOTA_KEYS[run.quotas_exceeded[0]]}",
    )
