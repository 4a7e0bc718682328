"""`[[agents]] pairing`: the pairing secret of the agent's paired token (`swarm brain token create --pair`), which
`swarm agent run` gives its bodies as SWARM_PAIRING; a reference that cannot be resolved is one error naming the
agent, and a bad reference is refused when the config is read."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from agent_runner import RunnerUserError
from shared_protocol.config import AgentConfig
from shared_protocol.secrets import Secrets
from swarm_cli.agent_cmds import agent_pairing

AGENT = {"name": "w1", "model": "m", "prompt": "p", "tools": ["read_file"]}


def test_the_pairing_comes_from_its_reference_else_from_swarm_pairing() -> None:
    paired = AgentConfig.model_validate({**AGENT, "pairing": "env:W1_PAIRING"})
    secrets = Secrets.from_environ({"W1_PAIRING": "swp_" + "a" * 43})
    assert agent_pairing(paired, secrets) == "swp_" + "a" * 43
    with pytest.raises(RunnerUserError, match="agent 'w1' pairing"):
        agent_pairing(paired, Secrets.from_environ({}))


def test_without_a_reference_the_environment_decides(monkeypatch: pytest.MonkeyPatch) -> None:
    plain = AgentConfig.model_validate(AGENT)
    monkeypatch.delenv("SWARM_PAIRING", raising=False)
    assert agent_pairing(plain, Secrets.from_environ({})) is None
    monkeypatch.setenv("SWARM_PAIRING", "swp_" + "b" * 43)
    assert agent_pairing(plain, Secrets.from_environ({})) == "swp_" + "b" * 43


def test_a_pairing_written_in_clear_in_the_config_is_refused() -> None:
    with pytest.raises(ValidationError, match="pairing"):
        AgentConfig.model_validate({**AGENT, "pairing": "swp_" + "c" * 43})
