"""Readiness items of #21: no secret in the config is a raw value (`secrets`), and agents with network are held to
robots.txt (`robots_gate`), personal data is redacted (`pii_redaction`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shared_protocol.config import parse_config
from shared_protocol.secrets import Secrets
from swarm_cli import _readiness
from swarm_cli.secrets_cmds import check_references

MODEL = {"provider": "openai", "model": "gpt-4o"}
AGENT = {"name": "w1", "model": "fast", "prompt": "work", "tools": ["read_file", "run_command"]}


def secrets_item(config: dict[str, Any], environ: dict[str, str]) -> tuple[bool, str]:
    parsed = parse_config(config)
    item = _readiness.check_secrets(parsed, check_references(parsed, Secrets.from_environ(environ)))
    return item.ok, item.detail


def test_the_secrets_item_holds_when_every_reference_resolves_and_none_is_exposed(tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_text("sk-live")
    key.chmod(0o600)
    config = {"models": {"fast": {**MODEL, "api_key": f"file:{key}"}}, "ntfy": {"token": "env:NTFY"}}
    assert secrets_item(config, {"NTFY": "t"})[0]
    ok, detail = secrets_item(config, {})
    assert not ok and "ntfy.token = env:NTFY (not_set)" in detail
    key.chmod(0o644)
    ok, detail = secrets_item(config, {"NTFY": "t"})
    assert not ok and "readable by others" in detail and "sk-live" not in detail


def test_a_url_carrying_a_password_fails_the_secrets_item() -> None:
    config = {"models": {"fast": {**MODEL, "base_url": "https://user:hunter2@llm.example/v1"}}}
    ok, detail = secrets_item(config, {})
    assert not ok and "models.fast.base_url" in detail and "hunter2" not in detail


def test_the_robots_gate_item_fails_only_for_agents_with_network_and_robots_off() -> None:
    base = {"models": {"fast": {**MODEL, "api_key": "env:K"}}, "agents": [AGENT]}
    assert _readiness.check_robots_gate(parse_config(base)).ok, "no allowed_domains: no network"
    networked = {**base, "sandbox": {"allowed_domains": ["example.com"]}}
    assert _readiness.check_robots_gate(parse_config(networked)).ok
    off = _readiness.check_robots_gate(parse_config({**networked, "compliance": {"robots": False}}))
    assert not off.ok and "w1" in off.detail and off.fix
    no_exec = {**networked, "agents": [{**AGENT, "tools": ["read_file"]}], "compliance": {"robots": False}}
    assert _readiness.check_robots_gate(parse_config(no_exec)).ok


def test_pii_redaction_passes_only_while_privacy_redaction_is_on() -> None:
    assert _readiness.check_pii_redaction(parse_config({})).ok
    off = _readiness.check_pii_redaction(parse_config({"privacy": {"redaction": False}}))
    assert not off.ok and off.name == "pii_redaction" and "redaction = true" in off.fix
