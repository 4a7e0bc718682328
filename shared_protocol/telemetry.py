"""KPIs over a window: what `GET /v1/kpi?since_s=N` answers and `swarm kpi` prints.

Every ratio is None when its denominator is zero (no finished task, no money spent): "no data",
never a made-up 0 or 1. The formulas are documented in the README ("KPIs") and in `brain_server.kpi`.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from ._base import ProtocolModel

DEFAULT_KPI_WINDOW_S = 7 * 86_400
"""`swarm kpi` and `GET /v1/kpi` look back this far unless told (`--since`, `since_s`)."""
MAX_KPI_WINDOW_S = 366 * 86_400


class Uptime(ProtocolModel):
    """Minutes seen up over the minutes observed (from the window's start, or the first minute seen if later)."""

    subject: str = Field(description="`brain`, or a body id.")
    agents: list[str] = Field(default_factory=list[str], description="The agents that claimed tasks through it.")
    up_minutes: int
    observed_minutes: int
    ratio: float | None


class KpiReport(ProtocolModel):
    """The KPIs of the window [`since`, `until`]."""

    since: datetime
    until: datetime
    brain_uptime: Uptime
    body_uptime: list[Uptime]
    agent_uptime: float | None = Field(description="The mean of the bodies' ratios; None with no body.")
    tasks_finished: int = Field(description="Tasks whose outcome (succeeded, failed, abandoned) fell in the window.")
    tasks_verified_succeeded: int
    task_success_rate: float | None
    decisions: int = Field(description="Decisions asked in the window.")
    decisions_approved_judged: int = Field(description="Approved decisions of the window linked to a finished task.")
    decisions_approved_accurate: int = Field(description="...whose task succeeded, verified, and was never reversed.")
    decision_accuracy: float | None
    spend_usd: float = Field(description="LLM money spent in the window (every usage record, shadow work included).")
    value_delivered_usd: float = Field(description="`value_usd` of the tasks verified succeeded in the window.")
    roi: float | None = Field(description="value_delivered_usd / spend_usd.")
    task_spend_usd: float = Field(description="Usage billed to the window's finished tasks.")
    task_tokens: int = Field(description="Input + output tokens billed to the window's finished tasks.")
    cost_per_task_usd: float | None
    tokens_per_task: float | None
    cost_per_decision_usd: float | None = Field(description="spend_usd / decisions.")
    llm_calls: int
