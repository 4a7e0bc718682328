"""`swarm brain …`: serve the brain, manage its tokens. Flags, `$SWARM_HOME` and `swarm.toml` are read here only.

Settings come from the `[brain]` section of `swarm.toml` (`--config`, else `$SWARM_CONFIG`,
else `$SWARM_HOME/swarm.toml` if it exists), then flags override them. The state is where
`--db PATH` (short for `sqlite:///PATH`), else `[brain] database_url`, says; by default the
SQLite file `$SWARM_HOME/brain.db`.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tomllib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast, get_args

import anyio
from pydantic import ValidationError

from body_mcp.brain_client import BrainClient
from body_mcp.exceptions import SwarmError, UserError
from body_mcp.state import resolve_home
from shared_protocol.brain import RebindResult, Role
from shared_protocol.config import SwarmConfig, approval_thresholds
from shared_protocol.privacy import PrivacyConfig
from shared_protocol.secrets import Secrets

from . import _context
from ._context import config_path, load

if TYPE_CHECKING:
    from brain_server import BrainSettings, StateEngine, TokenRecord
    from brain_server.state import Rebinding

# `brain_server` (the web app, its state engines, the wake channels) is imported by the commands that use it, not
# with this module: `swarm_cli.main` registers these parsers for every command, `swarm body` and
# `swarm agent run` included, which never touch it.


class _Subparsers(Protocol):
    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser: ...


T = TypeVar("T")

swarm_home = resolve_home
"""`$SWARM_HOME`, else `~/.swarm` (the one lookup every command shares)."""


def brain_section(path: Path | None) -> dict[str, Any]:
    """The `[brain]` table of the config file (empty if there is no file or no section)."""
    from brain_server.exceptions import ConfigError

    if path is None:
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    section = data.get("brain", {})
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: 'brain' must be a table ([brain])")
    return cast(dict[str, Any], section)


def load_settings(
    *,
    config: str | None,
    host: str | None = None,
    port: int | None = None,
    db: str | None = None,
) -> BrainSettings:
    """The brain's settings: `[brain]` from the config file, overridden by flags; the database defaults under home."""
    from brain_server import BrainSettings
    from brain_server.exceptions import ConfigError
    from brain_server.state import sqlite_url

    home = swarm_home()
    path = config_path(config, home)
    data = brain_section(path)
    overrides = {"host": host, "port": port}
    data.update({key: value for key, value in overrides.items() if value is not None})
    data["database_url"] = _database_url(data, home=home, source=path)
    try:
        settings = BrainSettings.model_validate(data)
    except ValidationError as exc:
        problems: list[str] = []
        for err in exc.errors():
            key = "brain." + ".".join(str(part) for part in err["loc"])
            if err["type"] == "extra_forbidden":
                problems.append(f"unknown key '{key}'")
            else:
                why = err.get("ctx", {}).get("error", err["msg"])  # a validator's own words, without pydantic's prefix
                problems.append(f"'{key}': {why} (got {err.get('input')!r})")
        raise ConfigError(f"{path or 'flags'}: " + "; ".join(problems)) from None
    if db:  # the file's own database_url was checked all the same
        settings = settings.model_copy(update={"database_url": sqlite_url(_resolve(db))})
    return settings


def _database_url(data: dict[str, Any], *, home: Path, source: Path | None) -> Any:
    """The file's `[brain] database_url` (checked with the other keys), else its `db` (a path: the key before
    URLs), else `$SWARM_HOME/brain.db`. Takes `db` out of `data`."""
    from brain_server.exceptions import ConfigError
    from brain_server.state import sqlite_url

    legacy = data.pop("db", "")
    url = data.get("database_url", "")
    if not isinstance(legacy, str):
        raise ConfigError(f"{source}: 'brain.db': a path is a string (got {legacy!r})")
    if legacy and url:
        raise ConfigError(f"{source}: set 'brain.database_url' or the older 'brain.db', not both")
    return url or sqlite_url(_resolve(legacy or home / "brain.db"))


def _resolve(path: str | Path) -> Path:
    """A path as given on the command line or in the config: `~` expanded, relative to the current directory."""
    return Path(path).expanduser().resolve()


