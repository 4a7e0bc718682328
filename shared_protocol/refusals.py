"""Refusal codes and rule names: the closed sets of reasons the guard gives for not doing something.

A refusal reaches the agent as an MCP `is_error` result whose structured content is a
`Refusal`. Tests and clients branch on `code`, never on `message`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import Field

from ._base import ProtocolModel


class RefusalCode(StrEnum):
    """Why a call was refused. Stable strings: part of the interface contract."""

    KILL_SWITCH_ENGAGED = "kill_switch_engaged"
    """The local or brain kill switch is engaged; mutating tools are refused."""
    BRAIN_UNREACHABLE = "brain_unreachable"
    """A linked body has not heard from its brain within the failsafe time."""
    INVALID_ARGUMENTS = "invalid_arguments"
    """Arguments missing, of the wrong type, or not allowed (e.g. an empty rationale)."""
    UNKNOWN_TOOL = "unknown_tool"
    """No tool of that name."""
    TOOL_NOT_ALLOWED = "tool_not_allowed"
    """An agent's model called a tool outside its `tools` subset, or one only the runner calls (next_task,
    report_outcome)."""
    PATH_OUTSIDE_WORKSPACE = "path_outside_workspace"
    """The path resolves outside the workspace (absolute elsewhere, `..`, a symlink leading out)."""
    INVALID_PATH = "invalid_path"
    """The path is malformed: NUL byte, `~`, empty."""
    SPECIAL_FILE = "special_file"
    """Device files, FIFOs and sockets are never read or written."""
    PROTECTED_PATH = "protected_path"
    """Policy protects this path (secrets, `.git/`, Swarm or IDE config)."""
    ACCEPTANCE_INPUT = "acceptance_input"
    """An agent's model tried to change a file its task's acceptance command reads (the task's `acceptance_inputs`,
    `swarm body --protect`): the check the runner re-runs must stay as the task set it. The runner's own calls may."""
    NOT_FOUND = "not_found"
    """The path does not exist."""
    ALREADY_EXISTS = "already_exists"
    """The destination exists and the tool does not overwrite."""
    NOT_A_FILE = "not_a_file"
    """A file was expected (e.g. a directory was given)."""
    NOT_A_DIRECTORY = "not_a_directory"
    """A directory was expected."""
    DIRECTORY_NOT_EMPTY = "directory_not_empty"
    """Only empty directories are deleted by `delete_file`."""
    TOO_LARGE = "too_large"
    """Content exceeds the configured read or write size cap."""
    EDIT_MISMATCH = "edit_mismatch"
    """An `edit_file` `old_text` matched zero times or more than once."""
    BLAST_RADIUS = "blast_radius"
    """The measured impact of one action exceeds the blast radius: never allowed."""
    RATE_LIMITED = "rate_limited"
    """A rolling-window limit (calls/min, file modifications/hour, $/hour) would be exceeded."""
    CIRCUIT_OPEN = "circuit_open"
    """The circuit breaker is open after repeated breaches or failures; wait for the cool-down."""
    APPROVAL_REQUIRED = "approval_required"
    """The measured impact needs an approved decision; call `request_approval` first."""
    UNDO_CONFLICT = "undo_conflict"
    """The file changed since the action being undone; undo with force to overwrite."""
    UNDO_UNAVAILABLE = "undo_unavailable"
    """Nothing recorded to undo for that id (unknown, read-only, or already undone)."""
    NETWORK_NOT_ALLOWED = "network_not_allowed"
    """The command asked for network access, which policy or the missing proxy refuses."""
    SANDBOX_UNAVAILABLE = "sandbox_unavailable"
    """No sandbox backend can isolate commands here; commands are never run unsandboxed."""
    TOOLCHAIN_NOT_FOUND = "toolchain_not_found"
    """A toolchain the config names (`[sandbox] python`, a toolchain path) is not on this machine."""
    AUDIT_BROKEN = "audit_broken"
    """The body's audit chain does not verify against its anchor and key (edited, truncated, its database or key
    missing): mutating tools are refused until a human starts a new chain with `swarm audit reset`."""
    UNDO_DAMAGED = "undo_damaged"
    """The recorded undo data (a pre-image or an undo record) is missing or does not match its hash; nothing was
    restored."""
    NOT_A_GIT_REPOSITORY = "not_a_git_repository"
    """The workspace is not the top of a git repository (no `.git` at its root)."""
    NOTHING_TO_COMMIT = "nothing_to_commit"
    """No change the body made (and audited) in this workspace is left to commit."""
    DETACHED_HEAD = "detached_head"
    """HEAD names no branch: git_commit and git_push work on a branch."""
    PUSH_DISABLED = "push_disabled"
    """`[git] push` is off (the default): nothing leaves the machine."""
    NO_REMOTE = "no_remote"
    """The repository has no remote of that name."""
    BRANCH_NOT_ALLOWED = "branch_not_allowed"
    """A push names a branch that is not the agent's own (`swarm/<agent>/...`)."""
    GIT_FAILED = "git_failed"
    """git itself failed (its message says why); nothing was changed."""
    IO_ERROR = "io_error"
    """The operating system refused the operation."""
    INTERNAL_ERROR = "internal_error"
    """An unexpected error inside the guard; the call was refused (fail closed)."""
    CANCELLED = "cancelled"
    """The call was cancelled before it finished (the client gave up, or the body is stopping); audited."""


