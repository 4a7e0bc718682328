"""The brain's anomaly watch: feeds the detector (`anomaly.py`) from what the brain stores, every `[anomaly]
interval_s`, and pauses an agent that leaves its baseline, wakes a human with the numbers, and logs it.

Where each metric comes from (nothing is recorded twice for it):

    tool_calls_per_min    the bodies' audit events (`POST /v1/audit`): kind tool_call, by the body's agent and time
    refusals_per_min      the same events with outcome refused
    file_changes_per_min  the same events with outcome ok: their measured `impact.files`
    spend_usd_per_hour    the runners' usage records (`POST /v1/usage`): usd, by the record's agent and time
    llm_errors_per_min    the same records with outcome rejected (the provider refused or failed the call)
    task_failure_rate     finished tasks (succeeded or failed), by the agent of their last claim and finish time

Each body's events are read after the last sequence number read (from the start of its retained chain when the brain
starts, which rebuilds the baselines; findings about bins that ended before the watch started are not acted on).
Only an agent some token is bound to is paused; the watch never resumes one: a human does.

An audit event counts for the agent the token holding its *body* is bound to (`body_agents`), never for the name in
the event, which the body wrote: an agent's body cannot hide a burst under another name (`swarm:x`), and a body
whose token is bound to no agent (an IDE's) cannot put its calls in an agent's numbers and get that agent paused.
Such a body's events count under `body:<body_id>` (`unbound_key`), which is no agent's name: it is watched and
logged when it leaves its baseline, and pauses nobody. (Usage records and task outcomes already carry the agent the
brain checked against the token: `auth.usage_agents`, `auth.claim_agent`.)
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from itertools import groupby

import anyio

from shared_protocol.brain import AgentPause
from shared_protocol.config import AnomalyConfig

from .anomaly import Detector, Finding
from .exceptions import StateBroken
from .pauses import AgentPauses
from .state import LogEntry, StateEngine, TokenRecord

logger = logging.getLogger(__name__)

Alert = Callable[..., Awaitable[object]]
"""`Brain.raise_alert`."""

_PAGE = 1000

UNBOUND_PREFIX = "body:"


def unbound_key(body_id: str) -> str:
    """The detector's key for the events of a body no agent's token holds: no agent's name (a ':' is in none)."""
    return f"{UNBOUND_PREFIX}{body_id}"


def body_agents(tokens: list[TokenRecord]) -> dict[str, str]:
    """Each body id's agent: the agent of the token holding it (its live token, else the last that held it). A body
    held by a token bound to no agent, or by none, is absent: its events are no agent's."""
    held: dict[str, TokenRecord] = {}
    for token in tokens:  # oldest first: a later (or the live) holder wins
        if token.role != "body" or token.body_id is None:
            continue
        before = held.get(token.body_id)
        if before is None or before.revoked_at is not None or token.revoked_at is None:
            held[token.body_id] = token
    return {body: token.agent for body, token in held.items() if token.agent is not None}


