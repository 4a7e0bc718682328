"""Bearer tokens and roles.

A token is shown once, when created, and stored only as its SHA-256: the database never
holds one in clear. Each request's token resolves to a `Principal` (the token's id, role
and label), which is what the brain records as "who". Roles:

    body      the body endpoints (register, heartbeat, events, audit, decisions, tasks, usage); reads its own
              body's decisions, tasks and usage only; never votes
    reviewer  an agent's vote (bound to that one agent, `--agent NAME`): read status, decisions and tasks, vote on
              the decisions its panel seat lets it (a captain agent's: veto any, break a deadlock needing no human);
              hear the event stream (every decision's events), post its LLM usage on a review (charged to the
              proposing task)
    approver  read status, decisions, tasks, usage and readiness; approve and deny; queue and cancel tasks
    captain   everything an approver may, plus kill, resume, override, readiness reports and their overrides

A body token speaks for one body, and a body id is held by one live token: the first body id
a token names is bound to it (trust on first use, stored on the token) if no token has named
that body before; from then on a request naming another body is refused, and so is another
token naming this body (`speak_for`). Only a captain's rebind (`rebind_body`, audited) moves a
body to another token, revoking the one that held it.

A token may also be bound to one agent when it is created (`swarm brain token create --role body --agent NAME`):
an autonomous agent's token. It then acts as that agent only: its claims are that agent's, shadow or live, never
IDE work (`claim_agent`); its usage records and decisions name that agent (`usage_agents`, `acting_agent`). A
body token bound to no agent is an IDE body's: it claims IDE work only, under its IDE's name, which may not be the
name of an agent with a token of its own, and it bills no usage. A revoked token is refused everywhere
from the next request on, and does not free its body. Tokens are
read from the state engine on every request, so a change made by the CLI in another
process counts at once.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from shared_protocol import AuditEvent
from shared_protocol.brain import ClaimMode, Role, UsageRecord
from shared_protocol.config import AGENT_NAME_RULE, is_agent_name
from shared_protocol.privacy import Detector, PrivacyConfig

from .exceptions import (
    AgentMismatch,
    BodyMismatch,
    BodyTaken,
    ConfigError,
    Forbidden,
    InvalidRequest,
    PairingRequired,
    Unauthorized,
    UnknownToken,
)
from .state import LogAction, LogEntry, Rebinding, SessionRecord, SessionStore, TokenRecord, TokenStore

TOKEN_PREFIX = "swb_"
PAIRING_PREFIX = "swp_"

ANY_ROLE: frozenset[Role] = frozenset({"body", "reviewer", "approver", "captain"})
BODY: frozenset[Role] = frozenset({"body"})
APPROVERS: frozenset[Role] = frozenset({"approver", "captain"})
VOTERS: frozenset[Role] = frozenset({"reviewer", "approver", "captain"})
CAPTAIN: frozenset[Role] = frozenset({"captain"})
HUMANS: frozenset[Role] = APPROVERS
"""The roles of a token a human may log in to the dashboard with (`session_principal`): never a body's or a
reviewer's."""
OVERRIDERS: frozenset[Role] = frozenset({"reviewer", "captain"})
"""Who reaches the override route: human captains, and reviewer tokens (only the captain agent's may veto)."""
AGENT_ROLES: frozenset[Role] = frozenset({"body", "reviewer"})
"""The roles of a token that may be bound to an agent (an agent's body, its reviewer's vote); a human's role
(approver, captain) never is."""
AGENT_ONLY: frozenset[Role] = frozenset({"reviewer"})
"""The roles of a token that must be bound to an agent: a reviewer votes as one agent, taken from its token."""
LISTENERS: frozenset[Role] = frozenset({"body", "reviewer"})
"""Who holds `GET /v1/events` open: bodies (their own body's events), and reviewer agents (every `decision` event,
to review the ones their panel seat waits for, and the kill switch)."""
USAGE_POSTERS: frozenset[Role] = frozenset({"body", "reviewer"})
"""Who posts LLM usage: an agent's body token, and a reviewer agent's token (its spend on a review, charged to the
proposing task)."""
METRICS_READERS: frozenset[Role] = frozenset({"approver", "captain", "metrics"})
"""Who reads `GET /metrics`: approvers and captains, and the read-only `metrics` role (a Prometheus scraper's
token, which can approve nothing)."""


