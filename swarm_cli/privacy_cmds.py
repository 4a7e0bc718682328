"""`swarm privacy erase SUBJECT`, `swarm privacy export SUBJECT`: a data subject's right to erasure and access;
`swarm privacy migrate`: the one-time encryption of what was written before `[privacy]`.

A subject is an email, a phone number (E.164, or in `[privacy] default_region`), a card number, an IP address, an
SSN, an IBAN, a UK National Insurance number, or a name or pattern `[privacy]` configures; it is normalised as the
detector normalises what it finds.
`erase` destroys the subject's key, with `--brain URL` (or `$SWARM_BRAIN_URL`) and a captain's token on the brain
first (a refusal leaves the body's key as it was), then on this workspace's (or `--agent`'s) body:
crypto-shredding, audited on each (`privacy.erase`, naming the subject's random id, never the subject). Where no
key was held the subject is tombstoned all the same (`nothing held; tombstoned`).
`export` lists what each holds about the subject, decrypted (of an erased subject: when it was erased, nothing
more). Exit 0 when something was erased (a key destroyed) or found, 1 when nothing is held anywhere asked (erase:
tombstoned all the same), or on an error.

An erased subject stays erased: each key store keeps a tombstone (a keyed hash of the subject, never the subject
or its key), so what work already under way writes about them afterwards is redacted, never encrypted under a new
key. `unerase SUBJECT --reason TEXT` lifts it, on the brain first (with `--brain`) then on the body, audited
(`privacy.unerase`): a subject who came back (a new customer with the same email, consent given again). What
was erased stays unreadable. Exit 0 when a tombstone was lifted somewhere, 1 when the subject is erased nowhere
asked.

An agent's runner protects what it writes under its work dir (parked tasks, transcripts: `agent_runner.records`)
with its body's keys, so `erase --agent NAME` shreds those copies too, `export --agent NAME` lists them (`runner
PATH`, the path relative to the work dir), and `migrate --agent NAME` protects those written in clear before.

`migrate` encrypts, per subject, the personal data of the audit events and kept outputs (inline or in files) this
body wrote before `[privacy]` (or with `redaction` off), keeping the chain verifiable (`body_mcp.audit._migrate`),
and drops the clear copies of `state.db` in snapshots taken before (`body_mcp.privacy`): refused while a body has
the state open. With `--brain`, the brain first does the same to the events it stores and to its own records, and
replaces its backups taken before (`POST /v1/privacy/migrate`). Run twice, the second finds nothing to do (exit 0
both times).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import anyio

from body_mcp import BodySettings, UserError
from body_mcp.audit import MIGRATE_BATCH, held_exclusively
from body_mcp.brain_client import BrainClient, BrainRejected
from body_mcp.explain import printable
from shared_protocol.privacy import HeldItem, PrivacyErasure, PrivacyExport, Protector, UnknownSubject

from . import _context
from .agent_cmds import work_root


class _Subparsers(Protocol):
    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser: ...


def _settings(args: argparse.Namespace) -> BodySettings:
    if args.agent is not None and args.workspace is not None:
        raise UserError("give --workspace DIR or --agent NAME, not both: an agent's state is not a workspace's")
    return _context.body_settings(
        workspace=args.workspace, config=args.config, agent=args.agent, agent_state_only=args.agent is not None
    )


def _brain(args: argparse.Namespace) -> BrainClient | None:
    url = _context.brain_url(args.brain)
    return None if url is None else BrainClient(url, _context.token(args.token))


def _not_held(exc: BrainRejected) -> bool:
    return exc.status == 404


_NOTHING_HELD = "nothing held"


def _erasure(erasure: PrivacyErasure) -> str:
    """What one place did: destroyed a key, or held none (and tombstoned the subject now, or had before)."""
    if erasure.erased:
        return f"erased ({erasure.kind})"
    if erasure.erased_before is None:
        return f"{_NOTHING_HELD}; tombstoned ({erasure.kind})"
    return f"{_NOTHING_HELD}; erased before, {_erased_when(erasure.erased_before)} ({erasure.kind})"


def cmd_privacy_erase(args: argparse.Namespace) -> int:
    """The brain is asked first: one that refuses (a token not a captain's, unreachable) leaves the body's key as
    it was, so nothing is half-erased; once the brain has erased (or holds nothing), the body erases. Run again
    after a failure on the body, the brain answers "nothing held" and the body finishes. Each place tombstones the
    subject whether or not it held a key (`nothing held; tombstoned`): what work under way writes about them
    afterwards is redacted there too. Exit 1 when no key was held anywhere asked (a mistyped subject, or one
    erased already), the subject tombstoned all the same."""
    results: dict[str, str] = {}
    client = _brain(args)

    async def erase_on_brain(client: BrainClient) -> str:
        try:
            erased = await client.privacy_erase(args.subject, args.reason)
        except BrainRejected as exc:
            if _not_held(exc):  # (a brain from before tombstones were written with no key held)
                return _NOTHING_HELD
            raise
        finally:
            await client.aclose()
        return _erasure(erased)

    with _context.open_admin(_settings(args)) as admin:  # (a bad --workspace or --agent: refused before the brain)
        brain = None if client is None else anyio.run(erase_on_brain, client)
        results["body"] = _erasure(admin.privacy_erase(args.subject, reason=args.reason))
    return _report(
        args,
        results,
        brain,
        done="erased",
        none=_NOTHING_HELD,
        why="nothing is held about that subject here; it is tombstoned all the same (nothing new is kept about it)",
    )


def cmd_privacy_unerase(args: argparse.Namespace) -> int:
    """As erase: the brain first (a refusal leaves the body's tombstone as it was), then the body."""
    if not args.reason.strip():
        raise UserError("swarm privacy unerase: give --reason TEXT (why the subject's data may be kept again)")
    results: dict[str, str] = {}
    client = _brain(args)

    async def unerase_on_brain(client: BrainClient) -> str:
        try:
            lifted = await client.privacy_unerase(args.subject, args.reason)
        except BrainRejected as exc:
            if _not_held(exc):
                return "not erased"
            raise
        finally:
            await client.aclose()
        return f"unerased ({lifted.kind})"

    with _context.open_admin(_settings(args)) as admin:
        brain = None if client is None else anyio.run(unerase_on_brain, client)
        try:
            lifted = admin.privacy_unerase(args.subject, reason=args.reason)
        except UnknownSubject:
            results["body"] = "not erased"
        else:
            results["body"] = f"unerased ({lifted.kind})"
    return _report(args, results, brain, done="unerased", none="not erased", why="that subject is not erased here")


def _report(
    args: argparse.Namespace, results: dict[str, str], brain: str | None, *, done: str, none: str, why: str
) -> int:
    """Print what each place did (`done` in the JSON's list of places; a result starting `none` where nothing was
    to do); 1 when no place had anything to do."""
    if brain is not None:
        results["brain"] = brain
    if args.json:
        print(json.dumps({done: [k for k, v in results.items() if not v.startswith(none)], "results": results}))
    else:
        for where, what in results.items():
            print(f"{where}: {what}")
    if all(what.startswith(none) for what in results.values()):
        print(f"swarm privacy {done.removesuffix('d')}: {why}", file=sys.stderr)
        return 1
    return 0


def _erased_when(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds")


def _runner_workdir(settings: BodySettings) -> Path | None:
    """The work dir of the agent's runner (`--agent`), where it keeps its parked tasks and transcripts."""
    if settings.agent_profile is None:
        return None
    return work_root(settings.home) / settings.agent_profile.name


def _runner_texts(workdir: Path | None) -> Iterator[tuple[str, str]]:
    if workdir is None:
        return
    from agent_runner.records import kept_texts

    for where, text in kept_texts(workdir):
        yield f"runner {where}", text


def cmd_privacy_export(args: argparse.Namespace) -> int:
    held: dict[str, list[HeldItem] | None] = {}
    erased: dict[str, str] = {}  # (where the subject was erased: when; nothing is held there)
    settings = _settings(args)

    def items(where: str, export: PrivacyExport) -> list[HeldItem] | None:
        if export.erased_at is None:
            return export.held
        erased[where] = _erased_when(export.erased_at)
        return None

    with _context.open_admin(settings) as admin:
        try:
            held["body"] = items(
                "body", admin.privacy_export(args.subject, elsewhere=_runner_texts(_runner_workdir(settings)))
            )
        except UnknownSubject:
            held["body"] = None
    client = _brain(args)
    if client is not None:

        async def export_from_brain() -> list[HeldItem] | None:
            try:
                return items("brain", await client.privacy_export(args.subject))
            except BrainRejected as exc:
                if _not_held(exc):
                    return None
                raise
            finally:
                await client.aclose()

        held["brain"] = anyio.run(export_from_brain)
    if args.json:
        shown: dict[str, Any] = {
            where: None if found is None else [i.model_dump() for i in found] for where, found in held.items()
        }
        print(json.dumps({**shown, "erased": erased} if erased else shown))
    else:
        for where, found in held.items():
            if found is None:
                print(f"{where}: nothing held" + (f" (erased {erased[where]})" if where in erased else ""))
                continue
            print(f"{where}: {len(found)} value(s) held")
            for item in found:
                print(f"  {printable(item.where)}  {item.kind}  {printable(item.value)}")
    if all(found is None for found in held.values()):
        print("swarm privacy export: nothing is held about that subject here", file=sys.stderr)
        return 1
    return 0


def _migrate_body(args: argparse.Namespace) -> dict[str, str]:
    """The body's side of `migrate` (and, with `--agent`, its runner's files): refused while anything else has the
    state open (a running body holds its audit trail's lock shared for as long as it runs: a migration takes it
    exclusively first, as a reset does)."""
    settings = _settings(args)
    paths = settings.paths
    if not paths.db.exists():
        where = f"agent {args.agent!r}" if args.agent is not None else f"workspace {settings.workspace}"
        raise UserError(f"no body state for {where} (no {paths.db}): nothing to migrate")
    show = args.progress or sys.stderr.isatty()

    def progress(done: int, total: int) -> None:
        if show:
            print(f"migrating: {done}/{total} events read", file=sys.stderr, flush=True)

    try:
        with held_exclusively(paths.audit.lock) as held:
            held.share()  # (the admin's own store takes it shared too; no body can have it open meanwhile)
            with _context.open_admin(settings) as admin:
                result = admin.privacy_migrate(progress=progress, batch=args.batch)
                runner = _migrate_runner(_runner_workdir(settings), admin.audit.privacy)
    except BlockingIOError:
        raise UserError(
            "a body or another swarm command has this state's audit trail open: stop it (the IDE's session of "
            "`swarm body`, `swarm agents down`) and run the migration again"
        ) from None
    done = {} if runner is None else {"runner": runner}
    if not result.rewritten and not result.outputs and not result.decisions and not result.snapshots:
        return {"body": f"nothing to migrate ({result.events} events read)", **done}
    events = (
        f"{result.rewritten} of {result.events} events rewritten (events {result.first_seq}-{result.last_seq}), "
        f"recorded by {len(result.recorded)} privacy.migrate event(s)"
        if result.rewritten
        else f"no event to rewrite ({result.events} read)"
    )
    snapshots = (
        f"; {len(result.snapshots)} snapshot(s) taken before held state.db in clear: that copy was deleted "
        f"({', '.join(result.snapshots)}), their workspace files kept (they still restore)"
        if result.snapshots
        else ""
    )
    decisions = f"; {result.decisions} approval request(s) rewritten" if result.decisions else ""
    return {"body": f"{events}; {result.outputs} kept output(s) rewritten{decisions}{snapshots}", **done}


def _migrate_runner(workdir: Path | None, privacy: Protector | None) -> str | None:
    """The agent's runner's files written in clear, protected one by one (`agent_runner.records.migrate_records`)."""
    if workdir is None or privacy is None:
        return None
    from agent_runner.records import migrate_records

    rewritten = migrate_records(workdir, privacy)
    if not rewritten:
        return f"nothing to migrate (no file in clear under {workdir})"
    return f"{len(rewritten)} file(s) under {workdir} rewritten: " + ", ".join(
        p.relative_to(workdir).as_posix() for p in rewritten
    )


def cmd_privacy_migrate(args: argparse.Namespace) -> int:
    if args.batch < 1:
        raise UserError(f"--batch {args.batch}: give at least 1")
    results: dict[str, str] = {}
    client = _brain(args)
    if client is not None:  # (first: a brain that refuses leaves the body as it was)

        async def migrate_on_brain() -> str:
            try:
                done = await client.privacy_migrate()
            finally:
                await client.aclose()
            said: list[str] = []
            if done.rewritten:
                said.append(f"{done.rewritten} of {done.events} stored events rewritten")
            if done.records:
                said.append("its own records rewritten: " + ", ".join(f"{n} {k}" for k, n in done.records.items()))
            if done.backups_deleted:
                said.append(
                    f"{len(done.backups_deleted)} backup(s) taken before deleted, a backup of the migrated database "
                    f"written first ({', '.join(done.backups_deleted)})"
                )
            return "; ".join(said) if said else f"nothing to migrate ({done.events} stored events read)"

        results["brain"] = anyio.run(migrate_on_brain)
    results = {**_migrate_body(args), **results}
    if args.json:
        print(json.dumps(results))
    else:
        for where, what in results.items():
            print(f"{where}: {what}")
    return 0


def cmd_privacy(args: argparse.Namespace) -> int:
    raise UserError("swarm privacy: give a command: erase SUBJECT, unerase SUBJECT, export SUBJECT, migrate")


def add_parsers(sub: _Subparsers) -> None:
    """Register `swarm privacy erase|unerase|export|migrate` on the `swarm` subcommands."""
    privacy = sub.add_parser(
        "privacy",
        help="a data subject's personal data: erase it (crypto-shredding), unerase, export it; migrate older events",
    )
    privacy.set_defaults(func=cmd_privacy)
    privacy_sub = privacy.add_subparsers(dest="privacy_command", metavar="COMMAND")
    for name, func, text in (
        ("erase", cmd_privacy_erase, "destroy the subject's key on this body (and the brain's, with --brain)"),
        ("unerase", cmd_privacy_unerase, "lift an erased subject's tombstone here (and on the brain, with --brain)"),
        ("export", cmd_privacy_export, "list what this body (and the brain, with --brain) holds about the subject"),
    ):
        p = privacy_sub.add_parser(name, help=text)
        p.set_defaults(func=func)
        p.add_argument("subject", metavar="SUBJECT", help="an email, phone, card, IP, SSN, IBAN, UK NINO or name")
        p.add_argument("--workspace", metavar="DIR", help="the workspace (default: the current directory)")
        p.add_argument("--agent", metavar="NAME", help="an [[agents]] entry's state, instead of --workspace")
        p.add_argument("--config", metavar="FILE", help="swarm.toml (default: $SWARM_CONFIG, $SWARM_HOME/swarm.toml)")
        p.add_argument("--brain", metavar="URL", help="also on the brain (default: $SWARM_BRAIN_URL); a captain token")
        p.add_argument("--token", help="bearer token for the brain (default: $SWARM_TOKEN)")
        p.add_argument("--json", action="store_true", help="machine-readable output")
        if name == "erase":
            p.add_argument("--reason", default="", help="why (audited, personal data redacted)")
        if name == "unerase":
            p.add_argument("--reason", required=True, help="why their data may be kept again (audited, redacted)")
    p = privacy_sub.add_parser(
        "migrate",
        help="encrypt, once, the personal data of events written before [privacy] (and the brain's, with --brain)",
    )
    p.set_defaults(func=cmd_privacy_migrate)
    p.add_argument("--workspace", metavar="DIR", help="the workspace (default: the current directory)")
    p.add_argument("--agent", metavar="NAME", help="an [[agents]] entry's state, instead of --workspace")
    p.add_argument("--config", metavar="FILE", help="swarm.toml (default: $SWARM_CONFIG, $SWARM_HOME/swarm.toml)")
    p.add_argument("--brain", metavar="URL", help="also on the brain (default: $SWARM_BRAIN_URL); a captain token")
    p.add_argument("--token", help="bearer token for the brain (default: $SWARM_TOKEN)")
    p.add_argument("--batch", type=int, default=MIGRATE_BATCH, help="events per recorded batch (default: %(default)s)")
    p.add_argument("--progress", action="store_true", help="print progress to stderr (default: when it is a TTY)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
