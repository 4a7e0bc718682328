"""Phase 0's readiness gate on the wire: the checklist `swarm readiness` computes, and a captain's override.

    POST /v1/readiness             (captain)  ReadinessRequest -> ReadinessStatus
    GET  /v1/readiness             (any)      ReadinessStatus: the latest report and the overrides in force
    POST /v1/readiness/overrides   (captain)  OverrideRequest -> ReadinessOverride (audited, expiring)

`swarm readiness --json` prints `{"ready", "items": [{"name", "ok", "detail", "fix"}]}`: the
request without `drill_at`. An item's `name` is stable (`kill_drill`, `audit_chains`,
`snapshots`, `restore_drill`, `limits`, `sandbox`, `escalation`, `consensus`, and
`shadow_period:<agent>` for each configured agent); scripts branch on names, not on `detail`.

LEAD: these classes are the same, field for field, as issue 17 A's in `shared_protocol/brain.py`
(branch h-brain17); once that is merged, delete this module and import them from `brain`.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import Field, model_validator

from ._base import Identifier, NonEmpty, ProtocolModel

MAX_OVERRIDE_S = 30 * 86_400
"""The longest a readiness override may run (30 days): a stopgap, never a standing exception."""


class ReadinessItem(ProtocolModel):
    name: NonEmpty
    ok: bool
    detail: str = ""
    fix: str = ""


class ReadinessRequest(ProtocolModel):
    """`POST /v1/readiness` (captain): the result of `swarm readiness`; `ready` must be every item's `ok`."""

    ready: bool
    items: list[ReadinessItem] = Field(min_length=1, max_length=200)
    drill_at: datetime | None = None

    @model_validator(mode="after")
    def _ready_means_every_item(self) -> ReadinessRequest:
        failing = [item.name for item in self.items if not item.ok]
        if self.ready and failing:
            raise ValueError(f"ready is true but these items fail: {', '.join(failing)}")
        if not self.ready and not failing:
            raise ValueError("ready is false but every item holds")
        return self


class ReadinessReport(ProtocolModel):
    """A stored readiness report: the request, who sent it and when."""

    at: datetime
    by: str
    ready: bool
    items: list[ReadinessItem]
    drill_at: datetime | None = None


class OverrideRequest(ProtocolModel):
    """`POST /v1/readiness/overrides` (captain: a human): allow live work for one agent and logic version."""

    agent: Identifier
    logic_version: Identifier
    reason: NonEmpty
    for_s: int = Field(default=86_400, gt=0, le=MAX_OVERRIDE_S, description="How long it holds (at most 30 days).")


class ReadinessOverride(ProtocolModel):
    id: str
    agent: str
    logic_version: str
    reason: str
    by: str
    at: datetime
    expires_at: datetime


class ReadinessStatus(ProtocolModel):
    """`GET /v1/readiness`: the latest report, whether it lets live work through now, and the overrides in force."""

    report: ReadinessReport | None
    live_ready: bool
    """The latest report is ready and younger than `[rollout] readiness_max_age_s`."""
    max_age_s: int
    overrides: list[ReadinessOverride]
