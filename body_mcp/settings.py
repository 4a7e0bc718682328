"""What a body, or the admin API over a workspace's state, is given at its entry point."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from shared_protocol.config import SwarmConfig


@dataclass(kw_only=True, frozen=True)
class BodySettings:
    """Everything a body needs, resolved at the entry point (CLI), never read from the environment here."""

    workspace: Path
    home: Path
    config: SwarmConfig
    agent: str | None = None
    """Overrides the MCP client's name as the audited agent (`SWARM_AGENT`)."""
    brain_url: str | None = None
    """Link to this brain (`--brain`); None: a standalone body."""
    brain_token: str | None = None
    """The body's bearer token for the brain (`SWARM_TOKEN`)."""
    config_file: Path | None = None
    """Where `config` came from, so snapshots can keep a copy of it."""
