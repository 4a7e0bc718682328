"""The network secret providers against real servers on 127.0.0.1: Vault through a fake that speaks its KV v2, token
and AppRole shapes (with the real `hvac` client), AWS Secrets Manager through moto's server (with the real `boto3`
client). Every error says why (not found, auth failed, denied, unreachable, field missing) and never holds a value."""

from __future__ import annotations

import json
import logging
import secrets
import socket
import tomllib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import boto3
import httpx
import pytest
from moto.server import ThreadedMotoServer

from shared_protocol.config import ConfigInvalid, parse_config, render_config
from shared_protocol.secrets import Secrets, SecretsConfig, SecretUnavailable, VaultSecrets, VaultSettings

from ..fakes.serve import serve_app
from ..fakes.vault import FakeVault

pytestmark = pytest.mark.anyio


def planted() -> str:
    return "s3cr3t-" + secrets.token_hex(12)


@pytest.fixture
async def vault() -> AsyncIterator[tuple[FakeVault, str]]:
    fake = FakeVault()
    async with serve_app(fake.app()) as url:
        yield fake, url


async def resolve(secrets_: Secrets, ref: str) -> str:
    # hvac and boto3 block: the fake servers run in this event loop, so the read runs in a thread.
    return (await anyio.to_thread.run_sync(secrets_.resolve, ref)).reveal()


async def refused(secrets_: Secrets, ref: str, *values: str) -> SecretUnavailable:
    with pytest.raises(SecretUnavailable) as caught:
        await resolve(secrets_, ref)
    assert caught.value.ref == ref and ref in str(caught.value)
    for value in values:
        assert value not in str(caught.value) and value not in repr(caught.value)
    return caught.value


def vault_config(url: str, **vault: Any) -> SecretsConfig:
    return parse_config({"secrets": {"vault": {"address": url, **vault}}}).secrets


async def test_a_vault_reference_reads_a_kv2_field_with_a_token(vault: tuple[FakeVault, str]) -> None:
    fake, url = vault
    token, value = "hvs." + secrets.token_hex(8), planted()
    fake.tokens[token] = None
    fake.secrets["secret/prod/openai"] = {"api_key": value, "org": "acme"}
    resolver = Secrets.from_environ({"VAULT_TOKEN": token}, config=vault_config(url, token="env:VAULT_TOKEN"))
    assert await resolve(resolver, "vault:prod/openai#api_key") == value
    assert await resolve(resolver, "vault:prod/openai#org") == "acme"
    reads = [r.path for r in fake.requests]
    assert reads == ["/v1/secret/data/prod/openai"], "the second field came from the cache"


async def test_a_vault_secret_is_fetched_again_once_its_cache_time_is_over(vault: tuple[FakeVault, str]) -> None:
    fake, url = vault
    fake.tokens["t"] = None
    fake.secrets["kv/app"] = {"key": "first"}
    now = [1000.0]
    provider = VaultSecrets(
        VaultSettings(address=url, mount="kv", token="env:T"), {"T": "t"}, cache_ttl_s=60, clock=lambda: now[0]
    )
    resolver = Secrets({"vault": provider})
    assert await resolve(resolver, "vault:app#key") == "first"
    fake.secrets["kv/app"] = {"key": "rotated"}
    now[0] += 59
    assert await resolve(resolver, "vault:app#key") == "first"
    now[0] += 2
    assert await resolve(resolver, "vault:app#key") == "rotated"
    assert len(fake.requests) == 2


async def test_vault_approle_logs_in_once_and_reads_with_the_token_it_got(
    vault: tuple[FakeVault, str], tmp_path: Path
) -> None:
    fake, url = vault
    role_id, secret_id, value = secrets.token_hex(8), secrets.token_hex(16), planted()
    fake.approles[role_id] = secret_id
    fake.secrets["secret/ci/discord"] = {"bot_token": value}
    fake.secrets["secret/ci/twilio"] = {"auth_token": value + "-t"}
    (tmp_path / "secret-id").write_text(secret_id + "\n")
    config = vault_config(
        url, auth="approle", role_id="env:VAULT_ROLE_ID", secret_id=f"file:{tmp_path / 'secret-id'}", namespace="ops"
    )
    resolver = Secrets.from_environ({"VAULT_ROLE_ID": role_id}, config=config)
    assert await resolve(resolver, "vault:ci/discord#bot_token") == value
    assert await resolve(resolver, "vault:ci/twilio#auth_token") == value + "-t"
    assert [r.path for r in fake.requests] == [
        "/v1/auth/approle/login",
        "/v1/secret/data/ci/discord",
        "/v1/secret/data/ci/twilio",
    ]
    assert {r.namespace for r in fake.requests} == {"ops"}