def serve_settings(
    *, config: str | None, host: str | None = None, port: int | None = None, db: str | None = None
) -> tuple[BrainSettings, SwarmConfig]:
    """What `swarm brain serve` runs with: `load_settings`, and the approval rules from the same `[limits]` and
    `[policy]` its bodies read (so both classify a decision alike), `[consensus]` and the captain agents,
    `[rollout]` (readiness_max_age_s, and the shadow and canary steps), `[metrics]
    public`, `[limits] usd_per_hour` (the budget gauges of /metrics), `[anomaly]` (the detector that pauses an
    agent) and `[privacy]`; every section of the file is checked."""
    settings = load_settings(config=config, host=host, port=port, db=db)
    swarm = load(config, swarm_home())
    update = {
        "thresholds": approval_thresholds(swarm),
        "consensus": swarm.consensus,
        "captain_agents": [agent.name for agent in swarm.agents if agent.role == "captain"],
        "readiness_max_age_s": swarm.rollout.readiness_max_age_s,
        "metrics_public": swarm.metrics.public,
        "usd_per_hour": swarm.limits.usd_per_hour,
        "anomaly": swarm.anomaly,
        "rollout": swarm.rollout,
        "privacy": swarm.privacy,
    }
    return settings.model_copy(update=update), swarm


def _port(text: str) -> int:
    """`--port`'s value, checked where it is given (past here a bad one was blamed on swarm.toml's `[brain] port`)."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0 to 65535, not {port}")
    return port


def cmd_serve(args: argparse.Namespace) -> int:
    from brain_server import serve
    from brain_server.wake.configure import build_wake, log_wake_problems, prepare_wake

    settings, config = serve_settings(config=args.config, host=args.host, port=args.port, db=args.db)
    # A secret that cannot be read, or a ladder naming no known channel, stops it before it starts.
    parts = prepare_wake(config, Secrets.from_environ(os.environ, config=config.secrets))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    serve(settings, wake=lambda http: log_wake_problems(config, build_wake(config, http, parts)))
    return 0


def _database(args: argparse.Namespace) -> BrainSettings:
    """The settings naming the brain's database (`--db`, `--config`, else `$SWARM_HOME/brain.db`), which must be
    one that outlives this command."""
    from brain_server.exceptions import ConfigError
    from brain_server.state import engine_kind

    settings = load_settings(config=args.config, db=args.db)
    if not engine_kind(settings.database_url).durable:
        raise ConfigError(
            f"[brain] database_url {settings.database_url!r} keeps nothing once this command ends: "
            "manage tokens in the database the brain serves from (pass --db PATH)"
        )
    return settings


def _where(settings: BrainSettings) -> str:
    """The database, as a person looks for it: a SQLite file's path, else the URL."""
    from brain_server.state import sqlite_path

    return str(sqlite_path(settings.database_url) or settings.database_url)


def _on_state(settings: BrainSettings, work: Callable[[StateEngine], Awaitable[T]], *, create: bool = False) -> T:
    """Run `work` on the settings' database, which a running brain may be using too; it must exist unless
    `create`, and is created only then.

    SQLite's write lock serialises the two, and the brain reads tokens on every request, so what is written
    here counts from the brain's next request.
    """
    from brain_server.exceptions import NoDatabase
    from brain_server.state import open_engine

    async def run() -> T:
        try:
            state = await open_engine(settings.database_url, durability=settings.durability, create=create)
        except NoDatabase as exc:
            raise NoDatabase(f"{exc} (pass --db PATH, or create a token first)") from None
        try:
            return await work(state)
        finally:
            await state.close()

    return anyio.run(run)


def _when(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="seconds")


def describe_token(token: TokenRecord) -> str:
    """One line about a token, never its secret or its hash: id, role, created, bound agent and body, revoked,
    label last."""
    body = "-" if token.body_id is None else token.body_id
    revoked = "no" if token.revoked_at is None else _when(token.revoked_at)
    return (
        f"{token.id}  role={token.role}  created={_when(token.created_at)}  agent={token.agent or '-'}  "
        f"body={body}  revoked={revoked}  label={token.label or '-'}"
    )


