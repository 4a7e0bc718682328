"""Where a body keeps its state: `$SWARM_HOME`, one directory per workspace, or per agent.

    $SWARM_HOME/
      kill.json                   the machine's local kill switch (present = engaged)
      swarm.toml                  default config
      agents/<key>/               an agent's body (`swarm body --agent NAME`), whatever workspace a task gives it:
                                  the same files as below, and workspaces/<key>/snapshots/ per task workspace
      workspaces/<key>/
        identity.json             the body's stable identity for this workspace (or agent)
        state.db                  audit chain, undo records (SQLite, WAL)
        limits-v4                 limit windows, breaker, calls in flight (mapped by every body, flock)
        audit.key                 HMAC key of the audit chain (0600; never in the database)
        audit.anchor              head of the chain, written after each commit, tagged with the key
        audit.journal             events durable before their commit (replayed after a crash)
        audit.verified            how far the chain was verified (start-up verifies from there), tagged
        audit.lock                held by every open audit store; `swarm audit reset` takes it alone
        audit-reset-<time>/       a chain set aside by `swarm audit reset`, kept as evidence
        brain-link.json           a linked body's last known view of its brain (`swarm status` reads it)
        blobs/                    large pre-images, content-addressed
        outputs/                  commands' large outputs, by action id (`outputs.py`)
        env/                      what commands install (`.venv`, `node_modules`), mounted into the workspace
                                  for commands only (an agent's: per task workspace, under workspaces/<key>/)
        check/                    an agent's: the env dirs and caches its runner's acceptance check is built in
                                  (per task workspace, emptied for each check; no model command ever sees it)
        cache/                    package caches (uv, pip, npm) of this body's commands: never ~/.cache

Nothing here is ever inside the workspace: a body refuses to start when it would be.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ._limits_table import FILE_NAME as LIMITS_FILE
from .audit import AuditFiles
from .exceptions import StateUnusable, UserError


def resolve_home(env: dict[str, str] | None = None) -> Path:
    """`$SWARM_HOME`, else `~/.swarm`."""
    env = dict(os.environ) if env is None else env
    raw = env.get("SWARM_HOME") or str(Path.home() / ".swarm")
    return Path(raw).expanduser().resolve()


def validate_workspace(raw: str | Path, *, home: Path) -> Path:
    """Resolve a workspace directory, refusing `/`, the home directory itself, and overlaps with `home`."""
    workspace = Path(raw).expanduser().resolve()
    if not workspace.is_dir():
        raise UserError(f"workspace {workspace} is not a directory")
    if workspace == Path("/"):
        raise UserError("refusing to use / as the workspace (Claude Desktop starts servers in /): pass --workspace DIR")
    if workspace == Path.home().resolve():
        raise UserError(f"refusing to use the home directory {workspace} itself as the workspace: pass --workspace DIR")
    if workspace == home or workspace.is_relative_to(home):
        raise UserError(f"workspace {workspace} is inside SWARM_HOME {home}; choose a workspace outside it")
    if home.is_relative_to(workspace):
        raise UserError(f"SWARM_HOME {home} is inside the workspace {workspace}; set SWARM_HOME to a path outside it")
    return workspace


def workspace_key(workspace: Path) -> str:
    """A stable directory name for a workspace: readable prefix plus a hash of the resolved path."""
    digest = hashlib.sha256(str(workspace).encode()).hexdigest()[:16]
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", workspace.name)[:40] or "root"
    return f"{stem}-{digest}"


def agent_key(name: str) -> str:
    """A stable directory name for an agent: its name made safe, plus a hash of it (names differing only in case
    stay apart on a case-insensitive file system)."""
    digest = hashlib.sha256(name.encode()).hexdigest()[:12]
    stem = re.sub(r"[^A-Za-z0-9_-]", "_", name)[:40] or "agent"
    return f"{stem}-{digest}"


@dataclass(kw_only=True, frozen=True)
class StatePaths:
    """Where one body's state is: a workspace's (`StatePaths(home=, workspace=)`), or an agent's
    (`StatePaths.for_agent`), which stays the same whatever workspace each of its tasks works in."""

    home: Path
    workspace: Path | None
    """The directory the tools work in; None: an agent's state read without a task (the CLI)."""
    agent: str | None = None
    """The agent whose state this is; None: the workspace's."""

    @classmethod
    def for_agent(cls, home: Path, name: str, workspace: Path | None = None) -> StatePaths:
        """An agent's state: `$SWARM_HOME/agents/<key>/`, its identity, audit chain, limit windows and kept data
        shared by every workspace it works in (removing a task's directory removes none of it)."""
        return cls(home=home, workspace=workspace, agent=name)

    @property
    def dir(self) -> Path:
        if self.agent is not None:
            return self.home / "agents" / agent_key(self.agent)
        return self.home / "workspaces" / workspace_key(self.require_workspace())

    def require_workspace(self) -> Path:
        if self.workspace is None:
            whose = f"agent '{self.agent}'" if self.agent is not None else "this state"
            raise UserError(f"{whose}: this needs a workspace (--workspace DIR)")
        return self.workspace

    @property
    def snapshot_root(self) -> Path:
        """The directory whose `snapshots/` holds this workspace's snapshots: an agent keeps each workspace's apart,
        so that one is never restored over another."""
        if self.agent is None:
            return self.dir
        return self.dir / "workspaces" / workspace_key(self.require_workspace())

    @property
    def db(self) -> Path:
        return self.dir / "state.db"

    @property
    def limits(self) -> Path:
        """The limit windows, breaker and calls in flight, shared by every body of this workspace."""
        return self.dir / LIMITS_FILE

    @property
    def audit(self) -> AuditFiles:
        """The audit chain's files besides the database."""
        return AuditFiles.in_dir(self.dir)

    @property
    def audit_key(self) -> Path:
        return self.audit.key

    @property
    def anchor(self) -> Path:
        return self.audit.anchor

    @property
    def journal(self) -> Path:
        return self.audit.journal

    @property
    def link_state(self) -> Path:
        """What a serving linked body knows of its brain (`link_state`), for `swarm status`."""
        return self.dir / "brain-link.json"

    @property
    def blobs(self) -> Path:
        return self.dir / "blobs"

    @property
    def outputs(self) -> Path:
        return self.dir / "outputs"

    @property
    def env(self) -> Path:
        """What the workspace's commands install (a virtualenv, node_modules): outside the workspace, per workspace
        (an agent's, per task workspace), so it is never applied to the workspace nor counted."""
        return self.snapshot_root / "env"

    @property
    def check(self) -> Path:
        """The env dirs (`check/env`) and package caches (`check/cache`) the runner's acceptance check is built in:
        per workspace, apart from what the model's commands wrote, so nothing the model installed or cached is what
        verifies its task."""
        return self.snapshot_root / "check"

    @property
    def cache(self) -> Path:
        """Package caches of this body's commands (per workspace, or per agent): Swarm's own, never ~/.cache."""
        return self.dir / "cache"

    @property
    def identity(self) -> Path:
        return self.dir / "identity.json"

    @property
    def kill_file(self) -> Path:
        return self.home / "kill.json"

    def ensure(self) -> None:
        """Create the state directories, owner-only."""
        self.home.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.blobs.mkdir(mode=0o700, exist_ok=True)


