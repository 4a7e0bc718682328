"""An agent at work: take a task from the brain, work it through a body of its own, report the outcome, repeat.

    runner = AgentRunner(profile=..., provider=..., brain=..., body_id=..., launch=..., wallet=..., workdir=...)
    code = await runner.run(once=True, wait_s=30)     # 0: a task was worked; 3: none came

The runner listens to the brain's event stream for as long as it runs: `kill` engages its gate (every model call in
flight is cancelled, nothing new starts), `resume` releases it, a stream lost for longer than `failsafe_s` engages
it too (failsafe); `task_available` wakes it when it waits for work (there is no polling loop); `decision` wakes a
parked task; `task_cancelled` stops the task it names, and `task_ended` drops a parked task the brain ended (its
decision denied, expired or overridden).

A parked task's state (conversation, held call, claim, spend) is saved under the agent's work dir
(`parked.save_parked`) before the brain is told, so a runner that restarts (`swarm agents up` restarts a dead one)
takes its parked tasks up again: it asks the brain for the tasks its body has waiting for approval and waits for
their decisions as before; one whose saved state is missing or corrupt is given up to the brain with that reason.
A task dropped (cancelled, ended by the brain, finished) leaves nothing behind: no shadow copy, no saved state.

What the runner writes (parked states, transcripts: `records`) is protected by `privacy`, the agent body's
`Protector` over its subject key store, so `swarm privacy erase --agent` reaches it. An approved parked task
resumes from its saved state, read back from disk (not from what the runner held in memory), so a subject erased
while it waited reads `[pii:KIND:erased]` in its conversation and task; one whose held call named such a subject is
given up (that call can no longer run as it was approved: `parked`).

How it claims (`mode`): in shadow or live when told so (`--shadow`, `--live`: explicit, for every claim), else as
the agent's rollout says, asked of the brain each time the runner wakes for work (`GET /v1/agents/{name}/rollout`,
`rollout_mode`): live when its logic version is the agent's live version or a candidate at a canary step, shadow
otherwise (a new version, one in shadow, one rolled back, an agent with no rollout yet). So a candidate switches
from shadow to live by itself once the brain promotes it to its first canary step, and back to shadow if it is
rolled back. A live claim the brain refuses as not ready (readiness not passed, or the rollout moved between the
read and the claim) is taken in shadow instead, with a line saying why; with `--live` that refusal ends the run.
The brain stays the authority either way: it routes a live claim to the version's canary share, or refuses it.

Each task gets a body started on the task's workspace (`launch(workspace, shadow)`): in shadow, a throwaway copy of
the task's repository with no network, so what the agent does is real and nothing of it leaves the copy; the
outcome is recorded as a shadow run and the task stays queued for live work. The agent's identity, audit chain,
limit windows and kill state are the body's, per agent (`swarm body --agent NAME`), whatever the workspace.

Success counts only when verified: the task's acceptance command re-run by the body as the runner's own call, its
exit code and audit event recorded with the outcome (the brain confirms it against that event, which the body ships
to it). A pytest check's verdict is its report, which the body's reporter streamed out of the check's process as
the tests ran (`shared_protocol.verdict`; the exit code, which the code under test can set, is kept as evidence);
any other check's is its exit code.
The model cannot rewrite the check: the body is started with the task's acceptance inputs
(`acceptance_inputs`), which it refuses to let the model change, nor add a module the check would import instead of
the interpreter's (`pytest.py`, `json.py`: `shared_protocol.imports`); and before a pass is reported verified the
runner looks for such a module the work added since the task's base commit, however it came (`_shadowing`): one
makes the outcome failed, with the reason. Every check runs the code under test in the process whose report
or exit code is its verdict, which that code can forge: before the re-run the change is screened (`_screen`,
`shared_protocol.tamper`), and a passing re-run of a change that uses a primitive able to forge it is held for
review (succeeded, not verified, evidence `acceptance_screen`). A kill during the re-run decides nothing: the
check runs again once released. Without an acceptance command, success is the model's word and recorded as
self-reported.
"""

from __future__ import annotations

import functools
import json
import shlex
import shutil
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Literal, Protocol, cast

import anyio

from shared_protocol import RefusalCode
from shared_protocol.brain import (
    DEFAULT_ACCEPTANCE_INPUTS,
    MAX_LABEL_TEXT,
    MAX_USAGE_BATCH,
    MAX_USAGE_DURATION_MS,
    MAX_USAGE_TOKENS,
    MAX_USAGE_USD,
    BrainErrorCode,
    ClaimRequest,
    ClaimResponse,
    Decision,
    OutcomeRequest,
    ParkRequest,
    RenewRequest,
    RenewResponse,
    ResumeTaskRequest,
    RolloutReport,
    RolloutState,
    Task,
    TaskOutcome,
    TaskSpend,
    UsageAck,
    UsageBatch,
    UsageRecord,
    Verification,
)
from shared_protocol.config import DEFAULT_ARTIFACT_PATHS
from shared_protocol.imports import import_roots, interpreter_module_names, project_modules, shadowing_files
from shared_protocol.privacy import Protector
from shared_protocol.tamper import MAX_SCREENED_BYTES, Hit, held_reason, is_native, is_python, screen_file
from shared_protocol.verdict import CheckReport, pytest_start

from .body import BodyFailed, BodyLaunch, BodySession, EnvMeta, ToolReply, open_body
from .conversation import ToolCall
from .exceptions import RunnerError
from .gate import KillGate
from .loop import (
    BODY_KILL_RETRY_S,
    KILLED,
    AgentProfile,
    Failed,
    Finished,
    LoopEnd,
    Parked,
    TaskRun,
    first_message,
    offered,
    work,
)
from .parked import ParkedStateBroken, SavedPark, load_parked, parked_path, remove_parked, save_parked, saved_task_ids
from .providers import Provider
from .records import save_transcript
from .wallet import TaskWallet, Wallet
from .wallet import UsageRecord as WalletRecord
from .worktrees import DEFAULT_BRANCH_PREFIX, Handover, Workspace, WorkspaceError, Worktrees, describe, every_file

Mode = Literal["shadow", "live"]

EXIT_WORKED = 0
EXIT_ERROR = 1
EXIT_NO_TASK = 3

_REACH_WAIT_S = 10.0
"""How long a task waits for its new body's first registration with the brain before its first step."""


def rollout_mode(state: RolloutState, version: str) -> Mode:
    """How logic version `version` of an agent claims, by the agent's rollout: live as the live version or as the
    candidate at a canary step; shadow as a new version, a candidate in shadow, or a version rolled back."""
    if version in state.rolled_back:
        return "shadow"
    if version == state.live_version or (version == state.candidate and state.stage == "canary"):
        return "live"
    return "shadow"


_ENVIRONMENTS = frozenset(
    (
        ".git",
        "__pycache__",
        ".venv",
        "venv",
        "node_modules",
        ".tox",
        ".nox",
        "site-packages",
        ".mypy_cache",
        ".ruff_cache",
        ".pytest_cache",
    )
)
"""Directories the tamper screen does not read: git's own, the interpreter's cache, installed environments."""


def _read_head(path: Path, size: int = 256) -> bytes | None:
    """Up to `size` bytes of a regular file (a symlink is not followed: what it names is not the change's), or None
    (not a regular file, gone, unreadable)."""
    try:
        if not path.is_file() or path.is_symlink():
            return None
        with path.open("rb") as f:
            return f.read(size)
    except OSError:
        return None


