"""What git_commit would commit: the body's own audited changes in this workspace, and nothing else.

The candidates are the undo records of this workspace not yet undone, of actions no commit
holds yet (a git_commit's own record names the actions it committed; undoing the commit
gives them back). A path is committed only while it still holds what the body's last change
left there: a file someone else changed since is left out (named in `skipped`), and so are
protected paths, directories, and files `.gitignore` ignores. What is left is staged into a
temporary index (the user's index is not touched), so the tree holds HEAD plus those paths.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import _fsops
from .._factories import empty_list
from .._fsops import ABSENT, EntryState
from ..git import GitSession
from ._spec import ToolContext


@dataclass(kw_only=True)
class CommitPlan:
    files: list[str] = field(default_factory=empty_list)
    """The paths the commit changes against HEAD."""
    actions: list[str] = field(default_factory=empty_list)
    """The actions whose changes those are, oldest first."""
    skipped: list[str] = field(default_factory=empty_list)
    tree: str | None = None
    index: Path | None = None
    """The temporary index holding `tree` (inside the session's scratch directory)."""


def _same(a: EntryState, b: EntryState) -> bool:
    if a.type != b.type:
        return False
    if a.type == "file":
        # git records one bit of the mode, the owner's executable bit: a change of it is a change (an older undo
        # record without a mode compares by content only)
        return a.sha256 == b.sha256 and (a.mode is None or b.mode is None or (a.mode ^ b.mode) & stat.S_IXUSR == 0)
    if a.type == "symlink":
        return a.target == b.target
    return True


def body_changes(ctx: ToolContext[Any], git: GitSession) -> tuple[dict[str, str], list[str]]:
    """The paths holding a change of this body's not yet committed (each with the action that made it), and what
    was left out and why. Reads only: nothing is written to the repository."""
    deps = ctx.deps
    records = deps.undo.workspace_records(str(deps.workspace.root))
    committed = {action for item in records if item.record.op == "git_ref" for action in item.record.after_actions}
    last: dict[str, tuple[EntryState, str]] = {}
    for item in records:
        rec = item.record
        if rec.op == "git_ref":
            continue
        if rec.op == "rename" and rec.source is not None:
            last[rec.source] = (ABSENT, item.action_id)
        last[rec.path] = (rec.after, item.action_id)
    skipped: list[str] = []
    candidates: dict[str, str] = {}
    for path, (after, action) in last.items():
        if action in committed or after.type == "dir":
            continue
        parts = tuple(path.split("/"))
        level, pattern = deps.policy.classify_parts(parts)
        if level != "none":
            skipped.append(f"{path}: protected (matches '{pattern}')")
            continue
        now, _ = _fsops.read_entry(deps.workspace, parts)
        if now.type == "dir" and after.type == "absent":
            continue  # (a file the body deleted, a directory made there since: nothing of the body's to commit)
        if not _same(now, after):
            skipped.append(f"{path}: changed since {action} (not by this body)")
            continue
        candidates[path] = action
    if candidates:
        ignored = git.run("check-ignore", "-z", "--stdin", stdin="\0".join(candidates).encode() + b"\0")
        for path in ignored.text.split("\0"):
            candidates.pop(path, None)
    return candidates, skipped


def commit_plan(ctx: ToolContext[Any], git: GitSession) -> CommitPlan:
    """`body_changes` staged over HEAD in a temporary index: the tree to commit, and which of them it changes."""
    candidates, skipped = body_changes(ctx, git)
    plan = CommitPlan(skipped=skipped)
    if not candidates:
        return plan
    index = git.scratch / "index"
    env = {"GIT_INDEX_FILE": str(index)}
    head = git.head()
    if head is not None:
        git.run("read-tree", head, env=env, what="reading HEAD into a temporary index")
    else:
        git.run("read-tree", "--empty", env=env, what="starting a temporary index")
    git.run(
        "update-index",
        "--add",
        "--remove",
        "-z",
        "--stdin",
        env=env,
        stdin="\0".join(candidates).encode() + b"\0",
        what="staging the body's changes",
    )
    tree = git.run("write-tree", env=env, what="writing the tree").text.strip()
    if head is not None:
        changed = git.run("diff-tree", "-r", "-z", "--no-renames", "--name-only", head, tree, what="comparing to HEAD")
    else:
        changed = git.run("ls-tree", "-r", "-z", "--name-only", tree, what="listing the tree")
    in_tree = {p for p in changed.text.split("\0") if p}
    plan.files = [p for p in candidates if p in in_tree]
    plan.actions = list(dict.fromkeys(candidates[p] for p in plan.files))
    plan.tree, plan.index = tree, index
    return plan
