# pyright: strict
"""Which host paths a command may see: the read-only toolchain, checked so that no home directory leaks in."""

from __future__ import annotations

import os
import pwd
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ._host_memo import HOST_FACTS
from .exceptions import InvalidSandboxSpec, ToolchainNotFound

# Directories every Linux toolchain needs. Missing ones are skipped.
_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# Where the system's commands live, in the usual PATH order.
_SYSTEM_BIN_DIRS = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
# Selected /etc files: enough for the dynamic linker, TLS, user lookups and git, without /etc/shadow & co.
_ETC_ENTRIES = (
    "/etc/alternatives",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/ca-certificates.conf",
    "/etc/passwd",
    "/etc/group",
    "/etc/nsswitch.conf",
    "/etc/hosts",
    "/etc/localtime",
    "/etc/gitconfig",
    "/etc/mime.types",
)
# The sandbox provides its own /proc, /dev and /tmp; binding the host's would defeat the point.
_REFUSED = tuple(Path(p) for p in ("/", "/proc", "/dev", "/sys", "/tmp"))


def default_toolchain_paths(*extra: Path) -> list[Path]:
    """A sensible read-only toolchain for this machine: system dirs, selected /etc files, the running Python.

    The running interpreter's installation (`sys.base_prefix`, e.g. under `/root/.pyenv`) is added when it is
    not under `/usr`, so that Python tools work; pass anything else (a Node or Rust toolchain) as `extra`.
    """
    candidates = [Path(p) for p in (*_SYSTEM_DIRS, *_ETC_ENTRIES, sys.base_prefix, *extra)]

    def compute() -> list[Path]:
        found = [Path(p) for p in (*_SYSTEM_DIRS, *_ETC_ENTRIES)]
        base = Path(sys.base_prefix).resolve()
        if not _is_within(base, Path("/usr")):
            found.append(base)
        found.extend(extra)
        return [p for p in dict.fromkeys(found) if os.path.lexists(p)]

    return list(HOST_FACTS.get(("default_toolchain_paths", extra), candidates, compute))


def check_toolchain_paths(paths: Iterable[str], *, key: str) -> list[Path]:
    """Configured toolchain paths as paths, each absolute and present (`ToolchainNotFound` names the first
    that is not: a toolchain the config asks for must not silently go missing)."""
    checked: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.is_absolute() or not os.path.lexists(path):
            raise ToolchainNotFound(path.name or raw, f"{key}: {raw!r} is not an absolute path on this machine")
        checked.append(path)
    return checked


def home_directories() -> frozenset[Path]:
    """Home directories of root and of regular users: never exposed, nor any directory containing one."""
    return HOST_FACTS.get("home_directories", ["/etc/passwd"], _home_directories)


def _home_directories() -> frozenset[Path]:
    homes = {Path("/root"), Path("/home")}
    for entry in pwd.getpwall():
        # System accounts have homes like /bin or /usr/sbin: only root and regular users count.
        if entry.pw_uid == 0 or entry.pw_uid >= 1000:
            home = Path(entry.pw_dir)
            if home != Path("/") and home.is_absolute():
                homes.add(home)
    return frozenset(homes)


@dataclass(kw_only=True, frozen=True)
class ToolchainMount:
    """One exposed path: bound read-only, or recreated as a symlink (e.g. `/bin -> usr/bin`)."""

    path: Path
    symlink_target: str | None = None


def plan_toolchain(paths: Sequence[Path], *, workspace: Path | None) -> list[ToolchainMount]:
    """Validate the toolchain paths and order them parents first, as bwrap applies mounts in order."""
    key = ("plan_toolchain", tuple(paths), workspace)
    watched = [*paths, "/etc/passwd"]
    return list(HOST_FACTS.get(key, watched, lambda: _plan_toolchain(paths, workspace=workspace)))


def _plan_toolchain(paths: Sequence[Path], *, workspace: Path | None) -> list[ToolchainMount]:
    homes = home_directories()
    mounts: dict[Path, ToolchainMount] = {}
    for raw in paths:
        path = Path(os.path.normpath(raw))
        if not path.is_absolute():
            raise InvalidSandboxSpec(f"toolchain path must be absolute: {raw}")
        if path in _REFUSED:
            raise InvalidSandboxSpec(f"toolchain path {path} is refused: the sandbox provides its own")
        for home in homes:
            if _is_within(home, path):
                raise InvalidSandboxSpec(f"toolchain path {path} would expose the home directory {home}")
        if not os.path.lexists(path) or (workspace is not None and _is_within(path, workspace)):
            continue  # missing, or already visible through the staged workspace
        if path.is_symlink():
            mounts[path] = ToolchainMount(path=path, symlink_target=os.readlink(path))
        else:
            mounts[path] = ToolchainMount(path=path)
    bound = [m.path for m in mounts.values() if m.symlink_target is None]
    for mount in list(mounts.values()):
        # A symlink like /lib64 -> usr/lib64 only works if its target is exposed too.
        if mount.symlink_target is not None:
            target = mount.path.resolve()
            if not any(_is_within(target, b) for b in bound) and target.exists():
                for home in homes:
                    if _is_within(home, target):
                        raise InvalidSandboxSpec(f"toolchain symlink {mount.path} leads to home directory {home}")
                mounts[target] = ToolchainMount(path=target)
    return sorted(mounts.values(), key=lambda m: (len(m.path.parts), str(m.path)))


