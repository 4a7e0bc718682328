"""An agent's body for tests: `swarm body --agent NAME` as the CLI builds it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from body_mcp import Body, BodySettings
from body_mcp.settings import AgentProfile
from shared_protocol.agents import find_agent, logic_version
from shared_protocol.config import SwarmConfig, parse_config

MODEL = {"provider": "openai", "model": "gpt-4o", "api_key": "env:OPENAI_API_KEY"}
TOOLS = ["read_text_file", "write_file", "edit_file", "undo", "explain"]
AGENT = {"name": "w1", "model": "fast", "prompt": "You fix failing tests.", "tools": TOOLS}


def agent_config(**sections: Any) -> SwarmConfig:
    return parse_config({"models": {"fast": MODEL}, "agents": [AGENT], **sections})


def profile(config: SwarmConfig, name: str = "w1") -> AgentProfile:
    agent = find_agent(config, name)
    return AgentProfile(
        name=name, logic_version=logic_version(agent, config.models[agent.model]), tools=frozenset(agent.tools)
    )


def agent_settings(workspace: Path | None, home: Path, config: SwarmConfig) -> BodySettings:
    return BodySettings(workspace=workspace, home=home, config=config, agent="w1", agent_profile=profile(config))


def agent_body(workspace: Path, home: Path, config: SwarmConfig, **kwargs: Any) -> Body:
    return Body(agent_settings(workspace, home, config), **kwargs)


def model_meta(step: int = 1, text: str = "I will fix it.", tool_call_id: str = "call_1") -> dict[str, Any]:
    """The `_meta` the agent runner sends with a call it makes for its model."""
    return {"swarm/origin": "model", "swarm/turn": {"step": step, "text": text, "tool_call_id": tool_call_id}}
