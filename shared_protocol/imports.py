"""Module shadowing: which files in a workspace would stand in for a module the acceptance check's Python imports.

`python3 -m pytest tests` and `python3 check.py` put the workspace root (the script's directory) first on
`sys.path`, so a `pytest.py` or `json.py` written there is what `import pytest` / `import json` runs: a model could
make the check exit 0 without fixing anything. A file on the check's import path (`import_roots`) whose module name
(`X.py`, `X.pyc`, `X.*.so`, `X/__init__.py`; `sitecustomize` and `usercustomize` always) is a module the
interpreter already has (`interpreter_module_names`: its standard library and the top-level names installed for
it) shadows that module (`shadowed_module`). The body refuses a model's change that makes one (unless the project
has the file already: its own module), and the runner looks for one before it reports a task verified.

Three more ways to stand in for a module are caught the same way: a file on an import root named like one of the
*project's* modules on another (a new `app/__init__.py` beats the project's `app.py`: `project_modules`); a portion
of a namespace package the interpreter has (`nsp/real/__init__.py` in the workspace, no `nsp/__init__.py`, is what
`import nsp.real` loads ahead of the installed portion: the names hold `nsp/real` for it, `portions_at`); and the test
directories pytest puts first on `sys.path` (`prepend` import mode: the first directory above a test file without an
`__init__.py`, `prepended_test_roots`) are import roots, so a fixed copy `test/app.py` beside the tests shadows `app`.

The interpreter is never run for this: its names are read from its installation (the sandbox's Python is a
read-only system one), and the host's own `sys.stdlib_module_names` are added (one version's standard library is
almost another's).

    roots = import_roots(workspace, protected)           # ("",), plus "src", a script's directory, pytest pythonpath
    names = interpreter_module_names()
    shadowed_module(("json.py",), roots, names)          # "json"
"""

from __future__ import annotations

import configparser
import os
import re
import sys
import tomllib
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, cast

Parts = tuple[str, ...]

STARTUP_MODULES = frozenset({"sitecustomize", "usercustomize"})
"""Modules Python imports by itself at start-up, from wherever they are on the path."""
_MODULE_SUFFIXES = (".py", ".pyc", ".pyo", ".pyw", ".pyd", ".so")
"""What a file's name ends with for an import to load it (`X.cpython-311-x86_64-linux-gnu.so` ends `.so`)."""
SYSTEM_PYTHONS = (Path("/usr/bin/python3"), Path("/usr/local/bin/python3"), Path(sys.base_prefix) / "bin" / "python3")
"""The interpreters a sandbox's `python3` may be (as the sandbox looks for one), besides a configured one."""
_VERSIONED = re.compile(r"python(\d+\.\d+)")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def module_of(name: str) -> str | None:
    """The module a file of that name would be imported as (`json.py`, `_x.cpython-311-x86_64-linux-gnu.so`:
    `json`, `_x`), or None when no import loads it."""
    if not name.endswith(_MODULE_SUFFIXES):
        return None
    module = name.split(".", 1)[0]
    return module if _IDENTIFIER.fullmatch(module) else None


def modules_at(parts: Parts, roots: Iterable[Parts]) -> list[str]:
    """The top-level modules a file at `parts` (workspace-relative) would be imported as, being on the import path
    (`roots`): `X.py`, `X.pyc`, `X.*.so` or `X/__init__.*` right in a root. A directory `X/` alone is none: a
    namespace package yields to a module."""
    found: list[str] = []
    for root in roots:
        if len(parts) <= len(root) or parts[: len(root)] != root:
            continue
        rest = parts[len(root) :]
        if len(rest) == 1:
            module = module_of(rest[0])
        elif len(rest) == 2 and module_of(rest[1]) == "__init__":
            module = rest[0] if _IDENTIFIER.fullmatch(rest[0]) else None
        else:
            continue
        if module is not None:
            found.append(module)
    return found


