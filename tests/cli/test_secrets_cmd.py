"""`swarm secrets check`: every reference in the config resolved through the one registry, failures said with their
reason, values never printed; exit 0 only when all resolve."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import pytest
from moto.server import ThreadedMotoServer

from ..fakes.serve import serve_app
from ..fakes.vault import FakeVault
from .inprocess import swarm_in_process

pytestmark = pytest.mark.anyio


@pytest.fixture
def moto_url(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        # moto's accounts live in this process, whichever server serves them: every test starts from none.
        httpx.post(f"http://{host}:{port}/moto-api/reset").raise_for_status()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def write_config(path: Path, vault_url: str, aws_url: str, *, token_ref: str, key_ref: str) -> Path:
    path.write_text(
        f"""
[secrets]
cache_ttl_s = 60
[secrets.vault]
address = "{vault_url}"
auth = "token"
token = "{token_ref}"
[secrets.aws]
region = "eu-west-1"
endpoint_url = "{aws_url}"

[models.fast]
provider = "openai"
model = "gpt-4o"
api_key = "vault:prod/openai#api_key"

[models.other]
provider = "anthropic"
model = "claude-sonnet-4-6"
api_key = "{key_ref}"

[ntfy]
topic = "aws:prod/ntfy"
token = "env:NTFY_TOKEN"
""",
        encoding="utf-8",
    )
    return path


async def check(home: Path, config: Path, *extra: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`swarm secrets check` in the test's process (`tests/cli/inprocess.py`: the same entry point, with its own
    environment and standard streams, minus a new Python's start and its boto3 import, ~2.5 s a run), in a thread
    while the test's loop serves the fake vault."""
    full_env = {**os.environ, "SWARM_HOME": str(home), **env}
    full_env.pop("SWARM_CONFIG", None)
    return await swarm_in_process(["secrets", "check", "--config", str(config), *extra], full_env)


async def test_secrets_check_resolves_every_reference_and_names_the_failures_without_values(
    tmp_path: Path, home: Path, moto_url: str
) -> None:
    token, openai_key, topic, ntfy = (secrets.token_hex(16) for _ in range(4))
    vault = FakeVault(tokens={token: None}, secrets={"secret/prod/openai": {"api_key": openai_key}})
    sm = boto3.client("secretsmanager", region_name="eu-west-1", endpoint_url=moto_url)
    sm.create_secret(Name="prod/ntfy", SecretString=topic)
    sm.create_secret(Name="prod/anthropic", SecretString=json.dumps({"other": "x"}))
    env = {"VAULT_TOKEN": token, "NTFY_TOKEN": ntfy}
    planted = [token, openai_key, topic, ntfy]
    async with serve_app(vault.app()) as vault_url:
        good = write_config(
            tmp_path / "good.toml", vault_url, moto_url, token_ref="env:VAULT_TOKEN", key_ref="aws:prod/ntfy"
        )
        passed = await check(home, good, env=env)
        assert passed.returncode == 0, passed.stderr
        assert "models.fast.api_key = vault:prod/openai#api_key" in passed.stdout
        assert len(passed.stdout.splitlines()) == 5, "every reference: 4 keys and the vault token"

        bad = write_config(
            tmp_path / "bad.toml", vault_url, moto_url, token_ref="env:VAULT_TOKEN", key_ref="aws:prod/anthropic#key"
        )
        failed = await check(home, bad, "--json", env={"VAULT_TOKEN": token})
        assert failed.returncode == 1 and len(failed.stderr.strip().splitlines()) == 1, failed.stderr
        report = json.loads(failed.stdout)
        reasons = {entry["key"]: entry["reason"] for entry in report["references"]}
        assert report["ok"] is False
        assert reasons == {
            "secrets.vault.token": None,
            "models.fast.api_key": None,
            "models.other.api_key": "field_missing",
            "ntfy.topic": None,
            "ntfy.token": "not_set",
        }
        revoked = await check(home, good, "--json", env={"VAULT_TOKEN": "revoked", "NTFY_TOKEN": ntfy})
        assert {e["key"]: e["reason"] for e in json.loads(revoked.stdout)["references"]}["models.fast.api_key"] == (
            "auth_failed"
        )
    for run in (passed, failed, revoked):
        for value in planted:
            assert value not in run.stdout + run.stderr


async def test_secrets_check_with_a_bad_config_names_the_key(tmp_path: Path, home: Path) -> None:
    config = tmp_path / "swarm.toml"
    config.write_text('[secrets.vault]\naddress = "http://127.0.0.1:1"\ntimeout = 3\n', encoding="utf-8")
    result = await check(home, config, env={})
    assert result.returncode == 1 and "secrets.vault.timeout" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
