# pyright: strict
"""The bubblewrap command line: which namespaces, which mounts, which environment.

Facts measured on the target machines (bubblewrap 0.8, kernel 6.x, running as root) that shape it:
- bwrap run by root keeps every capability inside the sandbox unless told otherwise, and a process with
  CAP_SYS_ADMIN in the sandbox's user namespace could unmount what hides protected files. Hence
  `--cap-drop ALL`; the command still runs as uid 0, so owner permissions apply to root-owned files.
- `--disable-userns` (new in 0.8) requires an explicit `--unshare-user`; with it, the command cannot create
  a user namespace of its own (`unshare --user` fails with ENOSPC) and so cannot regain capabilities.
- With `--unshare-net` the new namespace has only `lo`, already up: a forwarder can listen on 127.0.0.1.
- With `--unshare-pid`, bwrap installs an init that exits when the command exits, taking every leftover
  process with it; `--die-with-parent` extends that to the death of the outer bwrap (our kill path), but
  only from the end of the init's setup (its PDEATHSIG is set there): an outer bwrap killed earlier orphans
  it, and the launcher server, its subreaper, kills it (`_spawner.py`).
- `--json-status-fd` reports `child-pid` once the command is about to start, then its `exit-code`
  (128+N when killed by signal N): its absence tells a setup failure from a failing command.
- `--clearenv` leaves only what `--setenv` gives, plus `PWD` which `--chdir` sets.
- Mounts are applied in order, so parents come before children and hidden paths last; a tmpfs over a
  hidden directory, then `--remount-ro`, leaves it empty and read-only; files get an empty file bound over.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ._interface import (
    PROXY_ENV_NAMES,
    PROXY_LISTEN_HOST,
    PROXY_LISTEN_PORT,
    PROXY_URL,
    SANDBOX_BIN_DIR,
    SANDBOX_RUN_DIR,
    SandboxSpec,
    WritableMount,
)
from ._toolchain import ToolchainMount, is_exposed
from .exceptions import InvalidSandboxSpec

#: Where the body's proxy socket appears inside the sandbox.
SANDBOX_PROXY_SOCKET = str(SANDBOX_RUN_DIR / "proxy.sock")
_COMMAND_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")
_HOSTNAME = "swarm-sandbox"


@dataclass(kw_only=True, frozen=True)
class HiddenTarget:
    """A path to cover inside the sandbox: with an empty read-only file, or an empty read-only directory."""

    path: Path
    is_dir: bool


@dataclass(kw_only=True, frozen=True)
class BwrapLayout:
    """Everything that decides the bwrap command line for one run."""

    workspace: Path
    workspace_source: Path
    """Host directory bound read-write at `workspace`: the merged overlay, or the staged copy."""
    tmp_source: Path
    """The run's quota'd tmpfs, bound at `/tmp`."""
    cwd: Path
    toolchain: Sequence[ToolchainMount]
    hidden: Sequence[HiddenTarget]
    empty_file: Path
    """An empty read-only file bound over hidden files."""
    env: Mapping[str, str]
    status_fd: int
    proxy_socket: Path | None = None
    forwarder: Sequence[str] = ()
    """When proxying: the argv prefix that starts the forwarder, which then runs the command."""
    writable: Sequence[WritableMount] = ()
    """Bound read-write after the workspace, parents first."""
    commands: Mapping[str, Path] | None = None
    """Linked into `/run/swarm/bin`."""


def resolve_cwd(spec: SandboxSpec) -> Path:
    """The absolute working directory, refusing one that escapes the workspace or does not exist."""
    rel = _relative(spec.cwd, what="cwd")
    cwd = spec.workspace.joinpath(*rel.parts)
    resolved = cwd.resolve()
    if not (resolved == spec.workspace or spec.workspace in resolved.parents) or not resolved.is_dir():
        raise InvalidSandboxSpec(f"cwd {spec.cwd!r} is not a directory inside the workspace")
    return resolved


def plan_writable(spec: SandboxSpec, toolchain: Sequence[ToolchainMount]) -> list[WritableMount]:
    """Check the writable mounts and order them parents first. A target inside the workspace must be a real
    directory there or absent (bwrap would follow a symlink), a target outside it lies under `/run/swarm`."""
    planned: dict[Path, WritableMount] = {}
    reserved = (SANDBOX_RUN_DIR, SANDBOX_BIN_DIR, Path(SANDBOX_PROXY_SOCKET))
    for mount in spec.writable_mounts:
        source, target = mount.source, Path(os.path.normpath(mount.target))
        if not source.is_absolute() or source.resolve() != source or not source.is_dir():
            raise InvalidSandboxSpec(f"writable mount source must be an existing resolved directory: {source}")
        if _within(source, spec.workspace) or _within(spec.workspace, source) or is_exposed(source, toolchain):
            raise InvalidSandboxSpec(f"writable mount source {source} overlaps the workspace or the toolchain")
        if not target.is_absolute() or target != mount.target:
            raise InvalidSandboxSpec(f"writable mount target must be absolute and normalised: {mount.target}")
        if _within(target, spec.workspace) and target != spec.workspace:
            _check_workspace_target(target, spec.workspace)
        elif target in reserved or not _within(target, SANDBOX_RUN_DIR) or _within(target, SANDBOX_BIN_DIR):
            raise InvalidSandboxSpec(
                f"writable mount target {target} is neither inside the workspace nor under /run/swarm"
            )
        if target in planned:
            raise InvalidSandboxSpec(f"two writable mounts at {target}")
        planned[target] = WritableMount(source=source, target=target)
    return sorted(planned.values(), key=lambda m: (len(m.target.parts), str(m.target)))


def _check_workspace_target(target: Path, workspace: Path) -> None:
    path = workspace
    for part in target.relative_to(workspace).parts:
        path = path / part
        if path.is_symlink() or (os.path.lexists(path) and not path.is_dir()):
            raise InvalidSandboxSpec(f"writable mount target {target}: {path} is not a directory")


def check_commands(spec: SandboxSpec, toolchain: Sequence[ToolchainMount]) -> dict[str, Path]:
    """The sandbox-only commands, each a plain name leading to an executable the toolchain exposes."""
    for name, target in spec.commands.items():
        if not _COMMAND_NAME.fullmatch(name):
            raise InvalidSandboxSpec(f"command name {name!r} must be a plain file name")
        if not target.is_absolute() or not is_exposed(target, toolchain) or not os.access(target, os.X_OK):
            raise InvalidSandboxSpec(f"command {name!r} -> {target}: not an executable the toolchain exposes")
    return dict(spec.commands)


def plan_hidden(
    spec: SandboxSpec, toolchain: Sequence[ToolchainMount], *, also: Sequence[Path] = ()
) -> list[HiddenTarget]:
    """Resolve the protected paths to cover. Paths nobody can see anyway (not mounted) need nothing."""
    candidates: list[Path] = []
    for raw in spec.hidden_paths:
        rel = _relative(raw, what="hidden path")
        if rel.parts:
            candidates.append(spec.workspace.joinpath(*rel.parts))
    candidates.extend(spec.extra_hidden_abs)
    candidates.extend(also)
    targets: dict[Path, HiddenTarget] = {}
    # What lives in a writable mount is not the workspace's: its own files are what the command sees there.
    mounted = [m.target for m in spec.writable_mounts]
    candidates = [c for c in candidates if not any(_within(c, m) for m in mounted)]
    for candidate in candidates:
        if not candidate.is_absolute():
            raise InvalidSandboxSpec(f"extra hidden path must be absolute: {candidate}")
        if not os.path.lexists(candidate):
            continue
        # A symlink would be followed by bwrap anyway; cover what it leads to (a symlinked .env included).
        resolved = candidate.resolve()
        if not resolved.exists():
            continue
        in_workspace = resolved == spec.workspace or spec.workspace in resolved.parents
        if resolved == spec.workspace:
            raise InvalidSandboxSpec("the workspace itself cannot be hidden")
        if in_workspace or is_exposed(resolved, toolchain):
            targets[resolved] = HiddenTarget(path=resolved, is_dir=resolved.is_dir())
    ordered = sorted(targets.values(), key=lambda t: (len(t.path.parts), str(t.path)))
    # Inside an emptied directory there is nothing left to hide (and nothing to bind onto).
    hidden_dirs = [t.path for t in ordered if t.is_dir]
    return [t for t in ordered if not any(d in t.path.parents for d in hidden_dirs)]


def proxy_env(env: Mapping[str, str]) -> dict[str, str]:
    """The command's environment with every proxy variable pointing at the in-sandbox forwarder."""
    merged = dict(env)
    for name in PROXY_ENV_NAMES:
        merged[name] = PROXY_URL
    return merged