def portions_at(parts: Parts, roots: Iterable[Parts]) -> list[tuple[str, str]]:
    """The namespace portions a file at `parts` would be part of, on the import path (`roots`): `(X, Y)` for a
    module file `X/Y.py` or anywhere under `X/Y/` right in a root (`X/__init__.*` makes `X` a regular package: not a
    portion, `modules_at`)."""
    found: list[tuple[str, str]] = []
    for root in roots:
        if len(parts) <= len(root) + 1 or parts[: len(root)] != root:
            continue
        rest = parts[len(root) :]
        if not _IDENTIFIER.fullmatch(rest[0]) or module_of(rest[-1]) is None:
            continue
        sub = module_of(rest[1]) if len(rest) == 2 else rest[1]
        if sub is not None and sub != "__init__" and _IDENTIFIER.fullmatch(sub):
            found.append((rest[0], sub))
    return found


def shadowed_module(parts: Parts, roots: Iterable[Parts], names: frozenset[str]) -> str | None:
    """The interpreter's module (in `names`, or a start-up module) that a file at `parts` would stand in for
    (`modules_at`), or the installed portion of a namespace package it would come before (`X.Y` when `names` holds
    `X/Y`: `portions_at`); None when it shadows nothing."""
    found = next((m for m in modules_at(parts, roots) if m in names or m in STARTUP_MODULES), None)
    if found is None:
        found = next((f"{x}.{y}" for x, y in portions_at(parts, roots) if f"{x}/{y}" in names), None)
    return found


def import_roots(workspace: Path, protected: Sequence[str] = (), *, tests: bool = True) -> tuple[Parts, ...]:
    """The workspace directories the acceptance check's Python may import from, workspace-relative (`()`: the
    root): the root (`python3 -m …` puts the working directory first), `src/` when it exists, the directory of each
    Python file the check names (its acceptance inputs without wildcards: `python3 scripts/check.py` puts
    `scripts/` first), the `pythonpath` the project's pytest configuration declares, and (`tests`) the directories
    pytest puts first for the project's test files (`prepended_test_roots`)."""
    roots: list[Parts] = [()]

    def add(rel: str) -> None:
        parts = tuple(p for p in rel.strip().strip("/").split("/") if p not in ("", "."))
        if ".." in parts or rel.startswith("/"):
            return
        if parts not in roots:
            roots.append(parts)

    if (workspace / "src").is_dir():
        add("src")
    for pattern in protected:
        if pattern.endswith(".py") and not any(c in pattern for c in "*?["):
            add(pattern.rsplit("/", 1)[0] if "/" in pattern else "")
    for rel in pytest_pythonpath(workspace):
        add(rel)
    for parts in prepended_test_roots(workspace) if tests else ():
        add("/".join(parts))
    return tuple(roots)


TEST_FILES = re.compile(r"(test_.*|.*_test|conftest)\.py\Z")
"""The files pytest collects by default (`test_*.py`, `*_test.py`) and the `conftest.py` it loads."""
_NOT_SOURCE = frozenset({"node_modules", "__pycache__", "site-packages", "dist-packages"})


def prepended_test_roots(workspace: Path) -> list[Parts]:
    """The directories pytest's default (`prepend`) import mode puts first on `sys.path` for the workspace's test
    files (`TEST_FILES`): for each, the first directory above it without an `__init__.py` (`test/` for
    `test/test_app.py`; the root for `pkg/tests/test_x.py` when `pkg/` and `pkg/tests/` are packages). A module
    there is importable by its bare name in every test. Hidden directories, virtualenvs (`pyvenv.cfg`) and
    `node_modules` are not looked in."""
    found: list[Parts] = []
    for directory, dirs, files in os.walk(workspace):
        here = Path(directory)
        if "pyvenv.cfg" in files:
            dirs[:] = []
            continue
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in _NOT_SOURCE)
        if not any(TEST_FILES.match(name) for name in files):
            continue
        base = here
        while base != workspace and any((base / f"__init__{kind}").exists() for kind in (".py", ".pyc")):
            base = base.parent
        parts = base.relative_to(workspace).parts
        if parts not in found:
            found.append(parts)
    return found


