"""Path policy: which workspace paths are denied (secrets) and which are read-only.

A pattern without `/` matches any path component at any depth (`.env*` protects
`config/.env.local`; `.git` protects everything under any `.git/`). A pattern with `/`
matches from the workspace root (`.vscode/mcp.json`). A directory's protection covers
everything below it. Both the canonical path and the path as written are checked, so a
symlink cannot launder a protected name in either direction.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from fnmatch import fnmatchcase, translate
from functools import lru_cache
from typing import Literal

from .confinement import WorkspacePath
from .exceptions import ProtectedPath

Protection = Literal["none", "read_only", "denied"]
_RANK: dict[Protection, int] = {"none": 0, "read_only": 1, "denied": 2}


def _any_component(patterns: Sequence[str]) -> re.Pattern[str] | None:
    """One regex for all component patterns: the common case is a miss, decided in one match per component."""
    simple = [translate(p) for p in patterns if "/" not in p]
    return re.compile("|".join(simple)) if simple else None


class PathPolicy:
    def __init__(self, *, denied: Sequence[str], read_only: Sequence[str]) -> None:
        self.denied = tuple(denied)
        self.read_only = tuple(read_only)
        self._quick = {self.denied: _any_component(self.denied), self.read_only: _any_component(self.read_only)}
        self.classify_parts = lru_cache(maxsize=4096)(self._classify_parts)

    def _matches(self, patterns: tuple[str, ...], parts: tuple[str, ...]) -> str | None:
        quick = self._quick[patterns]
        anchored = any("/" in p for p in patterns)
        if not anchored and (quick is None or not any(quick.match(part) for part in parts)):
            return None
        for pattern in patterns:
            if "/" in pattern:
                anchored = pattern.strip("/")
                for end in range(1, len(parts) + 1):
                    if fnmatchcase("/".join(parts[:end]), anchored):
                        return pattern
            elif any(fnmatchcase(part, pattern) for part in parts):
                return pattern
        return None

    def _classify_parts(self, parts: tuple[str, ...]) -> tuple[Protection, str | None]:
        if (hit := self._matches(self.denied, parts)) is not None:
            return "denied", hit
        if (hit := self._matches(self.read_only, parts)) is not None:
            return "read_only", hit
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