class Rule(StrEnum):
    """Which rule refused: a closed set, named after the config key or the part of the guard that holds it."""

    GUARD = "guard"
    FAIL_CLOSED = "guard.fail_closed"
    CANCELLED = "guard.cancelled"
    TOOL_NAME = "input.tool_name"
    VALIDATION = "input.validation"
    INPUT_UNICODE = "input.unicode"
    INPUT_META = "input.meta"
    AGENT_TOOLS = "agents.tools"
    KILL_SWITCH = "kill_switch"
    BRAIN_FAILSAFE = "brain.failsafe"
    BRAIN_LINK = "brain.link"
    CONFINEMENT = "confinement"
    PROTECTED_PATHS = "policy.protected_paths"
    ACCEPTANCE_INPUTS = "task.acceptance_inputs"
    FS = "fs"
    MAX_READ_BYTES = "workspace.max_read_bytes"
    MAX_WRITE_BYTES = "workspace.max_write_bytes"
    EXACT_MATCH = "edit_file.exact_match"
    LIMITS = "limits"
    BLAST_RADIUS = "limits.blast_radius"
    CALLS_PER_MINUTE = "limits.calls_per_minute"
    FILE_MODS_PER_HOUR = "limits.file_mods_per_hour"
    USD_PER_HOUR = "limits.usd_per_hour"
    CALLS_IN_FLIGHT = "limits.calls_in_flight"
    CIRCUIT_BREAKER = "limits.circuit_breaker"
    APPROVAL = "approval"
    DECISIONS = "decisions"
    UNDO = "undo"
    UNDO_CONFLICT = "undo.conflict"
    UNDO_INTEGRITY = "undo.integrity"
    COMMAND_OUTPUT = "command_output"
    COMMAND_OUTPUT_INTEGRITY = "command_output.integrity"
    AUDIT = "audit"
    AUDIT_WRITE = "audit.write"
    AUDIT_INTEGRITY = "audit.integrity"
    SNAPSHOTS_RESTORE = "snapshots.restore"
    TASKS_CLAIM = "tasks.claim"
    SANDBOX_BACKEND = "sandbox.backend"
    SANDBOX_ALLOWED_DOMAINS = "sandbox.allowed_domains"
    SANDBOX_TOOLCHAINS = "sandbox.toolchains"
    SANDBOX_STAGED_CHANGES = "sandbox.staged_changes"
    SANDBOX_MAX_WRITE_MB = "sandbox.max_write_mb"
    SANDBOX_MAX_WRITE_INODES = "sandbox.max_write_inodes"
    SANDBOX_MAX_TMP_MB = "sandbox.max_tmp_mb"
    SANDBOX_MAX_TMP_INODES = "sandbox.max_tmp_inodes"
    IDE_HOOKS = "ide.hooks"
    GIT = "git"
    GIT_COMMIT = "git.commit"
    GIT_PUSH = "git.push"
    GIT_PUSH_BRANCH = "git.push_branch"


class ApprovalAsk(ProtocolModel):
    """What an `approval_required` refusal needs approved: pass these to `request_approval` (the runner does)."""

    needs: Literal["human", "consensus"]
    files: list[str] = Field(default_factory=list[str])
    """The files the refused action would change (or the session's recent files with it, for a cumulative ask)."""
    file_count: int = 0
    api_calls: int = 0
    usd: float = 0.0
    irreversible: bool = False


class Refusal(ProtocolModel):
    """The structured content of every refused tool call."""

    code: RefusalCode
    rule: Rule
    """The rule that refused, e.g. `limits.file_mods_per_hour` or `policy.protected_paths`."""
    message: str
    """A sentence for the agent: what was refused, the numbers, and what to do instead."""
    action_id: str
    """The audit event recording this refusal."""
    ask: ApprovalAsk | None = None
    """With `approval_required`: what to ask approval for."""