def pytest_pythonpath(workspace: Path) -> list[str]:
    """The `pythonpath` entries of the project's pytest configuration (`pytest.ini`, `pyproject.toml`'s
    `[tool.pytest.ini_options]`, `tox.ini`, `setup.cfg`), workspace-relative; unreadable files say nothing."""
    found: list[str] = []
    for name, section in (("pytest.ini", "pytest"), ("tox.ini", "pytest"), ("setup.cfg", "tool:pytest")):
        parser = configparser.ConfigParser(interpolation=None)
        try:
            parser.read(workspace / name, encoding="utf-8")
            found += parser.get(section, "pythonpath", fallback="").split()
        except (configparser.Error, OSError, UnicodeDecodeError):
            continue
    try:
        with (workspace / "pyproject.toml").open("rb") as fh:
            data: dict[str, Any] = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return found
    value: object = data
    for key in ("tool", "pytest", "ini_options", "pythonpath"):
        value = cast(dict[str, object], value).get(key) if isinstance(value, dict) else None
    if isinstance(value, str):
        found += value.split()
    elif isinstance(value, list):
        found += [v for v in cast(list[object], value) if isinstance(v, str)]
    return found


def candidate_pythons() -> tuple[Path, ...]:
    """The interpreters a sandbox's `python3` may be: the system's (`SYSTEM_PYTHONS`) and pyenv's versions
    (`$PYENV_ROOT/versions/*`), which a workspace's `.python-version` picks."""
    root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"
    try:
        versions = sorted(root.iterdir())
    except OSError:
        versions = []
    return (*SYSTEM_PYTHONS, *(v / "bin" / "python3" for v in versions))


def interpreter_module_names(pythons: Sequence[Path] | None = None, site_dirs: Sequence[Path] = ()) -> frozenset[str]:
    """The top-level modules the interpreters `pythons` (default: `candidate_pythons()`) can import without the
    workspace: the host's `sys.stdlib_module_names` and built-in modules, what each interpreter's standard library
    and site directories hold (read from its installation, never run), and what the extra `site_dirs` hold (a task's
    virtualenv)."""
    names = set(_stdlib_and_system(tuple(candidate_pythons() if pythons is None else pythons)))
    for directory in site_dirs:
        names |= modules_in(directory)
    return frozenset(names)


@lru_cache(maxsize=8)
def _stdlib_and_system(pythons: tuple[Path, ...]) -> frozenset[str]:
    names = set(sys.stdlib_module_names) | set(sys.builtin_module_names)
    for python in pythons:
        for directory in library_dirs(python):
            names |= modules_in(directory)
    return frozenset(names)


def library_dirs(python: Path) -> list[Path]:
    """Where an interpreter finds its modules, read from where it is installed (`/usr/bin/python3` →
    `/usr/lib/python3.11`, its `lib-dynload`, `site-packages`, Debian's `dist-packages`); [] when it is not there."""
    try:
        real = python.resolve(strict=True)
    except (OSError, RuntimeError):
        return []
    match = _VERSIONED.fullmatch(real.name)
    if match is None:
        return []
    version, prefix = match.group(1), real.parent.parent
    lib = prefix / "lib" / f"python{version}"
    found = [lib, lib / "lib-dynload", lib / "site-packages", lib / "dist-packages"]
    found += [prefix / "lib" / "python3" / "dist-packages"]
    found += [prefix / "local" / "lib" / f"python{version}" / kind for kind in ("dist-packages", "site-packages")]
    return [d for d in found if d.is_dir()]


def venv_site_dirs(venv: Path) -> list[Path]:
    """The `site-packages` of a virtualenv (`lib/python3.X/site-packages`)."""
    lib = venv / "lib"
    try:
        return [d / "site-packages" for d in sorted(lib.iterdir()) if (d / "site-packages").is_dir()]
    except OSError:
        return []


def modules_in(directory: Path) -> set[str]:
    """The top-level modules a directory on `sys.path` offers: its modules, its packages (directories with or
    without `__init__`), and the `top_level.txt` names of the distributions installed there."""
    names: set[str] = set()
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return names
    for entry in entries:
        name = entry.name
        if name.endswith((".dist-info", ".egg-info")):
            names |= _top_level(Path(entry.path))
        elif _IDENTIFIER.fullmatch(name) and name != "__pycache__":
            try:
                if entry.is_dir():
                    names.add(name)
                    names |= _portions(Path(entry.path))
            except OSError:
                continue
        elif (module := module_of(name)) is not None:
            names.add(module)
    return names


