"""What a body, or the admin API over a workspace's (or an agent's) state, is given at its entry point."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from shared_protocol.config import RUNNER_TOOLS, SwarmConfig

from .state import StatePaths


@dataclass(kw_only=True, frozen=True)
class AgentProfile:
    """The agent a body serves (`swarm body --agent NAME`): its state is the agent's, whatever the workspace."""

    name: str
    logic_version: str | None
    """`shared_protocol.agents.logic_version` of the agent: recorded on every audit event (None: not known here,
    e.g. the machine-wide kill switch recorded in every agent's trail)."""
    tools: frozenset[str] = frozenset()
    """The tools its model may call (a call the runner makes for the model, `_meta` `swarm/origin` = model)."""
    protected: tuple[str, ...] = ()
    """Globs (from the workspace root) of the task's acceptance inputs, which the model's calls may not change
    (`swarm body --protect GLOB`; refused `acceptance_input`); the runner's own calls may."""

    def model_may_call(self, tool: str) -> bool:
        return tool in self.tools and tool not in RUNNER_TOOLS


@dataclass(kw_only=True, frozen=True)
class BodySettings:
    """Everything a body needs, resolved at the entry point (CLI), never read from the environment here."""

    workspace: Path | None
    """The directory the tools work in; None only for the admin API over an agent's state (no task)."""
    home: Path
    config: SwarmConfig
    agent: str | None = None
    """Overrides the MCP client's name as the audited agent (`SWARM_AGENT`, or the agent's name)."""
    agent_profile: AgentProfile | None = None
    """Agent mode: the state is the agent's (`StatePaths.for_agent`), not the workspace's."""
    brain_url: str | None = None
    """Link to this brain (`--brain`); None: a standalone body."""
    brain_token: str | None = None
    """The body's bearer token for the brain (`SWARM_TOKEN`)."""
    brain_pairing: str | None = None
    """The pairing secret of a paired token (`SWARM_PAIRING`), proven when the body registers its key."""
    config_file: Path | None = None
    """Where `config` came from, so snapshots can keep a copy of it."""

    @property
    def paths(self) -> StatePaths:
        """Where this body's state is: the agent's in agent mode, else the workspace's."""
        if self.agent_profile is not None:
            return StatePaths.for_agent(self.home, self.agent_profile.name, self.workspace)
        return StatePaths(home=self.home, workspace=self.workspace)
