"""Path policy: which workspace paths are denied (secrets) and which are read-only.

A pattern without `/` matches any path component at any depth (`.env*` protects
`config/.env.local`; `.git` protects everything under any `.git/`). A pattern with `/`
matches from the workspace root (`.vscode/mcp.json`). Matching ignores case (a case-insensitive file system
opens `.env` as `.ENV`). A directory's protection covers
everything below it. Both the canonical path and the path as written are checked, so a
symlink cannot launder a protected name in either direction.

An agent's body also protects its task's *acceptance inputs* (`swarm body --protect GLOB`, from the task's
`acceptance_inputs`) from the model: the policy for a call the runner makes for its model
(`with_acceptance_inputs`) classifies them `acceptance_input`, which a write is refused for (`AcceptanceInput`);
the runner's own calls (the acceptance re-run) use the policy without them. Those globs are anchored at the
workspace root, gitignore-style: `*`, `?`, `[...]` within a name, `**` any directories (`tests/**`,
`**/conftest.py`).

The model's policy also refuses, as an acceptance input, a file that would *shadow* a module the check's Python
imports (`ImportShadow`, `shared_protocol.imports`): `pytest.py` or `json.py` in the workspace root (or another
directory on the check's import path: `src/`, the scripts' directories, a test directory pytest puts first) would be
what `python3 -m pytest` or `import json` runs (`import:json`); a new file there that is a module the project has
already on the import path in another form or place (`app/__init__.py` beats `app.py`; `test/app.py` beside the tests
beats the root's `app.py`) shadows the project's own (`import:app=app.py`); a new portion of a namespace package the
interpreter has (`nsp/real/__init__.py`) comes before the installed one (`import:nsp.real`). The project's own
modules (tracked by git) are not shadowing: the model may edit them, and add modules of fresh names.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase, translate
from functools import lru_cache
from pathlib import Path
from typing import Literal, cast

from shared_protocol.imports import (
    Parts,
    import_roots,
    interpreter_module_names,
    modules_at,
    modules_in,
    portions_at,
    project_modules,
    shadowed_module,
    venv_site_dirs,
)

from .confinement import WorkspacePath
from .exceptions import AcceptanceInput, ProtectedPath
from .gitignore import glob_to_regex
from .gitindex import EVERYTHING, TrackedFiles
from .names import shown

Protection = Literal["none", "acceptance_input", "read_only", "denied"]
_RANK: dict[Protection, int] = {"none": 0, "acceptance_input": 1, "read_only": 2, "denied": 3}


SHADOW_PREFIX = "import:"
"""How the policy names what protects a shadowing file (`import:json`; `import:app=app.py`: the project's module
`app`, which `app.py` is), where it would name a glob."""


def _no_project() -> dict[str, list[str]]:
    return {}


@dataclass(frozen=True, kw_only=True)
class ImportShadow:
    """What makes a file the model writes stand in for a module of the acceptance check's Python: a module file in
    one of `roots` named like one of `names()` (the interpreter's), or like a module another path on the roots
    offers (`project()`: the project's), or a portion of an interpreter's namespace package, that the project does
    not have already (`own`: tracked by git)."""

    roots: tuple[Parts, ...]
    names: Callable[[], frozenset[str]]
    own: Callable[[str], bool]
    project: Callable[[], dict[str, list[str]]] = _no_project

    def module(self, parts: tuple[str, ...]) -> str | None:
        """What `parts` would shadow: `json`, `nsp.real`, or `app=app.py` (the project's module and its file)."""
        modules = modules_at(parts, self.roots)
        if not modules and not portions_at(parts, self.roots):  # (most paths: decided without reading anything)
            return None
        rel = "/".join(parts)
        if self.own(rel):
            return None
        if (module := shadowed_module(parts, self.roots, self.names())) is not None:
            return module
        if not modules:
            return None
        offered = self.project()
        for module in modules:
            other = next((p for p in offered.get(module, ()) if p != rel and not rel.startswith(f"{p}/")), None)
            if other is not None:
                return f"{module}={other}"
        return None


def import_shadow(workspace: Path, protected: Sequence[str], env_root: Path) -> ImportShadow:
    """The shadowing rule of a body's model calls: the check's import roots in `workspace` (its acceptance inputs
    name the scripts), the modules of the system's interpreters and of the task's virtualenv (under `env_root`,
    read again when it changes: a command may install into it), the files git tracks as the project's own."""
    static = interpreter_module_names()
    venv = env_root / ".venv"
    seen: dict[str, object] = {}

    def names() -> frozenset[str]:
        dirs = venv_site_dirs(venv)
        key = tuple((d, d.stat().st_mtime_ns) for d in dirs if d.exists())
        if seen.get("key") != key:
            extra: set[str] = set()
            for directory in dirs:
                extra |= modules_in(directory)
            seen.update(key=key, names=static | extra)
        return cast(frozenset[str], seen["names"])

    tracked = TrackedFiles(workspace)

    def own(rel: str) -> bool:
        paths = tracked.paths()  # (an index it cannot read says everything is tracked: here, nothing is)
        return paths is not EVERYTHING and rel in paths

    roots = import_roots(workspace, protected)
    return ImportShadow(roots=roots, names=names, own=own, project=functools.partial(project_modules, workspace, roots))


def _any_component(patterns: Sequence[str]) -> re.Pattern[str] | None:
    """One regex for all component patterns: the common case is a miss, decided in one match per component."""
    simple = [translate(p.casefold()) for p in patterns if "/" not in p]
    return re.compile("|".join(simple)) if simple else None


def protected_by(pattern: str, parts: tuple[str, ...], regex: re.Pattern[str]) -> bool:
    """Whether an acceptance-input glob (compiled: `regex`) covers the path `parts` or a directory above it."""
    return any(regex.match("/".join(parts[:end])) for end in range(1, len(parts) + 1))


class PathPolicy:
    def __init__(
        self,
        *,
        denied: Sequence[str],
        read_only: Sequence[str],
        acceptance_inputs: Sequence[str] = (),
        shadow: ImportShadow | None = None,
    ) -> None:
        self.denied = tuple(denied)
        self.shadow = shadow
        self.read_only = tuple(read_only)
        self.acceptance_inputs = tuple(acceptance_inputs)
        self._inputs = [
            (p, re.compile(glob_to_regex(p.strip("/").casefold()) + r"\Z", re.DOTALL))
            for p in self.acceptance_inputs
            if p
        ]
        self._quick = {self.denied: _any_component(self.denied), self.read_only: _any_component(self.read_only)}
        self._static = lru_cache(maxsize=4096)(self._classify_parts)

    def with_acceptance_inputs(self, patterns: Sequence[str], shadow: ImportShadow | None = None) -> PathPolicy:
        """This policy, protecting `patterns` (globs from the workspace root) and the files that would `shadow` a
        module of the check's Python too: the policy of a model's calls."""
        return PathPolicy(denied=self.denied, read_only=self.read_only, acceptance_inputs=patterns, shadow=shadow)

    def classify_parts(self, parts: tuple[str, ...]) -> tuple[Protection, str | None]:
        """How `parts` (workspace-relative) is protected, and by what (a glob, or `import:MODULE`)."""
        found = self._static(parts)
        if found[0] == "none" and self.shadow is not None and (module := self.shadow.module(parts)) is not None:
            return "acceptance_input", SHADOW_PREFIX + module
        return found

    def _matches(self, patterns: tuple[str, ...], parts: tuple[str, ...]) -> str | None:
        quick = self._quick[patterns]
        anchored = any("/" in p for p in patterns)
        if not anchored and (quick is None or not any(quick.match(part) for part in parts)):
            return None
        for pattern in patterns:
            if "/" in pattern:
                anchored = pattern.strip("/").casefold()
                for end in range(1, len(parts) + 1):
                    if fnmatchcase("/".join(parts[:end]), anchored):
                        return pattern
            elif any(fnmatchcase(part, pattern.casefold()) for part in parts):
                return pattern
        return None

    def _classify_parts(self, parts: tuple[str, ...]) -> tuple[Protection, str | None]:
        # Case-insensitively: on a case-insensitive file system (macOS, Windows) `.ENV` is `.env` and `.GIT/config`
        # is `.git/config`; on the others, protecting both spellings costs nothing.
        parts = tuple(part.casefold() for part in parts)
        if (hit := self._matches(self.denied, parts)) is not None:
            return "denied", hit
        if (hit := self._matches(self.read_only, parts)) is not None:
            return "read_only", hit
        for pattern, regex in self._inputs:
            if protected_by(pattern, parts, regex):
                return "acceptance_input", pattern
        return "none", None

    def classify(self, path: WorkspacePath) -> tuple[Protection, str | None]:
        level, pattern, _ = self._hit(path)
        return level, pattern

    def _hit(self, path: WorkspacePath) -> tuple[Protection, str | None, str]:
        """`classify`, and the path as shown that the protection is of: the canonical one, or the one as written
        (a symlink whose own name is protected) when only that is."""
        canonical = self.classify_parts(path.parts)
        if path.lexical == path.parts:
            return canonical[0], canonical[1], path.shown
        written = self.classify_parts(path.lexical)
        if _RANK[canonical[0]] >= _RANK[written[0]]:
            return canonical[0], canonical[1], path.shown
        return written[0], written[1], shown("/".join(path.lexical) or ".")

    def check_read(self, path: WorkspacePath) -> None:
        level, pattern, name = self._hit(path)
        if level == "denied":
            raise ProtectedPath(f"'{name}' is protected (matches '{pattern}'): no tool may read or write it")

    def check_write(self, path: WorkspacePath) -> None:
        level, pattern, name = self._hit(path)
        if level == "denied":
            raise ProtectedPath(f"'{name}' is protected (matches '{pattern}'): no tool may read or write it")
        if level == "read_only":
            raise ProtectedPath(f"'{name}' is read-only (matches '{pattern}'): tools may read it but not change it")
        if level == "acceptance_input":
            raise AcceptanceInput(acceptance_input_message(name, pattern))


def input_why(pattern: str | None) -> str:
    """What makes a path an acceptance input, for a refusal's detail."""
    if pattern is not None and pattern.startswith(SHADOW_PREFIX):
        module, _, other = pattern.removeprefix(SHADOW_PREFIX).partition("=")
        if other:
            return f"it would shadow the project's module '{module}' ('{other}') the check imports"
        return f"it would shadow the module '{module}' the check imports"
    return f"an input of the task's acceptance check ('{pattern}')"


def acceptance_input_message(rel: str, pattern: str | None) -> str:
    if pattern is not None and pattern.startswith(SHADOW_PREFIX):
        module, _, other = pattern.removeprefix(SHADOW_PREFIX).partition("=")
        if other:
            return (
                f"'{rel}' would shadow the project's module '{module}' ('{other}'): both are on the task's acceptance "
                f"check's import path (the workspace root, src/, the scripts' and tests' directories), so `import "
                f"{module}` would load one instead of the other, and a copy beside the tests or a package of that "
                f"name would be tested in place of the code. Change '{other}' itself, or give a new module a name of "
                "its own"
            )
        return (
            f"'{rel}' would shadow the module '{module}' that the task's acceptance check imports (the file is on its "
            f"import path, so `import {module}` would load it instead): a new module of that name is not yours to add, "
            "since the runner re-runs that check as the task set it. Make the change the check looks for in the code "
            "under test instead, under another name"
        )
    return (
        f"'{rel}' is an input of the task's acceptance check (matches '{pattern}'): you may read it but not change "
        "it, since the runner re-runs that check as the task set it. Make the change the check looks for in the "
        "code under test instead; if the check itself is wrong, say so in your answer for a human to fix"
    )
