"""Arguments and results of the body's MCP tools.

Every tool's arguments extend `ToolArgs` (a required, non-empty `rationale` and an
optional `decision_id`). Results are the tool's structured content; a refusal is a
`Refusal` instead. Field names are the interface contract: the reference filesystem
server's names in snake_case.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints, field_validator

from ._base import ProtocolModel
from .brain import Task
from .decisions import DecisionState, Needs
from .refusals import Refusal
from .verdict import CheckReport

NonEmpty = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class ToolArgs(ProtocolModel):
    rationale: NonEmpty = Field(description="Why you want this: recorded with the call in the audit trail.")
    decision_id: str | None = Field(
        default=None, description="An approved decision this call acts under (see request_approval)."
    )


class ToolResult(ProtocolModel):
    action_id: str = Field(description="The audit event of this call: use it with explain or undo.")


# --- read-only file tools ---------------------------------------------------------------


class PathArgs(ToolArgs):
    path: str = Field(description="Relative to the workspace, or absolute inside it.")


class ReadTextFileArgs(PathArgs):
    head: int | None = Field(default=None, ge=1, description="Only the first N lines.")
    tail: int | None = Field(default=None, ge=1, description="Only the last N lines.")


class ReadTextFileResult(ToolResult):
    path: str
    content: str | None = Field(description="The text; null when the file is binary.")
    binary: bool
    size: int
    sha256: str


EntryKind = Literal["file", "directory", "symlink", "other"]


class ListDirectoryResult(ToolResult):
    """A directory's entries by kind, each list sorted by name.

    Names grouped by kind rather than a list of `{name, type}` objects: the same information, but a client that
    checks results against the output schema (the MCP SDKs' clients do, on every call) checks one string per
    entry instead of an object, two fields and an enum (a quarter of the cost, see the README's Benchmarks)."""

    path: str
    files: list[str] = Field(description="Regular files.")
    directories: list[str]
    symlinks: list[str] = Field(description="Symbolic links, whatever they point at (never followed).")
    other: list[str] = Field(description="Devices, FIFOs and sockets.")


class DirectoryTreeArgs(PathArgs):
    exclude_patterns: list[str] = Field(default_factory=list, description="Glob patterns of names to leave out.")
    max_entries: int = Field(default=2000, ge=1, le=20000)


class TreeNode(ProtocolModel):
    name: str
    type: EntryKind
    children: list[TreeNode] | None = None


class DirectoryTreeResult(ToolResult):
    path: str
    tree: list[TreeNode]
    truncated: bool


class SearchFilesArgs(PathArgs):
    pattern: str = Field(
        min_length=1,
        description="Glob matched against names and relative paths, e.g. *.py: `*`, `?`, `[abc]`, `[!abc]` (`[*]` "
        "is a literal `*`); escapes as in a path (`\\xff` a byte that is not UTF-8, `\\\\` a backslash).",
    )
    exclude_patterns: list[str] = Field(default_factory=list, description="Glob patterns of names to leave out.")
    max_results: int = Field(default=1000, ge=1, le=20000)


class SearchFilesResult(ToolResult):
    matches: list[str]
    truncated: bool


class GetFileInfoResult(ToolResult):
    path: str
    type: EntryKind
    size: int
    mode: str
    modified: str
    accessed: str
    created: str | None
    protected: Literal["none", "read_only", "denied"]


# --- mutating file tools ----------------------------------------------------------------


class WriteFileArgs(PathArgs):
    content: str


ChangeKind = Literal["created", "modified", "deleted", "moved"]


class FileChange(ProtocolModel):
    path: str
    kind: ChangeKind


class MutationResult(ToolResult):
    mode: Literal["live", "shadow"] = Field(description="shadow: nothing was changed; this is what would happen.")
    changes: list[FileChange]
    diff: str = Field(default="", description="Unified diff of text changes (always filled in shadow mode).")

    @staticmethod
    def as_json(
        *, action_id: str, mode: Literal["live", "shadow"], changes: Sequence[tuple[str, ChangeKind]], diff: str = ""
    ) -> dict[str, Any]:
        """Exactly `MutationResult(...).model_dump(mode="json")`, built directly: every mutating file tool's
        result, on the hot path, where building and dumping the model costs more than the rest of the reply."""
        return {
            "action_id": action_id,
            "mode": mode,
            "changes": [{"path": path, "kind": kind} for path, kind in changes],
            "diff": diff,
        }


class EditOperation(ProtocolModel):
    old_text: str = Field(min_length=1)
    new_text: str


class EditFileArgs(PathArgs):
    edits: list[EditOperation] = Field(min_length=1)
    dry_run: bool = False


class CreateDirectoryArgs(PathArgs):
    pass


class MoveFileArgs(ToolArgs):
    source: str
    destination: str


class DeleteFileArgs(PathArgs):
    pass


# --- commands ---------------------------------------------------------------------------


class RunCommandArgs(ToolArgs):
    argv: list[str] = Field(min_length=1, description="The command and its arguments; no shell unless you run one.")
    timeout_s: float | None = Field(default=None, gt=0, description="Seconds before the command is killed.")
    network: bool = Field(default=False, description="Ask for network access (through the body's proxy).")
    cwd: str = Field(default=".", description="Working directory, relative to the workspace.")

    @field_validator("argv")
    @classmethod
    def _no_nul(cls, argv: list[str]) -> list[str]:
        if any("\x00" in arg for arg in argv):
            raise ValueError("an argument contains a NUL byte, which no program can receive")
        return argv


CommandChangeClass = Literal["counted", "artifact", "discarded", "refused"]


class CommandChange(ProtocolModel):
    path: str
    kind: Literal["created", "modified", "deleted"]
    type: Literal["file", "dir", "symlink", "special"]
    category: CommandChangeClass = Field(
        description="counted toward the blast radius; artifact (applied, not counted); discarded (.git/); refused."
    )


OutputStream = Literal["stdout", "stderr"]


class StreamOutput(ProtocolModel):
    """One stream of a command: how much it printed, how much is kept, what the result leaves out."""

    printed: int = Field(description="Bytes the command printed on it.")
    kept: int = Field(
        description="Bytes of it kept for read_command_output: all of them, up to [sandbox] max_output_bytes."
    )
    omitted_from: int | None = Field(
        default=None,
        description="The result's text leaves out the middle of a long stream: the kept bytes from here (an offset "
        "for read_command_output)...",
    )
    omitted_to: int | None = Field(default=None, description="...to here (exclusive).")


class CommandOutput(ProtocolModel):
    stdout: StreamOutput
    stderr: StreamOutput


class RunCommandResult(ToolResult):
    mode: Literal["live", "shadow"]
    exit_code: int | None
    stdout: str = Field(description="What the command printed: its start and its end when long, the middle marked.")
    stderr: str = Field(description="The same for stderr.")
    truncated: bool = Field(
        description="Some output is not in stdout/stderr: left out of this result (read it with "
        "read_command_output), or past [sandbox] max_output_bytes (dropped)."
    )
    output: CommandOutput = Field(description="Each stream's size, and what this result leaves out of it.")
    timed_out: bool
    killed: bool = Field(description="Stopped by the kill switch.")
    duration_s: float
    changes: list[CommandChange]
    applied: bool = Field(description="Whether the changes were applied to the workspace (all or nothing).")
    refusal: Refusal | None = Field(default=None, description="Why the changes were not applied.")
    report: CheckReport | None = Field(
        default=None,
        description="A runner's pytest acceptance re-run: what the body's reporter saw of it, and the verdict.",
    )


class ReadCommandOutputArgs(ToolArgs):
    action_id: str = Field(min_length=1, description="The action_id of a run_command call.")
    stream: OutputStream = "stdout"
    offset: int = Field(default=0, ge=0, description="The byte to start at (e.g. a result's omitted_from).")
    limit: int = Field(default=32_768, ge=1, le=262_144, description="At most this many bytes.")


class ReadCommandOutputResult(ToolResult):
    stream: OutputStream
    content: str
    offset: int = Field(description="Where content starts: the offset asked for, or the next character's start.")
    next_offset: int = Field(description="Where the next read goes on.")
    total: int = Field(description="Bytes kept of this stream.")
    eof: bool = Field(description="content reaches the end of what is kept.")
    truncated: bool = Field(
        description="The command printed more than was kept ([sandbox] max_output_bytes): the rest is gone."
    )


# --- git tools --------------------------------------------------------------------------


class GitStatusArgs(ToolArgs):
    pass


class GitStatusEntry(ProtocolModel):
    path: str = Field(description="As list_directory shows a name (one not UTF-8 escaped, `\\xff`): a path argument.")
    index: str = Field(description="The index's status letter (porcelain v2: '.' unchanged, M, A, D, R, ?, ...).")
    worktree: str = Field(description="The working tree's status letter.")
    original_path: str | None = Field(default=None, description="For a rename or copy: where it came from.")
    committable: bool = Field(
        default=False, description="The body made this change (audited) and git_commit would commit it."
    )


class GitStatusResult(ToolResult):
    branch: str | None = Field(description="The checked-out branch; null when HEAD is detached.")
    head: str | None = Field(description="The commit HEAD names; null on a branch with no commit yet.")
    entries: list[GitStatusEntry]


class GitDiffArgs(ToolArgs):
    staged: bool = Field(default=False, description="The index against HEAD; default: the working tree against HEAD.")
    paths: list[str] = Field(default_factory=list[str], description="Only these workspace paths.")


class GitDiffResult(ToolResult):
    diff: str
    truncated: bool = False


class GitLogArgs(ToolArgs):
    max_count: int = Field(default=20, ge=1, le=500, description="The newest N commits.")
    patch: bool = Field(default=False, description="Each commit's diff too.")


class GitCommitInfo(ProtocolModel):
    commit: str
    parents: list[str]
    author: str
    date: str
    message: str
    patch: str | None = None


class GitLogResult(ToolResult):
    commits: list[GitCommitInfo]
    truncated: bool = False


class GitCommitArgs(ToolArgs):
    message: NonEmpty = Field(description="The commit message (the body adds the Swarm-Action trailers).")


class GitCommitResult(ToolResult):
    commit: str | None = Field(description="The new commit; null in shadow mode.")
    branch: str
    files: list[str] = Field(description="The paths committed.")
    actions: list[str] = Field(description="The audited actions whose changes it commits.")
    skipped: list[str] = Field(
        default_factory=list[str], description="Changes left out, and why (changed by someone else since, ignored)."
    )
    message: str = Field(description="The full message, trailers included.")


class GitPushArgs(ToolArgs):
    remote: str = Field(default="origin", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class GitPushResult(ToolResult):
    remote: str
    branch: str
    commit: str | None = Field(description="The commit pushed; null in shadow mode.")
    files: list[str] = Field(description="The paths the pushed commits change (not yet on the remote).")


# --- governance tools -------------------------------------------------------------------


class UndoArgs(ToolArgs):
    id: str = Field(min_length=1, description="An action id, or a decision id to undo all of its actions.")
    force: bool = Field(default=False, description="Overwrite files that changed since the action.")


class UndoResult(ToolResult):
    undone: list[str] = Field(description="The action ids reversed, in the order they were reversed.")
    changes: list[FileChange]
    irreversible: list[str] = Field(
        default_factory=list[str], description="Effects of those actions that no undo can take back, and why."
    )


class RequestApprovalArgs(ToolArgs):
    summary: NonEmpty = Field(description="What you want to do, for the human who answers.")
    confidence: float = Field(ge=0, le=1, description="How sure you are this is right (below 0.70 asks a human).")
    impact_usd: float = Field(default=0.0, ge=0, description="Money the action will spend.")
    files: list[str] = Field(default_factory=list[str], description="Files the action will change.")
    api_calls: int = Field(default=0, ge=0, description="Outbound API calls the action will make.")
    options: list[str] = Field(default_factory=list[str], description="Alternatives the human may pick from.")
    irreversible: bool = Field(
        default=False, description="The action cannot be undone (e.g. a command's network requests): a human decides."
    )


class DecisionResult(ToolResult):
    decision_id: str
    state: DecisionState
    needs: Needs
    deadline: str
    answered_by: list[str] = Field(default_factory=list[str], description="Who answered, and why.")
    next_step: str


class DecisionStatusArgs(ToolArgs):
    id: str = Field(min_length=1, description="A decision id from request_approval.")


class NextTaskArgs(ToolArgs):
    pass


class NextTaskResult(ToolResult):
    task: Task | None = Field(description="The task you now hold (until its lease runs out), or null: nothing queued.")
    lease_s: int | None = None
    note: str = ""


class ReportOutcomeArgs(ToolArgs):
    task_id: str = Field(min_length=1)
    outcome: Literal["succeeded", "failed", "abandoned"]
    summary: str = Field(default="", description="What was done, for the humans and the brain.")


class ReportOutcomeResult(ToolResult):
    task: Task


class StatusArgs(ToolArgs):
    pass


class Budget(ProtocolModel):
    name: str
    used: float
    limit: float
    remaining: float
    window_s: int


LinkState = Literal["connected", "unreachable", "refused"]
"""A linked body's brain: connected, unreachable (failsafe), or refused (it answers but refuses this body's token)."""
BrainState = LinkState | Literal["standalone"]


class StatusResult(ToolResult):
    kill_switch: Literal["engaged", "released"]
    kill_reason: str | None = None
    mode: Literal["shadow", "live"]
    brain: BrainState = Field(
        description="A linked body's brain: connected, unreachable (failsafe), refused (it answers but refuses this "
        "body's token: revoked, or bound to another body), or standalone (no brain)."
    )
    circuit_breaker: Literal["closed", "open", "half_open"]
    audit: Literal["ok", "broken"] = Field(
        default="ok",
        description="broken: the audit chain does not verify, and mutating tools are refused (audit_broken) until "
        "a human runs `swarm audit reset`.",
    )
    audit_problem: str | None = None
    workspace: str
    body_id: str
    session: str
    budgets: list[Budget]


class ExplainArgs(ToolArgs):
    id: str = Field(min_length=1, description="An action id.")


class ExplainResult(ToolResult):
    id: str
    explanation: str
    event: dict[str, object]
