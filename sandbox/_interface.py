# pyright: strict
"""What a sandbox is asked to do and what it hands back: the backend-neutral interface."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Literal, Protocol, Self

#: Where a command inside the sandbox finds the body's proxy (the forwarder listens here).
PROXY_LISTEN_HOST = "127.0.0.1"
PROXY_LISTEN_PORT = 3128
PROXY_URL = f"http://{PROXY_LISTEN_HOST}:{PROXY_LISTEN_PORT}"
#: Swarm's own directory inside the sandbox (no host path): the proxy socket, the command links, caches.
SANDBOX_RUN_DIR = Path("/run/swarm")
#: Where `SandboxSpec.commands` appear: put it on `PATH` to use them.
SANDBOX_BIN_DIR = SANDBOX_RUN_DIR / "bin"
PROXY_ENV_NAMES = ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy")


@dataclass(kw_only=True, frozen=True)
class ResourceLimits:
    """Per-run limits. CPU, memory, file size and open files are per process (rlimits); processes are per run.

    The write and `/tmp` quotas are per run too: everything the command writes to the workspace (the staged
    change set) and to its private `/tmp` lives on a tmpfs of that size and inode count, so a write past
    either fails inside the sandbox (ENOSPC) and the run reports the quota in `RunResult.quotas_exceeded`.
    Both are memory while the run is held: the staged set until `StagedRun.aclose()`, `/tmp` until it ends.
    """

    cpu_seconds: int = 60
    memory_bytes: int = 2 * 1024**3
    max_processes: int = 256
    max_file_bytes: int = 256 * 1024**2
    max_open_files: int = 1024
    max_write_bytes: int = 512 * 1024**2
    """Bytes the command may add to the workspace (new and rewritten files; a rewrite copies the whole file)."""
    max_write_inodes: int = 50_000
    """Entries the command may create or change in the workspace (files, directories, links, deletions)."""
    max_tmp_bytes: int = 512 * 1024**2
    max_tmp_inodes: int = 50_000


@dataclass(kw_only=True, frozen=True)
class ProxyNetwork:
    """Give the command HTTP(S) access only through the body's proxy listening on a host unix socket.

    The network namespace stays unshared: inside, a forwarder listens on 127.0.0.1:3128 and relays each
    connection to `socket_path`; the command's environment gets the usual `*_PROXY` variables.
    """

    socket_path: Path


@dataclass(kw_only=True, frozen=True)
class WritableMount:
    """A host directory bound read-write inside the sandbox, beside the staged workspace rather than in it.

    What the command writes there lands in `source` at once: it is never a staged change, never applied
    to the workspace, never counted (a virtualenv at the workspace's `.venv`, a package cache).
    """

    source: Path
    """An existing host directory (absolute, resolved), outside the workspace."""
    target: Path
    """Where the command sees it: inside the workspace (not the workspace itself), or under `/run/swarm`."""


@dataclass(kw_only=True, frozen=True)
class SandboxSpec:
    """One command to run against a staged view of `workspace`."""

    workspace: Path
    """The real workspace directory (absolute, resolved). Never modified by the sandbox."""
    argv: Sequence[str]
    cwd: str = "."
    """Working directory, relative to the workspace."""
    env: Mapping[str, str]
    """The command's whole environment, already reduced by the caller (nothing else is passed)."""
    toolchain_paths: Sequence[Path]
    """Host paths exposed read-only at the same place (interpreters, compilers, selected /etc files)."""
    hidden_paths: Sequence[str]
    """Workspace-relative protected files or directories to hide (an empty file or directory is bound over)."""
    extra_hidden_abs: Sequence[Path] = ()
    """Absolute host paths to hide as well, when they happen to be under an exposed path."""
    timeout_s: float = 120
    max_output_bytes: int = 1_000_000
    """Cap per stream; the rest is drained and dropped, and the result says truncated."""
    on_output: Callable[[int], object] | None = None
    """Told the size of each chunk the command prints (either stream, the dropped part included), as it
    prints it: for reporting progress. Called on the event loop; it must not block."""
    limits: ResourceLimits = field(default_factory=ResourceLimits)
    network: Literal["none"] | ProxyNetwork = "none"
    writable_mounts: Sequence[WritableMount] = ()
    """Host directories the command may write outside the staged change set (see `WritableMount`)."""
    commands: Mapping[str, Path] = field(default_factory=dict[str, Path])
    """Sandbox-only commands: NAME -> an executable the toolchain exposes, linked as `/run/swarm/bin/NAME`
    (`python` -> the interpreter, where the system has only `python3`). `PATH` entries there are kept."""
    pass_fds: Sequence[int] = ()
    """Open file descriptors of the caller the command inherits under the same numbers (a pipe the caller reads
    while the command runs: the body's pytest reporter). The caller keeps and closes them."""
    workspace_state: Hashable | None = None
    """The caller's token for the workspace's state (the body's scan generation): equal tokens promise that
    nothing in the workspace changed in between. With one, the sandbox remembers its plan of the mounts while
    the token, the spec (but for `argv` and the run's timeout, output cap and limits) and every host path the plan
    read are unchanged (`_plan_memo.py`); None: planned afresh for each run."""


class Quota(StrEnum):
    """A per-run quota (`ResourceLimits.max_write_*`, `max_tmp_*`) that a command used up."""

    WRITE_BYTES = "write_bytes"
    WRITE_INODES = "write_inodes"
    TMP_BYTES = "tmp_bytes"
    TMP_INODES = "tmp_inodes"


class ChangeKind(StrEnum):
    """What happened to a path."""

    CREATED = "created"
    MODIFIED = "modified"
    DELETED = "deleted"


class EntryType(StrEnum):
    """The type of a filesystem entry. `SPECIAL` (device, fifo, socket) is reported, never to be applied."""

    FILE = "file"
    DIR = "dir"
    SYMLINK = "symlink"
    SPECIAL = "special"


@dataclass(kw_only=True, frozen=True)
class StagedChange:
    """One path the command changed, relative to the workspace."""

    path: str
    """Workspace-relative, posix separators."""
    kind: ChangeKind
    entry_type: EntryType
    """Type of the new entry; for a deletion, of the old one."""
    mode: int | None
    """Permission bits of the new entry (`0o777` at most: never setuid, setgid or sticky); None for a deletion."""
    symlink_target: str | None
    """Target of a new symlink, verbatim (it may point anywhere, including outside the workspace)."""
    source: Path | None
    """Where the new entry lives in the staging area (copy file content from here); None for a deletion."""
    stripped_mode_bits: int = 0
    """Setuid, setgid and sticky bits the entry had in the staging area, removed from `mode`: a command can
    `chmod 4755` a copy of a binary, and none of that may reach the workspace. 0 when there were none."""


@dataclass(kw_only=True, frozen=True)
class RunResult:
    """How the command ended and what it printed."""

    exit_code: int | None
    """The command's exit status (128+N when killed by signal N); None when timed out or killed."""
    stdout: str
    stderr: str
    stdout_truncated: bool
    stderr_truncated: bool
    timed_out: bool
    killed: bool
    """Stopped by `kill_all()` (the kill switch)."""
    stdout_bytes: int | None = None
    """Bytes the command printed on stdout, those dropped past `max_output_bytes` included; None when the
    backend does not count them (a scripted run: then what `stdout` holds is all there was)."""
    stderr_bytes: int | None = None
    """The same for stderr."""
    duration_s: float
    quotas_exceeded: tuple[Quota, ...] = ()
    """The quotas the command used up: its writes past one failed, so its changes may be cut short. Such a
    run's changes are reported but must not be applied."""
    staged_bytes: int = 0
    """Memory the staged change set holds until the run is closed (the copy backend's includes its copy)."""


@dataclass(kw_only=True, frozen=True)
class Availability:
    """Whether a backend can isolate commands on this machine, and why not."""

    ok: bool
    reason: str


class StagedRun(Protocol):
    """A finished run whose staging area is kept until `aclose()`, so the body can copy from `source` paths.

    `changes` is sorted by path components (a directory comes right before its children); when an entry's
    type changed, its deletion is listed before its creation. A deleted or created directory lists every
    child explicitly; a renamed directory is a deletion of the old tree and a creation of the new one.
    """

    @property
    def result(self) -> RunResult: ...

    @property
    def changes(self) -> Sequence[StagedChange]: ...

    async def aclose(self) -> None:
        """Discard the staging area. Idempotent."""
        ...

    def discard_soon(self) -> None:
        """Discard the staging area without waiting (e.g. before a reply): what the command wrote is released
        now, what is left of the staging directory is removed by a background thread (`wait_discarded`).
        Idempotent; `aclose` after it does nothing more."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


class Sandbox(Protocol):
    """A backend that runs one command isolated against a staged view of a workspace."""

    @property
    def name(self) -> str: ...

    async def run(self, spec: SandboxSpec) -> StagedRun:
        """Run `spec.argv` isolated and return its result and staged changes.

        Cancelling the caller's scope kills the whole process tree within a second, discards the staging
        area, and raises as usual.
        """
        ...

    def available(self) -> Availability:
        """Say whether this backend can isolate commands here (and if not, what to install or change)."""
        ...

    def kill_all(self) -> None:
        """Kill every running command; their runs return with `killed=True`. For the kill switch."""
        ...

    def close(self) -> None:
        """Release what the backend keeps between runs (a launcher made ahead, its launcher server). Idempotent;
        a run after it still works, without a launcher made ahead."""
        ...
