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
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from fnmatch import fnmatchcase, translate
from functools import lru_cache
from typing import Literal

from .confinement import WorkspacePath
from .exceptions import AcceptanceInput, ProtectedPath
from .gitignore import glob_to_regex

Protection = Literal["none", "acceptance_input", "read_only", "denied"]
_RANK: dict[Protection, int] = {"none": 0, "acceptance_input": 1, "read_only": 2, "denied": 3}


def _any_component(patterns: Sequence[str]) -> re.Pattern[str] | None:
    """One regex for all component patterns: the common case is a miss, decided in one match per component."""
    simple = [translate(p.casefold()) for p in patterns if "/" not in p]
    return re.compile("|".join(simple)) if simple else None


def protected_by(pattern: str, parts: tuple[str, ...], regex: re.Pattern[str]) -> bool:
    """Whether an acceptance-input glob (compiled: `regex`) covers the path `parts` or a directory above it."""
    return any(regex.match("/".join(parts[:end])) for end in range(1, len(parts) + 1))


class PathPolicy:
    def __init__(
        self, *, denied: Sequence[str], read_only: Sequence[str], acceptance_inputs: Sequence[str] = ()
    ) -> None:
        self.denied = tuple(denied)
        self.read_only = tuple(read_only)
        self.acceptance_inputs = tuple(acceptance_inputs)
        self._inputs = [
            (p, re.compile(glob_to_regex(p.strip("/").casefold()) + r"\Z", re.DOTALL))
            for p in self.acceptance_inputs
            if p
        ]
        self._quick = {self.denied: _any_component(self.denied), self.read_only: _any_component(self.read_only)}
        self.classify_parts = lru_cache(maxsize=4096)(self._classify_parts)

    def with_acceptance_inputs(self, patterns: Sequence[str]) -> PathPolicy:
        """This policy, protecting `patterns` (globs from the workspace root) too: the policy of a model's calls."""
        return PathPolicy(denied=self.denied, read_only=self.read_only, acceptance_inputs=patterns)

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
        canonical = self.classify_parts(path.parts)
        written = self.classify_parts(path.lexical)
        return canonical if _RANK[canonical[0]] >= _RANK[written[0]] else written

    def check_read(self, path: WorkspacePath) -> None:
        level, pattern = self.classify(path)
        if level == "denied":
            raise ProtectedPath(f"'{path.rel}' is protected (matches '{pattern}'): no tool may read or write it")

    def check_write(self, path: WorkspacePath) -> None:
        level, pattern = self.classify(path)
        if level == "denied":
            raise ProtectedPath(f"'{path.rel}' is protected (matches '{pattern}'): no tool may read or write it")
        if level == "read_only":
            raise ProtectedPath(f"'{path.rel}' is read-only (matches '{pattern}'): tools may read it but not change it")
        if level == "acceptance_input":
            raise AcceptanceInput(acceptance_input_message(path.rel, pattern))


def acceptance_input_message(rel: str, pattern: str | None) -> str:
    return (
        f"'{rel}' is an input of the task's acceptance check (matches '{pattern}'): you may read it but not change "
        "it, since the runner re-runs that check as the task set it. Make the change the check looks for in the "
        "code under test instead; if the check itself is wrong, say so in your answer for a human to fix"
    )
