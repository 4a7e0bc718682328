"""Secret providers' credentials never reach a sandboxed command: not in its environment, not in any process's
/proc environ, not in a file it can read; `[sandbox] env_allow` cannot pass them (refused by the config, filtered by
the body whatever built the config)."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from mcp import Client

from body_mcp import Body, BodySettings, build_server
from shared_protocol.config import ConfigInvalid, parse_config

from ..conftest import require_binary
from .helpers import call, ok

pytestmark = pytest.mark.anyio

CREDENTIALS = ("VAULT_TOKEN", "VAULT_SECRET_ID", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


def test_env_allow_refuses_provider_credentials_and_variables_the_config_reads_secrets_from() -> None:
    with pytest.raises(ConfigInvalid, match=r"sandbox\.env_allow.*AWS_SECRET_ACCESS_KEY"):
        parse_config({"sandbox": {"env_allow": ["PATH", "AWS_SECRET_ACCESS_KEY"]}})
    with pytest.raises(ConfigInvalid, match=r"sandbox\.env_allow.*VAULT_TOKEN"):
        parse_config({"sandbox": {"env_allow": ["PATH", "VAULT_TOKEN"]}})
    with pytest.raises(ConfigInvalid, match=r"sandbox\.env_allow.*OPENAI_KEY"):
        parse_config(
            {
                "sandbox": {"env_allow": ["PATH", "OPENAI_KEY"]},
                "models": {"m": {"provider": "openai", "model": "gpt-4o", "api_key": "env:OPENAI_KEY"}},
            }
        )


async def test_a_sandboxed_command_finds_no_provider_credential_anywhere(
    workspace: Path, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_binary("bwrap", "bubblewrap")
    values = {name: f"planted-{secrets.token_hex(12)}" for name in CREDENTIALS}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    secret_file = tmp_path / "vault-secret-id"
    secret_file.write_text(values["VAULT_SECRET_ID"])
    # As if the config had been built without its checks: the body filters them out anyway.
    config = parse_config({})
    leaky = config.sandbox.model_copy(update={"env_allow": [*config.sandbox.env_allow, *CREDENTIALS]})
    body = Body(BodySettings(workspace=workspace, home=home, config=config.model_copy(update={"sandbox": leaky})))
    script = (
        'env; cat /proc/self/environ; for f in /proc/[0-9]*/environ; do cat "$f"; done; '
        f"cat {secret_file} 2>&1; grep -rs planted- /tmp /run /etc /home . 2>/dev/null; true"
    )
    try:
        async with Client(build_server(body)) as client:
            seen = ok(await call(client, "run_command", argv=["/bin/sh", "-c", script], timeout_s=60))
    finally:
        body.close()
    assert seen["exit_code"] == 0, seen["stderr"]
    assert "PATH=" in seen["stdout"], "the environment was printed"
    for value in values.values():
        assert value not in seen["stdout"] + seen["stderr"]
