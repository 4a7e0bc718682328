"""`[models.NAME]` and `[[agents]]` in swarm.toml: what an agent runs on, checked when the file is read."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest

from shared_protocol.config import ConfigInvalid, SwarmConfig, parse_config, render_config

OPENAI = {"provider": "openai", "model": "gpt-4o", "api_key": "env:OPENAI_API_KEY"}
LOCAL = {"provider": "openai", "model": "qwen2.5-coder", "base_url": "http://127.0.0.1:11434/v1"}
CLAUDE = {"provider": "anthropic", "model": "claude-sonnet-4-5", "api_key": "file:/run/secrets/anthropic"}
SCRIPTED = {"provider": "scripted", "model": "claude-sonnet-4-5", "script": "demo/turns.jsonl"}
WORKER = {"name": "w1", "model": "fast", "prompt": "You fix failing tests.", "tools": ["read_text_file", "edit_file"]}


def config_with(*, models: dict[str, Any] | None = None, agents: list[dict[str, Any]] | None = None) -> SwarmConfig:
    return parse_config({"models": models if models is not None else {"fast": OPENAI}, "agents": agents or [WORKER]})


def problem(data: dict[str, Any]) -> str:
    with pytest.raises(ConfigInvalid) as invalid:
        parse_config(data)
    return str(invalid.value)


def test_models_and_agents_are_read_with_their_defaults() -> None:
    config = config_with(models={"fast": OPENAI, "local": LOCAL, "claude": CLAUDE, "demo": SCRIPTED})
    assert config.models["local"].base_url == "http://127.0.0.1:11434/v1" and config.models["local"].api_key == ""
    assert config.models["fast"].max_attempts == 4 and config.models["fast"].input_usd_per_mtok is None
    (agent,) = config.agents
    assert (agent.role, agent.max_steps, agent.max_usd_per_task) == ("worker", 50, 2.0)
    assert SwarmConfig().models == {} and SwarmConfig().agents == []


def test_an_agent_naming_an_unknown_model_is_an_error_naming_the_key_and_the_models_defined() -> None:
    text = problem({"models": {"fast": OPENAI}, "agents": [WORKER, {**WORKER, "name": "w2", "model": "gpt5"}]})
    assert "agents.1.model" in text and "'gpt5'" in text and "[models.gpt5]" in text and "fast" in text


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"models": {"fast": {**OPENAI, "temperature": 0.2}}}, "unknown key 'models.fast.temperature'"),
        ({"models": {"fast": OPENAI}, "agents": [{**WORKER, "budget": 3}]}, "unknown key 'agents.0.budget'"),
        ({"models": {"fast": {**OPENAI, "provider": "gemini"}}}, "models.fast.provider"),
        ({"models": {"fast": {**OPENAI, "base_url": "localhost:11434"}}}, "models.fast.base_url"),
        ({"models": {"fast": {**OPENAI, "input_usd_per_mtok": -1}}}, "models.fast.input_usd_per_mtok"),
        ({"models": {"fast": OPENAI}, "agents": [{**WORKER, "role": "boss"}]}, "agents.0.role"),
        ({"models": {"fast": OPENAI}, "agents": [{**WORKER, "tools": []}]}, "agents.0.tools"),
        ({"models": {"fast": OPENAI}, "agents": [{**WORKER, "max_steps": 0}]}, "agents.0.max_steps"),
        ({"models": {"fast": OPENAI}, "agents": [{**WORKER, "name": "../w1"}]}, "agents.0.name"),
        ({"models": {"fast": OPENAI}, "agents": [{**WORKER, "prompt": " "}]}, "agents.0.prompt"),
        ({"models": {"fast": OPENAI}, "agents": [WORKER, WORKER]}, "agents.1.name"),
        ({"models": {"fast one": OPENAI}}, "models.fast one"),
    ],
)
def test_a_bad_model_or_agent_is_an_error_that_names_the_key(data: dict[str, Any], key: str) -> None:
    assert key in problem(data)


def test_a_model_on_a_providers_own_api_needs_a_key_reference_and_a_literal_key_is_never_echoed() -> None:
    missing = problem({"models": {"fast": {"provider": "anthropic", "model": "claude-sonnet-4-5"}}})
    assert "models.fast" in missing and "ANTHROPIC_API_KEY" in missing
    literal = "sk-ant-api03-0123456789abcdef"
    pasted = problem({"models": {"fast": {**CLAUDE, "api_key": literal}}})
    assert "models.fast.api_key" in pasted and literal not in pasted


@pytest.mark.parametrize(
    ("entry", "key"),
    [
        ({"provider": "scripted", "model": "m"}, "script"),
        ({**SCRIPTED, "base_url": "http://127.0.0.1:1/v1"}, "base_url"),
        ({**OPENAI, "script": "turns.jsonl"}, "script"),
    ],
)
def test_script_belongs_to_scripted_models_only(entry: dict[str, Any], key: str) -> None:
    text = problem({"models": {"m": entry}})
    assert "models.m" in text and key in text


@pytest.mark.parametrize("tool", ["next_task", "report_outcome"])
def test_the_runners_own_tools_are_never_in_an_agents_tool_subset(tool: str) -> None:
    text = problem({"models": {"fast": OPENAI}, "agents": [{**WORKER, "tools": ["read_text_file", tool]}]})
    assert "agents.0.tools" in text and tool in text


def test_models_and_agents_are_written_out_and_read_back_unchanged() -> None:
    config = config_with(
        models={"fast": {**OPENAI, "input_usd_per_mtok": 2.5, "output_usd_per_mtok": 10}, "demo": SCRIPTED},
        agents=[WORKER, {**WORKER, "name": "rev", "role": "reviewer", "model": "demo"}],
    )
    written = render_config(config)
    assert "[models.fast]" in written and written.count("[[agents]]") == 2
    assert "cache_read_usd_per_mtok" not in written, "an unset override is left out (TOML has no null)"
    assert parse_config(tomllib.loads(written)) == config