class AnomalyWatch:
    """One per brain: `evaluate` once (tests drive it with their clock), or `run` forever."""

    def __init__(
        self,
        state: StateEngine,
        *,
        config: AnomalyConfig,
        pauses: AgentPauses,
        alert: Alert,
        now: Callable[[], datetime],
    ) -> None:
        self.config = config
        self.detector = Detector(config)
        self._state = state
        self._pauses = pauses
        self._alert = alert
        self._now = now
        self._audit_seq: dict[str, int] = {}
        self._seen_usage: dict[str, datetime] = {}
        self._seen_tasks: dict[str, datetime] = {}
        self._started: datetime | None = None

    async def collect(self) -> None:
        """Feed the detector what arrived since the last call."""
        detector = self.detector
        owners = body_agents(await self._state.tokens())
        for body in await self._state.bodies():
            agent = owners.get(body.body_id) or unbound_key(body.body_id)
            after = self._audit_seq.get(body.body_id, 0)
            while True:
                events = await self._state.audit_events(body.body_id, after_seq=after, limit=_PAGE)
                for event in events:
                    if event.kind != "tool_call":
                        continue
                    at = datetime.fromisoformat(event.ts)
                    detector.record(agent, "tool_calls_per_min", at)
                    if event.outcome == "refused":
                        detector.record(agent, "refusals_per_min", at)
                    elif event.outcome == "ok":
                        detector.record(agent, "file_changes_per_min", at, float(event.impact.files))
                if events:
                    after = events[-1].seq
                if len(events) < _PAGE:
                    break
            self._audit_seq[body.body_id] = after
        horizon = self._now() - timedelta(seconds=3 * self.config.interval_s)
        for record in await self._state.usage():
            if record.id in self._seen_usage:
                continue
            self._seen_usage[record.id] = record.at
            detector.record(record.agent, "spend_usd_per_hour", record.at, record.usd)
            detector.record(record.agent, "llm_errors_per_min", record.at, float(record.outcome == "rejected"))
        for task in await self._state.tasks():
            if task.state not in ("succeeded", "failed") or task.finished_at is None or task.claimed_by is None:
                continue
            if task.id in self._seen_tasks:
                continue
            self._seen_tasks[task.id] = task.finished_at
            detector.record_task(task.claimed_by.agent, task.finished_at, failed=task.state == "failed")
        # A record older than the horizon falls in a bin evaluated already: it would be dropped anyway.
        self._seen_usage = {k: at for k, at in self._seen_usage.items() if at >= horizon}
        self._seen_tasks = {k: at for k, at in self._seen_tasks.items() if at >= horizon}

    async def evaluate(self) -> list[Finding]:
        """Collect, close the bins that ended, and act on what is anomalous: the findings acted on."""
        now = self._now()
        if self._started is None:
            self._started = now
        await self.collect()
        recent = self._started - timedelta(seconds=self.config.interval_s)
        findings = [f for f in self.detector.evaluate(now) if f.bin_end >= recent]
        if not findings:
            return []
        bound = {t.agent for t in await self._state.tokens() if t.agent is not None and t.revoked_at is None}
        acted: list[Finding] = []
        for agent, group in groupby(sorted(findings, key=lambda f: f.agent), key=lambda f: f.agent):
            found = list(group)
            if agent not in bound:
                logger.warning("anomaly for %s, which no token is bound to: %s", agent, found[0].describe())
                continue
            await self._pause(agent, found, now)
            acted += found
        return acted

    async def _pause(self, agent: str, findings: list[Finding], now: datetime) -> None:
        first = findings[0]
        reason = "anomaly: " + "; ".join(f.describe() for f in findings)
        detail: dict[str, object] = {
            f.metric: {
                "value": f.value,
                "median": f.median,
                "robust_sigma": f.scale,
                "threshold": f.threshold,
                "samples": f.samples,
                "bin_start": f.bin_start.isoformat(),
            }
            for f in findings
        }
        detail["sigma"] = self.config.sigma
        pause = AgentPause(agent=agent, reason=reason, by="anomaly", source="anomaly", at=now, detail=detail)
        log = LogEntry(at=now, action="agent_pause", by="anomaly", reason=reason, target=agent, detail=detail)
        _, created = await self._pauses.pause(pause, log)
        if not created:
            return
        facts = {
            f.metric: f"{f.value:.4g} (median {f.median:.4g}, threshold {f.threshold:.4g}, n={f.samples})"
            for f in findings
        }
        await self._alert(
            kind="anomaly",
            body_id=f"agent:{agent}",
            title=f"Agent {agent} paused: {first.metric} left its baseline",
            summary=reason + f". Its bodies refuse every mutating call until a human resumes it: "
            f"swarm resume --agent {agent}",
            facts={"Agent": agent, **facts},
            episode=f"{agent}@{now.isoformat()}",
        )

    async def run(self) -> None:
        """Evaluate every `interval_s`, forever; a failure is logged and tried next time."""
        while True:
            await anyio.sleep(self.config.interval_s)
            try:
                await self.evaluate()
            except StateBroken:
                return
            except Exception:  # top of a daemon loop: the brain keeps serving; the agents stay as they are
                logger.exception("anomaly evaluation failed; trying again in %.0f s", self.config.interval_s)
