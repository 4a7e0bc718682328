"""`GET /metrics`: the brain's Prometheus metrics, in the text exposition format, from its own registry.

Each brain builds its own `CollectorRegistry` (never the process-global one), holding:

- counted as the brain ingests them (reset when it restarts, as Prometheus counters may be):
  `swarm_tool_calls_total{agent,logic_version,tool,outcome,code}` and
  `swarm_tool_call_duration_seconds{tool,outcome}` (histogram), from the bodies' audit events;
  `swarm_llm_call_duration_seconds{agent,model,outcome}` (histogram), from the runners' usage records that carry a
  `duration_ms` (each record once per process: a record resent after a restart, or after `USAGE_IDS_KEPT` newer
  ones, is observed again);
- read from the state at each scrape (`BrainMetrics.render` takes one snapshot, then writes it out):
  `swarm_llm_calls_total{agent,model,outcome}`, `swarm_llm_tokens_total{agent,model,kind}`,
  `swarm_llm_cost_usd_total{agent,model}` (usage records are never deleted: these only grow),
  `swarm_tasks{state}`, `swarm_task_duration_seconds{state}` (histogram: created to finished),
  `swarm_decision_answer_seconds{state}` (histogram: created to its first answer, by the state it ended in),
  `swarm_decisions{state}`, `swarm_decisions_pending`, `swarm_kill_switch_engaged`, `swarm_bodies_connected`,
  `swarm_spend_usd_last_hour`, `swarm_spend_limit_usd_per_hour` and `swarm_budget_used_ratio` (when the brain
  knows the `[limits] usd_per_hour` it serves under).

The metric names are the contract of `deploy/grafana-swarm.json`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Container, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import get_args

import anyio
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from shared_protocol import AuditEvent, RefusalCode
from shared_protocol.brain import TaskState, UsageRecord
from shared_protocol.decisions import DecisionState

from .events import EventHub
from .settings import BrainSettings
from .state import DecisionTiming, StateEngine, TaskTiming, UsageSummary

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
"""What `generate_latest` writes: the classic text format (every Prometheus reads it)."""

MAX_LABEL_LENGTH = 64
"""A label value a body chose (agent, logic version, tool, refusal code, model) is kept only up to this long."""
MAX_NEW_LABEL_VALUES = 20
"""Values per label that the brain does not know beforehand (a tool name, a logic version, a made-up code) kept
as themselves in one brain process; the rest are counted under `other`."""
OTHER = "other"


class _LabelValues:
    """The values one label may take: the `known` ones, and the first `MAX_NEW_LABEL_VALUES` others not longer than
    `MAX_LABEL_LENGTH`, admitted for the life of the process (so a series never moves into `other` and back); every
    other value is `other`. This bounds the series a body can make, whatever its events say."""

    def __init__(self, known: Iterable[str] = ()) -> None:
        self._known = set(known)
        self._admitted: set[str] = set()

    def __call__(self, value: str, *, known: Container[str] = ()) -> str:
        if value in self._known or value in known or value in self._admitted:
            return value
        if len(value) > MAX_LABEL_LENGTH or len(self._admitted) >= MAX_NEW_LABEL_VALUES:
            return OTHER
        self._admitted.add(value)
        return value


TOOL_CALL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
TASK_BUCKETS = (60.0, 300.0, 900.0, 1800.0, 3600.0, 4 * 3600.0, 12 * 3600.0, 86_400.0, 7 * 86_400.0)
LLM_CALL_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)
DECISION_BUCKETS = (1.0, 10.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 4 * 3600.0, 12 * 3600.0, 86_400.0)
USAGE_IDS_KEPT = 20_000
"""Usage record ids remembered as observed, so that a batch resent (with new records after the old) counts once."""


@dataclass(kw_only=True)
class _Snapshot:
    """What one scrape read from the state."""

    usage: Sequence[UsageSummary] = ()
    timings: Sequence[TaskTiming] = ()
    decision_timings: Sequence[DecisionTiming] = ()
    tasks: dict[TaskState, int] = field(default_factory=dict[TaskState, int])
    verified_succeeded: int = 0
    decisions: dict[DecisionState, int] = field(default_factory=dict[DecisionState, int])
    pending: int = 0
    killed: bool = False
    connected: int = 0
    hour_usd: float = 0.0


class _StateCollector:
    """Writes out the snapshot `BrainMetrics.render` took (a collector's `collect` cannot await the state)."""

    def __init__(self, limit_usd_per_hour: float | None, *, models: _LabelValues) -> None:
        self.snapshot = _Snapshot()
        self._limit = limit_usd_per_hour
        self._models = models
        self._finished: dict[str, tuple[str, float]] = {}
        """Task id: the state and duration it was first seen finished with (this process): observed once, so that
        the histogram never goes down (a finished task put back by an undo stays counted)."""
        self._answered: dict[str, tuple[str, float]] = {}
        """Decision id: the state and seconds to its first answer, as first seen answered (this process), likewise
        (a decision vetoed after its approval stays counted as approved)."""

    def collect(self) -> Iterable[Metric]:
        s = self.snapshot
        calls = CounterMetricFamily(
            "swarm_llm_calls", "LLM calls reported by runners", labels=["agent", "model", "outcome"]
        )
        tokens = CounterMetricFamily(
            "swarm_llm_tokens", "LLM tokens reported by runners", labels=["agent", "model", "kind"]
        )
        usd = CounterMetricFamily("swarm_llm_cost_usd", "LLM money spent (USD)", labels=["agent", "model"])
        # (one sample per label set: outcomes are summed into the token and cost series)
        cost: dict[tuple[str, str], float] = {}
        counted: dict[tuple[str, str, str], float] = {}
        called: dict[tuple[str, str, str], float] = {}
        for row in s.usage:
            # (agents are bound to the tokens that posted their usage; a made-up model name is folded)
            model = self._models(row.model)
            key3 = (row.agent, model, row.outcome)
            called[key3] = called.get(key3, 0.0) + row.calls
            cost[(row.agent, model)] = cost.get((row.agent, model), 0.0) + row.usd
            for kind, n in (
                ("input", row.input_tokens),
                ("output", row.output_tokens),
                ("cache_read", row.cache_read_tokens),
                ("cache_write", row.cache_write_tokens),
            ):
                key = (row.agent, model, kind)
                counted[key] = counted.get(key, 0.0) + n
        for key in sorted(called):
            calls.add_metric(list(key), called[key])
        for key in sorted(cost):
            usd.add_metric(list(key), cost[key])
        for key in sorted(counted):
            tokens.add_metric(list(key), counted[key])
        yield calls
        yield tokens
        yield usd

        tasks = GaugeMetricFamily(
            "swarm_tasks", "Tasks by state; verified: succeeded with a verified outcome", labels=["state", "verified"]
        )
        for state in get_args(TaskState):
            count = s.tasks.get(state, 0)
            if state == "succeeded":
                tasks.add_metric([state, "true"], s.verified_succeeded)
                count -= s.verified_succeeded
            tasks.add_metric([state, "false"], count)
        yield tasks
        for t in s.timings:
            if t.task_id not in self._finished:
                self._finished[t.task_id] = (t.state, max((t.finished_at - t.created_at).total_seconds(), 0.0))
        yield _histogram(
            "swarm_task_duration_seconds",
            "Finished tasks: seconds from created to finished (each task once, as first seen finished)",
            list(self._finished.values()),
            TASK_BUCKETS,
        )
        for d in s.decision_timings:
            if d.decision_id not in self._answered:
                self._answered[d.decision_id] = (d.state, max((d.answered_at - d.created_at).total_seconds(), 0.0))
        yield _histogram(
            "swarm_decision_answer_seconds",
            "Answered decisions: seconds from created to the first answer (rules, a person, the panel or the "
            "deadline), by the state first seen",
            list(self._answered.values()),
            DECISION_BUCKETS,
        )
        decisions = GaugeMetricFamily("swarm_decisions", "Decisions by state", labels=["state"])
        for state in get_args(DecisionState):
            decisions.add_metric([state], s.decisions.get(state, 0))
        yield decisions
        yield GaugeMetricFamily("swarm_decisions_pending", "Decisions waiting for an answer", value=s.pending)
        yield GaugeMetricFamily(
            "swarm_kill_switch_engaged", "1 while the brain's kill switch is engaged", value=s.killed
        )
        yield GaugeMetricFamily("swarm_bodies_connected", "Bodies connected to the brain", value=s.connected)
        yield GaugeMetricFamily("swarm_spend_usd_last_hour", "LLM money spent in the last hour (USD)", value=s.hour_usd)
        if self._limit is not None:
            yield GaugeMetricFamily(
                "swarm_spend_limit_usd_per_hour", "The [limits] usd_per_hour the brain serves under", value=self._limit
            )
            if self._limit > 0:
                yield GaugeMetricFamily(
                    "swarm_budget_used_ratio",
                    "Spend in the last hour over the hourly limit",
                    value=s.hour_usd / self._limit,
                )


def _histogram(
    name: str, documentation: str, observations: Sequence[tuple[str, float]], bounds: Sequence[float]
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, documentation, labels=["state"])
    for state in sorted({label for label, _ in observations}):
        values = [v for label, v in observations if label == state]
        buckets = [(str(bound), float(sum(1 for v in values if v <= bound))) for bound in bounds]
        buckets.append(("+Inf", float(len(values))))
        family.add_metric([state], buckets, sum_value=sum(values))
    return family


class BrainMetrics:
    """One brain's registry: tool-call counters fed by `observe_audit`, the rest read from the state by `render`."""

    def __init__(
        self, state: StateEngine, *, settings: BrainSettings, hub: EventHub, now: Callable[[], datetime]
    ) -> None:
        self._state = state
        self._settings = settings
        self._hub = hub
        self._now = now
        self._lock = anyio.Lock()
        self.registry = CollectorRegistry()
        self._tool_calls = Counter(
            "swarm_tool_calls",
            "Tool calls of the bodies, by outcome and refusal code (from their audit events)",
            ["agent", "logic_version", "tool", "outcome", "code"],
            registry=self.registry,
        )
        self._tool_seconds = Histogram(
            "swarm_tool_call_duration_seconds",
            "Tool call duration as the body measured it",
            ["tool", "outcome"],
            buckets=TOOL_CALL_BUCKETS,
            registry=self.registry,
        )
        self._llm_seconds = Histogram(
            "swarm_llm_call_duration_seconds",
            "LLM call (attempt) duration as the runner timed it (from its usage records)",
            ["agent", "model", "outcome"],
            buckets=LLM_CALL_BUCKETS,
            registry=self.registry,
        )
        self._agents = _LabelValues()
        self._logic_versions = _LabelValues([""])
        self._tools = _LabelValues([""])
        self._codes = _LabelValues(["", *(code.value for code in RefusalCode)])
        self._models = _LabelValues()
        self._usage_seen: OrderedDict[str, None] = OrderedDict()
        self._collector = _StateCollector(settings.usd_per_hour, models=self._models)
        self.registry.register(self._collector)

    def observe_audit(self, events: Iterable[AuditEvent], *, agents: Container[str] = ()) -> None:
        """Count the tool calls among newly stored audit events (a resent event is not stored twice, so not counted
        twice). Labels a body chose are bounded (`_LabelValues`): `agents` (those with a token) and the protocol's
        refusal codes always pass, a few other values are kept, the rest count as `other`."""
        for event in events:
            if event.kind != "tool_call":
                continue
            tool = self._tools(event.tool or "")
            self._tool_calls.labels(
                self._agents(event.agent, known=agents),
                self._logic_versions(event.logic_version or ""),
                tool,
                event.outcome,
                self._codes(event.code or ""),
            ).inc()
            self._tool_seconds.labels(tool, event.outcome).observe(max(event.duration_ms, 0.0) / 1000)

    def observe_usage(self, records: Iterable[UsageRecord], *, agents: Container[str] = ()) -> None:
        """Time the LLM calls among stored usage records that carry a `duration_ms`, each record id once (of the
        last `USAGE_IDS_KEPT`). Labels are bounded as `observe_audit`'s (agents with a token pass, models are folded
        past `MAX_NEW_LABEL_VALUES`)."""
        for record in records:
            if record.id in self._usage_seen:
                continue
            self._usage_seen[record.id] = None
            if len(self._usage_seen) > USAGE_IDS_KEPT:
                self._usage_seen.popitem(last=False)
            if record.duration_ms is None:
                continue
            self._llm_seconds.labels(
                self._agents(record.agent, known=agents), self._models(record.model), record.outcome
            ).observe(record.duration_ms / 1000)

    async def render(self) -> bytes:
        """The text exposition of every metric, read from the state now."""
        state = self._state
        now = self._now()
        recent = now - timedelta(seconds=self._settings.failsafe_s)
        streaming = self._hub.connected()
        snapshot = _Snapshot(
            usage=await state.usage_summary(),
            timings=await state.task_timings(),
            decision_timings=await state.decision_timings(),
            tasks=await state.count_tasks(),
            verified_succeeded=await state.count_verified_succeeded(),
            decisions=await state.count_decisions(),
            pending=await state.count_pending_decisions(now),
            killed=(await state.kill_state()).engaged,
            connected=sum(
                1
                for b in await state.bodies()
                if b.left_at is None and (b.body_id in streaming or b.last_heartbeat >= recent)
            ),
            hour_usd=sum(row.usd for row in await state.usage_summary(since=now - timedelta(hours=1), until=now)),
        )
        async with self._lock:  # (one snapshot written out at a time)
            self._collector.snapshot = snapshot
            return generate_latest(self.registry)
