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


TURN_META_KEY = "swarm/turn"
ORIGIN_META_KEY = "swarm/origin"
"""The MCP request `_meta` keys the agent runner sends with the tool calls it makes for its model:
`{"swarm/origin": "model", "swarm/turn": {"step": 3, "text": "...", "tool_call_id": "call_1"}}`."""

MAX_TURN_TEXT = 4096
"""What an audit event keeps of the model's text for its turn (characters; the rest is cut, marked)."""


class ModelTurn(ProtocolModel):
    """The model turn a call came from (`_meta` `swarm/turn`): its stated reasoning and the tool call's id."""

    step: int = Field(ge=0, description="The turn's number in the task (0 first).")
    text: str = Field(default="", description="What the model said with the call, cut to MAX_TURN_TEXT.")
    tool_call_id: str = Field(default="", description="The provider's id of the tool call.")


SIGNED_WHEN_SET = ("logic_version", "turn")
"""Fields added after chains were written: an event's MAC covers them only when they are set, so that events
written before them (and those outside agent mode) sign and verify as they always did."""


MAX_DURATION_MS = 1e12
"""An audit event's `duration_ms` (about 30 years): a body measures it with a monotonic clock, so it is always finite;
a negative one (never written by a body) is accepted and counted as zero, as chains signed before the bound were."""


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
    duration_ms: float = Field(default=0.0, le=MAX_DURATION_MS, allow_inf_nan=False)
    detail: dict[str, Any] = Field(default_factory=dict)
    logic_version: str | None = Field(
        default=None, description="The agent's logic version (`swarm body --agent`); None outside agent mode."
    )
    turn: ModelTurn | None = Field(default=None, description="The model turn a runner's call came from.")
    prev_mac: str
    mac: str

    def signed_payload(self) -> dict[str, Any]:
        """Every field the MAC covers: all but `mac` itself, and the `SIGNED_WHEN_SET` ones only when set."""
        payload = self.model_dump(mode="json", exclude={"mac"})
        for key in SIGNED_WHEN_SET:
            if payload[key] is None:
                del payload[key]
        return payload