def acceptance_inputs(task: Task, workspace: Path) -> list[str]:
    """The globs (from the workspace root) of the files the task's acceptance command reads, which the model may not
    change: the task's own `acceptance_inputs` when it sets them (`[]`: none); else the files and directories its
    acceptance command names that exist in the workspace, the files of the modules it runs or loads by name
    (`_module_inputs`), the files the tools it runs read by themselves (`_tool_inputs`: `make` its Makefile),
    `DEFAULT_ACCEPTANCE_INPUTS` (the tests), and what its setup reads (`setup_inputs`)."""
    if task.acceptance_inputs is not None:
        return list(task.acceptance_inputs)
    if not task.acceptance.strip():
        return []
    named = _named_inputs(task.acceptance, workspace)
    named += [p for p in _module_inputs(task.acceptance, workspace, named) if p not in named]
    named += [p for p in _tool_inputs(task.acceptance) if p not in named]
    found = [*named, *(p for p in DEFAULT_ACCEPTANCE_INPUTS if p not in named)]
    return [*found, *(p for p in setup_inputs(task, workspace) if p not in found)]


_REGENERATED = DEFAULT_ARTIFACT_PATHS
"""Git-ignored names the acceptance check may run with though no commit holds them: caches and build metadata that
any checkout regenerates."""

SETUP_INPUTS = (
    "pyproject.toml",
    "uv.lock",
    "requirements*.txt",
    "setup.py",
    "setup.cfg",
    "package.json",
    "package-lock.json",
    "uv.toml",
    "pip.conf",
    "pip.ini",
    "constraints*.txt",
    "requirements*.in",
    "Pipfile",
    "Pipfile.lock",
    "poetry.lock",
    "poetry.toml",
    ".python-version",
    ".npmrc",
    ".yarnrc",
    ".yarnrc.yml",
    ".yarn/**",
    "yarn.lock",
    "pnpm-lock.yaml",
    "npm-shrinkwrap.json",
    "bunfig.toml",
    "bun.lock",
    "bun.lockb",
)
"""What a task's setup command reads besides the files it names: the project's declared dependencies and how to
build it, and the setup tools' own configuration in the project (`uv.toml`: an index or `find-links` of the model's
wheels; `pip.conf`; `.npmrc`: `script-shell`, a registry; `.yarnrc*`, the `.yarn/` release yarn runs; `bunfig.toml`;
the lockfiles; `.python-version`, the interpreter). The setup is run again, afresh, before the acceptance re-run, so
these decide what the check runs with (and runs with `UV_NO_CONFIG=1`, `PIP_CONFIG_FILE=/dev/null`)."""

_NPM = (
    "package.json",
    "package-lock.json",
    "npm-shrinkwrap.json",
    "yarn.lock",
    "pnpm-lock.yaml",
    "pnpm-workspace.yaml",
    ".pnpmfile.cjs",
    ".npmrc",
    ".yarnrc",
    ".yarnrc.yml",
    ".yarn/**",
    ".nvmrc",
    ".node-version",
)
TOOL_INPUTS: dict[str, tuple[str, ...]] = {
    "make": ("Makefile", "GNUmakefile", "**/Makefile", "**/GNUmakefile", "**/*.mk"),
    "gmake": ("Makefile", "GNUmakefile", "**/Makefile", "**/GNUmakefile", "**/*.mk"),
    "npm": _NPM,
    "npx": _NPM,
    "yarn": _NPM,
    "pnpm": _NPM,
    "just": ("justfile", ".justfile", "**/*.just"),
    "task": ("Taskfile.yml", "Taskfile.yaml", "Taskfile.dist.yml", "Taskfile.dist.yaml"),
    "tox": ("tox.ini",),
    "nox": ("noxfile.py",),
    "uv": ("uv.lock", "uv.toml"),
    "poetry": ("poetry.lock", "poetry.toml"),
    "hatch": ("hatch.toml",),
    "cargo": ("Cargo.toml", "**/Cargo.toml", "Cargo.lock", "**/build.rs", ".cargo/**", "rust-toolchain*"),
    "go": ("go.mod", "go.sum", "go.work", "go.work.sum"),
}
"""What a tool an acceptance (or setup) command runs reads by itself, without the command naming it (matched
case-insensitively, so `Makefile` is `makefile` too): `make test` runs the Makefile's recipe, `npm test` the
`scripts.test` of `package.json` (with the shell `.npmrc` names), `just`/`task` their own files; a model that
changed them would change what the check does."""


def _tool_inputs(command: str) -> list[str]:
    """The files the tools a command line runs read by themselves (`TOOL_INPUTS`), for each word of it (a wrapped
    `sh -c 'make test'` too) that names one (`/usr/bin/make` is `make`)."""
    try:
        argv = shlex.split(command)
    except ValueError:
        return []
    found: list[str] = []
    for word in _with_shell_words(argv):
        for pattern in TOOL_INPUTS.get(word.rsplit("/", 1)[-1], ()):
            if pattern not in found:
                found.append(pattern)
    return found


def setup_inputs(task: Task, workspace: Path) -> list[str]:
    """The globs of the files the task's setup reads (none without a setup): the files and directories it names
    that exist in the workspace, what the tools it runs read (`TOOL_INPUTS`), and `SETUP_INPUTS`. Part of the
    default acceptance inputs."""
    if not task.setup.strip():
        return []
    named = _named_inputs(task.setup, workspace)
    named += [p for p in _tool_inputs(task.setup) if p not in named]
    return [*named, *(p for p in SETUP_INPUTS if p not in named)]


def _named_inputs(command: str, workspace: Path) -> list[str]:
    """The files and directories (as globs) a command line names that exist in the workspace, the workspace itself
    excepted."""
    try:
        argv = shlex.split(command)
    except ValueError:
        argv = []
    root = workspace.resolve()
    named: list[str] = []
    for arg in _with_shell_words(argv):
        value = arg.split("=", 1)[1] if arg.startswith("-") and "=" in arg else arg
        if not value or value.startswith("-") or "\0" in value:
            continue
        try:
            found = (root / value).resolve()
        except (OSError, RuntimeError):
            continue
        if found == root or not found.is_relative_to(root) or not found.exists():
            continue
        rel = _glob_escaped(found.relative_to(root).as_posix())
        pattern = f"{rel}/**" if found.is_dir() else rel
        if pattern not in named:
            named.append(pattern)
    return named


def _module_inputs(command: str, workspace: Path, named: Sequence[str] = ()) -> list[str]:
    """The files of the modules a command runs (`python3 -m check`, `-m scripts.check`) or has pytest load by name
    (`-p checks`), on each directory the check imports from (`import_roots`): the module's own file or package
    (`check.*`, `check/__init__.*`, `check/__main__.*`: what runs) and its parent packages' `__init__` (run at
    import). Whether the module is there or not: the project's own is the judge (a task whose fix is in the module
    its check runs names its own inputs), and a `pytest.py` the model put in the workspace root would be what
    `python3 -m pytest` runs."""
    try:
        argv = shlex.split(command)
    except ValueError:
        return []
    roots = import_roots(workspace, named, tests=False)
    found: list[str] = []
    for module, run in _run_modules(argv):
        path = module.split(".")
        for root in roots:
            base = "".join(f"{_glob_escaped(p)}/" for p in root)
            tail = "/".join(path)
            wanted = [f"{base}{tail}.*", f"{base}{tail}/__init__.*"]
            wanted += [f"{base}{tail}/__main__.*"] if run else []
            for end in range(1, len(path)):  # (its packages: `scripts.*` would beat a namespace `scripts/`)
                wanted += [f"{base}{'/'.join(path[:end])}.*", f"{base}{'/'.join(path[:end])}/__init__.*"]
            found += [p for p in wanted if p not in found]
    return found


def _run_modules(argv: list[str]) -> list[tuple[str, bool]]:
    """The modules an acceptance command runs with `-m` (`python3 -m pytest`, `-mpytest`, `-m scripts.check`: run,
    True) or, when it runs pytest, loads as a plugin with `-p` (`-p checks`, `-pchecks`; not `-p no:NAME`: False)."""
    words = _with_shell_words(argv)
    pytest = any(w.rsplit("/", 1)[-1] in ("pytest", "py.test") for w in words)
    found: list[tuple[str, bool]] = []
    for i, arg in enumerate(words):
        for flag, run in (("-m", True), ("-p", False)):
            if flag == "-p" and not pytest:
                continue
            if arg == flag:
                module = words[i + 1] if i + 1 < len(words) else ""
            elif arg.startswith(flag) and not arg.startswith("--"):
                module = arg[2:]
            else:
                continue
            if all(p.isidentifier() for p in module.split(".")) and (module, run) not in found:
                found.append((module, run))
    return found