async def test_vault_failures_say_why_without_a_value(vault: tuple[FakeVault, str]) -> None:
    fake, url = vault
    value = planted()
    fake.tokens["good"] = {"secret/team/a"}
    fake.secrets["secret/team/a"] = {"key": value}
    fake.secrets["secret/team/b"] = {"key": value}
    good = Secrets.from_environ({"VAULT_TOKEN": "good"}, config=vault_config(url, token="env:VAULT_TOKEN"))
    assert (await refused(good, "vault:team/missing#key", value)).reason == "denied"
    assert (await refused(good, "vault:team/b#key", value)).reason == "denied"
    assert (await refused(good, "vault:team/a#other", value)).reason == "field_missing"
    fake.tokens["good"] = None
    assert (await refused(good, "vault:team/missing#key", value)).reason == "not_found"
    bad = Secrets.from_environ({"VAULT_TOKEN": "revoked"}, config=vault_config(url, token="env:VAULT_TOKEN"))
    assert (await refused(bad, "vault:team/a#key", value, "revoked")).reason == "auth_failed"
    unset = Secrets.from_environ({}, config=vault_config(url, token="env:VAULT_TOKEN"))
    assert (await refused(unset, "vault:team/a#key", value)).reason == "auth_failed"
    approle = vault_config(url, auth="approle", role_id="env:R", secret_id="env:S")
    wrong = Secrets.from_environ({"R": "role", "S": "not-it"}, config=approle)
    assert (await refused(wrong, "vault:team/a#key", value, "not-it")).reason == "auth_failed"


async def test_an_unreachable_vault_is_said_to_be_unreachable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # (closed again: nothing listens there)
    config = vault_config(f"http://127.0.0.1:{port}", token="env:T", timeout_s=2)
    assert (await refused(Secrets.from_environ({"T": "t"}, config=config), "vault:a#b")).reason == "unreachable"


async def test_no_vault_configured_is_an_invalid_reference_not_a_network_call() -> None:
    assert (await refused(Secrets.from_environ({}), "vault:a#b")).reason == "invalid"


def test_secrets_settings_name_the_bad_key() -> None:
    with pytest.raises(ConfigInvalid, match=r"secrets\.vault\.bogus"):
        parse_config({"secrets": {"vault": {"bogus": 1}}})
    with pytest.raises(ConfigInvalid, match=r"secrets\.cache_ttl_s"):
        parse_config({"secrets": {"cache_ttl_s": -1}})
    with pytest.raises(ConfigInvalid, match=r"secrets\.vault.*approle"):
        parse_config({"secrets": {"vault": {"address": "http://v:8200", "auth": "approle"}}})
    with pytest.raises(ConfigInvalid, match=r"secrets\.aws\.region"):
        parse_config({"secrets": {"aws": {"region": "the moon"}}})
    token = "hvs." + secrets.token_hex(12)
    with pytest.raises(ConfigInvalid, match=r"secrets\.vault\.token") as literal:
        parse_config({"secrets": {"vault": {"address": "http://v:8200", "token": token}}})
    assert token not in str(literal.value), "a credential pasted in place of a reference is never echoed"
    with pytest.raises(ConfigInvalid, match=r"secrets\.vault\.token"):
        parse_config({"secrets": {"vault": {"address": "http://v:8200", "token": "vault:a#b"}}})


# -- AWS Secrets Manager, through moto's server ---------------------------------------------------------------------


