"""What identifies an agent's logic, and finding an agent in the config.

An agent's *logic version* is a stable hash of what decides how it acts: its model (provider, model
name, server, output cap), its system prompt, its tool subset, its role and its per-task budgets. Every
audit event, decision, vote and task outcome records it, so a change of logic is visible (and starts its
shadow period again). Swarm-wide `[limits]` are not part of it: they bound every agent alike.
"""

from __future__ import annotations

import hashlib
import json

from .config import AgentConfig, ModelConfig, SwarmConfig
from .exceptions import ProtocolError

LOGIC_VERSION_PREFIX = "lv-"


class UnknownAgent(ProtocolError):
    """No `[[agents]]` entry has that name; the message names the agents configured."""

    def __init__(self, name: str, known: list[str]) -> None:
        listed = ", ".join(known) if known else "none: add an [[agents]] table to swarm.toml"
        super().__init__(f"no agent named '{name}' in the config (configured agents: {listed})")
        self.name = name
        self.known = known


def logic_version(agent: AgentConfig, model: ModelConfig) -> str:
    """`lv-` and 16 hex digits of the SHA-256 of the agent's logic; the same logic gives the same version on any
    machine, whatever order its tools are listed in."""
    material = {
        "provider": model.provider,
        "model": model.model,
        "base_url": model.base_url,
        "max_output_tokens": model.max_output_tokens,
        "prompt": agent.prompt,
        "tools": sorted(agent.tools),
        "role": agent.role,
        "max_steps": agent.max_steps,
        "max_usd_per_task": agent.max_usd_per_task,
        "max_task_s": agent.max_task_s,
    }
    text = json.dumps(material, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return LOGIC_VERSION_PREFIX + hashlib.sha256(text.encode()).hexdigest()[:16]


def find_agent(config: SwarmConfig, name: str) -> AgentConfig:
    """The `[[agents]]` entry named `name` (`UnknownAgent` naming the configured ones if there is none)."""
    for agent in config.agents:
        if agent.name == name:
            return agent
    raise UnknownAgent(name, [agent.name for agent in config.agents])


LOGIC_VERSION_ENV = "SWARM_LOGIC_VERSION"
"""Set by an agent's runner on the body it starts: the logic version the runner works as, which the body's own (from
the config it reads) must be, else it refuses to start (the config changed since the runner started)."""


def agent_logic_version(config: SwarmConfig, name: str) -> str:
    """`logic_version` of the agent named `name` with its model (the config checked that the model exists)."""
    agent = find_agent(config, name)
    return logic_version(agent, config.models[agent.model])
