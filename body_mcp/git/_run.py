"""Running git on the host without running anything the agent (or the repository) wrote.

git obeys its configuration, and configuration can name programs: hooks, an fsmonitor, clean
and smudge filters (LFS among them), textconv and external diff drivers, a pager, an editor,
an askpass, credential helpers, ssh and proxy commands, signing programs, a remote's
`receivepack`. Every git the body runs gets:

- an environment of its own: `PATH` (without relative or workspace entries), `LC_ALL=C`,
  `HOME` set to an empty directory, nothing inherited beyond them (no token, no key, no
  `GIT_*` of the caller's);
- no system and no global config (`GIT_CONFIG_NOSYSTEM`, `GIT_CONFIG_GLOBAL=/dev/null`),
  discovery stopped at the workspace (`GIT_CEILING_DIRECTORIES`, `GIT_WORK_TREE`, so a
  `core.worktree` in `.git/config` cannot point git elsewhere);
- command-line-scope config, which outranks the repository's (`.git/config` and whatever it
  includes), passed as `GIT_CONFIG_COUNT`/`GIT_CONFIG_KEY_n`/`GIT_CONFIG_VALUE_n` (not `-c`, which
  splits at the first `=` and so misreads a filter named `a=b`): hooks from an empty directory,
  no fsmonitor, no pager, no editor, no askpass, no credential helper, no signing, no submodule
  recursion; and for each filter and remote the
  repository's config names (listed first, by `git config --list`, which runs nothing), the
  filter's commands emptied and not required, and mirroring off for each remote (a push also names
  `--receive-pack` itself: for that key git keeps the first value it reads, the repository's);
- only the `file`, `https` and `ssh` transports (`GIT_ALLOW_PROTOCOL`: no `ext::`);
- on each diff-producing command `--no-ext-diff --no-textconv` (the callers pass them).
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from collections.abc import Generator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from shared_protocol import RefusalCode
from shared_protocol.gitconfig import config_env
from shared_protocol.refusals import Rule

from ..exceptions import ToolRefused

_SAFE_CONFIG: tuple[tuple[str, str], ...] = (
    ("core.fsmonitor", "false"),
    ("core.untrackedCache", "false"),
    ("core.pager", "cat"),
    ("core.editor", "false"),
    ("core.askPass", ""),
    ("core.sshCommand", "ssh"),
    ("core.bare", "false"),
    ("core.quotePath", "true"),
    ("credential.helper", ""),
    ("diff.external", ""),
    ("diff.noprefix", "false"),
    ("diff.mnemonicPrefix", "false"),
    ("diff.relative", "false"),
    ("diff.ignoreSubmodules", "all"),
    ("color.ui", "never"),
    ("commit.gpgSign", "false"),
    ("tag.gpgSign", "false"),
    ("push.gpgSign", "false"),
    ("log.showSignature", "false"),
    ("gpg.program", "false"),
    ("gpg.ssh.program", "false"),
    ("gpg.x509.program", "false"),
    ("gpg.ssh.defaultKeyCommand", ""),
    ("submodule.recurse", "false"),
    ("push.recurseSubmodules", "no"),
    ("fetch.recurseSubmodules", "false"),
    ("status.submoduleSummary", "false"),
    ("gc.auto", "0"),
    ("maintenance.auto", "false"),
    ("i18n.logOutputEncoding", "UTF-8"),
)

_FILTER_KEY = re.compile(r"filter\.(.+)\.[a-z]+", re.IGNORECASE)
_REMOTE_KEY = re.compile(r"remote\.(.+)\.[a-z]+", re.IGNORECASE)
ALLOWED_PROTOCOLS = "file:https:ssh"


@dataclass(kw_only=True, frozen=True)
class GitOutput:
    code: int
    stdout: bytes
    stderr: str

    @property
    def text(self) -> str:
        return self.stdout.decode("utf-8", "replace")


def not_a_repository(root: Path) -> ToolRefused:
    return ToolRefused(
        f"the workspace {root} is not the top of a git repository (no .git at its root)",
        code=RefusalCode.NOT_A_GIT_REPOSITORY,
        rule=Rule.GIT,
    )


def git_failed(what: str, output: GitOutput) -> ToolRefused:
    detail = output.stderr.strip().splitlines()
    why = detail[-1] if detail else f"exit status {output.code}"
    return ToolRefused(f"{what}: git says: {why}", code=RefusalCode.GIT_FAILED, rule=Rule.GIT)


class Git:
    """git over one workspace's repository, run safely; a `session()` holds its private scratch directory."""

    def __init__(self, root: Path, *, timeout_s: float = 120.0, environ: Mapping[str, str] | None = None) -> None:
        self.root = root
        self._timeout_s = timeout_s
        self._environ = os.environ if environ is None else environ

    def is_repository(self) -> bool:
        dot_git = self.root / ".git"
        return dot_git.is_dir() or dot_git.is_file()

    @contextmanager
    def session(self) -> Generator[GitSession]:
        """A scratch directory (empty hooks and home, temporary index files) for the commands run in it."""
        if not self.is_repository():
            raise not_a_repository(self.root)
        with tempfile.TemporaryDirectory(prefix="swarm-git-") as scratch:
            yield GitSession(self, Path(scratch))

    def base_env(self, scratch: Path) -> dict[str, str]:
        home = scratch / "home"
        home.mkdir(exist_ok=True)
        env: dict[str, str] = {}
        path = self._environ.get("PATH", "/usr/local/bin:/usr/bin:/bin")
        root = str(self.root)
        kept = [p for p in path.split(os.pathsep) if os.path.isabs(p) and not _inside(p, root)]
        env["PATH"] = os.pathsep.join(kept) or "/usr/bin:/bin"
        env.update(
            {
                "HOME": str(home),
                "XDG_CONFIG_HOME": str(home / ".config"),
                "LC_ALL": "C",
                "LANG": "C",
                "GIT_CONFIG_NOSYSTEM": "1",
                "GIT_CONFIG_GLOBAL": os.devnull,
                "GIT_ATTR_NOSYSTEM": "1",
                "GIT_CEILING_DIRECTORIES": str(self.root.parent),
                "GIT_WORK_TREE": root,
                "GIT_TERMINAL_PROMPT": "0",
                "GIT_ASKPASS": "",
                "SSH_ASKPASS": "",
                "GIT_PAGER": "cat",
                "PAGER": "cat",
                "GIT_EDITOR": "false",
                "GIT_SSH_COMMAND": "ssh",
                "GIT_ALLOW_PROTOCOL": ALLOWED_PROTOCOLS,
                "GIT_PROTOCOL_FROM_USER": "0",
                "GIT_NO_REPLACE_OBJECTS": "1",
                "GIT_OPTIONAL_LOCKS": "0",
            }
        )
        return env


