"""Mutating git tools: git_commit and git_push.

git_commit commits only the body's own audited changes (`git_plan.py`), built with plumbing
(a temporary index, `commit-tree`, a compare-and-swap `update-ref`): no hook, no editor, no
signing. Its message carries the actions' ids as `Swarm-Action` trailers (and in agent mode
the agent and its logic version). Its undo record moves the branch back to the parent while
the branch still names the commit.

git_push is off unless `[git] push = true`; then it pushes only the checked-out branch, and
only when that is the agent's own (`<branch_prefix>/<agent>/...`), never forced; a push whose
new commits touch a protected path (CI, IDE and git config: what a host executes) needs a
human's approval; so does one touching a default read-only path (`DEFAULT_READ_ONLY_PATHS`) whatever
`[policy] read_only_paths` says. It is irreversible: undo cannot take a published commit back.
"""

from __future__ import annotations

import re
from typing import Any

import anyio.to_thread

from shared_protocol import Impact, RefusalCode
from shared_protocol.config import DEFAULT_DENIED_PATHS, DEFAULT_READ_ONLY_PATHS
from shared_protocol.refusals import Rule
from shared_protocol.tools import GitCommitArgs, GitCommitResult, GitPushArgs, GitPushResult

from ..exceptions import InvalidArguments, ToolRefused
from ..git import GitSession
from ..policy import PathPolicy
from ._spec import ToolContext, ToolSpec
from .git_plan import commit_plan
from .git_read import open_git

_NO_COMMIT = "0" * 40
_FORGED_TRAILER = re.compile(r"^\s*swarm-[a-z-]*\s*:", re.IGNORECASE | re.MULTILINE)


def _detached() -> ToolRefused:
    return ToolRefused(
        "HEAD is detached: check out a branch first", code=RefusalCode.DETACHED_HEAD, rule=Rule.GIT_COMMIT
    )


def _trailers(ctx: ToolContext[Any], actions: list[str]) -> list[str]:
    lines = [f"Swarm-Action: {action}" for action in actions]
    lines.append(f"Swarm-Commit-Action: {ctx.action_id}")
    profile = ctx.deps.agent_profile
    if profile is not None:
        lines.append(f"Swarm-Agent: {profile.name}")
        if profile.logic_version:
            lines.append(f"Swarm-Logic-Version: {profile.logic_version}")
    return lines


def _identity(ctx: ToolContext[Any], git: GitSession) -> dict[str, str]:
    """Author: the agent in agent mode, else the repository's user; committer: the repository's user, else Swarm."""
    name = git.run("config", "user.name").text.strip() or "Swarm body"
    email = git.run("config", "user.email").text.strip() or "body@swarm.invalid"
    author_name, author_email = name, email
    profile = ctx.deps.agent_profile
    if profile is not None:
        author_name, author_email = f"swarm agent {profile.name}", f"{profile.name}@swarm.invalid"
    return {
        "GIT_AUTHOR_NAME": author_name,
        "GIT_AUTHOR_EMAIL": author_email,
        "GIT_COMMITTER_NAME": name,
        "GIT_COMMITTER_EMAIL": email,
    }


def _commit(ctx: ToolContext[GitCommitArgs]) -> GitCommitResult:
    if _FORGED_TRAILER.search(ctx.args.message):
        raise InvalidArguments("the message may not hold Swarm-... trailers: the body adds them itself")
    with open_git(ctx).session() as git:
        branch = git.branch()
        if branch is None:
            raise _detached()
        plan = commit_plan(ctx, git)
        if not plan.files or plan.tree is None:
            skipped = f" (left out: {'; '.join(plan.skipped[:10])})" if plan.skipped else ""
            raise ToolRefused(
                "nothing to commit: no change this body made in this workspace is left uncommitted" + skipped,
                code=RefusalCode.NOTHING_TO_COMMIT,
                rule=Rule.GIT_COMMIT,
            )
        message = ctx.args.message.strip() + "\n\n" + "\n".join(_trailers(ctx, plan.actions)) + "\n"
        ctx.effects.files = list(plan.files)
        ctx.effects.detail.update(branch=branch, committed_actions=plan.actions)
        if ctx.mode == "shadow":
            return GitCommitResult(
                action_id=ctx.action_id,
                commit=None,
                branch=branch,
                files=plan.files,
                actions=plan.actions,
                skipped=plan.skipped,
                message=message,
            )
        head = git.head()
        parents = ["-p", head] if head is not None else []
        commit = git.run(
            "commit-tree",
            "--no-gpg-sign",
            plan.tree,
            *parents,
            env=_identity(ctx, git),
            stdin=message.encode(),
            what="creating the commit",
        ).text.strip()
        ref = f"refs/heads/{branch}"
        git.run(
            "update-ref",
            "-m",
            f"swarm git_commit {ctx.action_id}",
            ref,
            commit,
            head or _NO_COMMIT,
            what=f"moving {branch} to the new commit",
        )
        ctx.recorder().ref_moved(ref, before=head, after=commit, after_actions=tuple(plan.actions))
        ctx.effects.detail["commit"] = commit
        # The user's index follows the commit for these paths (else it would show them as staged reversions).
        git.run("reset", "-q", commit, "--", *plan.files, env={"GIT_LITERAL_PATHSPECS": "1"})
    return GitCommitResult(
        action_id=ctx.action_id,
        commit=commit,
        branch=branch,
        files=plan.files,
        actions=plan.actions,
        skipped=plan.skipped,
        message=message,
    )


