"""Read-only git tools: git_status, git_diff, git_log.

Each runs git through `body_mcp.git` (nothing the repository's config names executes) and
never shows a denied file: pathspec exclusions, then a filter over the output.
"""

from __future__ import annotations

import os
from functools import partial
from typing import Any

import anyio.to_thread

from shared_protocol.tools import (
    GitCommitInfo,
    GitDiffArgs,
    GitDiffResult,
    GitLogArgs,
    GitLogResult,
    GitStatusArgs,
    GitStatusEntry,
    GitStatusResult,
)

from ..git import COMMIT_MARK, Git, GitSession, denied_check, exclude_pathspecs, filter_patch
from ..names import shown
from ._spec import ToolContext, ToolSpec
from .git_plan import body_changes

_MAX_UNTRACKED_DIFFS = 200
_DIFF_FLAGS = ("--no-ext-diff", "--no-textconv", "--no-color", "--src-prefix=a/", "--dst-prefix=b/")


def open_git(ctx: ToolContext[Any]) -> Git:
    return Git(ctx.deps.workspace.root, timeout_s=ctx.deps.git.timeout_s)


def _excludes(ctx: ToolContext[Any]) -> list[str]:
    return exclude_pathspecs(ctx.deps.policy.denied)


def _status(ctx: ToolContext[GitStatusArgs]) -> GitStatusResult:
    is_denied = denied_check(ctx.deps.policy)
    with open_git(ctx).session() as git:
        out = git.run(
            "status",
            "--porcelain=v2",
            "-z",
            "--branch",
            "--untracked-files=all",
            "--ignore-submodules=all",
            "--",
            ".",
            *_excludes(ctx),
            what="git status",
        )
        committable = set(body_changes(ctx, git)[0])
        branch, head = git.branch(), git.head()
    entries: list[GitStatusEntry] = []
    # (each name as on disk, bytes that are not UTF-8 as surrogates, as a listing reads it: denied or not, then shown
    # as listings show it, so the agent can give it back as a path)
    tokens = [os.fsdecode(token) for token in out.stdout.split(b"\0")]
    i = 0
    while i < len(tokens):
        token = tokens[i]
        i += 1
        kind = token[:1]
        original: str | None = None
        if kind == "1":
            fields = token.split(" ", 8)
            xy, path = fields[1], fields[8]
        elif kind == "2":
            fields = token.split(" ", 9)
            xy, path = fields[1], fields[9]
            original = tokens[i] if i < len(tokens) else None
            i += 1
        elif kind == "u":
            fields = token.split(" ", 10)
            xy, path = fields[1], fields[10]
        elif kind == "?":
            xy, path = "??", token[2:]
        else:
            continue  # headers (# branch.*), ignored entries, the trailing empty token
        if is_denied(path) or (original is not None and is_denied(original)):
            continue
        entries.append(
            GitStatusEntry(
                path=shown(path),
                index=xy[0],
                worktree=xy[1],
                original_path=None if original is None else shown(original),
                committable=path in committable,
            )
        )
    return GitStatusResult(action_id=ctx.action_id, branch=branch, head=head, entries=entries)


async def git_status(ctx: ToolContext[GitStatusArgs]) -> GitStatusResult:
    return await anyio.to_thread.run_sync(partial(_status, ctx))


def _user_pathspecs(ctx: ToolContext[GitDiffArgs]) -> list[str]:
    specs: list[str] = []
    for raw in ctx.args.paths:
        path = ctx.deps.workspace.resolve(raw, follow_last=False)
        ctx.deps.policy.check_read(path)
        specs.append(f":(literal){path.rel}" if path.rel else ".")
    return specs or ["."]


def _untracked_diffs(ctx: ToolContext[GitDiffArgs], git: GitSession, specs: list[str]) -> str:
    """New files git does not track yet, as diffs from nothing (what a body's write_file makes)."""
    listed = git.run(
        "ls-files", "-z", "--others", "--exclude-standard", "--", *specs, *_excludes(ctx), what="git ls-files"
    )
    parts: list[str] = []
    for path in [p for p in listed.text.split("\0") if p][:_MAX_UNTRACKED_DIFFS]:
        out = git.run("diff", "--no-index", *_DIFF_FLAGS, "--", "/dev/null", path)
        if out.code not in (0, 1):
            continue
        parts.append(out.text)
    return "".join(parts)