def _portions(directory: Path) -> set[str]:
    """For a namespace package (a directory without `__init__`) `X`: `X/Y` for each module or package `Y` it holds
    (a workspace portion `X/Y` would be imported before it); nothing for a regular package."""
    if any((directory / f"__init__{kind}").exists() for kind in _MODULE_SUFFIXES):
        return set()
    found: set[str] = set()
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return found
    for entry in entries:
        sub = module_of(entry.name) or entry.name
        if _IDENTIFIER.fullmatch(sub) and sub not in ("__pycache__", "__init__"):
            found.add(f"{directory.name}/{sub}")
    return found


def project_modules(workspace: Path, roots: Iterable[Parts]) -> dict[str, list[str]]:
    """The top-level modules the workspace's import roots offer, each with the paths (workspace-relative) that offer
    it: a module file (`app.py`), a package (`app/__init__.py`), or a namespace directory holding a module or a
    package (`app`). A module offered twice is shadowed by one of them (a package beats a module in one directory, an
    earlier root beats a later one)."""
    found: dict[str, list[str]] = {}
    for root in roots:
        directory = workspace.joinpath(*root)
        try:
            entries = list(os.scandir(directory))
        except OSError:
            continue
        for entry in entries:
            rel = "/".join((*root, entry.name))
            try:
                if entry.is_dir() and _IDENTIFIER.fullmatch(entry.name) and entry.name != "__pycache__":
                    with os.scandir(entry.path) as inside:
                        listed = list(inside)
                    init = next((e.name for e in listed if module_of(e.name) == "__init__"), None)
                    if init is not None:
                        found.setdefault(entry.name, []).append(f"{rel}/{init}")
                    elif any(module_of(e.name) is not None or (e.is_dir() and _has_init(e.path)) for e in listed):
                        found.setdefault(entry.name, []).append(rel)
                elif (module := module_of(entry.name)) is not None and module != "__init__":
                    found.setdefault(module, []).append(rel)
            except OSError:
                continue
    return found


def _has_init(directory: str) -> bool:
    return any(os.path.exists(os.path.join(directory, f"__init__{kind}")) for kind in (".py", ".pyc"))


def _top_level(info: Path) -> set[str]:
    try:
        text = (info / "top_level.txt").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    return {line.strip().split("/")[0] for line in text.splitlines() if _IDENTIFIER.fullmatch(line.strip())}


def shadowing_files(workspace: Path, roots: Iterable[Parts], names: frozenset[str]) -> dict[str, str]:
    """The files (workspace-relative path → the module it shadows) in the workspace's import roots that stand in
    for one of `names`, found by listing each root: a module file, a package's `__init__`, a symlink named like a
    module (it may lead to a package), or a module file in a portion of a namespace package `names` has (`X/Y`)."""
    found: dict[str, str] = {}
    portions = {name for name in names if "/" in name}
    for root in roots:
        directory = workspace.joinpath(*root)
        try:
            entries = list(os.scandir(directory))
        except OSError:
            continue
        for entry in entries:
            rel = (*root, entry.name)
            try:
                if entry.is_dir(follow_symlinks=False):
                    with os.scandir(entry.path) as inside:
                        candidates = [
                            ((*rel, e.name), (*rel, e.name)) for e in inside if module_of(e.name) == "__init__"
                        ]
                elif entry.is_symlink() and _IDENTIFIER.fullmatch(entry.name):
                    candidates = [(rel, (*rel, "__init__.py"))]  # (a symlink to a directory: a package)
                else:
                    candidates = [(rel, rel)]
                if entry.is_dir(follow_symlinks=False) and any(n.startswith(f"{entry.name}/") for n in portions):
                    candidates += [(p, p) for p in _module_files(workspace, rel)]
            except OSError:
                continue
            for path, as_module in candidates:
                if (module := shadowed_module(as_module, [root], names)) is not None:
                    found["/".join(path)] = module
    return found


def _module_files(workspace: Path, rel: Parts) -> list[Parts]:
    """The module files under a directory (workspace-relative), caches aside."""
    found: list[Parts] = []
    for directory, dirs, files in os.walk(workspace.joinpath(*rel)):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        here = Path(directory).relative_to(workspace).parts
        found += [(*here, name) for name in sorted(files) if module_of(name) is not None]
    return found
