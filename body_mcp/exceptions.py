"""Exceptions of the body.

    SwarmError
    ├── ToolRefused            a refusal the agent reads: becomes an MCP is_error result
    │   ├── KillSwitchEngaged
    │   ├── InvalidArguments
    │   ├── PathRefused
    │   │   ├── PathOutsideWorkspace
    │   │   ├── InvalidPath
    │   │   ├── SpecialFile
    │   │   └── ProtectedPath
    │   │       └── AcceptanceInput  a model's change to a file its task's acceptance command reads
    │   ├── LimitExceeded
    │   │   ├── BlastRadiusExceeded
    │   │   ├── RateLimited
    │   │   └── CircuitOpen
    │   ├── ApprovalRequired
    │   ├── UndoRefused
    │   ├── OutputUnavailable  no output kept for that action (not a command that ran, or pruned)
    │   ├── OutputDamaged      a kept output no longer matches its hash
    │   └── RefusedWithResult  a refusal that also reports what happened (a command's output)
    ├── UserError              misuse by a human or developer: bad config, bad workspace
    │   └── ConfigError
    ├── StateUnusable          a state file is damaged, unreadable or cannot be written (a full disk)
    └── AuditIntegrityError    `swarm audit verify` found tampering

Every `ToolRefused` carries a `RefusalCode` (the stable constant clients branch on), the
rule that refused, and a message for the agent.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path
from typing import ClassVar

from shared_protocol import RefusalCode, ToolResult
from shared_protocol.refusals import ApprovalAsk, Rule


class SwarmError(Exception):
    """Base of every error raised on purpose by the body."""


class ToolRefused(SwarmError):
    """The guard or a tool refuses the call; the agent gets `{code, rule, message, action_id}`."""

    default_code: ClassVar[RefusalCode] = RefusalCode.INTERNAL_ERROR
    default_rule: ClassVar[Rule] = Rule.GUARD

    def __init__(
        self, message: str, *, code: RefusalCode | None = None, rule: Rule | None = None, ask: ApprovalAsk | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.rule = rule or self.default_rule
        self.ask = ask
        """For an approval refusal: what to ask approval for (in the refusal's structured content)."""


class KillSwitchEngaged(ToolRefused):
    default_code = RefusalCode.KILL_SWITCH_ENGAGED
    default_rule = Rule.KILL_SWITCH


class InvalidArguments(ToolRefused):
    default_code = RefusalCode.INVALID_ARGUMENTS
    default_rule = Rule.VALIDATION


class PathRefused(ToolRefused):
    default_rule = Rule.CONFINEMENT


class PathOutsideWorkspace(PathRefused):
    default_code = RefusalCode.PATH_OUTSIDE_WORKSPACE


class InvalidPath(PathRefused):
    default_code = RefusalCode.INVALID_PATH


class SpecialFile(PathRefused):
    default_code = RefusalCode.SPECIAL_FILE


class ProtectedPath(PathRefused):
    default_code = RefusalCode.PROTECTED_PATH
    default_rule = Rule.PROTECTED_PATHS


class AcceptanceInput(ProtectedPath):
    """A model-origin change to a file the task's acceptance command reads."""

    default_code = RefusalCode.ACCEPTANCE_INPUT
    default_rule = Rule.ACCEPTANCE_INPUTS


class LimitExceeded(ToolRefused):
    default_rule = Rule.LIMITS


class BlastRadiusExceeded(LimitExceeded):
    default_code = RefusalCode.BLAST_RADIUS


class RateLimited(LimitExceeded):
    default_code = RefusalCode.RATE_LIMITED


class CircuitOpen(LimitExceeded):
    default_code = RefusalCode.CIRCUIT_OPEN
    default_rule = Rule.CIRCUIT_BREAKER


class ApprovalRequired(ToolRefused):
    default_code = RefusalCode.APPROVAL_REQUIRED
    default_rule = Rule.APPROVAL


class UndoRefused(ToolRefused):
    default_code = RefusalCode.UNDO_UNAVAILABLE
    default_rule = Rule.UNDO


class OutputUnavailable(ToolRefused):
    """No output is kept for that action and stream: an unknown id, not a command that ran, or pruned."""

    default_code = RefusalCode.NOT_FOUND
    default_rule = Rule.COMMAND_OUTPUT


class OutputDamaged(ToolRefused):
    """A kept output no longer matches its recorded hash (or its file is gone): it is not served."""

    default_code = RefusalCode.IO_ERROR
    default_rule = Rule.COMMAND_OUTPUT_INTEGRITY


class RefusedWithResult(ToolRefused):
    """A refusal that carries the tool's result too: a command ran (sandboxed) but its changes were refused."""

    def __init__(self, refusal: ToolRefused, result: ToolResult) -> None:
        super().__init__(refusal.message, code=refusal.code, rule=refusal.rule)
        self.result = result


class UserError(SwarmError):
    """A human or developer used Swarm wrongly; the message says how to fix it."""


class ConfigError(UserError):
    """`swarm.toml` (or a flag) has an unknown key or a bad value; the message names it."""


class AuditIntegrityError(SwarmError):
    """The audit chain does not verify: an event was edited, inserted, deleted, reordered or truncated."""


class StateUnusable(SwarmError):
    """A file under `$SWARM_HOME` cannot be used: damaged, unreadable, or not writable (a full disk).

    The message is one line that names the file and says which.
    """

    def __init__(self, path: Path, reason: str, *, damaged: bool = False) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason
        self.damaged = damaged
        """The file's contents are damaged (not a full disk, not permissions)."""

    @classmethod
    def from_sqlite(cls, path: Path, exc: sqlite3.DatabaseError) -> StateUnusable:
        """The database at `path` raised `exc`: damaged, full, or otherwise unusable."""
        name = getattr(exc, "sqlite_errorname", "")
        if name.startswith(("SQLITE_NOTADB", "SQLITE_CORRUPT")):
            return cls(path, f"damaged ({exc}); `swarm snapshot list` shows the copies kept in snapshots", damaged=True)
        if name.startswith(("SQLITE_FULL", "SQLITE_IOERR")) and _nearly_full(path.parent):
            return cls(path, f"cannot be written, the disk is full ({exc})")
        return cls(path, f"cannot be used ({exc})")


def _nearly_full(directory: Path) -> bool:
    try:
        return shutil.disk_usage(directory).free < 1 << 20
    except OSError:
        return False