def is_exposed(path: Path, mounts: Iterable[ToolchainMount]) -> bool:
    """Whether `path` (and what it resolves to) is visible inside the sandbox through the toolchain."""
    bound = [m.path for m in mounts if m.symlink_target is None]
    return any(_is_within(path, b) for b in bound) and any(_is_within(path.resolve(), b) for b in bound)


def minimal_path(toolchain_paths: Sequence[Path]) -> str:
    """A `PATH` naming only the `bin` (and `sbin`) directories the sandbox exposes from `toolchain_paths`.

    Each toolchain's own directories come first, in the order given (a configured toolchain is there to be
    used, as `python3` from the exposed Python), then the system's in their usual order; a directory that
    is missing or not mounted is left out, and so is one that resolves to a directory already named (a
    merged `/usr` makes `/bin` the same as `/usr/bin`). Refuses what `SandboxSpec.toolchain_paths` refuses.
    """
    paths = tuple(toolchain_paths)
    watched = [*paths, *(p / sub for p in paths for sub in ("bin", "sbin")), *_SYSTEM_BIN_DIRS, "/etc/passwd"]
    return HOST_FACTS.get(("minimal_path", paths), watched, lambda: _minimal_path(paths))


def _minimal_path(toolchain_paths: Sequence[Path]) -> str:
    mounts = plan_toolchain(toolchain_paths, workspace=None)
    system = {Path(p) for p in _SYSTEM_DIRS}
    candidates: list[Path] = []
    for raw in toolchain_paths:
        path = Path(os.path.normpath(raw))
        if path in system or _is_within(path, Path("/etc")):
            continue
        candidates += [path] if path.name in ("bin", "sbin") else [path / "bin", path / "sbin"]
    candidates += [Path(p) for p in _SYSTEM_BIN_DIRS]
    seen: set[Path] = set()
    kept: list[str] = []
    for candidate in candidates:
        resolved = candidate.resolve()
        if resolved not in seen and _visible_dir(candidate, mounts):
            seen.add(resolved)
            kept.append(str(candidate))
    return ":".join(kept)


def visible_path(
    path_value: str, mounts: Sequence[ToolchainMount], *, workspace: Path, also: Sequence[Path] = ()
) -> str:
    """`path_value` (a `PATH`) without the entries a command cannot see: relative or empty ones, and
    directories neither exposed by `mounts` nor inside the workspace nor under one of `also` (the sandbox's
    own directories, kept as they are). Empty when none is left. (Remembered while each entry and its parent
    stay as they were: a directory replaced, or one on the way relinked, gives another inode.)"""
    watched = [entry for entry in path_value.split(":") if entry.startswith("/")]
    key = ("visible_path", path_value, tuple(mounts), workspace, tuple(also))
    return HOST_FACTS.get(key, watched, lambda: _visible_path(path_value, mounts, workspace=workspace, also=also))


def _visible_path(path_value: str, mounts: Sequence[ToolchainMount], *, workspace: Path, also: Sequence[Path]) -> str:
    kept: list[str] = []
    for entry in path_value.split(":"):
        path = Path(os.path.normpath(entry)) if entry else None
        if path is None or not path.is_absolute():
            continue
        if any(_is_within(path, own) for own in also) or _visible_dir(path, mounts, workspace=workspace):
            kept.append(str(path))
    return ":".join(kept)


def _visible_dir(path: Path, mounts: Sequence[ToolchainMount], *, workspace: Path | None = None) -> bool:
    """Whether `path` is a directory the command sees: exposed (or a symlink mount leading to something
    exposed), or inside the workspace and resolving there."""
    resolved = path.resolve()
    if not resolved.is_dir():
        return False
    if workspace is not None and _is_within(path, workspace) and _is_within(resolved, workspace):
        return True
    linked = any(m.path == path and m.symlink_target is not None for m in mounts)
    return is_exposed(path, mounts) or (linked and is_exposed(resolved, mounts))


def find_python(mounts: Sequence[ToolchainMount], preferred: Path | None = None) -> Path | None:
    """An interpreter usable inside the sandbox (for the proxy forwarder): the system one first."""
    candidates = [preferred] if preferred is not None else []
    candidates += [Path("/usr/bin/python3"), Path("/usr/local/bin/python3"), Path(sys.base_prefix) / "bin" / "python3"]
    for candidate in candidates:
        if candidate.exists() and is_exposed(candidate, mounts):
            return candidate
    return None


def _is_within(path: Path, parent: Path) -> bool:
    # String prefixes: `Path.parents` made planning cost milliseconds per run.
    return path == parent or str(path).startswith(str(parent).rstrip("/") + "/")