async def git_commit(ctx: ToolContext[GitCommitArgs]) -> GitCommitResult:
    return await anyio.to_thread.run_sync(_commit, ctx)


def _push_plan(ctx: ToolContext[GitPushArgs], git: GitSession) -> tuple[str, str, list[str]]:
    """The branch, its commit and the paths its commits not yet on the remote change; refusals first."""
    remote = ctx.args.remote
    branch = git.branch()
    if branch is None:
        raise _detached()
    profile = ctx.deps.agent_profile
    agent = profile.name if profile is not None else ctx.agent
    prefix = f"{ctx.deps.git.branch_prefix}/{agent}/"
    if not branch.startswith(prefix):
        raise ToolRefused(
            f"'{branch}' is not this agent's own branch: git_push pushes only branches named {prefix}...",
            code=RefusalCode.BRANCH_NOT_ALLOWED,
            rule=Rule.GIT_PUSH_BRANCH,
        )
    names = {n for n in git.run("remote", what="listing the remotes").text.split() if n}
    if remote not in names:
        known = ", ".join(sorted(names)) or "none"
        raise ToolRefused(
            f"the repository has no remote named '{remote}' (remotes: {known}); a human adds one with git remote add",
            code=RefusalCode.NO_REMOTE,
            rule=Rule.GIT_PUSH,
        )
    if git.run("config", f"remote.{remote}.vcs").text.strip():
        raise ToolRefused(
            f"remote '{remote}' uses a remote helper (remote.{remote}.vcs): the body pushes only over file, https "
            "and ssh",
            code=RefusalCode.GIT_FAILED,
            rule=Rule.GIT_PUSH,
        )
    head = git.head()
    if head is None:
        raise ToolRefused(
            f"'{branch}' has no commit yet: nothing to push", code=RefusalCode.NOTHING_TO_COMMIT, rule=Rule.GIT_PUSH
        )
    listed = git.run(
        "log",
        "--format=",
        "--name-only",
        "-z",
        "--no-renames",
        head,
        "--not",
        f"--remotes={remote}",
        what="listing what the push publishes",
    )
    files = sorted({p.strip("\n") for p in listed.text.split("\0") if p.strip("\n")})
    return branch, head, files


async def git_push(ctx: ToolContext[GitPushArgs]) -> GitPushResult:
    if not ctx.deps.git.push:
        raise ToolRefused(
            "git_push is off in this configuration ([git] push = false): a human pushes, or turns it on",
            code=RefusalCode.PUSH_DISABLED,
            rule=Rule.GIT_PUSH,
        )
    remote = ctx.args.remote
    with open_git(ctx).session() as git:
        branch, head, files = await anyio.to_thread.run_sync(_push_plan, ctx, git)
        executed = [p for p in files if _host_executed(ctx.deps.policy, p)]
        if executed:
            await ctx.require_human(
                Impact(files=len(files)),
                executed,
                f"the push changes paths a host or CI executes or obeys ({', '.join(executed[:10])})",
            )
        ctx.effects.files = files
        ctx.effects.detail.update(remote=remote, branch=branch, commit=head)
        if ctx.mode == "shadow":
            return GitPushResult(action_id=ctx.action_id, remote=remote, branch=branch, commit=None, files=files)
        ref = f"refs/heads/{branch}"
        await anyio.to_thread.run_sync(
            lambda: git.run(
                "push",
                "--porcelain",
                "--no-follow-tags",
                "--no-recurse-submodules",
                "--no-verify",
                # (git keeps the first receivepack it reads, and .git/config comes before -c: only this overrides it)
                "--receive-pack=git-receive-pack",
                remote,
                f"{ref}:{ref}",
                what=f"pushing {branch} to {remote}",
            )
        )
    return GitPushResult(action_id=ctx.action_id, remote=remote, branch=branch, commit=head, files=files)


_BUILT_IN = PathPolicy(denied=DEFAULT_DENIED_PATHS, read_only=DEFAULT_READ_ONLY_PATHS)
"""The paths a host or CI runs or obeys by default: a push of one asks a human whatever `[policy]` says."""


def _host_executed(policy: PathPolicy, path: str) -> bool:
    parts = tuple(path.split("/"))
    return policy.classify_parts(parts)[0] != "none" or _BUILT_IN.classify_parts(parts)[0] != "none"


def _irreversible_push(_args: GitPushArgs) -> str:
    return "a push publishes commits on a remote; undo cannot take them back"


GIT_WRITE_TOOLS = [
    ToolSpec(
        name="git_commit",
        description="Commit the changes this body made (and audited) in this workspace, and only those, on the "
        "checked-out branch; the actions' ids become Swarm-Action trailers. Undoable while the branch still names "
        "the commit.",
        args_model=GitCommitArgs,
        result_model=GitCommitResult,
        handler=git_commit,
        read_only=False,
        destructive=False,
    ),
    ToolSpec(
        name="git_push",
        description="Push the checked-out branch (only the agent's own swarm/<agent>/... branch, never forced) to "
        "a remote. Off unless [git] push = true; a push touching CI or IDE config needs a human. Irreversible.",
        args_model=GitPushArgs,
        result_model=GitPushResult,
        handler=git_push,
        read_only=False,
        destructive=False,
        irreversible=_irreversible_push,
    ),
]
