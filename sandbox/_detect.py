# pyright: strict
"""Which toolchains a workspace's commands get: found on this machine, chosen by what the workspace declares.

Found without running anything: the system's `python3` (its version from the name it links to), pyenv's
versions (`$PYENV_ROOT/versions/*`, the version in each name), `uv` (a real binary, never pyenv's shim
script), and `node` and `npm` where the system keeps them. Declared: `.python-version`, `pyproject.toml`'s
`requires-python` and `package.json`'s `engines.node`. The interpreter `python` and `python3` run is the
configured one, else the declared one, else the system's; what a workspace declares but this machine lacks
is a note (the workspace is the agent's to edit), what the config names but the machine lacks an error.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import stat
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, cast

from ._host_memo import HOST_FACTS
from .exceptions import ToolchainNotFound

ToolName = Literal["python", "uv", "node", "npm"]
Origin = Literal["system", "pyenv", "config"]

_VERSION = re.compile(r"(\d+)\.(\d+)(?:\.(\d+))?")
_PYTHON_NAME = re.compile(r"python(\d+\.\d+)")
_SPECIFIER = re.compile(r"\s*(~=|==|!=|<=|>=|<|>)\s*(\d+(?:\.\d+)*)(\.\*)?\s*")
_SYSTEM_BINS = (Path("/usr/local/bin"), Path("/usr/bin"))


@dataclass(kw_only=True, frozen=True)
class Toolchain:
    """One tool found on this machine."""

    name: ToolName
    version: str
    """As far as it can be told without running it ("" when it cannot)."""
    executable: Path
    expose: Path
    """The directory to expose read-only for it to work (its installation)."""
    origin: Origin


@dataclass(kw_only=True, frozen=True)
class Declared:
    """What the workspace says it needs."""

    python_version: str | None = None
    """`.python-version`'s first line."""
    requires_python: str | None = None
    """`pyproject.toml`'s `[project] requires-python`."""
    node: str | None = None
    """`package.json`'s `engines.node`."""


@dataclass(kw_only=True, frozen=True)
class ToolchainPlan:
    """What a workspace's commands get: paths to expose, sandbox-only command links, `PATH` directories."""

    found: list[Toolchain]
    declared: Declared
    python: Toolchain | None
    """What `python` and `python3` run."""
    expose: list[Path]
    commands: dict[str, Path]
    """Links for `SandboxSpec.commands`: `python` and `python3` to the interpreter, `uv`; `/run/swarm/bin` goes
    on `PATH` before every toolchain directory, so they win."""
    bin_dirs: list[Path]
    """The interpreter's directory, when it is not a system one: on `PATH` next (its `pip`, its scripts)."""
    notes: list[str] = field(default_factory=list[str])
    """What the workspace declares that this machine cannot give, in words."""


def pyenv_root(env: dict[str, str] | None = None) -> Path:
    env = dict(os.environ) if env is None else env
    return Path(env.get("PYENV_ROOT") or Path.home() / ".pyenv")


def find_toolchains(*, pyenv: Path | None = None) -> list[Toolchain]:
    """Every toolchain this machine offers, system ones first (remembered while the directories it looks in
    are unchanged: `_host_memo.py`)."""
    root = pyenv_root() if pyenv is None else pyenv
    path_dirs = [d for d in os.environ.get("PATH", "").split(os.pathsep) if d.startswith("/")]
    versions = root / "versions"
    watched: list[Path | str] = [*_SYSTEM_BINS, root / "shims", versions, Path(sys.base_prefix) / "bin", *path_dirs]
    with contextlib.suppress(OSError):
        watched += [entry / "bin" for entry in versions.iterdir()]
    key = ("find_toolchains", root, os.environ.get("PATH", ""))
    return list(HOST_FACTS.get(key, watched, lambda: _find_toolchains(root)))


