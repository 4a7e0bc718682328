"""The audit event: one per tool call (allowed, refused or failed) and per human action.

Bodies keep them in a keyed hash chain (`mac` = HMAC over `prev_mac` and the canonical
JSON of every other field) and ship them to the brain as they are.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from ._base import ProtocolModel

AuditOutcome = Literal["ok", "refused", "failed", "shadow"]
AuditKind = Literal["tool_call", "human", "checkpoint", "system"]


class Impact(ProtocolModel):
    """What an action measurably did (or would do): never declared by the agent."""

    files: int = 0
    api_calls: int = 0
    usd: float = 0.0


NO_IMPACT = Impact()
"""Nothing done (models are immutable, so one instance serves everywhere)."""


class AuditEvent(ProtocolModel):
    seq: int = Field(ge=1)
    id: str
    ts: str = Field(description="UTC, ISO 8601 with microseconds.")
    kind: AuditKind
    body_id: str
    agent: str
    session: str
    tool: str | None = None
    arguments: dict[str, Any] = Field(default_factory=dict, description="File contents replaced by sha256 and size.")
    rationale: str
    decision_id: str | None = None
    mode: Literal["live", "shadow"] = "live"
    outcome: AuditOutcome
    code: str | None = None
    rule: str | None = None
    message: str | None = None
    files: list[str] = Field(default_factory=list)
    impact: Impact = Field(default_factory=Impact)
    duration_ms: float = 0.0
    detail: dict[str, Any] = Field(default_factory=dict)
    prev_mac: str
    mac: str

    def signed_payload(self) -> dict[str, Any]:
        """Every field the MAC covers: all but `mac` itself."""
        return self.model_dump(mode="json", exclude={"mac"})
