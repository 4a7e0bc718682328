"""Sorting what a sandboxed command changed, before anything is applied (PRODUCT.md, "Sandbox design").

- changes under `.git/` and tool caches (`__pycache__/`, `.pytest_cache/`, `.mypy_cache/`, `.ruff_cache/`) are
  discarded and reported, never applied;
- artifacts (git-ignored paths and the configured artifact names) are applied without
  counting toward the blast radius;
- everything else counts, directories like files (created, deleted or with a new mode).
If any change touches a protected path (or, for a model's command, an input of its task's
acceptance check), is a special file, or is a symlink leading outside the workspace,
nothing at all is applied; nor when the command used up a write or `/tmp`
quota (`quota_refusal`).
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Literal

from sandbox import ChangeKind, EntryType, Quota, RunResult, StagedChange
from shared_protocol import RefusalCode, Rule

from .exceptions import ToolRefused
from .gitignore import GitIgnore
from .names import representable
from .policy import SHADOW_PREFIX, PathPolicy, input_why

ProblemKind = Literal["unrepresentable", "protected", "acceptance_input", "symlink_escape", "special_file"]

_CODES: dict[ProblemKind, RefusalCode] = {
    "unrepresentable": RefusalCode.INVALID_PATH,
    "protected": RefusalCode.PROTECTED_PATH,
    "acceptance_input": RefusalCode.ACCEPTANCE_INPUT,
    "symlink_escape": RefusalCode.PATH_OUTSIDE_WORKSPACE,
    "special_file": RefusalCode.SPECIAL_FILE,
}


@dataclass(kw_only=True, frozen=True)
class StagedProblem:
    """A change that forbids applying anything of its set."""

    path: str
    kind: ProblemKind
    why: str

    def __str__(self) -> str:
        return f"{self.path} ({self.why})"


# Each sandbox quota and its rule (the `[sandbox]` key that sets it).
_QUOTA_RULES = {
    Quota.WRITE_BYTES: Rule.SANDBOX_MAX_WRITE_MB,
    Quota.WRITE_INODES: Rule.SANDBOX_MAX_WRITE_INODES,
    Quota.TMP_BYTES: Rule.SANDBOX_MAX_TMP_MB,
    Quota.TMP_INODES: Rule.SANDBOX_MAX_TMP_INODES,
}


@dataclass(kw_only=True)
class SortedChanges:
    counted: list[StagedChange] = field(default_factory=list[StagedChange])
    artifacts: list[StagedChange] = field(default_factory=list[StagedChange])
    discarded: list[StagedChange] = field(default_factory=list[StagedChange])
    problems: list[StagedProblem] = field(default_factory=list[StagedProblem])
    """Each change that forbids applying anything."""

    @property
    def refusal_code(self) -> RefusalCode:
        """The code of the gravest problem: a name that cannot be recorded, a protected path, an acceptance input,
        then a way out of the workspace, then a special file."""
        kinds = {p.kind for p in self.problems}
        return next(_CODES[kind] for kind in _CODES if kind in kinds)

    @property
    def to_apply(self) -> list[StagedChange]:
        return self.counted + self.artifacts

    @property
    def stripped_modes(self) -> dict[str, int]:
        """Paths to apply whose setuid, setgid or sticky bits were stripped (never applied), and those bits."""
        return {c.path: c.stripped_mode_bits for c in self.to_apply if c.stripped_mode_bits}

    @property
    def counted_files(self) -> int:
        """File modifications that count: every counted path, directories included (2,000 `mkdir`s are 2,000
        modifications); a path whose type changed (deleted, then created) counts once."""
        return len({c.path for c in self.counted})


def printable(name: str) -> str:
    """`name` with each byte that is not UTF-8 written as `\\xNN`: lossless, and always representable."""
    return name if representable(name) else name.encode(errors="surrogateescape").decode(errors="backslashreplace")


def symlink_escapes(path: str, target: str) -> bool:
    """Whether a symlink at `path` (workspace-relative) with `target` leads outside the workspace."""
    if target.startswith("/"):
        return True  # absolute targets are never applied: the workspace may move, and most lead out
    joined = posixpath.normpath(posixpath.join(posixpath.dirname(path), target))
    return joined == ".." or joined.startswith("../")


CACHES = ("__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache")
"""Caches a command leaves behind (bytecode; pytest's, mypy's and ruff's, each with a `.gitignore` of its own): build
output the tools regenerate by themselves, discarded like `.git/` wherever they are, never applied (a forged `.pyc`
would be code the host runs) and never counted as the agent's changes. Nothing escapes through them: a discarded
change is applied nowhere, whatever it is (a symlink in one included), and a change's path is the staged one,
normalised (no `..`)."""

_CODE_SUFFIXES = (
    ".py", ".pyc", ".pyo", ".pyd", ".pth", ".so", ".dylib", ".dll", ".exe", ".js", ".mjs", ".cjs", ".ts", ".node",
    ".sh", ".bash", ".zsh", ".fish", ".csh", ".ps1", ".bat", ".cmd", ".rb", ".pl", ".php", ".jar", ".class", ".lua",
)  # fmt: skip
_CODE_NAMES = ("activate", "sitecustomize", "usercustomize")
"""Names (prefixes: `activate.fish`) a shell sources or Python runs at start-up, whatever their suffix."""


def runs_on_the_host(change: StagedChange) -> bool:
    """Whether a new entry could be run or loaded by the host: code it imports or sources (by suffix or name), an
    executable bit, a `#!` script, or any symlink (it could point at anything). Such an entry counts even where it
    would be an artifact (`.venv/…`, `node_modules/…`): installing packages is a change a human may need to see."""
    if change.kind == ChangeKind.DELETED:
        return False
    if change.entry_type == EntryType.SYMLINK:
        return True
    if change.entry_type != EntryType.FILE:
        return False
    if change.mode is not None and change.mode & 0o111:
        return True
    name = change.path.rsplit("/", 1)[-1]
    if name.endswith(_CODE_SUFFIXES) or name.startswith(_CODE_NAMES):
        return True
    if change.source is None:
        return False
    try:
        with open(change.source, "rb") as fh:
            return fh.read(2) == b"#!"
    except OSError:
        return True  # (unreadable: count it)


def sort_changes(
    changes: Sequence[StagedChange],
    *,
    policy: PathPolicy,
    gitignore: GitIgnore,
    artifact_names: Sequence[str],
    tracked: frozenset[str] = frozenset(),
) -> SortedChanges:
    """A tracked file is never an artifact, nor a file the host could run; `.gitignore` itself is read-only by
    default (`[policy] read_only_paths`), so the agent cannot widen what counts as one."""
    out = SortedChanges()
    for change in changes:
        if not representable(change.path) or not representable(change.symlink_target or ""):
            what = "its name" if not representable(change.path) else "its symlink target"
            why = f"{change.kind.value}; {what} is not valid UTF-8, so it could not be audited or undone"
            out.problems.append(StagedProblem(path=printable(change.path), kind="unrepresentable", why=why))
            continue
        parts = tuple(change.path.split("/"))
        if ".git" in parts or any(cache in parts for cache in CACHES):
            out.discarded.append(change)
            continue
        is_dir = change.entry_type == EntryType.DIR
        level, pattern = policy.classify_parts(parts)
        if (
            level == "none"
            and change.kind != ChangeKind.DELETED
            and change.entry_type == EntryType.SYMLINK
            and policy.shadow is not None
            and (module := policy.shadow.module((*parts, "__init__.py"))) is not None
        ):  # (a symlink named like a module may lead to a package of that name)
            level, pattern = "acceptance_input", f"{SHADOW_PREFIX}{module}"
        if level == "acceptance_input":
            why = f"{change.kind.value}; {input_why(pattern)}: not yours to change"
            out.problems.append(StagedProblem(path=change.path, kind="acceptance_input", why=why))
            continue
        if level != "none":
            why = f"{change.kind.value}; protected by '{pattern}'"
            out.problems.append(StagedProblem(path=change.path, kind="protected", why=why))
            continue
        if change.kind != ChangeKind.DELETED and change.entry_type == EntryType.SPECIAL:
            out.problems.append(StagedProblem(path=change.path, kind="special_file", why="a device, FIFO or socket"))
            continue
        if (
            change.kind != ChangeKind.DELETED
            and change.entry_type == EntryType.SYMLINK
            and symlink_escapes(change.path, change.symlink_target or "")
        ):
            why = f"symlink leading outside the workspace: {change.symlink_target}"
            out.problems.append(StagedProblem(path=change.path, kind="symlink_escape", why=why))
            continue
        artifact = (
            (
                any(fnmatchcase(part, name) for part in parts for name in artifact_names)
                or gitignore.ignored(change.path, is_dir=is_dir)
            )
            and change.path not in tracked
            and not runs_on_the_host(change)
        )
        (out.artifacts if artifact else out.counted).append(change)
    return out


def quota_refusal(run: RunResult) -> ToolRefused | None:
    """The refusal for a run that used up a write or `/tmp` quota: its writes past the quota failed, so what it
    staged may be cut short, and nothing of it is applied. None when the run stayed within its quotas."""
    if not run.quotas_exceeded:
        return None
    keys = [f"[sandbox] {_QUOTA_RULES[quota].value.removeprefix('sandbox.')}" for quota in run.quotas_exceeded]
    return ToolRefused(
        f"the command used up its quota ({', '.join(keys)}): its writes past it failed, so nothing was applied",
        code=RefusalCode.TOO_LARGE,
        rule=_QUOTA_RULES[run.quotas_exceeded[0]],
    )