@pytest.fixture
def moto_url(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        # moto's accounts live in this process, whichever server serves them: every test starts from none.
        httpx.post(f"http://{host}:{port}/moto-api/reset").raise_for_status()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def aws_config(url: str) -> SecretsConfig:
    return parse_config({"secrets": {"aws": {"region": "eu-west-1", "endpoint_url": url}}}).secrets


async def test_an_aws_reference_reads_a_json_field_or_the_whole_string(moto_url: str) -> None:
    value = planted()
    sm = boto3.client("secretsmanager", region_name="eu-west-1", endpoint_url=moto_url)
    sm.create_secret(Name="prod/models", SecretString=json.dumps({"openai": value, "n": 3}))
    sm.create_secret(Name="prod/smtp-password", SecretString=value + "-plain")
    resolver = Secrets.from_environ({}, config=aws_config(moto_url))
    assert await resolve(resolver, "aws:prod/models#openai") == value
    assert await resolve(resolver, "aws:prod/smtp-password") == value + "-plain"
    assert (await refused(resolver, "aws:prod/models#n", value)).reason == "field_missing"
    assert (await refused(resolver, "aws:prod/models#absent", value)).reason == "field_missing"
    assert (await refused(resolver, "aws:prod/smtp-password#field", value)).reason == "field_missing"
    assert (await refused(resolver, "aws:prod/nothing#x", value)).reason == "not_found"


async def test_an_aws_secret_is_cached_so_a_rotation_shows_after_the_cache_time(moto_url: str) -> None:
    sm = boto3.client("secretsmanager", region_name="eu-west-1", endpoint_url=moto_url)
    sm.create_secret(Name="app", SecretString="one")
    resolver = Secrets.from_environ({}, config=aws_config(moto_url))
    assert await resolve(resolver, "aws:app") == "one"
    sm.put_secret_value(SecretId="app", SecretString="two")
    assert await resolve(resolver, "aws:app") == "one", "cached for cache_ttl_s"
    fresh = parse_config(
        {"secrets": {"cache_ttl_s": 0, "aws": {"region": "eu-west-1", "endpoint_url": moto_url}}}
    ).secrets
    assert await resolve(Secrets.from_environ({}, config=fresh), "aws:app") == "two"


async def test_an_unreachable_aws_endpoint_is_said_to_be_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = parse_config(
        {"secrets": {"aws": {"region": "eu-west-1", "endpoint_url": f"http://127.0.0.1:{port}", "timeout_s": 2}}}
    ).secrets
    assert (await refused(Secrets.from_environ({}, config=config), "aws:x")).reason == "unreachable"


async def test_no_secret_value_is_logged_even_at_debug(
    moto_url: str, vault: tuple[FakeVault, str], caplog: pytest.LogCaptureFixture
) -> None:
    """botocore logs response bodies at DEBUG, urllib3 its requests: a read at DEBUG leaves no value in any log."""
    fake, url = vault
    value, token = planted(), "hvs." + secrets.token_hex(8)
    fake.tokens[token] = None
    fake.secrets["secret/app"] = {"key": value + "-v"}
    sm = boto3.client("secretsmanager", region_name="eu-west-1", endpoint_url=moto_url)
    sm.create_secret(Name="app", SecretString=json.dumps({"key": value}))
    config = parse_config(
        {
            "secrets": {
                "vault": {"address": url, "token": "env:VAULT_TOKEN"},
                "aws": {"region": "eu-west-1", "endpoint_url": moto_url},
            }
        }
    ).secrets
    resolver = Secrets.from_environ({"VAULT_TOKEN": token}, config=config)
    with caplog.at_level(logging.DEBUG):
        assert await resolve(resolver, "aws:app#key") == value
        assert await resolve(resolver, "vault:app#key") == value + "-v"
    assert caplog.records, "something was logged at DEBUG (the check is not vacuous)"
    assert value not in caplog.text and token not in caplog.text


def test_swarm_init_writes_the_providers_settings_as_their_own_tables_and_reads_them_back() -> None:
    config = parse_config({"secrets": {"vault": {"address": "https://vault.example:8200", "token": "env:VAULT_TOKEN"}}})
    text = render_config(config)
    assert "[secrets.vault]" in text and "[secrets.aws]" in text
    assert parse_config(tomllib.loads(text)) == config
