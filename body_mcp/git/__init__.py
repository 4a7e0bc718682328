"""git on the host for the body's git tools, run so that nothing the agent or the repository wrote executes,
and whose output never shows a protected file."""

from ._protect import COMMIT_MARK, denied_check, exclude_pathspecs, filter_patch
from ._refs import move_ref, read_ref
from ._run import Git, GitOutput, GitSession, git_failed, not_a_repository

__all__ = [
    "COMMIT_MARK",
    "Git",
    "GitOutput",
    "GitSession",
    "denied_check",
    "exclude_pathspecs",
    "filter_patch",
    "git_failed",
    "move_ref",
    "not_a_repository",
    "read_ref",
]