def cmd_token_create(args: argparse.Namespace) -> int:
    from brain_server import issue_token
    from brain_server.auth import check_token_agent, check_token_label

    settings = _database(args)
    role = cast(Role, args.role)

    from brain_server.auth import new_pairing
    from brain_server.exceptions import ConfigError

    pairing = new_pairing() if args.pair else None

    privacy = _privacy(args)  # (its names and patterns: a label holds none)

    async def create(state: StateEngine) -> str:
        return await issue_token(
            state,
            role=role,
            label=args.label,
            at=datetime.now(UTC),
            agent=args.agent,
            pairing=pairing,
            privacy=privacy,
        )

    if args.pair and role != "body":  # (like the checks below: before the database is created or opened)
        raise ConfigError(f"--pair pairs a body token with its body's key; a {role} token registers no body")
    check_token_agent(role, args.agent)  # before the database is created or opened
    check_token_label(args.label, privacy)
    if role == "reviewer":
        _check_reviewer(args.config, args.agent)
    token = _on_state(settings, create, create=True)
    print(token, flush=True)
    if pairing is not None:
        print(pairing, flush=True)
    whose = "" if args.agent is None else f" for agent {args.agent}"
    article = "an" if role[0] in "aeiou" else "a"  # (an approver token)
    print(f"created {article} {role} token{whose} in {_where(settings)} (shown once: store it now)", file=sys.stderr)
    if pairing is not None:
        print(
            "its pairing secret is the second line: give it to the body apart from the token ([[agents]] pairing "
            "or $SWARM_PAIRING); a registration of a key without it is refused",
            file=sys.stderr,
        )
    return 0


def _check_reviewer(config: str | None, agent: str) -> None:
    """A reviewer token votes as an agent the config has, whose role is reviewer or captain (`ConfigError`)."""
    from brain_server.exceptions import ConfigError

    roles = {entry.name: entry.role for entry in load(config, swarm_home()).agents}
    if agent not in roles:
        known = ", ".join(sorted(roles)) or "none"
        raise ConfigError(f"--agent {agent}: no [[agents]] entry has that name (configured: {known})")
    if roles[agent] not in ("reviewer", "captain"):
        raise ConfigError(
            f"--agent {agent}: its [[agents]] role is {roles[agent]}; a reviewer token is a reviewer's or the "
            'captain agent\'s (role = "reviewer" or "captain")'
        )


def cmd_token_list(args: argparse.Namespace) -> int:
    settings = _database(args)

    async def tokens(state: StateEngine) -> list[TokenRecord]:
        return await state.tokens()

    found = _on_state(settings, tokens)
    for token in found:
        print(describe_token(token), flush=True)
    if not found:
        print(f"no tokens in {_where(settings)} (see `swarm brain token create`)", file=sys.stderr)
    return 0


def _privacy(args: argparse.Namespace) -> PrivacyConfig:
    """`[privacy]` of the config (its names and patterns), or its defaults when the file cannot be read: a token is
    still created or revoked (an emergency does not wait for a config fix), and personal data still detected."""
    from brain_server.exceptions import ConfigError

    try:
        return load(args.config, swarm_home()).privacy
    except ConfigError:
        return PrivacyConfig()


def _protected(args: argparse.Namespace, settings: BrainSettings, text: str) -> str:
    """`text` (a reason this command writes to the brain's log itself) as the brain keeps one: its personal data
    encrypted under the brain's subject keys (`[privacy]`, the key store beside the database). Called once the
    database is open (`_on_state`): no key store is made beside a missing or foreign file."""
    from brain_server.privacy import open_protector

    protector = open_protector(settings.model_copy(update={"privacy": _privacy(args)}))
    try:
        return protector.protect(text)
    finally:
        protector.close()


