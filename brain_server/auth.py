"""Bearer tokens and roles.

A token is shown once, when created, and stored only as its SHA-256: the database never
holds one in clear. Each request's token resolves to a `Principal` (the token's id, role
and label), which is what the brain records as "who". Roles:

    body      the body endpoints (register, heartbeat, events, audit, decisions, tasks)
    approver  read status and decisions, approve and deny, queue tasks
    captain   everything an approver may, plus kill, resume and override
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared_protocol.brain import Role

from .exceptions import Forbidden, Unauthorized
from .state import LogAction, LogEntry, StateEngine, TokenRecord

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


async def authenticate(tokens: StateEngine, authorization: str | None, allowed: frozenset[Role]) -> Principal:
    """Resolve the header's token and check its role: 401 for a missing or unknown token, 403 for a wrong role."""
    record = await tokens.token_by_hash(hash_token(bearer_token(authorization)))
    if record is None:
        raise Unauthorized("unknown token")
    if record.role not in allowed:
        raise Forbidden(f"a {record.role} token may not do this (needs: {', '.join(sorted(allowed))})")
    return Principal(token_id=record.id, role=record.role, label=record.label)


async def issue_token(state: StateEngine, *, role: Role, label: str, at: datetime) -> str:
    """Create a token, store its hash (and a log line saying so), and return the token: the only time it is seen."""
    token = new_token()
    record = TokenRecord(
        id=f"tok_{secrets.token_hex(6)}", token_hash=hash_token(token), role=role, label=label, created_at=at
    )
    log = LogEntry(at=at, action="token_create", by="cli", reason=f"{role} token created", target=record.id)
    await state.add_token(record, log)
    return token