def _with_shell_words(argv: list[str]) -> list[str]:
    """`argv` and, for an argument that is a command line itself (`sh -c 'python3 check.py'`, `--cmd="make
    test"`), the words of that line too: the files a wrapped command names are inputs as well."""
    words = list(argv)
    for arg in argv:
        if any(c.isspace() for c in arg):
            try:
                words += shlex.split(arg.split("=", 1)[1] if arg.startswith("-") and "=" in arg else arg)
            except ValueError:
                continue
    return words


def _glob_escaped(path: str) -> str:
    """`path` as a glob that matches only itself (`*`, `?` and `[` in a name become one-character classes)."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in path)


class TaskBrain(Protocol):
    """The brain's task routes, as the runner uses them (`body_mcp.brain_client.BrainClient` is one)."""

    async def claim(self, request: ClaimRequest) -> ClaimResponse: ...
    async def renew(self, task_id: str, request: RenewRequest) -> RenewResponse: ...
    async def outcome(self, task_id: str, request: OutcomeRequest) -> Task: ...
    async def park(self, task_id: str, request: ParkRequest) -> Task: ...
    async def resume_task(self, task_id: str, request: ResumeTaskRequest) -> RenewResponse: ...
    async def get_decision(self, decision_id: str) -> Decision | None: ...
    async def tasks(self, *, state: str | None = None, agent: str | None = None) -> list[Task]: ...
    async def task(self, task_id: str) -> Task: ...
    async def abandon_parked(self, task_id: str, reason: str) -> Task: ...
    def events(self, body_id: str, *, read_timeout_s: float) -> AsyncIterator[tuple[str, str]]: ...
    async def post_usage(self, batch: UsageBatch) -> UsageAck: ...
    async def rollout(self, agent: str) -> RolloutReport: ...


class UsagePoster(Protocol):
    async def post_usage(self, batch: UsageBatch) -> UsageAck: ...


class UsageQueue:
    """The wallet's sink: settled calls are queued at once (the wallet awaits the sink in a shielded scope) and
    posted to the brain in batches by `run`; what could not be posted yet is posted by the next batch. `body_id`
    None: a reviewer's records (the brain charges them to the proposing task's body); a record's empty task id is
    none."""

    def __init__(self, brain: UsagePoster, body_id: str | None) -> None:
        self._brain = brain
        self._body_id = body_id
        self._pending: list[UsageRecord] = []
        self._more = anyio.Event()
        self.posted = 0
        self.dropped = 0

    async def put(self, record: WalletRecord) -> None:
        self._pending.append(
            UsageRecord(
                id=record.id,
                at=record.at,
                agent=record.agent,
                logic_version=record.logic_version,
                task_id=record.task_id or None,
                provider=record.provider[:MAX_LABEL_TEXT],
                model=record.model[:MAX_LABEL_TEXT],
                # (clamped to what the brain stores: a provider's absurd count, or a configured model's long name,
                # must not stop the runner, whose wallet and ledger keep the whole figure)
                input_tokens=min(record.input_tokens, MAX_USAGE_TOKENS),
                output_tokens=min(record.output_tokens, MAX_USAGE_TOKENS),
                cache_read_tokens=min(record.cache_read_tokens, MAX_USAGE_TOKENS),
                cache_write_tokens=min(record.cache_write_tokens, MAX_USAGE_TOKENS),
                usd=min(float(record.usd), MAX_USAGE_USD),
                outcome=record.outcome,
                duration_ms=None if record.duration_ms is None else min(record.duration_ms, MAX_USAGE_DURATION_MS),
            )
        )
        self._more.set()

    async def flush(self) -> None:
        """Post what is pending. A batch the brain refuses for good (a 4xx but 408/429: retrying will not change
        it) is posted again record by record, and a record refused alone is dropped with one line on stderr (the
        agent's local ledger keeps it, and the money limits are enforced there), so one bad record cannot hold back
        every later one; the brain out of reach raises, and everything stays pending."""
        while self._pending:
            batch = self._pending[:MAX_USAGE_BATCH]
            try:
                await self._brain.post_usage(UsageBatch(records=batch, body_id=self._body_id))
            except Exception as exc:
                if _is_transient(exc):
                    raise
                if len(batch) == 1:
                    self._dropped(batch[0], exc)
                for n, record in enumerate(batch if len(batch) > 1 else []):
                    await self._post_one(record, index=n)
            else:
                self.posted += len(batch)
            del self._pending[: len(batch)]

    async def _post_one(self, record: UsageRecord, *, index: int) -> None:
        try:
            await self._brain.post_usage(UsageBatch(records=[record], body_id=self._body_id))
        except Exception as exc:
            if _is_transient(exc):
                del self._pending[:index]  # (those before it are posted or dropped)
                raise
            self._dropped(record, exc)
        else:
            self.posted += 1

    def _dropped(self, record: UsageRecord, exc: Exception) -> None:
        self.dropped += 1
        print(
            f"swarm agent: the brain refused usage record {record.id} ({exc}); it stays in the local ledger only",
            file=sys.stderr,
            flush=True,
        )

    async def run(self) -> None:
        while True:
            await self._more.wait()
            self._more = anyio.Event()
            try:
                await self.flush()
            except Exception:  # noqa: BLE001 - the brain out of reach: kept, posted with the next batch
                await anyio.sleep(1.0)
                self._more.set()


@dataclass(kw_only=True)
class _Held:
    """A task being worked or parked: its run, its claim, and where it works."""

    task: Task
    run: TaskRun
    claim_token: str
    workspace: Path
    shadow_copy: bool
    active_s: float
    spending: TaskWallet
    mode: Mode
    space: Workspace | None = None
    """Where it works (a live worktree and branch, a shadow clone, a scratch directory)."""
    unverified: str = ""
    """Why a passing acceptance re-run is not a verified one (`_shadowing`, `_ignored_work`, `_left_out`); "" when
    nothing says so."""
    screen: str = ""
    """What the tamper screen said of the change the acceptance re-run ran (`_screen`; evidence `acceptance_screen`)."""
    held_for_review: str = ""
    """Why a passing acceptance re-run is held for review (the screen's hits): not verified, not failed."""


@dataclass(kw_only=True)
class _Current:
    task_id: str
    scope: anyio.CancelScope
    cancelled: bool = False
    lost: str = ""


