"""The brain's settings: one model, passed to its constructor.

Nothing here reads the environment or a file: the entry point (`swarm brain serve`) reads
flags, `$SWARM_HOME` and the `[brain]` section of `swarm.toml`, and builds this.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared_protocol.config import AnomalyConfig, ConsensusConfig, PrivacyConfig, RolloutConfig
from shared_protocol.decisions import ApprovalThresholds

from .exceptions import BadDatabaseUrl
from .state import Durability, engine_kind


class BrainSettings(BaseModel):
    """Everything the brain needs, resolved by its entry point. Unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field(default="127.0.0.1", description="Address to listen on; put a TLS proxy in front for others.")
    port: int = Field(default=8765, ge=0, le=65535, description="0: any free port.")
    database_url: str = Field(
        default="",
        description="Where the state is kept (sqlite:///ABSOLUTE/PATH, memory://); the entry point defaults it.",
    )
    durability: Durability = Field(
        default="power_loss", description="power_loss: synchronous=FULL; crash: NORMAL (WAL either way)."
    )
    heartbeat_interval_s: float = Field(default=2.0, gt=0, description="How often bodies heartbeat.")
    failsafe_s: float = Field(default=10.0, gt=0, description="A body that cannot reach the brain this long is killed.")
    decision_deadline_s: int = Field(default=3600, gt=0, description="Default time to answer a decision.")
    lease_s: int = Field(default=300, gt=0, description="How long a claimed task is held before it is requeued.")
    keepalive_s: float = Field(default=5.0, gt=0, description="A comment on idle event streams this often.")
    sweep_interval_s: float = Field(default=1.0, gt=0, description="How often deadlines and leases are checked.")
    event_buffer: int = Field(default=256, ge=1, description="Events held for a slow subscriber before it is cut off.")
    backup_interval_s: float = Field(
        default=3600.0, ge=0, description="Back up the state database this often; 0: never."
    )
    backup_keep: int = Field(
        default=48, ge=1, description="How many backups to keep (next to the database, in backups/)."
    )
    public_url: str = Field(
        default="", description="The brain's outside address, for Twilio callbacks and answer links; empty: none."
    )
    audit_retention_days: int = Field(
        default=90,
        ge=1,
        le=36_500,
        description="Days of the bodies' audit events the brain keeps (each body's newest stays).",
    )
    telemetry_retention_days: int = Field(
        default=30, ge=1, le=36_500, description="Days of telemetry (the uptime minutes) the brain keeps."
    )
    metrics_public: bool = Field(
        default=False, description="GET /metrics without a token ([metrics] public); else an approver's or captain's."
    )
    usd_per_hour: float | None = Field(
        default=None, ge=0, description="The [limits] usd_per_hour, for /metrics' budget gauges; None: unknown."
    )
    max_request_bytes: int = Field(
        default=64 * 1024, ge=1024, description="The largest request body the API reads (413 beyond it)."
    )
    max_audit_request_bytes: int = Field(
        default=1024 * 1024, ge=1024, description="The largest audit batch a body may ship at once (413 beyond it)."
    )
    readiness_max_age_s: int = Field(
        default=86_400, gt=0, description="A readiness report lets live work through for this long ([rollout])."
    )
    session_idle_s: int = Field(
        default=1800, gt=0, le=86_400, description="A dashboard session unused this long ends (log in again)."
    )
    session_max_s: int = Field(
        default=12 * 3600, gt=0, le=30 * 86_400, description="A dashboard session ends this long after its login."
    )
    session_cookie_secure: Literal["auto", "always", "never"] = Field(
        default="auto",
        description="The session cookie's Secure flag: auto: when the page was served over https (or public_url "
        "is https); always; never (plain http beyond 127.0.0.1 is not advised).",
    )
    thresholds: ApprovalThresholds = Field(default_factory=ApprovalThresholds)
    consensus: ConsensusConfig = Field(
        default_factory=ConsensusConfig, description="[consensus]: the panel, quorum and deadline of consensus."
    )
    captain_agents: list[str] = Field(
        default_factory=list[str],
        description="The [[agents]] whose role is captain: their reviewer tokens veto, and break a deadlock on a "
        "decision that needs no human.",
    )
    anomaly: AnomalyConfig = Field(default_factory=AnomalyConfig)
    rollout: RolloutConfig = Field(default_factory=RolloutConfig)
    """`[rollout]`: shadow, then canary steps, for an agent's new logic version (`rollouts.py`)."""
    privacy: PrivacyConfig = Field(default_factory=PrivacyConfig)
    """`[privacy]`: personal data in tasks and decisions is kept encrypted per subject, and redacted in pages."""
    privacy_key_store: str = Field(
        default="",
        description="The subject key store's file; empty: privacy.db beside a SQLite database (never in its "
        "backups), in memory for another engine.",
    )
    """`[anomaly]`: the detector that pauses an agent leaving its baseline (`anomaly_watch.py`)."""

    @field_validator("database_url")
    @classmethod
    def _names_an_engine(cls, url: str) -> str:
        """Checked when the settings are built, so a bad URL stops the brain before it opens or creates anything."""
        if url:
            try:
                engine_kind(url)
            except BadDatabaseUrl as exc:
                raise ValueError(exc.problem) from None
        return url
