"""Which workspace paths git ignores, read from the workspace's `.gitignore` files.

Used to tell build artifacts (applied without counting toward the blast radius) from real
changes. Git itself is not run on the host: a repository's config can make git execute
commands (`core.fsmonitor`), and the body never runs anything outside the sandbox.

Semantics follow gitignore(5): `#` comments, `!` negation, a trailing `/` matches only
directories, a pattern with a `/` before its end is anchored to its `.gitignore`'s
directory, otherwise it matches a name at any depth; `*`, `?`, `[...]` and `**`. Anything
below an ignored directory is ignored (git does not look inside it).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

_MAX_GITIGNORES = 500


@dataclass(frozen=True, slots=True)
class Rule:
    base: str
    """Directory of the .gitignore, relative to the workspace ('' for the root)."""
    regex: re.Pattern[str]
    negate: bool
    dir_only: bool


def glob_to_regex(glob: str) -> str:
    """A gitignore glob as a regex (unanchored at both ends): `*`, `?`, `[...]` within a name, `**/` any directories."""
    out: list[str] = []
    i = 0
    while i < len(glob):
        c = glob[i]
        if glob.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if glob.startswith("/**", i) and i + 3 == len(glob):
            out.append("/.*")
            i += 3
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = glob.find("]", i + 1)
            if end == -1:
                out.append(re.escape(c))
            else:
                body = glob[i + 1 : end].replace("\\", "\\\\")
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append(f"[{body}]")
                i = end
        elif c == "\\" and i + 1 < len(glob):
            i += 1
            out.append(re.escape(glob[i]))
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def parse(text: str, base: str = "") -> list[Rule]:
    rules: list[Rule] = []
    for raw in text.splitlines():
        line = raw.rstrip()
        if line.endswith("\\") and raw.endswith(" "):
            line += " "
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        if negate or line.startswith("\\"):
            line = line[1:]
        dir_only = line.endswith("/")
        line = line.rstrip("/")
        if not line:
            continue
        anchored = "/" in line
        line = line.lstrip("/")
        pattern = glob_to_regex(line)
        regex = re.compile(("" if anchored else "(?:.*/)?") + pattern + r"\Z", re.DOTALL)
        rules.append(Rule(base=base, regex=regex, negate=negate, dir_only=dir_only))
    return rules


class GitIgnore:
    """The ignore rules of every `.gitignore` in a workspace (outside `.git/`)."""

    def __init__(self, rules: list[Rule]) -> None:
        self._rules = rules

    @classmethod
    def load(cls, root: Path) -> GitIgnore:
        rules: list[Rule] = []
        found = 0
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if d != ".git")
            if ".gitignore" in filenames:
                rel = os.path.relpath(dirpath, root)
                base = "" if rel == "." else rel.replace(os.sep, "/")
                try:
                    text = (Path(dirpath) / ".gitignore").read_text(encoding="utf-8", errors="replace")
                except OSError:
                    continue
                rules.extend(parse(text, base))
                found += 1
                if found >= _MAX_GITIGNORES:
                    break
        return cls(rules)

    def _match_one(self, path: str, is_dir: bool) -> bool:
        ignored = False
        for rule in self._rules:
            if rule.dir_only and not is_dir:
                continue
            if rule.base:
                if not path.startswith(rule.base + "/"):
                    continue
                candidate = path[len(rule.base) + 1 :]
            else:
                candidate = path
            if rule.regex.match(candidate):
                ignored = not rule.negate
        return ignored

    def ignored(self, path: str, *, is_dir: bool = False) -> bool:
        """Whether git would ignore `path` (workspace-relative, posix), given whether it is a directory."""
        parts = path.split("/")
        for end in range(1, len(parts)):
            if self._match_one("/".join(parts[:end]), True):
                return True
        return self._match_one(path, is_dir)