def _find_toolchains(root: Path) -> list[Toolchain]:
    found: list[Toolchain] = []
    system = _system_python()
    if system is not None:
        found.append(system)
    versions = root / "versions"
    if versions.is_dir():
        for entry in sorted(versions.iterdir(), key=lambda p: _version_key(p.name), reverse=True):
            python = entry / "bin" / "python3"
            if python.is_file() and os.access(python, os.X_OK) and _VERSION.match(entry.name):
                found.append(
                    Toolchain(name="python", version=entry.name, executable=python, expose=entry, origin="pyenv")
                )
    uv = _find_uv(root, [t for t in found if t.name == "python"])
    if uv is not None:
        found.append(uv)
    for name in ("node", "npm"):
        for directory in _SYSTEM_BINS:
            executable = directory / name
            if executable.exists() and os.access(executable, os.X_OK):
                found.append(
                    Toolchain(name=name, version="", executable=executable, expose=directory.parent, origin="system")
                )
                break
    return found


_MAX_DECLARING_BYTES = 1024 * 1024


def _read_own_file(path: Path) -> str:
    """A workspace file's text, read on the host only if it is a regular file of the workspace: never through a
    symlink (a `.python-version` leading to a file outside), never a FIFO or device (which would block), never more
    than `_MAX_DECLARING_BYTES`. `OSError` otherwise."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > _MAX_DECLARING_BYTES:
            raise OSError(f"{path.name} is not a small regular file")
        with os.fdopen(os.dup(fd), "rb") as stream:
            return stream.read(_MAX_DECLARING_BYTES).decode("utf-8")
    finally:
        os.close(fd)


def read_declared(workspace: Path) -> Declared:
    """What the workspace declares; unreadable or malformed files, and files that are not the workspace's own
    regular files (a symlink, a FIFO), declare nothing."""
    python_version = requires = node = None
    try:
        first = _read_own_file(workspace / ".python-version").strip().splitlines()
        python_version = first[0].strip() if first else None
    except (OSError, UnicodeDecodeError):
        pass
    try:
        project = tomllib.loads(_read_own_file(workspace / "pyproject.toml")).get("project")
        if isinstance(project, dict):
            value = project.get("requires-python")  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
            requires = value if isinstance(value, str) else None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        pass
    try:
        package: object = json.loads(_read_own_file(workspace / "package.json"))
        engines = cast(dict[str, object], package).get("engines") if isinstance(package, dict) else None
        wanted = cast(dict[str, object], engines).get("node") if isinstance(engines, dict) else None
        node = wanted if isinstance(wanted, str) else None
    except (OSError, UnicodeDecodeError, ValueError):
        pass
    return Declared(python_version=python_version, requires_python=requires, node=node)


def plan_toolchains(workspace: Path, *, python: str = "", pyenv: Path | None = None) -> ToolchainPlan:
    """The toolchains for `workspace`'s commands. `python` is `[sandbox] python`: a version or an absolute path
    (`ToolchainNotFound` when this machine has no such interpreter); empty: what the workspace declares."""
    found = find_toolchains(pyenv=pyenv)
    declared = read_declared(workspace)
    pythons = [t for t in found if t.name == "python"]
    notes: list[str] = []
    chosen = _configured_python(python, pythons) if python else _declared_python(declared, pythons, notes)
    if chosen is not None and chosen not in found:
        found.append(chosen)
    if declared.node is not None and not any(t.name == "node" for t in found):
        notes.append(f"package.json asks for node {declared.node}, and this machine has no node")
    commands: dict[str, Path] = {}
    bin_dirs: list[Path] = []
    if chosen is not None:
        directory = chosen.executable.parent
        if directory not in _SYSTEM_BINS:
            bin_dirs.append(directory)
        commands["python"] = commands["python3"] = chosen.executable
    uv = next((t for t in found if t.name == "uv"), None)
    if uv is not None and uv.executable.parent not in _SYSTEM_BINS:
        commands["uv"] = uv.executable
    wanted = [t.expose for t in found if t.expose != Path("/usr")]
    # (string prefixes: `Path.parents` cost milliseconds a command here)
    expose = [p for p in dict.fromkeys(wanted) if not any(str(p).startswith(f"{str(o).rstrip('/')}/") for o in wanted)]
    return ToolchainPlan(
        found=found, declared=declared, python=chosen, expose=expose, commands=commands, bin_dirs=bin_dirs, notes=notes
    )


def _system_python() -> Toolchain | None:
    for directory in _SYSTEM_BINS:
        python = directory / "python3"
        if python.exists() and os.access(python, os.X_OK):
            named = _PYTHON_NAME.fullmatch(python.resolve().name)
            version = named[1] if named else ""
            return Toolchain(name="python", version=version, executable=python, expose=Path("/usr"), origin="system")
    return None


def _find_uv(pyenv: Path, pythons: list[Toolchain]) -> Toolchain | None:
    """A real `uv` binary: on `PATH` unless that is a pyenv shim (a script that runs pyenv), else beside an
    interpreter (the running one first: `pip install uv` puts it there)."""
    candidates: list[Path] = []
    on_path = shutil.which("uv")
    if on_path is not None and (pyenv / "shims") not in Path(on_path).parents:
        candidates.append(Path(on_path))
    candidates.append(Path(sys.base_prefix) / "bin" / "uv")
    candidates += [t.executable.parent / "uv" for t in pythons]
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            real = candidate.resolve()
            origin: Origin = "pyenv" if pyenv in real.parents else "system"
            return Toolchain(name="uv", version="", executable=real, expose=real.parent, origin=origin)
    return None


def _configured_python(python: str, pythons: list[Toolchain]) -> Toolchain:
    if python.startswith("/"):
        path = Path(python)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise ToolchainNotFound("python", f"[sandbox] python = {python!r}: no executable there")
        # Its installation: the directory above its bin/ (a system one lives under /usr).
        expose = Path("/usr") if path.parent in _SYSTEM_BINS else path.resolve().parent.parent
        return Toolchain(name="python", version="", executable=path, expose=expose, origin="config")
    match = _matching(python, pythons)
    if match is None:
        have = ", ".join(t.version for t in pythons) or "none"
        raise ToolchainNotFound("python", f"[sandbox] python = {python!r}: no such interpreter here (found: {have})")
    return match


def _declared_python(declared: Declared, pythons: list[Toolchain], notes: list[str]) -> Toolchain | None:
    system = next((t for t in pythons if t.origin == "system"), None)
    if declared.python_version is not None:
        match = _matching(declared.python_version, pythons)
        if match is not None:
            return match
        notes.append(f".python-version asks for {declared.python_version}, which this machine does not have")
    if declared.requires_python is not None:
        fitting = [t for t in pythons if _satisfies(t.version, declared.requires_python) is not False]
        # The system's when it fits, else the newest that does (pythons are listed newest first after it).
        if fitting:
            return fitting[0]
        notes.append(f"requires-python {declared.requires_python!r}: no interpreter here satisfies it")
    return system or (pythons[0] if pythons else None)


def _matching(version: str, pythons: list[Toolchain]) -> Toolchain | None:
    """The newest interpreter whose version is `version` or starts with it (`3.12` matches `3.12.1`)."""
    wanted = version.strip().removeprefix("python")
    for toolchain in sorted(pythons, key=lambda t: _version_key(t.version), reverse=True):
        if toolchain.version == wanted or toolchain.version.startswith(wanted + "."):
            return toolchain
    return None


def _satisfies(version: str, specifiers: str) -> bool | None:
    """Whether `version` meets a PEP 440 specifier set; None when either cannot be read."""
    have = _version_key(version)
    if not have:
        return None
    for clause in specifiers.split(","):
        match = _SPECIFIER.fullmatch(clause)
        if match is None:
            return None
        op, text, star = match.groups()
        want = tuple(int(part) for part in text.split("."))
        mine = have[: len(want)] if star or (op in ("==", "!=") and len(want) < 3) else have
        if op == "~=":
            ok = have >= want and have[: len(want) - 1] == want[:-1]
        else:
            ok = {
                "==": mine == want,
                "!=": mine != want,
                ">=": mine >= want,
                "<=": mine <= want,
                ">": mine > want,
                "<": mine < want,
            }[op]
        if not ok:
            return False
    return True


def _version_key(version: str) -> tuple[int, ...]:
    match = _VERSION.match(version)
    if match is None:
        return ()
    return tuple(int(part) for part in match.groups() if part is not None)
