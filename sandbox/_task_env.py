# pyright: strict
"""A command's environment outside the workspace: installed dependencies and package caches.

A virtualenv or `node_modules` made inside the staged workspace would be staged changes: symlinks to the
read-only interpreter, pip's bundled `cacert.pem` (a protected name), thousands of files against the blast
radius. So each lives in a directory of Swarm's state, bound read-write where tools expect it (the
workspace's `.venv`, `node_modules`): what a command installs lands there at once, is never applied to the
workspace and never counted, and the host never runs it. Package caches are Swarm's too, one per body,
under `/run/swarm/cache` in the sandbox, so nothing a command caches reaches the user's `~/.cache` or
another agent.

    env = task_environment(workspace=ws, env_root=state.env, cache_root=state.cache, env_dirs=[".venv"])
    SandboxSpec(..., writable_mounts=env.mounts, env={**base, **env.variables})
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ._interface import SANDBOX_RUN_DIR, WritableMount
from .exceptions import InvalidSandboxSpec

#: Where the body's package caches appear inside the sandbox.
SANDBOX_CACHE_DIR = SANDBOX_RUN_DIR / "cache"
_CACHE_VARIABLES = {
    "UV_CACHE_DIR": "uv",
    "PIP_CACHE_DIR": "pip",
    "npm_config_cache": "npm",
    "XDG_CACHE_HOME": "xdg",
}
_VENV = ".venv"


@dataclass(kw_only=True, frozen=True)
class TaskEnvironment:
    """The writable mounts and environment variables that put a task's environment where tools expect it."""

    mounts: list[WritableMount] = field(default_factory=list[WritableMount])
    variables: dict[str, str] = field(default_factory=dict[str, str])
    path_dirs: list[Path] = field(default_factory=list[Path])
    """To put first on `PATH` (the virtualenv's `bin` once it exists, as activating it would)."""
    skipped: list[str] = field(default_factory=list[str])
    """Env dirs the workspace holds something else at (a file, a symlink): left as they are, not mounted."""


def task_environment(*, workspace: Path, env_root: Path, cache_root: Path, env_dirs: Sequence[str]) -> TaskEnvironment:
    """Create the task's env and cache directories (owner-only) and say how to mount them.

    `env_dirs` are workspace-relative directories (`.venv`, `node_modules`); one the workspace already holds
    something other than a directory at (a symlink, a file) is skipped: the sandbox would follow it.
    """
    env = TaskEnvironment()
    for raw in env_dirs:
        rel = PurePosixPath(raw)
        if rel.is_absolute() or not rel.parts or any(part in ("", ".", "..") for part in rel.parts):
            raise InvalidSandboxSpec(f"env dir {raw!r} must be a plain relative directory")
        target = workspace.joinpath(*rel.parts)
        if not _mountable(workspace, target):
            env.skipped.append(raw)
            continue
        source = env_root / "__".join(rel.parts)
        source.mkdir(mode=0o700, parents=True, exist_ok=True)
        env.mounts.append(WritableMount(source=source.resolve(), target=target))
        if raw == _VENV:
            env.variables["UV_PROJECT_ENVIRONMENT"] = str(target)
            if (source / "pyvenv.cfg").is_file():
                # Activated once it exists (uv refuses a VIRTUAL_ENV that names no environment).
                env.variables["VIRTUAL_ENV"] = str(target)
                env.path_dirs.append(target / "bin")
    cache_root.mkdir(mode=0o700, parents=True, exist_ok=True)
    env.mounts.append(WritableMount(source=cache_root.resolve(), target=SANDBOX_CACHE_DIR))
    for variable, name in _CACHE_VARIABLES.items():
        env.variables[variable] = str(SANDBOX_CACHE_DIR / name)
    # uv must not fetch interpreters: the toolchains are the machine's, chosen by the body.
    env.variables["UV_PYTHON_DOWNLOADS"] = "never"
    return env


def _mountable(workspace: Path, target: Path) -> bool:
    path = workspace
    for part in target.relative_to(workspace).parts:
        path = path / part
        if path.is_symlink() or (os.path.lexists(path) and not path.is_dir()):
            return False
    return True
