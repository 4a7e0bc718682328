"""`[secrets]`: the settings of the providers that fetch secrets over the network (Vault, AWS Secrets Manager).

The providers' own credentials are references too, and only `env:` or `file:` ones (a Vault token cannot come
from Vault): `token = "env:VAULT_TOKEN"`, `secret_id = "file:/run/secrets/vault-secret-id"`. With AWS nothing is
named here: boto3's standard credential chain (environment, shared files, an instance or task role) is used.
"""

from __future__ import annotations

import fnmatch
import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator
from pydantic_core import PydanticCustomError

from .._base import ProtocolModel
from ._base import SECRET_FIELD, SECRET_LITERAL

_BOOTSTRAP = re.compile(r"env:[A-Za-z_][A-Za-z0-9_]*|file:/.+")
_URL = re.compile(r"https?://[^\s/]+/?")


def _bootstrap_ref(value: str) -> str:
    if value and _BOOTSTRAP.fullmatch(value) is None:
        # Never echoed: it may be the credential itself.
        raise PydanticCustomError(
            SECRET_LITERAL, "a provider's credentials come from 'env:NAME' or 'file:/absolute/path' only"
        )
    return value


BootstrapRef = Annotated[str, AfterValidator(_bootstrap_ref), SECRET_FIELD]
"""A provider's own credential: `env:NAME` or `file:/path` (never another provider), or empty."""


CREDENTIAL_VARIABLES = ("VAULT_*", "BAO_*", "AWS_*", "SWARM_TOKEN")
"""Environment variables that hold the secret providers' credentials (and the body's own token): never passed to a
sandboxed command, whatever `[sandbox] env_allow` says."""


def is_credential_variable(name: str) -> bool:
    """Whether the environment variable `name` is a provider credential (`CREDENTIAL_VARIABLES`)."""
    return any(fnmatch.fnmatchcase(name.upper(), pattern) for pattern in CREDENTIAL_VARIABLES)


class VaultSettings(ProtocolModel):
    """`[secrets.vault]`: HashiCorp Vault, KV version 2, for `vault:path#field` references."""

    address: str = Field(default="", description="Vault's URL (https://vault.example:8200); empty: no vault: refs.")
    mount: str = Field(default="secret", pattern=r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$", description="KV v2 mount.")
    namespace: str = Field(default="", description="Vault Enterprise namespace; empty: none.")
    auth: Literal["token", "approle"] = Field(
        default="token", description="token: `token`; approle: role and secret id."
    )
    token: BootstrapRef = Field(default="", description="auth = token: where the token is (env:VAULT_TOKEN).")
    role_id: BootstrapRef = Field(default="", description="auth = approle: where the role id is.")
    secret_id: BootstrapRef = Field(default="", description="auth = approle: where the secret id is.")
    approle_mount: str = Field(default="approle", pattern=r"^[A-Za-z0-9_.-]+$", description="The AppRole mount.")
    ca_cert: str = Field(default="", description="A CA bundle to verify Vault's TLS with; empty: the system's.")
    timeout_s: float = Field(default=10.0, gt=0, le=300, description="One request to Vault.")

    @model_validator(mode="after")
    def _fits(self) -> VaultSettings:
        if not self.address:
            return self
        if _URL.fullmatch(self.address) is None:
            raise PydanticCustomError("config_rule", "address: not an http(s) URL without a path")
        if self.auth == "approle" and not (self.role_id and self.secret_id):
            raise PydanticCustomError("config_rule", "auth = 'approle' needs role_id and secret_id (env:/file:)")
        if self.auth == "token" and not self.token:
            raise PydanticCustomError("config_rule", "auth = 'token' needs token (e.g. token = \"env:VAULT_TOKEN\")")
        return self


class AwsSettings(ProtocolModel):
    """`[secrets.aws]`: AWS Secrets Manager, for `aws:name#field` references (credentials: boto3's chain)."""

    region: str = Field(
        default="", pattern=r"^([a-z]{2}(-[a-z]+)+-[0-9]+)?$", description="Empty: boto3's (AWS_REGION, config)."
    )
    endpoint_url: str = Field(default="", description="Another endpoint (a VPC endpoint, or a test server).")
    timeout_s: float = Field(default=10.0, gt=0, le=300, description="Connect and read timeout of one request.")

    @model_validator(mode="after")
    def _fits(self) -> AwsSettings:
        if self.endpoint_url and _URL.fullmatch(self.endpoint_url) is None:
            raise PydanticCustomError("config_rule", "endpoint_url: not an http(s) URL without a path")
        return self


class SecretsConfig(ProtocolModel):
    """`[secrets]`: how long fetched secrets are kept, and the network providers' settings."""

    cache_ttl_s: float = Field(
        default=300.0, ge=0, le=86_400, description="A secret fetched from Vault or AWS is reused this long; 0: never."
    )
    vault: VaultSettings = Field(default_factory=VaultSettings)
    aws: AwsSettings = Field(default_factory=AwsSettings)