def cmd_token_revoke(args: argparse.Namespace) -> int:
    from brain_server import revoke_token

    settings = _database(args)

    async def revoke(state: StateEngine) -> TokenRecord:
        reason = _protected(args, settings, args.reason)
        return await revoke_token(state, args.token_id, reason=reason, at=datetime.now(UTC))

    before = _on_state(settings, revoke)
    if before.revoked_at is not None:
        print(f"token {before.id} was revoked already (at {_when(before.revoked_at)}): nothing changed", flush=True)
        return 0
    bound = "" if before.body_id is None else f", bound to body {before.body_id}"
    print(f"revoked token {before.id} ({before.role}, label {before.label or '-'}{bound})", flush=True)
    print("a running brain refuses it (401) from its next request", file=sys.stderr)
    return 0


def cmd_body_rebind(args: argparse.Namespace) -> int:
    """Give a body to another body token (the one that holds it is revoked): on the brain with `--brain URL` (a
    captain's token), else on its database beside it, as `token revoke` does."""
    url = _context.brain_url(args.brain)
    if url is not None:
        client = BrainClient(url, _context.token(args.token))

        async def over_http() -> RebindResult:
            try:
                return await client.rebind(args.body_id, args.token_id, args.reason)
            finally:
                await client.aclose()

        result = anyio.run(over_http)
        revoked = result.revoked_token_id
    else:
        from brain_server.auth import rebind_body

        settings = _database(args)

        async def on_database(state: StateEngine) -> Rebinding:
            reason = _protected(args, settings, args.reason)
            return await rebind_body(state, args.body_id, args.token_id, reason=reason, at=datetime.now(UTC))

        moved = _on_state(settings, on_database)
        revoked = None if moved.previous is None else moved.previous.id
    print(f"body {args.body_id} is now held by token {args.token_id}", flush=True)
    if revoked is not None:
        print(f"revoked token {revoked}, which held it (refused from its next request)", flush=True)
    return 0


def cmd_key_store_accept(args: argparse.Namespace) -> int:
    """Accept the key store the brain has now (`privacy.db` beside its database, or `[brain] privacy_key_store`) as
    the one its `Idempotency-Key`s are kept under, once the old one is lost for good; logged with `--reason`."""
    from brain_server.privacy import key_store_check, open_protector
    from brain_server.state import LogEntry

    if not args.reason.strip():
        raise UserError("--reason must not be empty: it is kept in the brain's log with the new key store")
    settings = _database(args)

    async def accept(state: StateEngine) -> tuple[bool, int]:
        protector = open_protector(settings.model_copy(update={"privacy": _privacy(args)}))
        try:
            check, reason = key_store_check(protector), protector.protect(args.reason)
        finally:
            protector.close()
        log = LogEntry(at=datetime.now(UTC), action="key_store_accept", by="cli", reason=reason)
        return await state.accept_key_store(check, log)

    changed, keys = _on_state(settings, accept)
    if not changed:
        print(f"the key store is the one the {keys} Idempotency-Keys kept are under: nothing changed", flush=True)
        return 0
    print(
        f"accepted the key store the brain has now: the {keys} Idempotency-Keys kept before are never matched again "
        "(a retry of a request sent with one makes a new task)",
        flush=True,
    )
    return 0


Command = Callable[[argparse.Namespace], int]


def _guarded(command: Command) -> Command:
    """Brain errors become one line on stderr and exit code 1, like every other `swarm` command: a database that
    cannot be used too (`swarm brain serve` then exits, for its supervisor to start it again)."""

    def run(args: argparse.Namespace) -> int:
        from brain_server import UserError
        from brain_server.exceptions import ApiError, StateBroken

        try:
            return int(command(args))
        except (UserError, StateBroken, ApiError, SwarmError) as exc:
            print(f"swarm: {exc}", file=sys.stderr)
            return 1

    return run


