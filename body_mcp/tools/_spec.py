"""What a tool is to the guard, and what the guard hands a tool.

A tool is a `ToolSpec`: its argument and result models, its nature (read-only, which
arguments are paths, its planned impact) and a handler. The handler gets one argument, a
`ToolContext[Args]`: its validated arguments, its resolved paths, the call's mode, the
parts of the body it may use (`ToolDeps`, built once by the wiring), `Effects`, where it
reports what it changed as it goes, and, when the client asked for it, `progress`.
Effects are the one thing a tool writes to: the pipeline audits them even when the tool
is refused or cancelled halfway, so a change made before a failure is never lost from the
trail. Nothing in a tool reaches the `Body`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Literal, Protocol, TypeVar

from sandbox import PlanMemo, Sandbox, SandboxSpec
from shared_protocol import NO_IMPACT, Impact, ToolArgs, ToolResult
from shared_protocol.brain import Decision
from shared_protocol.config import GitConfig, SandboxConfig, WorkspaceConfig
from shared_protocol.tools import BrainState

from .._db import Writes
from .._factories import empty_dict, empty_list
from ..audit import AuditStore
from ..brain_link import BrainLink
from ..compliance import Compliance
from ..confinement import Workspace, WorkspacePath
from ..decisions import DecisionStore
from ..held import HeldRuns
from ..killswitch import KillSwitch
from ..limits import Limits
from ..origin import EnvChoice
from ..outputs import OutputStore
from ..policy import PathPolicy
from ..scan import WorkspaceScanner
from ..settings import AgentProfile
from ..state import Identity
from ..undo import Recorder, UndoStore

PathAccess = Literal["read", "write", "write_nofollow"]
"""`write_nofollow`: the path's last component is acted on itself, even when it is a symlink."""

Mode = Literal["live", "shadow"]

ToolOutput = ToolResult | dict[str, Any]
"""A handler's result: the model, or what its `model_dump(mode="json")` would be (the hot path builds that)."""

ArgsT = TypeVar("ArgsT", bound=ToolArgs)

ReportProgress = Callable[[float, float | None, str | None], Awaitable[None]]
"""`(progress, total, message)`: an MCP progress notification to the caller (`progress` only ever grows)."""


@dataclass(kw_only=True, frozen=True)
class ToolDeps:
    """The parts of a body its tools use, wired once (the tools' `RunContext.deps`)."""

    workspace: Workspace
    policy: PathPolicy
    undo: UndoStore
    audit: AuditStore
    limits: Limits
    kill_switch: KillSwitch
    decisions: DecisionStore
    link: BrainLink | None
    identity: Identity
    session: str
    shadow: bool
    home: Path
    """`$SWARM_HOME`: hidden from every command."""
    env_root: Path
    """Where the workspace's installed dependencies live (`StatePaths.env`), mounted for commands."""
    cache_root: Path
    """The package caches of this body's commands (`StatePaths.cache`)."""
    check_root: Path
    """Where the runner's acceptance check gets its own env dirs and caches (`StatePaths.check`)."""
    files: WorkspaceConfig
    """Read and write size caps."""
    sandbox_config: SandboxConfig
    max_api_calls_per_action: int
    decision_ttl_s: int
    """How long a decision, and a command's staged changes held for one, wait for an answer."""
    sandbox: Callable[[], Sandbox]
    """The sandbox backend, chosen on first use; refuses (never runs bare) when none can isolate."""
    scanner: WorkspaceScanner
    held_runs: HeldRuns
    outputs: OutputStore
    """Commands' output, kept with their audit events to be read back."""
    notify_human: Callable[[Decision], None]
    git: GitConfig = field(default_factory=GitConfig)
    compliance: Compliance | None = None
    """The proxy's compliance gate (terms, rates, robots.txt, tunnel caps), one per body; None: the allow-list
    and the proxy's default tunnel caps only."""
    agent_profile: AgentProfile | None = None
    """Agent mode: the agent served (its name and logic version go into its commits' trailers)."""
    secret_files: tuple[Path, ...] = ()
    """The files the config's `file:` secret references name: hidden from every command."""
    specs: PlanMemo[tuple[SandboxConfig, SandboxSpec]] = field(
        default_factory=PlanMemo[tuple[SandboxConfig, SandboxSpec]]
    )
    """Commands' sandbox specs, remembered while nothing they were built from changed (`exec.build_spec`)."""

    @property
    def brain_state(self) -> BrainState:
        return "standalone" if self.link is None else self.link.status


