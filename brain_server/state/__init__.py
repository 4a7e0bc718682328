"""The state engine: everything the brain knows, behind one small `Protocol` per kind of record.

    TokenStore  BrainLog  KillStore  BodyStore  AuditEventStore  DecisionStore
    TaskStore  UsageStore  ReadinessStore  CompensationStore  EscalationStore  AnswerTokenStore  InteractionStore
    TelemetryStore
        └──────────────── all of them: `StateEngine` (what `Brain` takes) ────────────────┘

    open_engine(url) ─▶ ENGINES[scheme] ─▶ sqlite:///ABSOLUTE/PATH  `SqliteStateEngine` (the daemon's default)
                                        └▶ memory://                 `MemoryStateEngine` (tests, throwaway brains)

Every method is one transaction, and a change is logged in the brain's log in the same one.
The records are in `_records`, the rules every engine keeps alike in `_rules`, the contract in
`_protocols`; each engine is a few private modules (`_sqlite*`, `_memory*`, split the same way),
and `_registry` maps URL schemes to them. PostgreSQL can follow: a module providing a
`StateEngine` and its `EngineKind`, and one line in `ENGINES`.
"""

from ._memory import MemoryStateEngine
from ._protocols import (
    AnswerTokenStore,
    AuditEventStore,
    BodyStore,
    BrainLog,
    CompensationStore,
    DecisionStore,
    Durability,
    EngineKind,
    EngineOpener,
    EscalationStore,
    InteractionStore,
    KillStore,
    PauseStore,
    ReadinessStore,
    StateEngine,
    TaskStore,
    TelemetryStore,
    TokenStore,
    UsageStore,
)
from ._records import (
    KEY_STORE_UNVERIFIED,
    BodyRecord,
    ClaimGrant,
    Compensation,
    CompensationDraft,
    DecisionReplaced,
    DecisionTiming,
    KeptKeys,
    KeptRequest,
    LogAction,
    LogEntry,
    Presence,
    Rebinding,
    Reversal,
    TaskKey,
    TaskTiming,
    TokenRecord,
    UsageSummary,
)
from ._registry import ENGINES, engine_kind, open_engine, sqlite_path, sqlite_url
from ._sessions import SessionRecord, SessionStore
from ._sqlite import SqliteStateEngine
from ._transitions import OutcomeReport, StoredTask, created

__all__ = [
    "ENGINES",
    "KEY_STORE_UNVERIFIED",
    "AnswerTokenStore",
    "AuditEventStore",
    "BodyRecord",
    "BodyStore",
    "BrainLog",
    "ClaimGrant",
    "Compensation",
    "CompensationDraft",
    "CompensationStore",
    "DecisionReplaced",
    "DecisionStore",
    "DecisionTiming",
    "Durability",
    "EngineKind",
    "EngineOpener",
    "EscalationStore",
    "InteractionStore",
    "KeptKeys",
    "KeptRequest",
    "KillStore",
    "LogAction",
    "LogEntry",
    "MemoryStateEngine",
    "OutcomeReport",
    "PauseStore",
    "Presence",
    "ReadinessStore",
    "Rebinding",
    "Reversal",
    "SessionRecord",
    "SessionStore",
    "SqliteStateEngine",
    "StateEngine",
    "StoredTask",
    "TaskKey",
    "TaskStore",
    "TaskTiming",
    "TelemetryStore",
    "TokenRecord",
    "TokenStore",
    "UsageStore",
    "UsageSummary",
    "created",
    "engine_kind",
    "open_engine",
    "sqlite_path",
    "sqlite_url",
]
