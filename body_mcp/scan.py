"""What a command's sandbox must know about the workspace: protected paths to hide, `.gitignore` rules.

Walking a large workspace before every command would make commands cost more as the
workspace grows. So each directory's findings are cached under its mtime (which changes
whenever an entry is added, removed or renamed in it): a repeat scan stats each
directory and re-reads only those that changed, plus `.gitignore` files whose own mtime
changed.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from .gitignore import GitIgnore, Rule, parse
from .gitindex import TrackedFiles
from .policy import PathPolicy


@dataclass(kw_only=True)
class _DirEntry:
    mtime_ns: int
    subdirs: list[str]
    denied: list[str]
    gitignore_mtime_ns: int | None
    gitignore_text: str = ""


@dataclass(kw_only=True)
class ScanResult:
    denied: list[str] = field(default_factory=list[str])
    """Workspace-relative paths policy denies (secrets), to hide inside the sandbox."""
    gitignore: GitIgnore = field(default_factory=lambda: GitIgnore([]))
    tracked: frozenset[str] = frozenset()
    """What git tracks (from the index): never an artifact."""


class WorkspaceScanner:
    def __init__(self, root: Path, policy: PathPolicy) -> None:
        self._root = root
        self._policy = policy
        self._cache: dict[str, _DirEntry] = {}
        self._tracked = TrackedFiles(root)

    def reset(self) -> None:
        """Forget what was scanned (the workspace directory was replaced)."""
        self._cache.clear()

    def _read_dir(self, rel: str, path: str, mtime_ns: int) -> _DirEntry:
        base = tuple(rel.split("/")) if rel else ()
        subdirs: list[str] = []
        denied: list[str] = []
        gitignore_mtime: int | None = None
        with os.scandir(path) as it:
            for entry in it:
                parts = (*base, entry.name)
                is_dir = entry.is_dir(follow_symlinks=False)
                if self._policy.classify_parts(parts)[0] == "denied":
                    denied.append("/".join(parts))
                elif is_dir and entry.name != ".git":
                    subdirs.append(entry.name)
                if entry.name == ".gitignore" and entry.is_file(follow_symlinks=False):
                    gitignore_mtime = entry.stat(follow_symlinks=False).st_mtime_ns
        return _DirEntry(
            mtime_ns=mtime_ns, subdirs=sorted(subdirs), denied=sorted(denied), gitignore_mtime_ns=gitignore_mtime
        )

    def scan(self) -> ScanResult:
        result = ScanResult()
        rules: list[Rule] = []
        seen: set[str] = set()
        stack = [""]
        while stack:
            rel = stack.pop()
            path = os.path.join(self._root, rel) if rel else str(self._root)
            try:
                st = os.stat(path, follow_symlinks=False)
            except OSError:
                continue
            if not stat.S_ISDIR(st.st_mode):
                continue
            seen.add(rel)
            cached = self._cache.get(rel)
            if cached is None or cached.mtime_ns != st.st_mtime_ns:
                previous = cached
                cached = self._read_dir(rel, path, st.st_mtime_ns)
                if previous is not None and previous.gitignore_mtime_ns == cached.gitignore_mtime_ns:
                    cached.gitignore_text = previous.gitignore_text
                else:
                    cached.gitignore_mtime_ns = None  # force a read below
                self._cache[rel] = cached
            if cached.gitignore_mtime_ns is not None or os.path.exists(os.path.join(path, ".gitignore")):
                self._refresh_gitignore(cached, path)
                rules.extend(parse(cached.gitignore_text, rel))
            result.denied.extend(cached.denied)
            stack.extend(f"{rel}/{name}" if rel else name for name in reversed(cached.subdirs))
        for gone in set(self._cache) - seen:
            del self._cache[gone]
        result.gitignore = GitIgnore(rules)
        result.tracked = self._tracked.paths()
        return result

    @staticmethod
    def _refresh_gitignore(cached: _DirEntry, path: str) -> None:
        target = os.path.join(path, ".gitignore")
        try:
            st = os.stat(target, follow_symlinks=False)
        except OSError:
            cached.gitignore_mtime_ns, cached.gitignore_text = None, ""
            return
        if not stat.S_ISREG(st.st_mode):
            cached.gitignore_mtime_ns, cached.gitignore_text = None, ""
            return
        if cached.gitignore_mtime_ns != st.st_mtime_ns:
            with open(target, encoding="utf-8", errors="replace") as fh:
                cached.gitignore_text = fh.read(1024 * 1024)
            cached.gitignore_mtime_ns = st.st_mtime_ns
