"""The audit event: one per tool call (allowed, refused or failed) and per human action.

Bodies keep them in a keyed hash chain (`mac` = HMAC over `prev_mac` and the canonical
JSON of every other field) and ship them to the brain as they are.
"""

from __future__ import annotations

import hashlib
import hmac
import json
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
TASK_META_KEY = "swarm/task"
"""The `_meta` key naming the task a runner's own call is for (its re-run of the acceptance command:
`{"swarm/origin": "runner", "swarm/task": "task_…"}`); kept on the audit event as `task_id`."""

ENV_META_KEY = "swarm/env"
FRESH_ENV_META_KEY = "swarm/fresh_env"
"""The `_meta` keys of the runner's own `run_command` calls in an agent's body that name the env dirs the command
gets: `"task"` (the model's, which its commands wrote), `"check"` (the check's own, which no model command ever
sees; with `"swarm/fresh_env": true` emptied first). Without them the runner's call gets none (hidden)."""
ENV_CHOICES = ("task", "check")

MAX_TURN_TEXT = 4096
"""What an audit event keeps of the model's text for its turn (characters; the rest is cut, marked)."""


class ModelTurn(ProtocolModel):
    """The model turn a call came from (`_meta` `swarm/turn`): its stated reasoning and the tool call's id."""

    step: int = Field(ge=0, description="The turn's number in the task (0 first).")
    text: str = Field(default="", description="What the model said with the call, cut to MAX_TURN_TEXT.")
    tool_call_id: str = Field(default="", description="The provider's id of the tool call.")


SIGNED_WHEN_SET = ("logic_version", "turn", "task_id")
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
    task_id: str | None = Field(
        default=None, description="The task a runner's own call was for (`_meta` `swarm/task`): its acceptance re-run."
    )
    prev_mac: str
    mac: str
    attest: str | None = Field(
        default=None,
        description="The body's attestation for the brain (`attestation`), added as the event is shipped; not part "
        "of the chain (never in `signed_payload`).",
    )

    def signed_payload(self) -> dict[str, Any]:
        """Every field the MAC covers: all but `mac` (and `attest`), and the `SIGNED_WHEN_SET` ones only when set."""
        payload = self.model_dump(mode="json", exclude={"mac", "attest"})
        for key in SIGNED_WHEN_SET:
            if payload[key] is None:
                del payload[key]
        return payload


ATTEST_KEY_LABEL = b"swarm-brain-attest\0"


def attestation_key(audit_key: bytes, body_id: str) -> str:
    """The key (hex) a body attests its shipped events with, derived from its audit chain's key: the brain learns it
    when the body first registers and never holds the chain's key itself (what it could forge is its own record of
    the body's word, never the body's local chain)."""
    return hmac.new(audit_key, ATTEST_KEY_LABEL + body_id.encode(), hashlib.sha256).hexdigest()


def attestation_message(signed: bytes, mac: str) -> bytes:
    """What an attestation signs: the canonical JSON of an event's `signed_payload()` (as its chain MAC signs it),
    a NUL, and its `mac`."""
    return signed + b"\0" + mac.encode()


def attestation(key: str, event: AuditEvent) -> str:
    """An event's attestation under `key` (`attestation_key`): HMAC-SHA-256 over what its chain MAC signs (which
    holds `prev_mac`, so its place in the chain) and its `mac` (`attestation_message`)."""
    signed = json.dumps(event.signed_payload(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    message = attestation_message(signed.encode(errors="surrogatepass"), event.mac)
    return hmac.new(bytes.fromhex(key), message, hashlib.sha256).hexdigest()


def attested(key: str, event: AuditEvent) -> bool:
    """Whether `event.attest` is its attestation under `key` (compared in constant time)."""
    return event.attest is not None and hmac.compare_digest(event.attest, attestation(key, event))