class GitSession:
    """Commands run with the safe environment and config (module docstring)."""

    def __init__(self, git: Git, scratch: Path) -> None:
        self.git = git
        self.scratch = scratch
        hooks = scratch / "hooks"
        hooks.mkdir()
        self.env = git.base_env(scratch)
        probe = self._run(["rev-parse", "--git-dir"], config=False)
        if probe.code != 0:
            raise not_a_repository(git.root)
        self.remotes: set[str] = set()
        """The remotes the repository's config names."""
        self._config = config_env([("core.hooksPath", str(hooks)), *_SAFE_CONFIG, *self._repository_overrides()])

    def _repository_overrides(self) -> list[tuple[str, str]]:
        """Neutralise the filters and remotes the repository's config names (`git config --list` runs nothing)."""
        listed = self._run(["config", "--list", "--name-only", "-z"], config=False)
        if listed.code != 0:
            raise git_failed("reading the repository's git config", listed)
        filters: set[str] = set()
        remotes: set[str] = set()
        for key in listed.text.split("\0"):
            if (match := _FILTER_KEY.fullmatch(key)) is not None:
                filters.add(match.group(1))
            elif (match := _REMOTE_KEY.fullmatch(key)) is not None:
                remotes.add(match.group(1))
        out: list[tuple[str, str]] = []
        for name in sorted(filters):
            for key, value in (("clean", ""), ("smudge", ""), ("process", ""), ("required", "false")):
                out.append((f"filter.{name}.{key}", value))
        for name in sorted(remotes):
            out.append((f"remote.{name}.mirror", "false"))
        self.remotes = remotes
        return out

    def _run(
        self,
        args: Sequence[str],
        *,
        config: bool = True,
        env: Mapping[str, str] | None = None,
        stdin: bytes | None = None,
    ) -> GitOutput:
        command = ["git", "--no-pager", *args]
        try:
            done = subprocess.run(
                command,
                cwd=self.git.root,
                env={**self.env, **(self._config if config else config_env(())), **(env or {})},
                input=stdin,
                stdin=None if stdin is not None else subprocess.DEVNULL,
                capture_output=True,
                timeout=self.git._timeout_s,  # pyright: ignore[reportPrivateUsage]
                check=False,
            )
        except FileNotFoundError:
            raise ToolRefused(
                "git is not installed on this machine", code=RefusalCode.GIT_FAILED, rule=Rule.GIT
            ) from None
        except subprocess.TimeoutExpired:
            raise ToolRefused(
                f"git {args[0]} took longer than [git] timeout_s", code=RefusalCode.GIT_FAILED, rule=Rule.GIT
            ) from None
        return GitOutput(code=done.returncode, stdout=done.stdout, stderr=done.stderr.decode("utf-8", "replace"))

    def run(
        self, *args: str, env: Mapping[str, str] | None = None, stdin: bytes | None = None, what: str | None = None
    ) -> GitOutput:
        """A git command; with `what`, a non-zero exit is refused (`git_failed`) naming it."""
        output = self._run(args, env=env, stdin=stdin)
        if what is not None and output.code != 0:
            raise git_failed(what, output)
        return output

    def value(self, *args: str, what: str) -> str:
        return self.run(*args, what=what).text.strip()

    def branch(self) -> str | None:
        """The checked-out branch's short name; None when HEAD is detached."""
        out = self.run("symbolic-ref", "-q", "HEAD")
        name = out.text.strip()
        return name.removeprefix("refs/heads/") if out.code == 0 and name.startswith("refs/heads/") else None

    def head(self) -> str | None:
        """The commit HEAD names; None on an unborn branch."""
        out = self.run("rev-parse", "-q", "--verify", "HEAD^{commit}")
        return out.text.strip() if out.code == 0 else None

    def ref(self, name: str) -> str | None:
        out = self.run("rev-parse", "-q", "--verify", f"{name}^{{commit}}")
        return out.text.strip() if out.code == 0 else None


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")
