"""The body's tools, each a `ToolSpec` the guard runs."""

from ._spec import ToolSpec
from .exec import EXEC_TOOLS
from .fs_read import READ_TOOLS
from .fs_write import WRITE_TOOLS
from .git_read import GIT_READ_TOOLS
from .git_write import GIT_WRITE_TOOLS
from .governance import GOVERNANCE_TOOLS
from .output import OUTPUT_TOOLS
from .tasks import TASK_TOOLS

ALL_TOOLS: list[ToolSpec] = [
    *READ_TOOLS,
    *WRITE_TOOLS,
    *EXEC_TOOLS,
    *GIT_READ_TOOLS,
    *GIT_WRITE_TOOLS,
    *OUTPUT_TOOLS,
    *GOVERNANCE_TOOLS,
    *TASK_TOOLS,
]

__all__ = ["ALL_TOOLS", "ToolSpec"]
