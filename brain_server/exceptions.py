"""Exceptions of the brain.

    BrainError
    ├── ApiError              a refusal the client reads: an `ErrorBody` with an HTTP status
    │   ├── Unauthorized      401: no token, an unknown one, or a revoked one
    │   ├── Forbidden         403: the token's role may not do this
    │   │   ├── BodyMismatch  a body token naming a body other than the one it is bound to
    │   │   ├── BodyTaken     a body id bound to another token (only a captain's rebind moves it)
    │   │   ├── AgentMismatch  a token bound to one agent acting as another; an IDE body's token doing an
    │   │   │                 agent's work (shadow or live claims, usage); an agent's token claiming IDE work
    │   │   ├── NotReady      a live claim without a fresh ready readiness report or an override
    │   │   └── PairingRequired  a paired token's registration of a key without its pairing secret
    │   ├── NotFound          404
    │   │   ├── UnknownBody   a heartbeat from a body that never registered
    │   │   └── NothingToReverse  undo an id with no unreversed compensating record
    │   ├── InvalidRequest    422: bad JSON, or a field missing or wrong (names the field)
    │   ├── Conflict          409
    │   │   ├── ChainBroken   audit events that do not continue the stored chain
    │   │   │   ├── ChainGap
    │   │   │   └── ChainMismatch
    │   │   ├── NotPending    approve or deny a decision that is no longer pending
    │   │   ├── AlreadyFinal  override a decision that is denied, expired or overridden
    │   │   ├── NothingToAcknowledge  acknowledge something no ladder is climbing for
    │   │   ├── StaleClaim    a task outcome with a claim token that is no longer current
    │   │   ├── TaskCancelled  renew, park, resume or an outcome of a cancelled task
    │   │   ├── InvalidTransition  a task step its state does not allow (resume a claimed task, cancel a final one)
    │   │   ├── ReverseConflict  undo (without force) of an update whose task changed since
    │   │   ├── RebindRefused  a rebind to a token that cannot take the body (revoked, not a body token, bound
    │   │   │                 to another body)
    │   │   ├── BodyKeyMismatch  a registration with another verification key than the body's first
    │   │   └── AgentPaused   a paused agent's reviewer token votes or overrides
    │   ├── PayloadTooLarge   413: a request body over its route's cap (nothing past the cap is read)
    │   ├── KeyStoreReplaced  503: an `Idempotency-Key` while the key store is not the one the kept keys are under
    │   └── StateBroken       503: the state's storage is unusable (malformed, truncated, full disk, unreadable,
    │                         deleted); every later call raises it too, and the daemon stops
    ├── BackupFailed          a database backup could not be written or did not verify
    └── UserError             misuse by a human or developer: the message says how to fix it
        ├── ConfigError       a bad setting, flag or `[brain]` key (named)
        │   └── BadDatabaseUrl  a `[brain] database_url` no state engine takes (unknown scheme, relative path)
        ├── NoDatabase        a database that must exist does not (`swarm brain token list|revoke`)
        ├── SchemaTooNew      the database was written by a newer brain
        ├── NotABrainDatabase  a database that holds another application's tables (never written into)
        └── UnknownToken      a token id the brain does not have (`swarm brain token revoke`, rebind)

An `ApiError` is raised before anything is written, or after a transaction that is
complete on its own (an audit batch keeps the events before the bad one).
"""

from __future__ import annotations

from typing import ClassVar

from shared_protocol.brain import BrainErrorCode, ErrorBody


class BrainError(Exception):
    """Base of every error raised on purpose by the brain."""


