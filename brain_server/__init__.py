"""The brain: a persistent daemon holding the swarm's state, governance and kill switch.

    HTTP (`build_app`, JSON under /v1, bearer tokens)  ─┐
    daemon loop (`Brain.run_sweeper`)                   ├─▶ `Brain` ─▶ `StateEngine` (by URL: sqlite | memory)
                                                        │      ├─▶ `EventHub` (server-sent events to bodies)
                                                        │      └─▶ `Escalator` (wake/: pages humans up the ladder)
    `serve(settings)`: both in one process (uvicorn)  ──┘

The brain imports `shared_protocol` only; bodies speak to it through those models.
"""

from .app import build_app
from .auth import Principal, hash_token, issue_token, revoke_token
from .daemon import run, serve, serve_brain
from .events import BrainEvent, EventHub
from .exceptions import (
    AlreadyFinal,
    ApiError,
    BadDatabaseUrl,
    BodyMismatch,
    BrainError,
    ChainBroken,
    ChainGap,
    ChainMismatch,
    ConfigError,
    Conflict,
    Forbidden,
    InvalidRequest,
    NoDatabase,
    NotABrainDatabase,
    NotFound,
    NotPending,
    SchemaTooNew,
    StaleClaim,
    StateBroken,
    Unauthorized,
    UnknownBody,
    UnknownToken,
    UserError,
)
from .service import Brain, SweepReport
from .settings import BrainSettings
from .state import LogEntry, MemoryStateEngine, SqliteStateEngine, StateEngine, TokenRecord, open_engine

__all__ = [
    "AlreadyFinal",
    "ApiError",
    "BadDatabaseUrl",
    "BodyMismatch",
    "Brain",
    "BrainError",
    "BrainEvent",
    "BrainSettings",
    "ChainBroken",
    "ChainGap",
    "ChainMismatch",
    "ConfigError",
    "Conflict",
    "EventHub",
    "Forbidden",
    "InvalidRequest",
    "LogEntry",
    "MemoryStateEngine",
    "NoDatabase",
    "NotABrainDatabase",
    "NotFound",
    "NotPending",
    "Principal",
    "SchemaTooNew",
    "SqliteStateEngine",
    "StaleClaim",
    "StateBroken",
    "StateEngine",
    "SweepReport",
    "TokenRecord",
    "Unauthorized",
    "UnknownBody",
    "UnknownToken",
    "UserError",
    "build_app",
    "hash_token",
    "issue_token",
    "open_engine",
    "revoke_token",
    "run",
    "serve",
    "serve_brain",
]
