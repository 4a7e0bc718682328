"""`swarm secrets check [--config FILE] [--json]`: resolve every secret reference in the config, say which fail.

Each secret key the config sets (`models.fast.api_key`, `discord.bot_token`, `secrets.vault.secret_id`, ...; found
by `shared_protocol.config.secret_references`) is resolved through the one registry, exactly as the command that
uses it would (`[secrets]` settings, `vault:`/`aws:` fetched over the network). Values are never printed: a line
says the key, the reference, and for a failure why (`not_set`, `not_found`, `auth_failed`, `denied`,
`unreachable`, `field_missing`, `invalid`). Exit 0 when every reference resolves, 1 otherwise (one line on stderr).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from body_mcp import UserError
from body_mcp.explain import printable
from body_mcp.state import resolve_home
from shared_protocol.config import SwarmConfig, secret_references
from shared_protocol.secrets import SecretResolver, Secrets, SecretUnavailable

from . import _context


class _Subparsers(Protocol):
    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser: ...


@dataclass(kw_only=True, frozen=True)
class ReferenceCheck:
    key: str
    """Where in the config: `models.fast.api_key`."""
    ref: str
    ok: bool
    reason: str | None = None
    """Why it failed (`SecretUnavailable.reason`), None when it resolved."""
    detail: str = ""
    """The error, which names the reference and never a value."""


def check_references(config: SwarmConfig, secrets: SecretResolver) -> list[ReferenceCheck]:
    """Resolve each secret reference `config` sets, in config order; the values are dropped at once."""
    checks: list[ReferenceCheck] = []
    for key, ref in secret_references(config):
        try:
            secrets.resolve(ref)
        except SecretUnavailable as exc:
            checks.append(ReferenceCheck(key=key, ref=ref, ok=False, reason=exc.reason, detail=str(exc)))
        else:
            checks.append(ReferenceCheck(key=key, ref=ref, ok=True))
    return checks


def cmd_secrets_check(args: argparse.Namespace) -> int:
    config = _context.load(args.config, resolve_home())
    checks = check_references(config, Secrets.from_environ(os.environ, config=config.secrets))
    failed = [check for check in checks if not check.ok]
    if args.json:
        print(json.dumps({"ok": not failed, "references": [asdict(c) for c in checks]}, indent=2), flush=True)
    elif not checks:
        print("no secret references in the config", flush=True)
    for check in [] if args.json else checks:
        status = "ok  " if check.ok else "FAIL"
        why = f"  {check.reason}: {check.detail}" if not check.ok else ""
        print(printable(f"{status}  {check.key} = {check.ref}{why}"), flush=True)
    if failed:
        print(f"swarm secrets check: {len(failed)} of {len(checks)} secret references fail", file=sys.stderr)
        return 1
    return 0


def cmd_secrets(args: argparse.Namespace) -> int:
    raise UserError("swarm secrets: say what to do: `swarm secrets check`")


def add_parsers(sub: _Subparsers) -> None:
    """Register `swarm secrets check` on the `swarm` subcommands."""
    secrets = sub.add_parser("secrets", help="check the secret references of the config (never shows a value)")
    secrets.set_defaults(func=cmd_secrets)
    secrets_sub = secrets.add_subparsers(dest="secrets_command", metavar="COMMAND")
    p = secrets_sub.add_parser(
        "check",
        help="resolve every secret reference in the config and say which fail, and why (values never shown)",
    )
    p.set_defaults(func=cmd_secrets_check)
    p.add_argument("--config", metavar="FILE", help="the config (default: $SWARM_CONFIG, $SWARM_HOME/swarm.toml)")
    p.add_argument("--json", action="store_true", help='{"ok", "references": [{"key", "ref", "ok", "reason", ...}]}')