@dataclass(kw_only=True)
class AgentRunner:
    profile: AgentProfile
    provider: Provider
    brain: TaskBrain
    body_id: str
    launch: Callable[[Path, bool, Sequence[str]], BodyLaunch]
    """The body command for a workspace (`shadow`: no network), protecting the task's acceptance inputs (globs) from
    the model (`swarm body --protect GLOB`)."""
    wallet: Wallet
    workdir: Path
    """The agent's own directory outside $SWARM_HOME: task worktrees, shadow clones, transcripts, parked state."""
    privacy: Protector | None
    """Protects what the runner writes under `workdir` (parked state, transcripts) and reveals it when read back:
    the agent body's, over the same subject key store (None: kept as it is, `[privacy] redaction` off with no key
    store to read back from)."""
    branch_prefix: str = DEFAULT_BRANCH_PREFIX
    """A live task works on branch `<prefix>/<agent>/<task>` (`[git] branch_prefix`)."""
    usage: UsageQueue | None = None
    """Where the wallet's records go to the brain (the wallet's sink is `usage.put`)."""
    mode: Mode | None = None
    """`shadow` or `live` for every claim (`--shadow`, `--live`); None: as the agent's rollout says, asked of the
    brain each time the runner wakes for work (`rollout_mode`)."""
    failsafe_s: float = 30.0
    acceptance_timeout_s: float = 600.0
    say: Callable[[str], None] = lambda line: None
    """Progress lines for a human (the CLI prints them to stderr)."""
    gate: KillGate = field(default_factory=KillGate)
    _wake: anyio.Event = field(default_factory=anyio.Event)
    _connected: anyio.Event = field(default_factory=anyio.Event)
    _parked: dict[str, _Held] = field(default_factory=dict[str, _Held])
    _current: _Current | None = None
    _took: bool = False
    """A task was taken (claimed, or a parked one taken up again): `run(once=True)` ends once none is parked."""
    _reloaded: bool = False
    _rollout_said: Mode | None = None
    """The mode the rollout gave last (a line is said when it changes)."""
    worked: list[Task] = field(default_factory=list[Task])
    """The tasks this runner finished (or parked), with the brain's record of each."""
    spaces: Worktrees = field(init=False)

    def __post_init__(self) -> None:
        self.spaces = Worktrees(root=self.workdir, agent=self.profile.name, branch_prefix=self.branch_prefix)

    # -- the loop ------------------------------------------------------------------------------

    async def run(self, *, once: bool = False, wait_s: float = 0.0) -> int:
        """Work tasks until cancelled (or, `once`, one task to an outcome: 0; none within `wait_s`: 3)."""
        try:
            return await self._run(once=once, wait_s=wait_s)
        except BaseExceptionGroup as group:  # one failure of the runner's tasks: that one, as it was raised
            raise _first(group) from None

    async def _run(self, *, once: bool, wait_s: float) -> int:
        code = EXIT_ERROR
        async with anyio.create_task_group() as group:
            group.start_soon(self._listen)
            if self.usage is not None:
                group.start_soon(self.usage.run)
            # Set by `_listen` once the stream is open, or once failsafe engaged (the brain out of reach for
            # `failsafe_s`): then the loop waits, paused, for the brain to come back, taking nothing.
            await self._connected.wait()
            try:
                code = await self._loop(once=once, wait_s=wait_s)
            finally:
                if self.usage is not None:
                    with anyio.move_on_after(10, shield=True):
                        await self.usage.flush()
                group.cancel_scope.cancel()
        return code

    async def _loop(self, *, once: bool, wait_s: float) -> int:
        deadline = time.monotonic() + wait_s
        while True:
            await self.gate.released()
            self._wake = anyio.Event()
            if not self._reloaded:
                await self._reload_parked()
                self._report_leftovers()
                self._reloaded = True
            if once and self._took and not self._parked:
                return EXIT_WORKED
            if await self._resume_parked():
                continue
            if once and self._took:  # (one task is enough: wait for its decision)
                await self._wake.wait()
                continue
            if await self._take_one():
                self._took = True
                continue
            if once and not self._parked and time.monotonic() >= deadline:
                return EXIT_NO_TASK
            timeout = max(deadline - time.monotonic(), 0.0) if once and not self._parked else None
            with anyio.move_on_after(timeout):
                await self._wake.wait()

    async def _take_one(self) -> bool:
        mode = self.mode or await self._rollout_mode()
        request = ClaimRequest(
            body_id=self.body_id, agent=self.profile.name, logic_version=self.profile.logic_version, mode=mode
        )
        try:
            claim = await self.brain.claim(request)
        except Exception as exc:
            if self.mode is not None or mode == "shadow" or not _is_not_ready(exc):
                raise
            self.say(f"the brain refused a live claim, so this one is in shadow: {exc}")
            mode = "shadow"
            claim = await self.brain.claim(request.model_copy(update={"mode": mode}))
        if claim.task is None or claim.claim_token is None:
            return False
        task = claim.task
        self.say(f"claimed task {task.id}: {task.title} ({mode})")
        try:
            space = self.spaces.prepare(task.id, task.repo, shadow=mode == "shadow")
        except RunnerError as exc:
            await self._finish(task, claim.claim_token, "failed", str(exc), held=None, mode=mode)
            return True
        if space.resumed:
            self.say(f"task {task.id}: taking up its worktree from an earlier run at {space.path} ({space.branch})")
        elif space.branch is not None:
            self.say(f"task {task.id}: works in {space.path} on branch {space.branch}")
        run = TaskRun(task_id=task.id, title=task.title, workspace=space.path)
        run.messages.append(first_message(task.title, task.description, task.acceptance, task.setup))
        held = _Held(
            task=task,
            run=run,
            claim_token=claim.claim_token,
            workspace=space.path,
            shadow_copy=space.kind != "worktree",
            active_s=0,
            spending=self.wallet.task(task.id),
            mode=mode,
            space=space,
        )
        await self._work(held, lease_s=claim.lease_s or 60)
        return True

    async def _rollout_mode(self) -> Mode:
        """The mode the agent's rollout gives this logic version now (`rollout_mode`; shadow while the agent has
        none: a first claim starts one)."""
        try:
            report = await self.brain.rollout(self.profile.name)
        except Exception as exc:
            if getattr(exc, "status", None) != 404:
                raise
            mode: Mode = "shadow"
            why = "no rollout yet"
        else:
            state, version = report.state, self.profile.logic_version
            mode = rollout_mode(state, version)
            if version in state.rolled_back:
                why = "rolled back"
            elif version == state.live_version:
                why = "the live version"
            elif version == state.candidate:
                why = f"the candidate, {report.percent}% canary" if state.stage == "canary" else "the candidate, shadow"
            else:
                why = "a new version: it starts in shadow"
        if mode != self._rollout_said:
            self.say(f"the rollout says {mode} for logic version {self.profile.logic_version} ({why})")
            self._rollout_said = mode
        return mode

    async def _resume_parked(self) -> bool:
        for task_id, held in list(self._parked.items()):
            decision_id = held.run.decision_id
            decision = await self.brain.get_decision(decision_id) if decision_id else None
            state = decision.state if decision is not None else "missing"
            if state == "pending":
                continue
            if self._parked.pop(task_id, None) is None:
                return True  # dropped meanwhile (its `task_ended` or `task_cancelled` came while we asked)
            if state != "approved":
                # The brain ended the task with its decision (denied, expired, overridden); a decision it does
                # not know ends nothing there, so the task is given up here.
                self.say(f"task {task_id}: decision {decision_id} is {state}: dropping the task")
                if (await self.brain.task(task_id)).state == "waiting_approval":
                    await self.brain.abandon_parked(task_id, f"decision {decision_id} is {state}")
                self._cleanup(held)
                return True
            try:
                self._take_up_saved(held)
            except ParkedStateBroken as exc:
                reason = f"the parked task cannot be resumed: {exc}"
                self.say(f"task {task_id}: {reason}; giving it up")
                await self.brain.abandon_parked(task_id, reason[:4000])
                self._cleanup(held)
                return True
            try:
                renewed = await self.brain.resume_task(task_id, ResumeTaskRequest(claim_token=held.claim_token))
            except Exception as exc:
                if not _is_refusal(exc):
                    self._parked[task_id] = held  # the brain out of reach: asked again on the next wake
                    raise
                self.say(f"task {task_id}: the brain refused to resume it ({exc}); dropping it")
                self._cleanup(held)
                return True
            self.say(f"task {task_id}: decision {decision_id} approved: resuming")
            remove_parked(parked_path(self.workdir, task_id))
            held.run.approved = True
            await self._work(held, lease_s=renewed.lease_s)
            return True
        return False

    def _take_up_saved(self, held: _Held) -> None:
        """Resume from the saved state, not from memory: a subject erased while the task waited is erased from what
        it resumes with too. `ParkedStateBroken` when it cannot be (gone, corrupt, or its held call names an erased
        subject)."""
        saved = load_parked(parked_path(self.workdir, held.task.id), privacy=self.privacy)
        if saved.task.id != held.task.id or saved.claim_token != held.claim_token:
            raise ParkedStateBroken(f"its saved state is not this claim's (task {saved.task.id})")
        _refuse_erased_call(saved)
        held.task, held.run = saved.task, saved.run

    async def _reload_parked(self) -> None:
        """Take up again the tasks this agent's body has parked in the brain (a runner restarted), from their saved
        states; give up to the brain those whose state is missing or broken; forget saved states of tasks the brain
        no longer has waiting for this body (ended, cancelled while the runner was away)."""
        waiting = await self.brain.tasks(state="waiting_approval", agent=self.profile.name)
        mine = {t.id: t for t in waiting if t.claimed_by is not None and t.claimed_by.body_id == self.body_id}
        for task_id in saved_task_ids(self.workdir):
            if task_id not in mine and task_id not in self._parked:
                self._forget(task_id)
        for task_id, task in mine.items():
            if task_id in self._parked:
                continue
            try:
                saved = load_parked(parked_path(self.workdir, task_id), privacy=self.privacy)
                if saved.task.id != task_id:
                    raise ParkedStateBroken(f"its saved state names task {saved.task.id}")
                _refuse_erased_call(saved)
                self._check_saved(task, saved)
            except ParkedStateBroken as exc:
                reason = f"the runner restarted and cannot take up the parked task: {exc}"
                self.say(f"task {task_id}: {reason}; giving it up")
                await self.brain.abandon_parked(task_id, reason[:4000])
                self._forget(task_id)
                continue
            try:
                space = self.spaces.reopen(task_id, saved.workspace)
            except WorkspaceError as exc:
                reason = f"the runner restarted and cannot find the parked task's workspace: {exc}"
                self.say(f"task {task_id}: {reason}; giving it up")
                await self.brain.abandon_parked(task_id, reason[:4000])
                self._forget(task_id)
                continue
            self._parked[task_id] = _Held(
                task=task,
                run=saved.run,
                claim_token=saved.claim_token,
                workspace=saved.workspace,
                shadow_copy=saved.shadow_copy,
                active_s=saved.active_s,
                spending=self.wallet.task(task_id, spent=saved.spend),
                mode=saved.mode,
                space=space,
            )
            self._took = True
            self.say(f"task {task_id}: parked before a restart, waiting for decision {saved.run.decision_id}")

    def _check_saved(self, task: Task, saved: SavedPark) -> None:
        """A saved state is the runner's own file, but what it says decides where the held call runs: its mode must
        be the brain's claim's, and its workspace one this runner makes for the task in that mode (under the
        agent's work dir), never a path an edited file names (the real repository, for a shadow claim)."""
        claimed = next((line.detail.get("mode") for line in reversed(task.history) if line.kind == "claimed"), None)
        if claimed in ("shadow", "live") and claimed != saved.mode:
            raise ParkedStateBroken(f"its saved state says {saved.mode}, but the brain's claim is {claimed}")
        kinds = ("shadow", "tasks") if saved.mode == "shadow" else ("worktrees", "tasks")
        places = {(self.workdir / kind / task.id).resolve() for kind in kinds}
        if saved.workspace.resolve() not in places or saved.run.workspace.resolve() != saved.workspace.resolve():
            raise ParkedStateBroken(f"its saved state names workspace {saved.workspace}, not this agent's for the task")

    # -- one task -----------------------------------------------------------------------------

    async def _work(self, held: _Held, *, lease_s: float) -> None:
        task, run = held.task, held.run
        budget = self.profile.task_timeout_s - held.active_s
        started = time.monotonic()
        end: LoopEnd = Failed(reason=f"wall-clock limit: {self.profile.task_timeout_s:g} s")
        verification: Verification | None = None
        setup_failed: str | None = None
        unstarted = False  # (the task's setup failed before its model did anything)
        current = _Current(task_id=task.id, scope=anyio.CancelScope())
        async with anyio.create_task_group() as group:
            current.scope = group.cancel_scope
            self._current = current
            group.start_soon(self._renew, task.id, held.claim_token, lease_s, current)
            with anyio.move_on_after(budget):
                try:
                    protect = acceptance_inputs(task, held.workspace)
                    async with open_body(self.launch(held.workspace, held.mode == "shadow", protect)) as body:
                        if missing := offered(body.tools, self.profile):
                            raise RunnerError(
                                f"agent '{self.profile.name}' lists tools its body does not offer: {', '.join(missing)}"
                            )
                        await self._reached(body, task)
                        # A task's setup builds the model's environment before its first step (not again when a
                        # parked task resumes: that environment is still there).
                        failed = await self._setup(body, task, check=False) if run.steps == 0 else None
                        if failed is not None:
                            end, unstarted = Failed(reason=failed), True
                        else:
                            end = await work(
                                run,
                                profile=self.profile,
                                provider=self.provider,
                                body=body,
                                spending=held.spending,
                                gate=self.gate,
                                ask_approval=functools.partial(self._ask_approval, body),
                            )
                            if isinstance(end, Finished):
                                ignored = self._ignored_work(held)  # (before the check: what the work left)
                                hits, held.screen = self._screen(held)  # (before the check: what it will run)
                                verification, setup_failed = await self._verify(body, task)
                                if (
                                    verification is not None
                                    and verification.verified
                                    and (why := self._shadowing(held, protect) or ignored)
                                ):
                                    verification = verification.model_copy(update={"verified": False})
                                    held.unverified = why
                                if verification is not None and verification.verified and hits:
                                    verification = verification.model_copy(update={"verified": False})
                                    held.held_for_review = held.screen
                            if not isinstance(end, Parked):
                                skipped = await self._commit(body, held, end)
                                if (
                                    verification is not None
                                    and verification.verified
                                    and (why := self._left_out(held, skipped))
                                ):
                                    verification = verification.model_copy(update={"verified": False})
                                    held.unverified = why
                except BodyFailed as exc:
                    end = Failed(reason=str(exc))
            group.cancel_scope.cancel()
        self._current = None
        held.active_s += time.monotonic() - started
        self._save_transcript(run)
        if current.cancelled:
            self.say(f"task {task.id} was cancelled: {current.lost}")
            self._cleanup(held)
            return
        if current.lost:
            self.say(f"task {task.id}: the claim was lost ({current.lost}); dropping it")
            self._cleanup(held)
            return
        if isinstance(end, Parked):
            # Saved first: a runner that dies once the brain knows the task is parked takes it up again.
            self._save_parked(held)
            await self.brain.park(
                task.id, ParkRequest(claim_token=held.claim_token, decision_id=end.decision_id, reason=end.reason)
            )
            self._parked[task.id] = held
            self.say(f"task {task.id} parked: {end.reason} (decision {end.decision_id})")
            return
        if unstarted:
            self._abandon_space(held)
        if isinstance(end, Finished):
            outcome, summary = self._judge(end, verification, setup_failed, held.unverified, held.held_for_review)
        else:
            outcome, summary = "failed", end.reason
        handed = self._hand_over(held)
        await self._finish(
            task, held.claim_token, outcome, summary, held=held, verification=verification, handover=handed
        )
        self._cleanup(held)

    def _judge(
        self,
        end: Finished,
        verification: Verification | None,
        setup_failed: str | None = None,
        unverified: str = "",
        held_for_review: str = "",
    ) -> tuple[TaskOutcome, str]:
        if verification is None:
            return "succeeded", f"{end.summary} (self-reported: the task has no acceptance command)"
        if verification.verified:
            return "succeeded", end.summary
        if setup_failed is not None:
            return "failed", f"{setup_failed}: the acceptance command was not run; the model said: {end.summary}"
        if unverified:
            return (
                "failed",
                f"the acceptance command passed, but not verified: {unverified}; the model said: {end.summary}",
            )
        if held_for_review:  # (the check passed: the work stands, unverified until a reviewer confirms it)
            return "succeeded", f"{end.summary} (the acceptance command passed, not verified: {held_for_review})"
        code = "no exit code" if verification.exit_code is None else f"exit code {verification.exit_code}"
        if (report := verification.report) is not None and report.verdict != "passed":
            return (
                "failed",
                f"the acceptance command did not pass: {report.reason} ({code}); the model said: {end.summary}",
            )
        return "failed", f"the acceptance command did not pass ({code}); the model said: {end.summary}"

    def _shadowing(self, held: _Held, protect: Sequence[str]) -> str:
        """Before a pass is reported verified: the files the work adds (since the task's base commit) that would
        stand in for a module the check's Python imports (`shared_protocol.imports`), said as the reason it is not;
        "" when there are none. The body refuses the model such files; this catches them however they came."""
        if not protect:  # (the task lets the model change what the check reads: `--no-acceptance-inputs`)
            return ""
        named = acceptance_inputs(held.task.model_copy(update={"acceptance_inputs": None}), held.workspace)
        roots = import_roots(held.workspace, [*protect, *named])  # (the scripts the command runs, whatever protects)
        interpreter = interpreter_module_names()
        # A module the roots offer twice: one of them shadows the other (`app/__init__.py` and `app.py`).
        twice = {m for m, paths in project_modules(held.workspace, roots).items() if len(paths) > 1}
        found = shadowing_files(held.workspace, roots, interpreter | twice)
        if not found:
            return ""
        try:
            new = self.spaces.new_since_base(held.space, sorted(found)) if held.space is not None else sorted(found)
        except WorkspaceError as exc:
            return f"whether {', '.join(sorted(found))} are the project's own could not be checked ({exc})"
        projects = twice - interpreter
        shown = ", ".join(
            f"{path} (shadows the {'project module' if found[path] in projects else 'module'} '{found[path]}')"
            for path in new
        )
        return (
            f"the work adds modules on the check's import path that stand in for the interpreter's or the project's: "
            f"{shown}"
            if new
            else ""
        )

    def _screen(self, held: _Held) -> tuple[list[Hit], str]:
        """Before the acceptance re-run, whatever its kind (pytest or an exit code): the tamper screen
        (`shared_protocol.tamper`) on the files the work changed or created since the task's base, and what to say of
        it (evidence `acceptance_screen`). The check runs the code under test in the process whose result is its
        verdict; a change using what could forge that result holds the verification for a reviewer. The acceptance
        inputs are not among them (the model cannot change them); nor are `__pycache__` (the interpreter's cache, which
        the body drops from the model's commands) and environments (`_ENVIRONMENTS`); git-ignored files are, a
        `build/` too: the check runs them though no commit holds them (`app.pyc` with no `app.py` is what `import app`
        loads)."""
        root = held.workspace
        try:
            if held.space is None:
                paths = self.spaces.changed_since_base(Workspace(task_id=held.task.id, path=root, kind="scratch"))
            else:
                paths = self.spaces.changed_since_base(held.space)
                for entry in self.spaces.not_committed(held.space, ignored=True):
                    entry = entry.rstrip("/")
                    if _ENVIRONMENTS & set(entry.split("/")):
                        continue
                    if (root / entry).is_dir() and not (root / entry).is_symlink():  # (a directory git ignores whole)
                        inside = every_file(root / entry)
                        paths += [f"{entry}/{q}" for q in inside if not _ENVIRONMENTS & set(q.split("/"))]
                    else:
                        paths.append(entry)
        except WorkspaceError as exc:
            hit = Hit(".", 0, f"could not be listed ({exc})", "the change cannot be screened")
            return [hit], held_reason([hit])
        hits: list[Hit] = []
        screened = 0
        for rel in sorted(set(paths)):
            if _ENVIRONMENTS & set(rel.split("/")):
                continue
            data = _read_head(root / rel)
            if data is None or not (is_native(rel, data) or is_python(rel, data)):
                continue
            screened += 1
            if not is_native(rel, data):
                data = _read_head(root / rel, MAX_SCREENED_BYTES + 1) or b""
            hits += screen_file(rel, data)
        if hits:
            return hits, held_reason(sorted(set(hits)))
        files = "file" if len(paths) == 1 else "files"
        return [], f"nothing held: {screened} Python or native of {len(paths)} changed {files} screened"

    def _ignored_work(self, held: _Held) -> str:
        """Before the acceptance re-run: the git-ignored files the work left in the task's worktree (a fresh
        checkout has none), which the check would read and no commit holds, said as the reason a pass is not
        verified; "" when there are none. Regenerated artifacts (`DEFAULT_ARTIFACT_PATHS`: caches, `*.egg-info`)
        do not count."""
        if held.space is None:
            return ""
        try:
            found = self.spaces.not_committed(held.space, ignored=True)
        except WorkspaceError as exc:
            return f"what the work left outside git could not be listed ({exc})"
        found = [p for p in found if not any(fnmatchcase(part, n) for part in p.split("/") for n in _REGENERATED)]
        if not found:
            return ""
        shown = ", ".join(found[:10]) + (f" and {len(found) - 10} more" if len(found) > 10 else "")
        return f"the check ran with git-ignored files the commit cannot hold: {shown}"

    def _left_out(self, held: _Held, skipped: Sequence[str]) -> str:
        """After the commit: the changes in the worktree the commit leaves out (git_commit's `skipped`, and any
        other uncommitted file), said as the reason a pass is not verified; "" when the commit is what was checked."""
        if held.space is None or held.space.kind != "worktree":
            return ""
        try:
            dirty = self.spaces.not_committed(held.space, ignored=False)
        except WorkspaceError as exc:
            return f"whether the commit holds what was checked could not be told ({exc})"
        found = [*skipped, *dirty]
        if not found:
            return ""
        shown = "; ".join(found[:10]) + (f" and {len(found) - 10} more" if len(found) > 10 else "")
        return f"the commit leaves out changes the check ran with: {shown}"

    async def _verify(self, body: BodySession, task: Task) -> tuple[Verification | None, str | None]:
        """The acceptance command re-run by the body as the runner's own call, and why it could not run (its setup
        failed). With a setup, the setup runs first into fresh env dirs of the check's own, and the acceptance
        command runs with them: never with what the model's commands installed."""
        if not task.acceptance.strip():
            return None, None
        try:
            argv = shlex.split(task.acceptance)
        except ValueError as exc:
            self.say(f"task {task.id}: its acceptance command cannot be split into arguments: {exc}")
            return Verification(command=task.acceptance, exit_code=None, action_id=None, verified=False), None
        env: EnvMeta | None = None
        if task.setup.strip():
            if (failed := await self._setup(body, task, check=True)) is not None:
                return Verification(command=task.acceptance, exit_code=None, action_id=None, verified=False), failed
            env = EnvMeta(env="check")
        arguments = {
            "argv": argv,
            "timeout_s": self.acceptance_timeout_s,
            "rationale": f"verify task {task.id}: re-run its acceptance command",
        }
        reply = await self._own_command(
            body, task, arguments, env=env, task_id=task.id, what=f"verifying: the body re-runs `{task.acceptance}`"
        )
        exit_code = reply.structured.get("exit_code")
        code = exit_code if isinstance(exit_code, int) and not reply.is_error else None
        report = _report(reply, argv, code)
        return Verification(
            command=task.acceptance,
            exit_code=code,
            action_id=reply.action_id,
            verified=code == 0 and (report is None or report.verdict == "passed"),
            report=report,
        ), None

    async def _setup(self, body: BodySession, task: Task, *, check: bool) -> str | None:
        """Run the task's setup, the runner's own call: into the model's env dirs (`check` False: at the start of
        the task), or into fresh ones of the check's own (before the acceptance re-run). Network as the body's
        config allows (`[sandbox] allowed_domains`: package installs go through its proxy); none if it allows none.
        Returns why it failed, or None (done, or no setup)."""
        if not task.setup.strip():
            return None
        try:
            argv = shlex.split(task.setup)
        except ValueError as exc:
            return f"the task's setup `{task.setup}` cannot be split into arguments: {exc}"
        if not argv:
            return None
        purpose = "the acceptance re-run, into fresh env dirs" if check else "the model, into the task's env dirs"
        arguments: dict[str, Any] = {
            "argv": argv,
            "timeout_s": self.acceptance_timeout_s,
            "network": True,
            "rationale": f"set up task {task.id}'s environment for {purpose}",
        }
        env = EnvMeta(env="check", fresh=True) if check else EnvMeta(env="task")
        what = f"setting up its environment for {purpose}: `{task.setup}`"
        reply = await self._own_command(body, task, arguments, env=env, what=what)
        if reply.refusal_code == RefusalCode.NETWORK_NOT_ALLOWED.value:  # (a body with no network: shadow, or none)
            arguments["network"] = False
            reply = await self._own_command(body, task, arguments, env=env, what=what + " (no network)")
        exit_code = reply.structured.get("exit_code")
        if not reply.is_error and exit_code == 0:
            return None
        if reply.is_error and reply.refusal_code is not None:
            detail = f"the body refused it ({reply.refusal_code}): {reply.text[:500]}"
        else:
            stderr = str(reply.structured.get("stderr") or reply.structured.get("stdout") or "").strip()
            tail = stderr.splitlines()[-5:] if stderr else []
            detail = f"exit code {exit_code}" + (": " + " / ".join(line[:200] for line in tail) if tail else "")
        where = "for the acceptance re-run" if check else "at the start of the task"
        action = f" (audit {reply.action_id})" if reply.action_id else ""
        return f"the task's setup `{task.setup}` failed {where}{action}: {detail}"

    async def _reached(self, body: BodySession, task: Task) -> None:
        """Wait (at most `_REACH_WAIT_S`) until the task's new body has reached its brain: until its first registration
        it refuses every change (it could not hear a kill), and the brain pages a human for each such refusal as a
        failsafe episode. A body that takes longer is worked anyway (its refusals are waited out: `loop.work`)."""
        with anyio.move_on_after(_REACH_WAIT_S):
            while True:
                reply = await body.call("status", {"rationale": "has the task's new body reached its brain yet?"})
                if reply.is_error or reply.structured.get("brain") != "unreachable":
                    return  # (a status refused is not waited on: the loop waits out the refusals, if any)
                await anyio.sleep(0.2)
        self.say(f"task {task.id}: its body has not reached the brain in {_REACH_WAIT_S:g} s; working on, paused")

    async def _own_command(
        self,
        body: BodySession,
        task: Task,
        arguments: dict[str, Any],
        *,
        env: EnvMeta | None,
        what: str,
        task_id: str | None = None,
    ) -> ToolReply:
        """A `run_command` of the runner's own. Killed while it ran (the gate cut the call off, or the body's own
        kill switch refused or killed it): nothing is decided by that run. Wait for the release and run it again,
        as the loop does for a model call the kill switch cut off."""
        while True:
            await self.gate.released()
            self.say(f"task {task.id}: {what}")
            with self.gate.watch() as scope:
                reply = await body.call("run_command", arguments, env=env, task_id=task_id)
            if scope.cancelled_caught:
                self.say(f"task {task.id}: the kill switch stopped the command; it runs again once released")
                continue
            if reply.refusal_code in KILLED:
                self.say(f"task {task.id}: the body's kill switch refused the command; retrying once released")
                await anyio.sleep(BODY_KILL_RETRY_S)  # (the body hears the resume on its own link)
                continue
            return reply

    def _abandon_space(self, held: _Held) -> None:
        """The task failed before its model did anything (its setup failed): its worktree and branch go, nothing
        of them is left half-made (the setup's env dirs are outside the repository)."""
        space = held.space
        if space is None or space.kind != "worktree":
            return
        try:
            self.spaces.abandon(space)
        except WorkspaceError as exc:
            self.say(f"task {held.task.id}: {exc}; its worktree stays at {space.path}")
            return
        held.space = None

    async def _ask_approval(self, body: BodySession, run: TaskRun, call: ToolCall, reply: ToolReply) -> str | None:
        """The body refused `call` for want of approval: ask for it, as the runner (not the model)."""
        raw = reply.refusal.get("ask")
        ask: dict[str, Any] = dict(cast(dict[str, Any], raw)) if isinstance(raw, dict) else {}
        arguments: dict[str, Any] = {
            "summary": f"agent {self.profile.name}, task '{run.title}': {call.name} "
            f"{json.dumps(dict(call.arguments), default=str)[:500]}",
            "confidence": 1.0,
            "files": [str(p) for p in ask.get("files", [])],
            "impact_usd": float(ask.get("usd", 0.0)),
            "api_calls": int(ask.get("api_calls", 0)),
            "irreversible": bool(ask.get("irreversible", False)),
            "rationale": f"the body asks approval for {call.name}: {reply.text[:300]}",
        }
        answer = await body.call("request_approval", arguments)
        decision = answer.structured.get("decision_id")
        if answer.is_error or not isinstance(decision, str):
            return None
        if answer.structured.get("state") == "approved":
            run.decision_id, run.approved = decision, True
            return None
        return decision

    async def _finish(
        self,
        task: Task,
        claim_token: str,
        outcome: TaskOutcome,
        summary: str,
        *,
        held: _Held | None,
        verification: Verification | None = None,
        handover: Handover | None = None,
        mode: Mode = "shadow",
    ) -> None:
        """Report `task`'s outcome (`mode`: the claim's, when no `held` says it)."""
        mode = held.mode if held is not None else mode
        evidence: dict[str, str] = {"mode": mode}
        if handover is not None:
            evidence |= {
                "branch": handover.branch,
                "commit": handover.commit,
                "base": handover.base,
                "commits": str(handover.commits),
            }
            if handover.kept is not None:
                evidence["worktree"] = f"{handover.kept} (kept: uncommitted changes in it)"
        if verification is not None:
            evidence["acceptance"] = verification.command
            evidence["acceptance_exit_code"] = "none" if verification.exit_code is None else str(verification.exit_code)
            if (report := verification.report) is not None:
                evidence["acceptance_verdict"] = (
                    f"pytest report: {report.verdict}, {report.passed} of {report.collected} collected passed"
                    + (f" ({report.reason})" if report.reason else "")
                )
            else:
                evidence["acceptance_verdict"] = "exit code (not a pytest run: the code under test can set it)"
        spend: TaskSpend | None = None
        if held is not None:
            run = held.run
            spent = held.spending.spend()
            spend = TaskSpend(
                usd=float(spent.usd),
                input_tokens=spent.input_tokens,
                output_tokens=spent.output_tokens,
                cache_read_tokens=spent.cache_read_tokens,
                steps=run.steps,
                model=spent.model,
            )
            evidence |= {
                "files_changed": ", ".join(sorted(run.files)) or "none",
                "steps": str(run.steps),
                "tool_calls": str(run.tool_calls),
                "refusals": str(run.refusals),
                "transcript": str(self._transcript_path(task.id)),
            }
            if held.unverified:
                evidence["unverified"] = held.unverified
            if held.screen and verification is not None:
                evidence["acceptance_screen"] = held.screen
        request = OutcomeRequest(
            claim_token=claim_token,
            outcome=outcome,
            summary=summary[:4000],
            verification=verification,
            evidence=evidence,
            spend=spend,
            logic_version=self.profile.logic_version,
            mode=mode,
        )
        recorded = await self.brain.outcome(task.id, request)
        self.worked.append(recorded)
        self.say(f"task {task.id} {outcome}: {summary[:200]}")

    async def _renew(self, task_id: str, claim_token: str, lease_s: float, current: _Current) -> None:
        while True:
            await anyio.sleep(max(lease_s / 3, 0.5))
            try:
                renewed = await self.brain.renew(task_id, RenewRequest(claim_token=claim_token))
            except Exception as exc:  # noqa: BLE001 - a refusal (cancelled, lease lost) or the brain out of reach
                if _is_refusal(exc):
                    current.lost = str(exc)
                    current.scope.cancel()
                    return
                continue
            lease_s = renewed.lease_s

    # -- workspaces ----------------------------------------------------------------------------

    async def _commit(self, body: BodySession, held: _Held, end: LoopEnd) -> list[str]:
        """A live task's work goes on its branch: the body commits the changes it made and audited (its own call,
        the action ids as trailers), whatever the outcome, so nothing of the attempt is lost. Returns what the
        commit left out, and why (git_commit's `skipped`)."""
        space = held.space
        if space is None or space.kind != "worktree":
            return []
        said = end.summary if isinstance(end, Finished) else f"(unfinished: {end.reason})"
        message = f"{held.task.title}\n\n{said}\n\n(task {held.task.id})"
        reply = await body.call(
            "git_commit",
            {"message": message[:8000], "rationale": f"hand over task {held.task.id}'s work on {space.branch}"},
        )
        if reply.is_error and reply.refusal_code != RefusalCode.NOTHING_TO_COMMIT:
            self.say(f"task {held.task.id}: its work could not be committed ({reply.text[:300]}); the worktree stays")
        skipped = reply.structured.get("skipped") if not reply.is_error else None
        return [str(s) for s in cast(list[object], skipped)] if isinstance(skipped, list) else []

    def _hand_over(self, held: _Held) -> Handover | None:
        """The branch and commit a live task leaves; its worktree goes unless uncommitted work is left in it."""
        if held.space is None or held.space.kind != "worktree" or not held.space.path.exists():
            return None
        try:
            handed = self.spaces.handover(held.space)
        except WorkspaceError as exc:
            self.say(f"task {held.task.id}: {exc}; its worktree stays at {held.space.path}")
            return None
        if handed is not None and handed.kept is not None:
            self.say(f"task {held.task.id}: uncommitted work left in {handed.kept}: the worktree stays")
        held.space = None  # handed over: nothing more to do with it here
        return handed

    def _cleanup(self, held: _Held | SavedPark) -> None:
        """The task is done with here: its shadow clone or scratch directory and saved state go (a live worktree is
        handed over, or kept when work is left in it)."""
        if isinstance(held, _Held):
            self._hand_over(held)
        self._remove_copy(held)
        remove_parked(parked_path(self.workdir, held.task.id))

    def _remove_copy(self, held: _Held | SavedPark) -> None:
        if held.shadow_copy and held.workspace.is_relative_to(self.workdir):
            shutil.rmtree(held.workspace, ignore_errors=True)

    def _report_leftovers(self) -> None:
        """Say what earlier runs of this agent left (a runner that died mid-task): worktrees are kept for the task
        to be taken up again or for a human; shadow clones of tasks not parked are thrown away."""
        holding = [*self._parked, *saved_task_ids(self.workdir)]
        for left in self.spaces.leftovers(holding=holding):
            if left.kind == "clone":
                shutil.rmtree(left.path, ignore_errors=True)
                continue
            self.say(describe(left) + ": kept (taken up again if the task comes back to this agent)")

    def _forget(self, task_id: str) -> None:
        """Remove what a task whose saved state cannot be trusted may have left: the copies the runner makes for a
        task (`_workspace`) and the saved state."""
        for copy in (self.workdir / "shadow" / task_id, self.workdir / "tasks" / task_id):
            shutil.rmtree(copy, ignore_errors=True)
        remove_parked(parked_path(self.workdir, task_id))

    def _save_parked(self, held: _Held) -> None:
        saved = SavedPark(
            task=held.task,
            run=held.run,
            claim_token=held.claim_token,
            workspace=held.workspace,
            shadow_copy=held.shadow_copy,
            active_s=held.active_s,
            mode=held.mode,
            spend=held.spending.spend(),
        )
        save_parked(parked_path(self.workdir, held.task.id), saved, privacy=self.privacy)

    def _transcript_path(self, task_id: str) -> Path:
        return self.workdir / "transcripts" / f"{task_id}.jsonl"

    def _save_transcript(self, run: TaskRun) -> None:
        save_transcript(self._transcript_path(run.task_id), run.transcript, privacy=self.privacy)

    # -- the brain's events ----------------------------------------------------------------------

    async def _listen(self) -> None:
        """Hold the brain's event stream open for as long as the runner runs, reconnecting; failsafe past
        `failsafe_s` without it."""
        lost_at: float | None = None
        while True:
            try:
                async for name, data in self.brain.events(self.body_id, read_timeout_s=max(self.failsafe_s, 5.0)):
                    lost_at = None
                    if "failsafe" in self.gate.reasons:
                        self.say("the brain is back: failsafe released")
                    self.gate.release("failsafe")
                    self._on_event(name, data)
                    self._connected.set()
            except Exception as exc:  # the stream ended or was refused: reconnect; failsafe after a while
                if not _is_transient(exc):
                    raise
            now = time.monotonic()
            lost_at = now if lost_at is None else lost_at
            if now - lost_at >= self.failsafe_s:
                if "failsafe" not in self.gate.reasons:
                    self.say(
                        f"failsafe: the brain has been out of reach for {now - lost_at:.0f} s; paused until it is back"
                    )
                self.gate.engage("failsafe", f"the brain has been out of reach for {now - lost_at:.0f} s")
                self._connected.set()
            await anyio.sleep(0.5)

    def _on_event(self, name: str, data: str) -> None:
        if name == "kill":
            reason = _field(data, "reason") or "kill switch engaged"
            self.gate.engage("brain", reason)
            self.say(f"kill switch engaged: {reason}")
        elif name == "resume":
            if self.gate.engaged:
                self.say("kill switch released")
            self.gate.release("brain")
            self._wake.set()
        elif name in ("task_available", "decision"):
            self._wake.set()
        elif name in ("task_cancelled", "task_ended"):
            task_id = _field(data, "task_id")
            why = "cancelled by a human" if name == "task_cancelled" else _field(data, "reason") or "ended by the brain"
            current = self._current
            if current is not None and task_id == current.task_id:
                current.cancelled = True
                current.lost = why
                current.scope.cancel()
            held = self._parked.pop(task_id or "", None)
            if held is not None:
                self.say(f"task {task_id} was parked and is dropped: {why}")
                self._cleanup(held)
                self._wake.set()


