"""Bearer tokens and roles.

A token is shown once, when created, and stored only as its SHA-256: the database never
holds one in clear. Each request's token resolves to a `Principal` (the token's id, role
and label), which is what the brain records as "who". Roles:

    body      the body endpoints (register, heartbeat, events, audit, decisions, tasks, usage); reads its own
              body's decisions, tasks and usage only
    approver  read status, decisions, tasks, usage and readiness; approve and deny; queue and cancel tasks
    captain   everything an approver may, plus kill, resume, override, readiness reports and their overrides

A body token speaks for one body, and a body id is held by one live token: the first body id
a token names is bound to it (trust on first use, stored on the token) if no token has named
that body before; from then on a request naming another body is refused, and so is another
token naming this body (`speak_for`). Only a captain's rebind (`rebind_body`, audited) moves a
body to another token, revoking the one that held it. A revoked token is refused everywhere
from the next request on, and does not free its body. Tokens are
read from the state engine on every request, so a change made by the CLI in another
process counts at once.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared_protocol.brain import Role

from .exceptions import BodyMismatch, BodyTaken, Forbidden, Unauthorized, UnknownToken
from .state import LogAction, LogEntry, Rebinding, TokenRecord, TokenStore

TOKEN_PREFIX = "swb_"

ANY_ROLE: frozenset[Role] = frozenset({"body", "approver", "captain"})
BODY: frozenset[Role] = frozenset({"body"})
APPROVERS: frozenset[Role] = frozenset({"approver", "captain"})
CAPTAIN: frozenset[Role] = frozenset({"captain"})


def new_token() -> str:
    """A fresh secret: 256 random bits."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """What the database keeps instead of the token."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(kw_only=True, frozen=True)
class Principal:
    """Who is calling: recorded with every change they make."""

    token_id: str
    role: Role
    label: str
    body_id: str | None = None
    """The body a body token was bound to when the request was authenticated (None: not bound yet)."""

    @property
    def sees_only(self) -> str | None:
        """The one body whose bodies and decisions this token may see (a body token: its own, "" while unbound,
        so none); None: every body's (approvers and captains)."""
        return None if self.role != "body" else (self.body_id or "")

    @property
    def name(self) -> str:
        """The label if the token has one, else its id."""
        return self.label or self.token_id

    def entry(
        self,
        action: LogAction,
        *,
        at: datetime,
        reason: str = "",
        target: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> LogEntry:
        """A line of the brain's log saying this principal did `action`."""
        return LogEntry(
            at=at,
            action=action,
            by=self.name,
            token_id=self.token_id,
            role=self.role,
            reason=reason,
            target=target,
            detail=detail or {},
        )


def bearer_token(authorization: str | None) -> str:
    """The token in an `Authorization: Bearer …` header, or `Unauthorized`."""
    if not authorization:
        raise Unauthorized("a bearer token is required (Authorization: Bearer <token>)")
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("the Authorization header must be 'Bearer <token>'")
    return token


async def authenticate(tokens: TokenStore, authorization: str | None, allowed: frozenset[Role]) -> Principal:
    """Resolve the header's token and check its role: 401 if missing, unknown or revoked; 403 for a wrong role."""
    record = await tokens.token_by_hash(hash_token(bearer_token(authorization)))
    if record is None:
        raise Unauthorized("unknown token")
    if record.revoked_at is not None:
        raise Unauthorized(f"this token ({record.id}) was revoked at {record.revoked_at.isoformat()}")
    if record.role not in allowed:
        raise Forbidden(f"a {record.role} token may not do this (needs: {', '.join(sorted(allowed))})")
    return Principal(token_id=record.id, role=record.role, label=record.label, body_id=record.body_id)


async def speak_for(state: TokenStore, who: Principal, body_id: str, *, at: datetime) -> None:
    """Check that `who` may act as `body_id`, binding an unbound body token to it (its first use).

    Raises `BodyMismatch` (403) naming the bound body if the token is bound to another one, and `BodyTaken` (403)
    if `body_id` is another token's; it writes nothing then. Approver and captain tokens are never bound. Call it
    after the request is validated and before anything else is written.
    """
    if who.role != "body" or who.body_id == body_id:
        return
    if who.body_id is None:
        log = who.entry("token_bind", at=at, reason="first use", target=who.token_id, detail={"body_id": body_id})
        record = await state.bind_token(who.token_id, body_id, log)
        if record is None or record.revoked_at is not None:
            raise Unauthorized(f"this token ({who.token_id}) was revoked")
        if record.body_id == body_id:
            return
        if record.body_id is None:
            raise BodyTaken(
                f"body '{body_id}' is held by another token; a captain can move it to this one ({who.token_id}): "
                f"swarm brain body rebind {body_id} --token-id {who.token_id} --reason …"
            )
        bound = record.body_id
    else:
        bound = who.body_id
    raise BodyMismatch(f"this token is bound to body '{bound}' and may not act for body '{body_id}'")


def own_body(who: Principal) -> str:
    """The body a request that names none acts for (a task outcome: the claimant's), which is `who`'s bound body.

    A body token not bound yet has claimed nothing, so it has no task to renew or finish: `BodyMismatch`.
    """
    if who.body_id is None:
        raise BodyMismatch("this body token is bound to no body yet, so it holds no claim on any task")
    return who.body_id


async def issue_token(state: TokenStore, *, role: Role, label: str, at: datetime) -> str:
    """Create a token, store its hash (and a log line saying so), and return the token: the only time it is seen."""
    token = new_token()
    record = TokenRecord(
        id=f"tok_{secrets.token_hex(6)}", token_hash=hash_token(token), role=role, label=label, created_at=at
    )
    log = LogEntry(at=at, action="token_create", by="cli", reason=f"{role} token created", target=record.id)
    await state.add_token(record, log)
    return token


async def revoke_token(state: TokenStore, token_id: str, *, reason: str, at: datetime) -> TokenRecord:
    """Revoke a token (with a log line saying so); the token as it was before, or `UnknownToken`.

    Revoking a revoked token changes nothing: the record returned then has its `revoked_at` already.
    """
    log = LogEntry(at=at, action="token_revoke", by="cli", reason=reason or "revoked", target=token_id)
    before = await state.revoke_token(token_id, at=at, log=log)
    if before is None:
        raise UnknownToken(f"no token '{token_id}' in this brain (see `swarm brain token list`)")
    return before


async def rebind_body(
    state: TokenStore, body_id: str, token_id: str, *, reason: str, at: datetime, by: Principal | None = None
) -> Rebinding:
    """Move `body_id` to the body token `token_id`, revoking the token that held it (both logged, with `reason`):
    the one way a body changes tokens. `by`: the captain asking over HTTP; None: the host's CLI.

    `NotFound` for a token the brain does not have; `RebindRefused` for one that cannot take the body.
    """
    detail = {"body_id": body_id, "token_id": token_id}
    if by is None:
        log = LogEntry(at=at, action="body_rebind", by="cli", reason=reason, target=body_id, detail=detail)
        revoke = LogEntry(at=at, action="token_revoke", by="cli", reason=f"body {body_id} rebound: {reason}")
    else:
        log = by.entry("body_rebind", at=at, reason=reason, target=body_id, detail=detail)
        revoke = by.entry("token_revoke", at=at, reason=f"body {body_id} rebound: {reason}")
    return await state.rebind_body(body_id, token_id, at=at, log=log, revoke_log=revoke)