def agent_token_command(agent: str) -> str:
    """The command that creates `agent`'s own token: what a refusal tells its runner's operator to run."""
    return f"swarm brain token create --role body --agent {agent} --label {agent}"


def new_token() -> str:
    """A fresh secret: 256 random bits."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def new_pairing() -> str:
    """A fresh pairing secret (`swarm brain token create --pair`): 256 random bits."""
    return PAIRING_PREFIX + secrets.token_urlsafe(32)


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
    agent: str | None = None
    """The agent the token was created for (None: no agent's: an IDE body's token, or a human's)."""
    pairing_hash: str | None = None
    """The SHA-256 of the token's pairing secret (None: an unpaired token): see `check_pairing`."""

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
    return Principal(
        token_id=record.id,
        role=record.role,
        label=record.label,
        body_id=record.body_id,
        agent=record.agent,
        pairing_hash=record.pairing_hash,
    )


SESSION_COOKIE = "swarm_session"
"""The dashboard's session cookie (HttpOnly, SameSite=Strict, Path=/; Secure over https)."""
CSRF_HEADER = "X-Swarm-CSRF"
"""The header a dashboard session's state-changing request carries its session's CSRF token in."""


class TokensAndSessions(TokenStore, SessionStore, Protocol):
    """What `authenticate_request` reads: the tokens, and the dashboard's sessions."""


@dataclass(kw_only=True, frozen=True)
class SessionRules:
    """How long a dashboard session lasts (`[brain] session_idle_s`, `session_max_s`)."""

    idle_s: float
    max_s: float


@dataclass(kw_only=True, frozen=True)
class Credentials:
    """What a request carries to say who sends it: a bearer token, or a dashboard session (cookie, CSRF header,
    Origin). `own_origins`: the origins the dashboard is served from (this request's, and `[brain] public_url`'s)."""

    authorization: str | None
    session: str | None = None
    csrf: str | None = None
    origin: str | None = None
    own_origins: frozenset[str] = frozenset()
    changes_state: bool = True


async def authenticate_request(
    state: TokensAndSessions,
    credentials: Credentials,
    allowed: frozenset[Role],
    *,
    at: datetime,
    rules: SessionRules,
) -> Principal:
    """The one check of every `/v1` request: a bearer token (`authenticate`) when the request has an Authorization
    header or no session cookie; else the dashboard session of its cookie (`session_principal`), for the human
    roles only."""
    if credentials.authorization is not None or credentials.session is None:
        return await authenticate(state, credentials.authorization, allowed)
    return await session_principal(state, credentials, allowed, at=at, rules=rules)


async def session_principal(
    state: TokensAndSessions,
    credentials: Credentials,
    allowed: frozenset[Role],
    *,
    at: datetime,
    rules: SessionRules,
) -> Principal:
    """The human behind a dashboard session cookie: 401 for a session unknown, ended, past its idle or absolute
    timeout, or whose token was revoked (the session is deleted then); 403 for a state-changing request without
    the session's CSRF header or from another origin, or a role `allowed` does not hold."""
    assert credentials.session is not None
    session_hash = hash_token(credentials.session)
    session = await state.session_by_hash(session_hash)
    if session is None:
        raise Unauthorized("this dashboard session is unknown or has ended: log in again")
    record = await state.token_by_hash(session.token_hash)
    if record is None or record.revoked_at is not None or record.role not in HUMANS:
        # (kept, so that every request of it says why; the token is revoked for good)
        raise Unauthorized("the token this dashboard session was opened with was revoked: the session has ended")
    ended: str | None = None
    if at - session.created_at >= timedelta(seconds=rules.max_s):
        ended = f"this dashboard session has expired (a session lasts at most {rules.max_s:g} s): log in again"
    elif at - session.last_seen >= timedelta(seconds=rules.idle_s):
        ended = f"this dashboard session has expired (idle for more than {rules.idle_s:g} s): log in again"
    if ended is not None:
        await end_session(state, session, at=at, reason=ended)
        raise Unauthorized(ended)
    if credentials.changes_state:
        if credentials.origin is None or credentials.origin not in credentials.own_origins:
            raise Forbidden(
                f"a dashboard request that changes something must come from the dashboard's own page "
                f"(Origin {credentials.origin or 'missing'}; expected {' or '.join(sorted(credentials.own_origins))})",
                field="Origin",
            )
        if not credentials.csrf or not hmac.compare_digest(credentials.csrf.encode(), session.csrf.encode()):
            raise Forbidden(
                f"a dashboard request that changes something needs its session's CSRF token in the {CSRF_HEADER} "
                f"header ({'wrong' if credentials.csrf else 'missing'})",
                field=CSRF_HEADER,
            )
    if record.role not in allowed:
        article = "an" if record.role[0] in "aeiou" else "a"
        raise Forbidden(
            f"{record.label} is logged in as {article} {record.role}, who may not do this "
            f"(needs: {', '.join(sorted(allowed))})"
        )
    if at - session.last_seen >= timedelta(seconds=min(5.0, rules.idle_s / 10)):
        await state.touch_session(session_hash, at)
    return Principal(token_id=record.id, role=record.role, label=record.label)


async def open_session(
    state: TokensAndSessions, token: str, *, at: datetime, rules: SessionRules
) -> tuple[str, SessionRecord]:
    """Log a human in with an approver's or captain's `token`: a new session (cookie value, and its record, whose
    `csrf` the page is given), after deleting the sessions whose timeouts have passed. 401 for an unknown or
    revoked token, 403 for a body's (or any non-human's)."""
    record = await state.token_by_hash(hash_token(token.strip()))
    if record is None:
        raise Unauthorized("unknown token: paste an approver's or captain's token (swarm brain token create)")
    if record.revoked_at is not None:
        raise Unauthorized(f"this token ({record.id}) was revoked at {record.revoked_at.isoformat()}")
    if record.role not in HUMANS:
        raise Forbidden(
            f"a {record.role} token cannot log in to the dashboard: it is an agent's; log in with an approver's or "
            "captain's token"
        )
    await state.prune_sessions(
        idle_before=at - timedelta(seconds=rules.idle_s), created_before=at - timedelta(seconds=rules.max_s)
    )
    cookie = "sws_" + secrets.token_urlsafe(32)
    session = SessionRecord(
        session_hash=hash_token(cookie),
        token_hash=record.token_hash,
        token_id=record.id,
        csrf=secrets.token_urlsafe(32),
        created_at=at,
        last_seen=at,
    )
    who = Principal(token_id=record.id, role=record.role, label=record.label)
    await state.add_session(session, who.entry("session_start", at=at, reason="dashboard login", target=record.id))
    return cookie, session


async def end_session(state: TokensAndSessions, session: SessionRecord, *, at: datetime, reason: str) -> None:
    """Delete a dashboard session (logout, timeout, its token revoked), with a log line saying why."""
    log = LogEntry(at=at, action="session_end", by=session.token_id, token_id=session.token_id, reason=reason)
    await state.end_session(session.session_hash, log)


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


def check_token_agent(role: Role, agent: str | None) -> None:
    """`ConfigError` unless a `role` token may be bound to `agent`: a name `[[agents]] name` takes, and a role an
    agent holds (`AGENT_ROLES`); a reviewer token must name its agent (`AGENT_ONLY`)."""
    if agent is None:
        if role in AGENT_ONLY:
            raise ConfigError(f"a {role} token votes as one agent: give --agent NAME (an [[agents]] reviewer)")
        return
    if not is_agent_name(agent):
        raise ConfigError(f"--agent {agent!r}: {AGENT_NAME_RULE}")
    if role not in AGENT_ROLES:
        raise ConfigError(
            f"--agent {agent}: a {role} token is a human's and is never bound to an agent "
            f"(an agent's token: --role {' or '.join(sorted(AGENT_ROLES))})"
        )


def check_token_label(label: str, privacy: PrivacyConfig | None = None) -> None:
    """`ConfigError` (nothing written) for a label holding personal data (`[privacy]` on): a token's label is who
    acts in every record the brain keeps — its log, votes, tasks, pauses — as written, never encrypted, and a
    label cannot be changed (nor erased) once the token exists."""
    config = privacy or PrivacyConfig()
    if not config.redaction:
        return
    found = sorted({span.kind for span in Detector(config).find(label)})
    if found:
        raise ConfigError(
            f"--label {label!r} holds personal data ({', '.join(found)}): a token's label names who acts in every "
            "record the brain keeps, in clear and for good; label it by role or handle (ops-captain, laptop-2)"
        )


async def issue_token(
    state: TokenStore,
    *,
    role: Role,
    label: str,
    at: datetime,
    agent: str | None = None,
    pairing: str | None = None,
    privacy: PrivacyConfig | None = None,
) -> str:
    """Create a token, store its hash (and a log line saying so), and return the token: the only time it is seen.

    With `agent`, the token is that agent's for good (`ConfigError` for a name `[[agents]] name` would refuse, or
    a role no agent holds); nothing is written then. With `pairing` (a body token's, from `new_pairing`), the token
    is paired: its body proves the secret whenever it registers a verification key (`check_pairing`). A label
    holding personal data (`privacy`: `[privacy]`, its names and patterns) is refused (`check_token_label`)."""
    check_token_agent(role, agent)
    check_token_label(label, privacy)
    if pairing is not None and role != "body":
        raise ConfigError(f"--pair pairs a body token with its body's key; a {role} token registers no body")
    token = new_token()
    record = TokenRecord(
        id=f"tok_{secrets.token_hex(6)}",
        token_hash=hash_token(token),
        role=role,
        label=label,
        created_at=at,
        agent=agent,
        pairing_hash=None if pairing is None else hash_token(pairing),
    )
    reason = f"{role} token created" + ("" if agent is None else f" for agent {agent}")
    reason += "" if pairing is None else ", paired"
    log = LogEntry(
        at=at,
        action="token_create",
        by="cli",
        reason=reason,
        target=record.id,
        detail={} if agent is None else {"agent": agent},
    )
    await state.add_token(record, log)
    return token


def check_pairing(who: Principal, verify_key: str | None, pairing: str | None) -> None:
    """`PairingRequired` (403, field `pairing`; nothing written) unless a paired token's registration naming a
    verification key carries the token's pairing secret. Call it before the token is bound to the body.

    Trust on first use lets whoever registers a body id first set its key: a holder of a fresh agent token (a shell
    that exported it, a CI log) could register a key of its own before the real body and have its hand-made re-runs
    confirmed. A paired token's secret is given to the body's operator apart from the token (`swarm brain token
    create --pair`, then `[[agents]] pairing` or `$SWARM_PAIRING`), so the key is the body's. A registration without
    a key, and any registration with an unpaired token, are not checked (trust on first use, as before)."""
    if who.pairing_hash is None or verify_key is None:
        return
    if pairing is not None and hmac.compare_digest(hash_token(pairing), who.pairing_hash):
        return
    said = "no pairing secret" if pairing is None else "another pairing secret"
    raise PairingRequired(
        f"this token ({who.token_id}) is paired: a registration naming a verification key must carry its pairing "
        f"secret (printed by `swarm brain token create --pair`; the body reads $SWARM_PAIRING, the runner "
        f"[[agents]] pairing), and this one has {said}; nothing was changed",
        field="pairing",
    )


async def acting_agent(state: TokenStore, who: Principal, agent: str, *, doing: str) -> str:
    """The agent a body token's request acts as, given the name it gives (`agent`, "" for none), or
    `AgentMismatch` (403) naming the fix; writes nothing. `doing` says what, for the refusal ("claim", ...).

    A token bound to agent X acts as X only (no name: X). A token bound to no agent (an IDE body's) acts under the
    name its IDE gives, which may not be that of an agent with a token of its own. Other roles are not checked."""
    if who.role != "body":
        return agent
    if who.agent is not None:
        if agent and agent != who.agent:
            raise AgentMismatch(
                f"this token is bound to agent '{who.agent}' and may not {doing} as agent '{agent}': each agent "
                f"has its own token ({agent_token_command(agent)})"
            )
        return who.agent
    if agent and await state.has_agent_token(agent):
        raise AgentMismatch(
            f"'{agent}' is an agent with a token of its own; this body token is bound to no agent and may not "
            f"{doing} as it: the agent's runner uses its own token (or create one: {agent_token_command(agent)})"
        )
    return agent


async def claim_agent(state: TokenStore, who: Principal, *, agent: str, mode: ClaimMode) -> str:
    """The agent a body token's claim is made for (see `acting_agent`), or `AgentMismatch` (403) naming the fix.

    An agent's token claims shadow or live work, never IDE work: IDE work skips the live gate, which is for agents.
    A token bound to no agent is an IDE body's: it claims IDE work only, and names its IDE."""
    if who.role != "body":
        return agent
    if who.agent is not None and mode == "ide":
        raise AgentMismatch(
            f"an agent's token claims shadow or live work, not ide (this token is bound to agent '{who.agent}'): "
            f"its runner claims with `swarm agent run --agent {who.agent} [--live]`; an IDE body needs a body "
            "token bound to no agent (swarm brain token create --role body)"
        )
    if who.agent is None and mode != "ide":
        name = agent or "NAME"
        raise AgentMismatch(
            f"this body token is bound to no agent, so it claims IDE work only, not {mode} work: an agent's runner "
            f"claims with a token bound to it ({agent_token_command(name)}, set as the [[agents]] token of "
            f"agent '{name}')"
        )
    acting = await acting_agent(state, who, agent, doing="claim")
    if not acting:
        raise InvalidRequest("an IDE body's claim names its agent (the IDE's name)", field="agent")
    return acting


async def audit_agents(state: TokenStore, who: Principal, events: Sequence[AuditEvent]) -> None:
    """`InvalidRequest` (422, field `events.N.agent`, nothing stored) unless a body token posts events in its own
    name only: a token bound to an agent posts that agent's events (and the body's own under a name no agent can
    have, `swarm:snapshots`); a token bound to no agent (an IDE body's) names its IDE, never an agent with a token
    of its own (as `acting_agent` refuses its claims and decisions). Whatever an event names, the anomaly watch
    counts it for the agent of the token holding its body (`anomaly_watch.body_agents`)."""
    if who.role != "body":
        return
    if who.agent is not None:
        for n, event in enumerate(events):
            if event.agent != who.agent and is_agent_name(event.agent):
                raise InvalidRequest(
                    f"audit event seq {event.seq} names agent '{event.agent}', but this token is bound to agent "
                    f"'{who.agent}' and posts its own events only",
                    field=f"events.{n}.agent",
                )
        return
    named = {event.agent for event in events}
    agents = {t.agent for t in await state.tokens() if t.agent is not None and t.agent in named}
    for n, event in enumerate(events):
        if event.agent in agents:
            raise InvalidRequest(
                f"audit event seq {event.seq} names agent '{event.agent}', an agent with a token of its own; this "
                "body token is bound to no agent and posts its IDE's events only (the agent's runner posts its own, "
                f"with its token: {agent_token_command(event.agent)})",
                field=f"events.{n}.agent",
            )


def usage_agents(who: Principal, records: list[UsageRecord]) -> None:
    """`InvalidRequest` (422, field `records.N.agent`) unless every record bills the token's agent: a body token
    bound to no agent (an IDE body's) bills no agent's spend, and an agent's token bills none but its own."""
    for n, record in enumerate(records):
        if who.agent is None:
            raise InvalidRequest(
                f"usage record '{record.id}' bills agent '{record.agent}', but this token is bound to no agent: "
                f"usage is an agent's, posted with its own token ({agent_token_command(record.agent)})",
                field=f"records.{n}.agent",
            )
        if record.agent != who.agent:
            raise InvalidRequest(
                f"usage record '{record.id}' bills agent '{record.agent}', but this token is bound to agent "
                f"'{who.agent}' and bills its own spend only",
                field=f"records.{n}.agent",
            )


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
