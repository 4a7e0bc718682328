"""An agent's logic version and finding an agent by name."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from shared_protocol.agents import UnknownAgent, agent_logic_version, find_agent, logic_version
from shared_protocol.config import ConfigInvalid, SwarmConfig, parse_config

MODEL = {"provider": "openai", "model": "gpt-4o", "api_key": "env:OPENAI_API_KEY"}
AGENT = {"name": "w1", "model": "fast", "prompt": "You fix failing tests.", "tools": ["read_text_file", "edit_file"]}


def config(*, model: dict[str, Any] | None = None, agent: dict[str, Any] | None = None, **extra: Any) -> SwarmConfig:
    return parse_config(
        {"models": {"fast": {**MODEL, **(model or {})}}, "agents": [{**AGENT, **(agent or {})}], **extra}
    )


def version(cfg: SwarmConfig) -> str:
    return agent_logic_version(cfg, "w1")


def test_the_logic_version_is_lv_and_sixteen_hex_digits_and_the_same_in_another_process() -> None:
    here = version(config())
    assert here.startswith("lv-") and len(here) == 19 and int(here[3:], 16) >= 0
    code = (
        "from shared_protocol.agents import logic_version\n"
        "from shared_protocol.config import AgentConfig, ModelConfig\n"
        f"print(logic_version(AgentConfig.model_validate({AGENT!r}), ModelConfig.model_validate({MODEL!r})))"
    )
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert other == here


def test_the_order_of_tools_and_of_keys_does_not_change_the_logic_version() -> None:
    reordered_tools = config(agent={"tools": ["edit_file", "read_text_file"]})
    reordered_keys = parse_config(
        {"agents": [dict(reversed(list(AGENT.items())))], "models": {"fast": dict(reversed(list(MODEL.items())))}}
    )
    assert version(reordered_tools) == version(reordered_keys) == version(config())


@pytest.mark.parametrize(
    ("model", "agent"),
    [
        ({}, {"prompt": "You fix failing tests. Carefully."}),
        ({"model": "gpt-4o-mini"}, {}),
        ({"provider": "anthropic"}, {}),
        ({"base_url": "http://127.0.0.1:11434/v1"}, {}),
        ({"max_output_tokens": 1024}, {}),
        ({}, {"tools": ["read_text_file"]}),
        ({}, {"tools": ["read_text_file", "edit_file", "write_file"]}),
        ({}, {"role": "reviewer"}),
        ({}, {"max_steps": 10}),
        ({}, {"max_usd_per_task": 0.5}),
    ],
)
def test_a_change_of_model_prompt_tools_role_or_budget_changes_the_logic_version(
    model: dict[str, Any], agent: dict[str, Any]
) -> None:
    assert version(config(model=model, agent=agent)) != version(config())


def test_swarm_wide_limits_and_the_agents_token_do_not_change_the_logic_version() -> None:
    changed = config(
        agent={"token": "env:W1_TOKEN"},
        limits={"usd_per_hour": 1.0, "file_mods_per_hour": 3},
        policy={"approval_min_files": 2},
    )
    assert version(changed) == version(config())


def test_find_agent_returns_the_entry_or_an_error_naming_the_configured_agents() -> None:
    cfg = parse_config({"models": {"fast": MODEL}, "agents": [AGENT, {**AGENT, "name": "w2"}]})
    assert find_agent(cfg, "w2").name == "w2"
    with pytest.raises(UnknownAgent) as unknown:
        find_agent(cfg, "w3")
    assert unknown.value.name == "w3" and unknown.value.known == ["w1", "w2"]
    assert "w3" in str(unknown.value) and "w1, w2" in str(unknown.value)
    with pytest.raises(UnknownAgent) as none:
        find_agent(SwarmConfig(), "w1")
    assert none.value.known == []
    assert logic_version(find_agent(cfg, "w1"), cfg.models["fast"]) == version(cfg)


def test_an_agents_token_is_a_secret_reference_never_a_literal() -> None:
    assert config(agent={"token": "file:/run/secrets/w1"}).agents[0].token == "file:/run/secrets/w1"
    with pytest.raises(ConfigInvalid) as invalid:
        config(agent={"token": "sw_live_abcdef"})
    assert "agents.0.token" in str(invalid.value) and "sw_live_abcdef" not in str(invalid.value)


def test_a_second_agent_of_the_same_name_is_an_error_naming_the_key() -> None:
    with pytest.raises(ConfigInvalid) as invalid:
        parse_config({"models": {"fast": MODEL}, "agents": [AGENT, AGENT]})
    assert "agents.1.name" in str(invalid.value) and "'w1'" in str(invalid.value)
