"""The body: a local MCP server that is the agent's only hands.

Every tool call passes one guard pipeline (kill switch → validation → confinement and
policy → budgets → approval → shadow or execute → audit → undo record).
"""

from .body import Body, BodySettings
from .exceptions import (
    AuditIntegrityError,
    ConfigError,
    KillSwitchEngaged,
    PathOutsideWorkspace,
    ProtectedPath,
    SwarmError,
    ToolRefused,
    UserError,
)
from .server import build_server, run_stdio

__all__ = [
    "AuditIntegrityError",
    "Body",
    "BodySettings",
    "ConfigError",
    "KillSwitchEngaged",
    "PathOutsideWorkspace",
    "ProtectedPath",
    "SwarmError",
    "ToolRefused",
    "UserError",
    "build_server",
    "run_stdio",
]