def add_parsers(sub: _Subparsers) -> None:
    """Register `swarm brain serve`, `token create|list|revoke`, `key-store accept` and `body rebind` on the `swarm`
    subcommands."""
    brain = sub.add_parser(
        "brain", help="the brain daemon and its tokens", description="the brain daemon and its tokens"
    )
    brain_sub = brain.add_subparsers(dest="brain_command", required=True, metavar="SUBCOMMAND")

    p = brain_sub.add_parser("serve", help="run the brain daemon (HTTP API and sweeper) until SIGTERM")
    p.set_defaults(func=_guarded(cmd_serve))
    p.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=_port, help="port (default 8765; 0: any free one)")
    _database_args(p)

    token = brain_sub.add_parser("token", help="manage the brain's bearer tokens")
    token_sub = token.add_subparsers(dest="token_command", required=True, metavar="SUBCOMMAND")
    p = token_sub.add_parser("create", help="create a token and print it alone on stdout (shown once)")
    p.set_defaults(func=_guarded(cmd_token_create))
    p.add_argument(
        "--role",
        required=True,
        choices=list(get_args(Role)),
        help="body, reviewer (an agent's vote: needs --agent), approver, captain or metrics (reads GET /metrics only: "
        "a scraper's)",
    )
    p.add_argument("--label", default="", help="who holds it; recorded as 'who' with everything it does")
    p.add_argument(
        "--agent",
        metavar="NAME",
        help="bind it to this agent for good (an autonomous agent's body token, its [[agents]] token): it then "
        "claims shadow or live work as that agent only; without it, a body token is an IDE body's",
    )
    p.add_argument(
        "--pair",
        action="store_true",
        help="a body token only: also print a pairing secret (a second line), which its body must present with its "
        "verification key ([[agents]] pairing or $SWARM_PAIRING); keep it apart from the token",
    )
    _database_args(p)

    p = token_sub.add_parser(
        "list", help="one line per token: id, role, created, agent, bound body, revoked, label (never the token)"
    )
    p.set_defaults(func=_guarded(cmd_token_list))
    _database_args(p)

    p = token_sub.add_parser("revoke", help="refuse a token from the brain's next request on (by id: see list)")
    p.set_defaults(func=_guarded(cmd_token_revoke))
    p.add_argument("token_id", metavar="TOKEN_ID", help="the token's id (tok_…), as `token list` shows it")
    p.add_argument("--reason", default="", help="why; recorded in the brain's log")
    _database_args(p)

    store = brain_sub.add_parser("key-store", help="the brain's key store (privacy.db)")
    store_sub = store.add_subparsers(dest="key_store_command", required=True, metavar="SUBCOMMAND")
    p = store_sub.add_parser(
        "accept",
        help="take the key store the brain has now as the one its Idempotency-Keys are kept under, the old one lost "
        "for good (until then a request with an Idempotency-Key is refused, 503 key_store_replaced)",
    )
    p.set_defaults(func=_guarded(cmd_key_store_accept))
    p.add_argument("--reason", required=True, help="why; recorded in the brain's log")
    _database_args(p)

    body = brain_sub.add_parser("body", help="the bodies a brain knows")
    body_sub = body.add_subparsers(dest="body_command", required=True, metavar="SUBCOMMAND")
    p = body_sub.add_parser(
        "rebind",
        help="give a body to another body token, revoking the one that holds it (the only way a body changes tokens)",
    )
    p.set_defaults(func=_guarded(cmd_body_rebind))
    p.add_argument("body_id", metavar="BODY_ID", help="the body (body_…), as `swarm status` or `token list` shows it")
    p.add_argument("--token-id", required=True, help="the body token (tok_…) to hold it: unbound, or bound to it")
    p.add_argument("--reason", required=True, help="why; recorded in the brain's log")
    p.add_argument("--brain", metavar="URL", help="ask that brain (captain token), not its database")
    p.add_argument("--token", help="with --brain: a captain's bearer token (default: $SWARM_TOKEN)")
    _database_args(p)


def _database_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db",
        metavar="PATH",
        help="SQLite state file, short for [brain] database_url = sqlite:///PATH (default $SWARM_HOME/brain.db)",
    )
    parser.add_argument("--config", metavar="FILE", help="swarm.toml (default: $SWARM_CONFIG, $SWARM_HOME/swarm.toml)")


def main(argv: list[str] | None = None) -> int:
    """`swarm brain …` on its own, until `swarm_cli.main` wires `add_parsers` in."""
    parser = argparse.ArgumentParser(prog="swarm")
    add_parsers(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    args = parser.parse_args(argv)
    return int(args.func(args))