def _diff(ctx: ToolContext[GitDiffArgs]) -> GitDiffResult:
    is_denied = denied_check(ctx.deps.policy)
    specs = _user_pathspecs(ctx)
    with open_git(ctx).session() as git:
        head = git.head()
        base: list[str] = ["--cached"] if ctx.args.staged else ([head] if head is not None else [])
        out = git.run(
            "diff", *_DIFF_FLAGS, "--ignore-submodules=all", *base, "--", *specs, *_excludes(ctx), what="git diff"
        )
        text = out.text
        if not ctx.args.staged:
            text += _untracked_diffs(ctx, git, specs)
    text = filter_patch(text, is_denied)
    cap = ctx.deps.files.max_read_bytes
    truncated = len(text.encode()) > cap
    if truncated:
        text = text.encode()[:cap].decode("utf-8", "ignore") + "\n... (diff truncated)\n"
    return GitDiffResult(action_id=ctx.action_id, diff=text, truncated=truncated)


async def git_diff(ctx: ToolContext[GitDiffArgs]) -> GitDiffResult:
    return await anyio.to_thread.run_sync(partial(_diff, ctx))


def _patches(ctx: ToolContext[GitLogArgs], git: GitSession, count: int) -> dict[str, str]:
    out = git.run(
        "log",
        "-p",
        *_DIFF_FLAGS,
        f"--format={COMMIT_MARK}%H",
        f"--max-count={count}",
        "HEAD",
        "--",
        ".",
        *_excludes(ctx),
        what="git log -p",
    )
    text = filter_patch(out.text, denied_check(ctx.deps.policy))
    patches: dict[str, str] = {}
    current: str | None = None
    chunk: list[str] = []
    for line in [*text.splitlines(keepends=True), COMMIT_MARK]:
        if line.startswith(COMMIT_MARK):
            if current is not None:
                patches[current] = "".join(chunk).strip("\n") + "\n" if "".join(chunk).strip() else ""
            current, chunk = line[1:].strip(), []
        else:
            chunk.append(line)
    return patches


def _log(ctx: ToolContext[GitLogArgs]) -> GitLogResult:
    args = ctx.args
    with open_git(ctx).session() as git:
        if git.head() is None:
            return GitLogResult(action_id=ctx.action_id, commits=[])
        out = git.run(
            "log",
            "-z",
            "--format=%H%x1f%P%x1f%an <%ae>%x1f%aI%x1f%B",
            f"--max-count={args.max_count + 1}",
            "HEAD",
            what="git log",
        )
        patches = _patches(ctx, git, args.max_count) if args.patch else {}
    commits: list[GitCommitInfo] = []
    for record in out.text.split("\0"):
        fields = record.lstrip("\n").split("\x1f", 4)
        if len(fields) < 5:
            continue
        sha, parents, author, date, message = fields
        commits.append(
            GitCommitInfo(
                commit=sha,
                parents=parents.split(),
                author=author,
                date=date,
                message=message.rstrip("\n"),
                patch=patches.get(sha, "") if args.patch else None,
            )
        )
    truncated = len(commits) > args.max_count
    budget = ctx.deps.files.max_read_bytes
    kept = commits[: args.max_count]
    for commit in kept:
        if commit.patch is None:
            continue
        size = len(commit.patch.encode())
        if size > budget:
            commit.patch = commit.patch.encode()[: max(budget, 0)].decode("utf-8", "ignore") + "\n... (truncated)\n"
            truncated = True
        budget = max(budget - size, 0)
    return GitLogResult(action_id=ctx.action_id, commits=kept, truncated=truncated)


async def git_log(ctx: ToolContext[GitLogArgs]) -> GitLogResult:
    return await anyio.to_thread.run_sync(partial(_log, ctx))


def _diff_text(result: GitDiffResult) -> str:
    return result.diff or "(no changes)"


GIT_READ_TOOLS = [
    ToolSpec(
        name="git_status",
        description="The workspace repository's branch, HEAD and changed files (protected files never shown); "
        "`committable` marks the changes git_commit would commit (the ones this body made).",
        args_model=GitStatusArgs,
        result_model=GitStatusResult,
        handler=git_status,
        read_only=True,
        idempotent=True,
    ),
    ToolSpec(
        name="git_diff",
        description="The working tree (new files included), or with staged the index, against HEAD, as a unified "
        "diff; optionally only some paths. Protected files are never shown.",
        args_model=GitDiffArgs,
        result_model=GitDiffResult,
        handler=git_diff,
        read_only=True,
        idempotent=True,
        text=_diff_text,
    ),
    ToolSpec(
        name="git_log",
        description="The newest commits of HEAD (message, author, date), with patch their diffs. Protected files "
        "are never shown.",
        args_model=GitLogArgs,
        result_model=GitLogResult,
        handler=git_log,
        read_only=True,
        idempotent=True,
    ),
]