def forwarder_prefix(python: Path, source: str) -> list[str]:
    """The argv that starts the forwarder, which listens, then runs the command given after `--`."""
    # -I -S: ignore the environment and site-packages, the forwarder needs the stdlib only.
    return [str(python), "-I", "-S", "-c", source, SANDBOX_PROXY_SOCKET, PROXY_LISTEN_HOST, str(PROXY_LISTEN_PORT)]


def bwrap_options(layout: BwrapLayout) -> list[str]:
    """The bwrap options, for `--args FD` (bwrap 0.8 only takes options there: the command follows `--`)."""
    args = [
        "--unshare-all",
        "--unshare-user",
        "--disable-userns",
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
        "--hostname",
        _HOSTNAME,
        "--clearenv",
    ]
    for name, value in layout.env.items():
        if not name or "=" in name:
            raise InvalidSandboxSpec(f"invalid environment variable name: {name!r}")
        args += ["--setenv", name, value]
    # Our own /proc, /dev and /tmp first: a toolchain path under /tmp must not be covered by the tmpfs.
    args += ["--proc", "/proc", "--dev", "/dev", "--bind", str(layout.tmp_source), "/tmp"]
    for mount in layout.toolchain:
        if mount.symlink_target is not None:
            args += ["--symlink", mount.symlink_target, str(mount.path)]
        else:
            args += ["--ro-bind", str(mount.path), str(mount.path)]
    if layout.proxy_socket is not None:
        # connect() needs no write access to the mount, so read-only is enough.
        args += ["--ro-bind", str(layout.proxy_socket), SANDBOX_PROXY_SOCKET]
    for name, target in (layout.commands or {}).items():
        args += ["--symlink", str(target), str(SANDBOX_BIN_DIR / name)]
    args += ["--bind", str(layout.workspace_source), str(layout.workspace)]
    for mount in layout.writable:
        args += ["--bind", str(mount.source), str(mount.target)]
    for target in layout.hidden:
        if target.is_dir:
            args += ["--tmpfs", str(target.path), "--remount-ro", str(target.path)]
        else:
            args += ["--ro-bind", str(layout.empty_file), str(target.path)]
    args += ["--chdir", str(layout.cwd), "--json-status-fd", str(layout.status_fd)]
    # The options travel NUL-separated: a NUL inside a value would smuggle in options of its own.
    if any("\0" in arg for arg in args):
        raise InvalidSandboxSpec("environment and paths must not contain NUL characters")
    return args


def sandboxed_command(layout: BwrapLayout, argv: Sequence[str]) -> list[str]:
    """What bwrap runs: the command, behind the proxy forwarder when there is one."""
    return [*layout.forwarder, *argv]


def _within(path: Path, parent: Path) -> bool:
    return path == parent or parent in path.parents


def _relative(raw: str, *, what: str) -> PurePosixPath:
    rel = PurePosixPath(raw)
    if rel.is_absolute() or ".." in rel.parts:
        raise InvalidSandboxSpec(f"{what} must be relative to the workspace without '..': {raw!r}")
    return rel
