"""`aws:name#field` (or `aws:name`): a secret from AWS Secrets Manager, through `boto3`.

The secret's `SecretString` is read (`GetSecretValue`, its current version): with `#field` it must be a JSON object
and the field's string value is the secret; without, the whole string is. Credentials come from boto3's standard
chain (environment, shared config and credentials files, SSO, an instance or task role), so an IAM role on the
server means no key in any file; `[secrets.aws]` names the region and, for tests or a VPC endpoint, the endpoint.
What is read is kept for `[secrets] cache_ttl_s`, never logged; errors name the secret, never its value.
"""

from __future__ import annotations

import importlib
import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from typing import Any, cast

from ._base import SecretScheme, SecretUnavailable
from ._cache import TtlCache
from ._settings import AwsSettings, SecretsConfig

_NOT_FOUND = frozenset({"ResourceNotFoundException"})
_AUTH = frozenset(
    {
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "ExpiredTokenException",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "IncompleteSignature",
    }
)
_DENIED = frozenset({"AccessDeniedException", "AccessDenied"})


class _NoResponseBodies(logging.Filter):
    """botocore logs every response body at DEBUG (`botocore.parsers`): a secret's value must never reach a log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.DEBUG


def _quiet_botocore() -> None:
    parsers = logging.getLogger("botocore.parsers")
    if not any(isinstance(f, _NoResponseBodies) for f in parsers.filters):
        parsers.addFilter(_NoResponseBodies())


class AwsSecrets:
    """Reads Secrets Manager secrets (`read("name#field")` or `read("name")`); the client is made on first use."""

    def __init__(
        self,
        settings: AwsSettings,
        *,
        cache_ttl_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._cache: TtlCache[str] = TtlCache(cache_ttl_s, clock=clock)
        self._client: Any = None

    def read(self, name: str) -> str:
        secret_id, hashed, field = name.partition("#")
        text = self._cache.get(secret_id, lambda: self._fetch(secret_id))
        if not hashed:
            return text
        try:
            data: object = json.loads(text)
        except ValueError:
            raise SecretUnavailable(
                f"the AWS secret {secret_id} is not a JSON object, so it has no field {field!r}", reason="field_missing"
            ) from None
        value = cast(dict[str, object], data).get(field) if isinstance(data, dict) else None
        if not isinstance(value, str) or not value:
            raise SecretUnavailable(
                f"the AWS secret {secret_id} has no field {field!r} holding a non-empty string", reason="field_missing"
            )
        return value

    def _boto(self) -> Any:
        if self._client is None:
            _quiet_botocore()
            # (imported when an aws: reference is first read: most processes never need it; boto3 has no types)
            session: Any = importlib.import_module("boto3.session").Session()
            config_type: Any = importlib.import_module("botocore.config").Config
            s = self._settings
            config = config_type(connect_timeout=s.timeout_s, read_timeout=s.timeout_s, retries={"max_attempts": 2})
            self._client = session.client(
                "secretsmanager",
                region_name=s.region or None,
                endpoint_url=s.endpoint_url or None,
                config=config,
            )
        return self._client

    def _fetch(self, secret_id: str) -> str:
        errors: Any = importlib.import_module("botocore.exceptions")
        try:
            answer = cast(dict[str, Any], self._boto().get_secret_value(SecretId=secret_id))
        except errors.ClientError as exc:
            code = str(cast(dict[str, Any], exc.response).get("Error", {}).get("Code", ""))
            if code in _NOT_FOUND:
                raise SecretUnavailable(f"AWS Secrets Manager has no secret {secret_id}", reason="not_found") from None
            if code in _AUTH:
                raise SecretUnavailable(f"AWS refused the credentials ({code})", reason="auth_failed") from None
            if code in _DENIED:
                raise SecretUnavailable(f"AWS denies reading {secret_id} ({code})", reason="denied") from None
            raise SecretUnavailable(
                f"AWS Secrets Manager failed ({code or 'an error'})", reason="unreachable"
            ) from None
        except errors.NoCredentialsError:
            raise SecretUnavailable(
                "no AWS credentials were found (environment, shared files or an instance role)", reason="auth_failed"
            ) from None
        except errors.NoRegionError:
            raise SecretUnavailable("no AWS region: set [secrets.aws] region or AWS_REGION", reason="invalid") from None
        except (errors.EndpointConnectionError, errors.ConnectTimeoutError, errors.ReadTimeoutError) as exc:
            raise SecretUnavailable(
                f"AWS Secrets Manager is unreachable ({type(exc).__name__})", reason="unreachable"
            ) from None
        except errors.BotoCoreError as exc:
            raise SecretUnavailable(
                f"AWS Secrets Manager failed ({type(exc).__name__})", reason="unreachable"
            ) from None
        text = answer.get("SecretString")
        if not isinstance(text, str):
            raise SecretUnavailable(f"the AWS secret {secret_id} has no SecretString (binary?)", reason="not_found")
        if not text:
            raise SecretUnavailable(f"the AWS secret {secret_id} is empty", reason="not_found")
        return text


def _aws_secrets(config: SecretsConfig, _environ: Mapping[str, str]) -> AwsSecrets:
    # (boto3 reads the environment itself: its standard credential chain)
    return AwsSecrets(config.aws, cache_ttl_s=config.cache_ttl_s)


SCHEME = SecretScheme(
    name="aws",
    form="aws:name#field",
    syntax=re.compile(r"[A-Za-z0-9/_+=.@:-]+(?:#[A-Za-z0-9_.-]+)?"),
    provider=_aws_secrets,
)