def all_workspace_states(home: Path) -> tuple[list[StatePaths], list[Path]]:
    """Every workspace and agent this machine's bodies have state for (workspaces first), and the state
    directories whose identity (which names their workspace or agent) cannot be read."""
    found: list[StatePaths] = []
    unreadable: list[Path] = []
    for kind in ("workspaces", "agents"):
        root = home / kind
        if not root.is_dir():
            continue
        for entry in sorted(root.iterdir()):
            ident = entry / "identity.json"
            try:
                data = json.loads(ident.read_text())
                if kind == "agents":
                    paths = StatePaths.for_agent(home, str(data["agent"]))
                else:
                    paths = StatePaths(home=home, workspace=Path(data["workspace"]))
            except FileNotFoundError:
                continue  # (not a body's state, or one being created this moment)
            except (OSError, ValueError, LookupError, TypeError):
                unreadable.append(ident)
                continue
            found.append(paths)
    return found, unreadable


@dataclass(kw_only=True, frozen=True)
class Identity:
    body_id: str
    workspace: str
    """The workspace it was created for ("" for an agent's)."""
    created_at: str
    agent: str | None = None


def load_or_create_identity(paths: StatePaths) -> Identity:
    """The body's identity for this workspace or agent: created on first start, kept across restarts."""
    paths.ensure()
    try:
        data = json.loads(paths.identity.read_text())
        return Identity(
            body_id=data["body_id"],
            workspace=data["workspace"],
            created_at=data["created_at"],
            agent=data.get("agent"),
        )
    except FileNotFoundError:
        pass
    except (ValueError, LookupError, TypeError):
        # Not minted afresh: the body id names this workspace's audit chain and its brain registration.
        raise StateUnusable(
            paths.identity,
            "damaged: not the identity Swarm wrote (it holds the body id, which names the audit chain); "
            "`swarm audit reset --reason TEXT` sets it aside with the chain and starts a new one",
            damaged=True,
        ) from None
    identity = Identity(
        body_id=f"body_{secrets.token_hex(8)}",
        workspace=str(paths.workspace) if paths.agent is None else "",
        created_at=datetime.now(UTC).isoformat(),
        agent=paths.agent,
    )
    fields = {key: value for key, value in identity.__dict__.items() if value is not None}
    tmp = paths.identity.with_suffix(".tmp")
    tmp.write_text(json.dumps(fields, indent=2))
    try:
        # Two bodies starting at once: the first link wins, the other reads it.
        os.link(tmp, paths.identity)
    except FileExistsError:
        tmp.unlink()
        return load_or_create_identity(paths)
    tmp.unlink()
    return identity