class ApiError(BrainError):
    """A refusal sent to the client as `{code, message, ...}` with `status`."""

    status: ClassVar[int] = 500
    default_code: ClassVar[BrainErrorCode] = BrainErrorCode.INTERNAL_ERROR

    def __init__(self, message: str, *, code: BrainErrorCode | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.field = field

    def body(self) -> ErrorBody:
        return ErrorBody(code=self.code, message=self.message, field=self.field)


class Unauthorized(ApiError):
    status = 401
    default_code = BrainErrorCode.UNAUTHORIZED


class Forbidden(ApiError):
    status = 403
    default_code = BrainErrorCode.FORBIDDEN


class BodyMismatch(Forbidden):
    """A body token speaks for the one body it was bound to on first use; this request named another."""


class BodyTaken(Forbidden):
    """The body id is bound to another token (live or revoked): a captain's rebind is the only way to move it."""


class AgentMismatch(Forbidden):
    """A token bound to one agent named another; an unbound (IDE) body token did an agent's work; an agent's token
    claimed IDE work. The message names the fix (often: `swarm brain token create --role body --agent NAME`)."""


class PairingRequired(Forbidden):
    """403: a paired token's registration named a verification key without the token's pairing secret."""

    default_code = BrainErrorCode.PAIRING_REQUIRED


class NotReady(Forbidden):
    """403: live work is refused until readiness passes (or a human captain overrides it for the agent)."""

    default_code = BrainErrorCode.NOT_READY


class NotFound(ApiError):
    status = 404
    default_code = BrainErrorCode.NOT_FOUND


class UnknownBody(NotFound):
    default_code = BrainErrorCode.UNKNOWN_BODY


class NothingToReverse(NotFound):
    default_code = BrainErrorCode.NOTHING_TO_REVERSE


class InvalidRequest(ApiError):
    status = 422
    default_code = BrainErrorCode.INVALID_REQUEST


class Conflict(ApiError):
    status = 409


class KeyReused(Conflict):
    """409: an `Idempotency-Key` came back with a request other than the one it first came with."""

    default_code = BrainErrorCode.IDEMPOTENCY_KEY_REUSED


class ChainBroken(Conflict):
    """Audit events that do not continue the body's stored chain; resend from `expected_seq`."""

    def __init__(self, message: str, *, expected_seq: int, stored_through: int) -> None:
        super().__init__(message)
        self.expected_seq = expected_seq
        self.stored_through = stored_through

    def body(self) -> ErrorBody:
        return ErrorBody(
            code=self.code, message=self.message, expected_seq=self.expected_seq, stored_through=self.stored_through
        )


class ChainGap(ChainBroken):
    default_code = BrainErrorCode.CHAIN_GAP


class ChainMismatch(ChainBroken):
    default_code = BrainErrorCode.CHAIN_MISMATCH


class NotPending(Conflict):
    default_code = BrainErrorCode.NOT_PENDING


class AlreadyFinal(Conflict):
    default_code = BrainErrorCode.ALREADY_FINAL


class NothingToAcknowledge(Conflict):
    default_code = BrainErrorCode.NOTHING_TO_ACKNOWLEDGE


class StaleClaim(Conflict):
    default_code = BrainErrorCode.STALE_CLAIM


class TaskCancelled(Conflict):
    """The task was cancelled: its claim is gone and nothing more is accepted for it."""

    default_code = BrainErrorCode.TASK_CANCELLED


class InvalidTransition(Conflict):
    """The task's state does not allow the step asked for; the message names the state."""

    default_code = BrainErrorCode.INVALID_TRANSITION


class ReverseConflict(Conflict):
    """Reversing would overwrite task changes made since; nothing was reversed. `conflicts` names them."""

    default_code = BrainErrorCode.REVERSE_CONFLICT

    def __init__(self, message: str, *, conflicts: list[str]) -> None:
        super().__init__(message)
        self.conflicts = conflicts


class RebindRefused(Conflict):
    """The token a rebind names cannot take the body: it is revoked, not a body token, or bound to another body."""

    default_code = BrainErrorCode.REBIND_REFUSED


class BodyKeyMismatch(Conflict):
    """A body registers with another verification key than the one it first registered with (trust on first use):
    nothing is changed. A captain's rebind of the body forgets its key."""

    default_code = BrainErrorCode.BODY_KEY_MISMATCH


class AgentPaused(Conflict):
    """409: a paused agent's reviewer token voted or overrode: a paused agent steers nothing until it is resumed."""

    default_code = BrainErrorCode.AGENT_PAUSED


class PayloadTooLarge(ApiError):
    """413: the request body is over the cap of its route (`[brain] max_request_bytes`, `max_audit_request_bytes`)."""

    status = 413
    default_code = BrainErrorCode.PAYLOAD_TOO_LARGE


class KeyStoreReplaced(ApiError):
    """503: a request with an `Idempotency-Key`, while the brain's key store is not the one its kept keys were
    keyed under (`task_key_secret`'s check value differs): a retry could not be recognised, so nothing is written."""

    status = 503
    default_code = BrainErrorCode.KEY_STORE_REPLACED


class StateBroken(ApiError):
    """503: the state engine found its storage unusable; `reason` says how, in one line.

    Sticky: the engine raises it from every call after the first, and the daemon stops (a supervisor restarts it,
    and a brain that cannot open its database exits at once with this reason).
    """

    status = 503
    default_code = BrainErrorCode.STATE_UNAVAILABLE

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UserError(BrainError):
    """A human or developer used the brain wrongly; the message says how to fix it."""


class ConfigError(UserError):
    """A setting, flag or `[brain]` key is unknown or has a bad value; the message names it."""


class BadDatabaseUrl(ConfigError):
    """A `[brain] database_url` that names no state engine, or a location its engine refuses; `problem` says why."""

    def __init__(self, url: str, problem: str) -> None:
        super().__init__(f"[brain] database_url {url!r}: {problem}")
        self.url = url
        self.problem = problem


class NoDatabase(UserError):
    """Nothing is stored at a database URL that was opened without creating it."""


class SchemaTooNew(UserError):
    """The database's schema version is newer than this brain knows: upgrade the brain, never downgrade."""


class NotABrainDatabase(UserError):
    """The file is an SQLite database, but not a brain's: it has tables and no brain schema version (a `--db` typo
    naming another application's file). The brain writes nothing into it."""


class UnknownToken(UserError):
    """No token has that id in this brain's database."""


class BackupFailed(BrainError):
    """A backup of the state database could not be written or did not verify; earlier backups are untouched."""