def _report(reply: ToolReply, argv: Sequence[str], exit_code: int | None) -> CheckReport | None:
    """The verdict of a pytest check, from the body's reporter (`shared_protocol.verdict`); None for a check whose
    verdict is its exit code. A pytest check whose re-run brought no readable report is a failed one."""
    if pytest_start(argv) is None:
        return None
    raw = reply.structured.get("report")
    if raw is None and reply.is_error:
        return None  # (refused or killed: nothing ran, the exit code says so)
    try:
        return CheckReport.model_validate(raw)
    except ValueError:
        return CheckReport(
            verdict="failed",
            reason="the body sent no report of the pytest check (a body older than its runner?)",
            exit_code=exit_code,
        )


def _refuse_erased_call(saved: SavedPark) -> None:
    """A held call whose arguments named a subject erased since the task was parked is not the call the decision
    approved any more (the body would take its replay on the decision's measured impact alone): not run."""
    if saved.held_call_erased:
        raise ParkedStateBroken(
            "its held call names personal data erased since the task was parked, so it cannot run as it was approved"
        )


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    first: BaseException = group.exceptions[0]
    return _first(cast(BaseExceptionGroup[BaseException], first)) if isinstance(first, BaseExceptionGroup) else first


def _field(data: str, key: str) -> str | None:
    try:
        value = json.loads(data).get(key)
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def _is_refusal(exc: Exception) -> bool:
    status = getattr(exc, "status", None)
    return isinstance(status, int) and 400 <= status < 500


def _is_not_ready(exc: Exception) -> bool:
    """A refusal of a live claim for want of readiness or of a canary step (`not_ready`)."""
    code = getattr(getattr(exc, "error", None), "code", None)
    return _is_refusal(exc) and code == BrainErrorCode.NOT_READY


def _is_transient(exc: Exception) -> bool:
    return not _is_refusal(exc) or getattr(exc, "status", None) in (408, 429)


RunnerFactory = Callable[[], Awaitable[AgentRunner]]
