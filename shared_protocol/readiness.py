"""Phase 0's readiness gate on the wire: the checklist `swarm readiness` computes, and a captain's override.

    POST /v1/readiness             (captain)  ReadinessReport: the latest report; live claims need a ready one
    GET  /v1/readiness             (any)      ReadinessState: that report and the overrides in force
    POST /v1/readiness/overrides   (captain)  ReadinessOverrideRequest -> ReadinessOverride (audited, expiring)

`swarm readiness --json` prints `{"ready", "items": [{"name", "ok", "detail", "fix"}]}`: the
report without `drill_at`. An item's `name` is stable (`kill_drill`, `audit_chains`,
`snapshots`, `restore_drill`, `limits`, `sandbox`, `escalation`, `consensus`, and
`shadow_period:<agent>` for each configured agent); scripts branch on names, not on `detail`.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import Field, model_validator

from ._base import Identifier, NonEmpty, ProtocolModel

MAX_OVERRIDE_S = 30 * 86400
"""The longest a readiness override may run (30 days): it is a stopgap, never a standing exception."""


class ReadinessItem(ProtocolModel):
    """One item of the checklist: whether it holds, what was found, and how to make it hold."""

    name: NonEmpty
    ok: bool
    detail: str
    fix: str = ""
    """Empty when `ok`."""


class ReadinessReport(ProtocolModel):
    """The whole checklist. `ready` holds exactly when every item does (a report that says otherwise is refused)."""

    ready: bool
    items: list[ReadinessItem] = Field(min_length=1)
    drill_at: datetime | None = None
    """When the kill drill this report relies on ran (None: never)."""

    @model_validator(mode="after")
    def _ready_means_every_item(self) -> ReadinessReport:
        if self.ready != all(item.ok for item in self.items):
            raise ValueError("ready must be true exactly when every item is ok")
        return self


class ReadinessOverrideRequest(ProtocolModel):
    """A human captain lets one agent's logic version go live while readiness fails, for a while, with a reason."""

    agent: Identifier
    logic_version: NonEmpty
    reason: NonEmpty
    for_s: int = Field(gt=0, le=MAX_OVERRIDE_S)


class ReadinessOverride(ProtocolModel):
    """An override as the brain keeps it: bound to (agent, logic_version), void after `expires_at`."""

    agent: str
    logic_version: str
    reason: str
    by: str
    at: datetime
    expires_at: datetime


class ReadinessState(ProtocolModel):
    """`GET /v1/readiness`: the latest report (None: none yet), when it came, and the overrides in force."""

    report: ReadinessReport | None = None
    reported_at: datetime | None = None
    overrides: list[ReadinessOverride] = Field(default_factory=list[ReadinessOverride])
