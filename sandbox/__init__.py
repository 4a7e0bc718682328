# pyright: strict
"""Isolation for every command the agent runs.

A `Sandbox` runs one command against a staged view of a workspace (bubblewrap, no network, read-only
system, protected paths hidden, resource limits) and reports exactly what the command changed, as a list
of `StagedChange`s whose new content waits in a staging area. The real workspace is never written: the
body decides what to apply, through its own guarded writer, then closes the `StagedRun`.

    sandbox = select_sandbox("auto")
    async with await sandbox.run(spec) as staged:
        staged.result.exit_code, staged.changes
"""

from ._copy_backend import CopyStagingSandbox
from ._detect import Declared, Toolchain, ToolchainPlan, find_toolchains, plan_toolchains, read_declared
from ._interface import (
    PROXY_URL,
    SANDBOX_BIN_DIR,
    SANDBOX_RUN_DIR,
    Availability,
    ChangeKind,
    EntryType,
    ProxyNetwork,
    Quota,
    ResourceLimits,
    RunResult,
    Sandbox,
    SandboxSpec,
    StagedChange,
    StagedRun,
    WritableMount,
)
from ._memory_backend import InMemorySandbox, ScriptedChange, scripted_result
from ._overlay_backend import BwrapOverlaySandbox
from ._plan_memo import PlanMemo
from ._select import SandboxPreference, select_sandbox
from ._staged import wait_discarded
from ._task_env import SANDBOX_CACHE_DIR, TaskEnvironment, task_environment
from ._toolchain import check_toolchain_paths, default_toolchain_paths, minimal_path
from .exceptions import (
    InvalidSandboxSpec,
    NoIsolationAvailable,
    SandboxError,
    SandboxSetupFailed,
    StagedChangesUnreadable,
    ToolchainNotFound,
)

__all__ = [
    "PROXY_URL",
    "SANDBOX_BIN_DIR",
    "SANDBOX_CACHE_DIR",
    "SANDBOX_RUN_DIR",
    "Availability",
    "BwrapOverlaySandbox",
    "ChangeKind",
    "CopyStagingSandbox",
    "Declared",
    "EntryType",
    "InMemorySandbox",
    "InvalidSandboxSpec",
    "NoIsolationAvailable",
    "PlanMemo",
    "ProxyNetwork",
    "Quota",
    "ResourceLimits",
    "RunResult",
    "Sandbox",
    "SandboxError",
    "SandboxPreference",
    "SandboxSetupFailed",
    "SandboxSpec",
    "ScriptedChange",
    "StagedChange",
    "StagedChangesUnreadable",
    "StagedRun",
    "TaskEnvironment",
    "Toolchain",
    "ToolchainNotFound",
    "ToolchainPlan",
    "WritableMount",
    "check_toolchain_paths",
    "default_toolchain_paths",
    "find_toolchains",
    "minimal_path",
    "plan_toolchains",
    "read_declared",
    "scripted_result",
    "select_sandbox",
    "task_environment",
    "wait_discarded",
]
