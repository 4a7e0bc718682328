"""The body: a local MCP server that is the agent's only hands.

Every tool call passes one guard pipeline (kill switch → validation → confinement and
policy → budgets → approval → shadow or execute → audit → undo record).
"""

from .admin import Admin
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
from .settings import AgentProfile

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .server import build_server, run_stdio

__all__ = [
    "Admin",
    "AgentProfile",
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


def __getattr__(name: str) -> object:
    # The MCP SDK takes a third of a second to import; CLI commands that never serve MCP skip it.
    if name in ("build_server", "run_stdio"):
        from . import server

        return getattr(server, name)
    raise AttributeError(f"module 'body_mcp' has no attribute {name!r}")
