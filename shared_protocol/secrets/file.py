"""`file:/absolute/path`: a secret kept in a file (its content, stripped), e.g. a systemd credential or a mounted
Kubernetes secret."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from ._base import SecretScheme, SecretUnavailable
from ._settings import SecretsConfig


class FileSecrets:
    """Reads whole files, as UTF-8."""

    def read(self, name: str) -> str:
        try:
            value = Path(name).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise SecretUnavailable(f"cannot read the file: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise SecretUnavailable("the file is not UTF-8 text") from None
        if not value:
            raise SecretUnavailable("the file is empty")
        return value


def _file_secrets(_config: SecretsConfig, _environ: Mapping[str, str]) -> FileSecrets:
    return FileSecrets()


SCHEME = SecretScheme(name="file", form="file:/absolute/path", syntax=re.compile(r"/.+"), provider=_file_secrets)