@dataclass(kw_only=True, slots=True)
class Effects:
    """What a call has done so far, reported by its tool as it happens; the call's audit event is built from it."""

    files: list[str] = field(default_factory=empty_list)
    impact: Impact = NO_IMPACT
    """The measured impact: what counts against the budgets once the call settles."""
    detail: dict[str, Any] = field(default_factory=empty_dict)
    recorder: Recorder | None = None
    """Pre-images of what the call changed, committed with its audit event (undo)."""
    writes: Writes = field(default_factory=Writes)
    """Statements to commit with the call's audit event (its undo records, marking others undone)."""


class MeasuredCheck(Protocol):
    async def __call__(self, impact: Impact, paths: Sequence[str] = ()) -> None:
        """`paths`: the files that count (a command's counted changes), for the approval threshold over time."""
        ...


class HumanCheck(Protocol):
    async def __call__(self, impact: Impact, paths: Sequence[str], why: str) -> None:
        """Refuse (`approval_required`) unless the call names a decision a human approved for it."""
        ...


async def _no_human_check(impact: Impact, paths: Sequence[str], why: str) -> None:
    raise AssertionError("this ToolContext was built without a human check")


@dataclass(kw_only=True, frozen=True, slots=True)
class ToolContext(Generic[ArgsT]):
    """One call as its tool sees it."""

    action_id: str
    agent: str
    mode: Mode
    args: ArgsT
    paths: Mapping[str, WorkspacePath]
    deps: ToolDeps
    effects: Effects
    check_measured: MeasuredCheck
    """Holds an impact measured while executing (a command's staged diff, a directory moved) to the rules the
    planned one passed: blast radius, approval, budgets. Raises `ToolRefused` to refuse."""
    require_human: HumanCheck = _no_human_check
    """Holds the call to a human's approval whatever its size (a push touching CI- or IDE-executed paths)."""
    progress: ReportProgress | None = None
    """The caller's progress channel, for a long tool to report through: set by the MCP server (the SDK sends
    only what a client that asked for progress, with a token or a callback, receives); None without one."""
    policy: PathPolicy | None = None
    """The path policy of this call when it is not the body's (a model's call protects its task's acceptance
    inputs too)."""
    from_model: bool = False
    """The runner made this call for its model (`_meta` origin "model"), not for itself."""
    env: EnvChoice | None = None
    """The env dirs the runner's own command runs with (`_meta` `swarm/env`): the task's (its model's), the
    check's, or (None) none."""
    fresh_env: bool = False
    """Empty the check's env dirs and caches first (`_meta` `swarm/fresh_env`)."""
    task_id: str | None = None
    """The task a runner's own call is for (`_meta` `swarm/task`): its acceptance re-run."""

    @property
    def path_policy(self) -> PathPolicy:
        """The path policy this call's changes are held to."""
        return self.policy if self.policy is not None else self.deps.policy

    def recorder(self) -> Recorder:
        """The call's undo recorder, created on first use."""
        effects = self.effects
        if effects.recorder is None:
            effects.recorder = self.deps.undo.recorder(self.deps.workspace)
        return effects.recorder


Handler = Callable[[ToolContext[Any]], Awaitable[ToolOutput]]


def _reversible(_args: Any) -> str | None:
    return None


def _no_impact(_args: Any) -> Impact:
    return NO_IMPACT


@dataclass(kw_only=True, frozen=True)
class ToolSpec:
    name: str
    description: str
    args_model: type[ToolArgs]
    result_model: type[ToolResult]
    handler: Handler
    read_only: bool
    destructive: bool = False
    idempotent: bool = False
    path_fields: dict[str, PathAccess] = field(default_factory=dict[str, PathAccess])
    """Arguments that name workspace paths, and how each is used (confinement and policy check them)."""
    plan: Callable[[Any], Impact] = _no_impact
    """The impact reserved before executing; the handler reports the measured one."""
    text: Callable[[Any], str] | None = None
    """The result as text for the model; default: the structured result as JSON."""
    irreversible: Callable[[Any], str | None] = _reversible
    """Why this call could not be undone (e.g. network requests), or None: recorded before it runs."""
