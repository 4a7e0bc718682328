"""The readiness checklist: Phase 0 against this machine and its brain, one function per item.

Each `check_*` returns a `ReadinessItem` (name, ok, detail, fix); `report(items)` makes the
`ReadinessRequest` (what `POST /v1/readiness` takes). The items and what makes each hold:

    kill_drill           the last kill drill (`swarm readiness --drill`) refused a write within 5 s, recently
    audit_chains         every body's audit chain on this machine verifies, each workspace's and each agent's
                         (`swarm audit verify --workspace DIR` / `--agent NAME`)
    snapshots            every workspace has a snapshot under an hour old
    restore_drill        every workspace's last restore drill passed in under 5 minutes, recently
    limits               [limits], [policy], [audit], [snapshots] no looser than the specification's defaults
    sandbox              the configured sandbox backend can isolate a command here
    escalation           a wake-up channel is configured (`swarm doctor`'s checks) and a test page went out
    consensus            [consensus] has a panel that can reach its quorum (rule reviewers, reviewer agents,
                         humans; the embedded default is five rule reviewers, quorum 3)
    secrets              no secret in the config is a raw value: every secret key is a reference that resolves
                         (`swarm secrets check`), no `file:` secret is readable by others, no URL carries a password
    robots_gate          the compliance gate's robots.txt check is on when an agent can use the network
    pii_redaction        personal data is detected and kept only encrypted per subject or redacted ([privacy]
                         redaction)
    shadow_period:NAME   the logic version of agent NAME going live (the configured one) shadowed `[rollout]
                         min_shadow_tasks` tasks over `[rollout] shadow_days` since its first shadow task (from the
                         brain's tasks), or is the brain's live version of NAME already (its rollout); one the brain
                         rolled back fails

"Recently" is within `DRILL_MAX_AGE_S` (7 days). Checks read state; none changes it,
except that opening a workspace's trail finishes what a killed restore left (as every command does).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal, cast

import httpx
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from body_mcp import Admin, BodySettings, SwarmError
from body_mcp.settings import AgentProfile
from body_mcp.snapshots import SnapshotError, SnapshotSettings, Snapshotter
from body_mcp.state import StatePaths, all_workspace_states
from shared_protocol.agents import logic_version
from shared_protocol.brain import ReadinessItem, ReadinessRequest
from shared_protocol.config import SwarmConfig
from shared_protocol.consensus import HUMAN_SEAT, valid_quorum
from shared_protocol.secrets import SecretResolver

from ._context import agent_profile
from ._drill_records import DrillRecord, DrillRecords
from .secrets_cmds import ReferenceCheck

KILL_DRILL_MAX_S = 5.0
"""The specification: a kill takes effect end to end in under 5 s."""
RESTORE_MAX_S = 300.0
"""The specification: a restore takes under 5 minutes."""
SNAPSHOT_MAX_AGE_S = 3600.0
"""The specification: snapshots hourly."""
DRILL_MAX_AGE_S = 7 * 86400.0
"""A kill or restore drill, or a test page, older than this no longer counts: run `swarm readiness --drill` weekly."""

OVERRIDE_HINT = "or a human captain runs `swarm readiness override --agent NAME --reason TEXT`"


def _item(name: str, ok: bool, detail: str, fix: str = "") -> ReadinessItem:
    return ReadinessItem(name=name, ok=ok, detail=detail, fix="" if ok else fix)


def report(items: Sequence[ReadinessItem], *, drill_at: datetime | None) -> ReadinessRequest:
    return ReadinessRequest(ready=all(item.ok for item in items), items=list(items), drill_at=drill_at)


def _age(then: datetime, now: datetime) -> str:
    seconds = max((now - then).total_seconds(), 0.0)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


# -- the bodies' state on this machine ---------------------------------------------------------


@dataclass(kw_only=True, frozen=True)
class WorkspaceState:
    workspace: Path
    paths: StatePaths
    settings: BodySettings
    """How `swarm audit verify --workspace DIR` opens it."""


@dataclass(kw_only=True, frozen=True)
class AgentState:
    """An agent's body state (`$SWARM_HOME/agents/<key>/`), named by its identity file."""

    name: str
    paths: StatePaths
    settings: BodySettings
    """How `swarm audit verify --agent NAME` opens it (without a logic version if the agent is no longer configured)."""
    configured: bool
    """Whether `[[agents]]` still has an agent of this name."""

    @property
    def where(self) -> str:
        return f"agent {self.name}" if self.configured else f"agent {self.name} (no longer in [[agents]])"


OpenAdmin = Callable[[BodySettings], AbstractContextManager[Admin]]
"""Opens a body's state for the human running the command (`_context.open_admin`)."""


@dataclass(kw_only=True, frozen=True)
class LocalStates:
    """The bodies' state directories readiness looks at, and the ones it could not."""

    found: list[WorkspaceState]
    agents: list[AgentState] = field(default_factory=list[AgentState])
    problems: list[str] = field(default_factory=list[str])
    """State that cannot be checked: an unreadable or damaged identity."""
    skipped: int = 0
    """Workspace states whose workspace directory is gone (nothing left to snapshot or serve)."""


def _present(workspace: Path | None) -> Path | None:
    """The workspace if its directory is there."""
    return workspace if workspace is not None and workspace.is_dir() else None


def _agent_profile(config: SwarmConfig, name: str) -> tuple[AgentProfile, bool]:
    """The agent as `swarm audit verify --agent NAME` opens it, and whether the config still has it; an agent
    removed from the config is still opened by the name its identity records (as `swarm kill` does)."""
    if all(agent.name != name for agent in config.agents):
        return AgentProfile(name=name, logic_version=None), False
    return agent_profile(config, name), True


def local_states(home: Path, config: SwarmConfig) -> LocalStates:
    found, unreadable = all_workspace_states(home)
    live: list[WorkspaceState] = []
    agents: list[AgentState] = []
    skipped = 0
    for paths in found:
        if paths.agent is not None:
            profile, configured = _agent_profile(config, paths.agent)
            settings = BodySettings(workspace=None, home=home, config=config, agent_profile=profile)
            agents.append(AgentState(name=paths.agent, paths=paths, settings=settings, configured=configured))
        elif (workspace := _present(paths.workspace)) is not None:
            settings = BodySettings(workspace=workspace, home=home, config=config)
            live.append(WorkspaceState(workspace=workspace, paths=paths, settings=settings))
        else:
            skipped += 1
    problems = [f"{ident.parent}: its {ident.name} is unreadable or damaged" for ident in unreadable]
    return LocalStates(found=live, agents=agents, problems=problems, skipped=skipped)


def _none_found(name: str, states: LocalStates) -> ReadinessItem | None:
    if states.found or states.agents or states.problems:
        return None
    return _item(
        name,
        False,
        "no body has state on this machine: nothing to check",
        "run `swarm readiness` where the agents' bodies run (the same SWARM_HOME)",
    )


def check_audit_chains(states: LocalStates, open_admin: OpenAdmin) -> ReadinessItem:
    if (empty := _none_found("audit_chains", states)) is not None:
        return empty
    failed = list(states.problems)
    trails = [(str(state.workspace), state.settings) for state in states.found]
    trails += [(state.where, state.settings) for state in states.agents]
    for where, settings in trails:
        try:
            with open_admin(settings) as admin:
                verified = admin.verify()
        except (SwarmError, OSError) as exc:
            failed.append(f"{where}: {_describe(exc)}")
            continue
        if not verified.ok:
            failed.append(f"{where}: {verified.summary()}")
    if failed:
        return _item(
            "audit_chains",
            False,
            f"{len(failed)} of {len(trails) + len(states.problems)} trails do not verify: {'; '.join(failed)}",
            "see `swarm audit verify --workspace DIR` (or `--agent NAME`); a broken chain is set aside with "
            "`swarm audit reset --reason TEXT`",
        )
    detail = f"{len(trails)} audit chain(s) verified"
    if states.agents:
        detail += f" ({len(states.found)} workspace(s); {', '.join(state.where for state in states.agents)})"
    return _item("audit_chains", True, detail)


def _describe(exc: BaseException) -> str:
    from ._errors import describe

    return describe(exc)


def _newest_snapshot(paths: StatePaths) -> datetime | None:
    infos = Snapshotter(SnapshotSettings.for_workspace(paths)).list_snapshots()
    intact = [info.created_at for info in infos if info.damaged is None]
    return max(intact) if intact else None


def check_snapshots(states: LocalStates, *, now: datetime) -> ReadinessItem:
    if (empty := _none_found("snapshots", states)) is not None:
        return empty
    stale: list[str] = []
    for state in states.found:
        try:
            newest = _newest_snapshot(state.paths)
        except (SnapshotError, OSError) as exc:
            stale.append(f"{state.workspace}: {_describe(exc)}")
            continue
        if newest is None:
            stale.append(f"{state.workspace}: no snapshot")
        elif (now - newest).total_seconds() >= SNAPSHOT_MAX_AGE_S:
            stale.append(f"{state.workspace}: newest is {_age(newest, now)} old")
    if stale:
        return _item(
            "snapshots",
            False,
            f"{len(stale)} workspace(s) without a snapshot under an hour old: {'; '.join(stale)}",
            "a serving body snapshots hourly ([snapshots] interval_s); or `swarm snapshot create --workspace DIR`",
        )
    return _item("snapshots", True, f"{len(states.found)} workspace(s) have a snapshot under an hour old")


def _drill_problem(record: DrillRecord | None, *, limit_s: float, now: datetime, max_age_s: float) -> str | None:
    if record is None:
        return "never drilled"
    if not record.ok:
        return f"failed {_age(record.at, now)} ago: {record.detail}"
    if record.seconds is not None and record.seconds >= limit_s:
        return f"took {record.seconds:.2f} s (must be under {limit_s:g} s), {_age(record.at, now)} ago"
    if (now - record.at).total_seconds() > max_age_s:
        return f"last passed {_age(record.at, now)} ago (older than {_age(now - timedelta(seconds=max_age_s), now)})"
    return None


def check_kill_drill(records: DrillRecords, *, now: datetime, max_age_s: float) -> ReadinessItem:
    record = records.kill
    problem = _drill_problem(record, limit_s=KILL_DRILL_MAX_S, now=now, max_age_s=max_age_s)
    if problem is not None or record is None:
        return _item(
            "kill_drill",
            False,
            f"kill drill: {problem}",
            "run `swarm readiness --drill` (a throwaway brain and drill body; production agents are not stopped)",
        )
    return _item(
        "kill_drill", True, f"a write was refused {record.seconds:.3f} s after the kill, {_age(record.at, now)} ago"
    )


def check_restore_drill(
    states: LocalStates, records: DrillRecords, *, now: datetime, max_age_s: float
) -> ReadinessItem:
    if (empty := _none_found("restore_drill", states)) is not None:
        return empty
    failed: list[str] = []
    slowest = 0.0
    for state in states.found:
        record = records.restore.get(str(state.workspace))
        problem = _drill_problem(record, limit_s=RESTORE_MAX_S, now=now, max_age_s=max_age_s)
        if problem is not None:
            failed.append(f"{state.workspace}: {problem}")
        elif record is not None and record.seconds is not None:
            slowest = max(slowest, record.seconds)
    if failed:
        return _item(
            "restore_drill",
            False,
            f"{len(failed)} workspace(s) without a passing restore drill: {'; '.join(failed)}",
            "run `swarm readiness --drill` (or `swarm snapshot drill --workspace DIR`; it needs a snapshot)",
        )
    return _item("restore_drill", True, f"{len(states.found)} restore drill(s) passed, the slowest in {slowest:.2f} s")


# -- configuration -----------------------------------------------------------------------------

Bound = Literal["at_most", "at_least"]

SPEC_LIMITS: tuple[tuple[str, float, Bound], ...] = (
    ("limits.max_files_per_action", 10, "at_most"),
    ("limits.max_api_calls_per_action", 1000, "at_most"),
    ("limits.max_usd_per_action", 100, "at_most"),
    ("limits.calls_per_minute", 100, "at_most"),
    ("limits.usd_per_hour", 10, "at_most"),
    ("limits.file_mods_per_hour", 50, "at_most"),
    ("policy.approval_min_files", 5, "at_most"),
    ("policy.approval_min_usd", 50, "at_most"),
    ("policy.human_above_usd", 50, "at_most"),
    ("policy.human_below_confidence", 0.70, "at_least"),
    ("policy.decision_deadline_s", 3600, "at_most"),
    ("brain.decision_deadline_s", 3600, "at_most"),
    ("audit.retention_days", 90, "at_least"),
    ("brain.audit_retention_days", 90, "at_least"),
    ("snapshots.interval_s", 3600, "at_most"),
)
"""The specification's defaults ("Defaults from the specification" in the product brief) and which way is
tighter. Configurable, never looser: a limit of 0 allows nothing, which is tighter still."""


def _setting(config: SwarmConfig, key: str) -> float:
    section, name = key.split(".")
    value: object = getattr(getattr(config, section), name)
    assert isinstance(value, int | float)
    return float(value)


def check_limits(config: SwarmConfig) -> ReadinessItem:
    looser: list[str] = []
    for key, spec, bound in SPEC_LIMITS:
        value = _setting(config, key)
        if key == "snapshots.interval_s" and value == 0:
            looser.append(f"{key} = 0 (never; the specification: hourly)")
        elif (value > spec) if bound == "at_most" else (value < spec):
            word = "at most" if bound == "at_most" else "at least"
            looser.append(f"{key} = {value:g} (the specification: {word} {spec:g})")
    if looser:
        return _item(
            "limits",
            False,
            f"{len(looser)} setting(s) looser than the specification: {'; '.join(looser)}",
            "set them in swarm.toml to the specification's value or tighter (`swarm init --force` writes the defaults)",
        )
    return _item("limits", True, f"{len(SPEC_LIMITS)} settings within the specification")


def check_sandbox(config: SwarmConfig) -> ReadinessItem:
    """`swarm doctor`'s sandbox check, for the backend swarm.toml chooses: a probe command runs through it."""
    from sandbox import NoIsolationAvailable, select_sandbox

    try:
        backend = select_sandbox(config.sandbox.backend)
    except NoIsolationAvailable as exc:
        return _item(
            "sandbox",
            False,
            f"no sandbox can isolate commands here, so run_command refuses them: {exc}",
            "install bubblewrap (apt-get install bubblewrap) and allow unprivileged user namespaces",
        )
    return _item("sandbox", True, f"commands run in {backend.name}")


async def check_escalation(
    config: SwarmConfig,
    secrets: SecretResolver,
    http: httpx.AsyncClient,
    records: DrillRecords,
    *,
    now: datetime,
    max_age_s: float,
) -> ReadinessItem:
    """Configured: `swarm doctor`'s wake-up checks pass and at least one channel is filled in. Tested: the test page
    of `swarm readiness --drill` reached the first level of the ladder, recently."""
    from brain_server.wake.doctor import check_wake
    from brain_server.wake.registry import CHANNELS

    fix_config = (
        "configure a channel ([discord], [twilio], [ntfy] or [email]) and [escalation] levels; see `swarm doctor`"
    )
    if not any(factory.filled_in(config) for factory in CHANNELS.factories.values()):
        return _item("escalation", False, "no wake-up channel is configured: nobody would be paged", fix_config)
    problems = [f"{f.subject}: {f.message}" for f in await check_wake(config, secrets, http) if not f.ok]
    if problems:
        return _item("escalation", False, f"wake-up is not ready: {'; '.join(problems)}", fix_config)
    problem = _drill_problem(records.escalation, limit_s=float("inf"), now=now, max_age_s=max_age_s)
    if problem is not None or records.escalation is None:
        return _item(
            "escalation",
            False,
            f"configured, but the test page: {problem}",
            "run `swarm readiness --drill` (it sends one test page to the ladder's first level)",
        )
    return _item(
        "escalation",
        True,
        f"configured; a test page went out {_age(records.escalation.at, now)} ago ({records.escalation.detail})",
    )


_URL_PASSWORD = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@")


def _strings(value: object, key: str = "") -> list[tuple[str, str]]:
    if isinstance(value, str):
        return [(key, value)]
    if isinstance(value, dict):
        items = cast(dict[str, object], value).items()
        return [found for name, item in items for found in _strings(item, f"{key}.{name}" if key else name)]
    if isinstance(value, list):
        return [found for i, item in enumerate(cast(list[object], value)) for found in _strings(item, f"{key}.{i}")]
    return []


def check_secrets(config: SwarmConfig, checks: Sequence[ReferenceCheck]) -> ReadinessItem:
    """`checks`: `secrets_cmds.check_references(config, ...)`, each secret reference resolved."""
    problems = [f"{c.key} = {c.ref} ({c.reason})" for c in checks if not c.ok]
    for check in checks:
        if check.ok and check.ref.startswith("file:"):
            try:
                mode = Path(check.ref.removeprefix("file:")).stat().st_mode
            except OSError:
                continue
            if mode & 0o077:
                problems.append(f"{check.key}: {check.ref} is readable by others (mode {mode & 0o777:o})")
    problems += [
        f"{key}: a URL with a password in it"
        for key, value in _strings(config.model_dump(mode="json"))
        if _URL_PASSWORD.search(value)
    ]
    if problems:
        return _item(
            "secrets",
            False,
            f"{len(problems)} secret problem(s): {'; '.join(problems)}",
            "run `swarm secrets check`; keep secrets in env:/file: (chmod 600)/vault:/aws: references only",
        )
    return _item("secrets", True, f"{len(checks)} secret reference(s), all resolve; none written in clear")


def check_robots_gate(config: SwarmConfig) -> ReadinessItem:
    """Agents that can reach the network (run_command offered, [sandbox] allowed_domains set) do so through the
    robots.txt check."""
    networked = [a.name for a in config.agents if "run_command" in a.tools] if config.sandbox.allowed_domains else []
    if not networked:
        return _item("robots_gate", True, "no agent can use the network ([sandbox] allowed_domains or run_command)")
    if not config.compliance.robots:
        return _item(
            "robots_gate",
            False,
            f"agents with network ({', '.join(networked)}) are not held to robots.txt ([compliance] robots = false)",
            "set [compliance] robots = true",
        )
    return _item(
        "robots_gate",
        True,
        f"agents with network ({', '.join(networked)}) are held to robots.txt as {config.compliance.user_agent}",
    )


def check_pii_redaction(config: SwarmConfig) -> ReadinessItem:
    """`[privacy] redaction` is on: personal data is kept only encrypted per subject, or redacted."""
    if not config.privacy.redaction:
        return _item(
            "pii_redaction",
            False,
            "[privacy] redaction = false: personal data in audit events, tasks and decisions is kept in clear",
            "set [privacy] redaction = true",
        )
    return _item(
        "pii_redaction",
        True,
        "personal data is encrypted per subject in what bodies and the brain keep, and redacted in pages",
    )


def check_consensus(config: SwarmConfig) -> ReadinessItem:
    """`[consensus]` has a panel that can reach its quorum: rule reviewers (always vote), agents configured with
    the reviewer or captain role, human seats; a quorum over half the panel and no more than the seats that vote."""
    consensus = config.consensus
    roles = {agent.name: agent.role for agent in config.agents}
    rules = [seat for seat in consensus.panel if seat.startswith("rules:")]
    humans = [seat for seat in consensus.panel if seat.startswith(HUMAN_SEAT)]
    agents = [seat for seat in consensus.panel if roles.get(seat) in ("reviewer", "captain")]
    unseated = [seat for seat in consensus.panel if seat not in rules + humans + agents]
    voters = len(rules) + len(humans) + len(agents)
    seats = (
        f"panel of {len(consensus.panel)} ({len(rules)} rule reviewers, {len(agents)} reviewer agents, "
        f"{len(humans)} humans), quorum {consensus.quorum}, deadline {consensus.deadline_s} s"
    )
    if unseated or not valid_quorum(len(consensus.panel), consensus.quorum) or voters < consensus.quorum:
        why = f"; no reviewer or captain agent for {', '.join(unseated)}" if unseated else ""
        return _item(
            "consensus",
            False,
            f"[consensus] cannot reach its quorum: {seats}{why}",
            "set [consensus] panel to seats that vote (rules:…, reviewer agents, human:LABEL) and quorum to more "
            f"than half of them, {OVERRIDE_HINT}",
        )
    return _item("consensus", True, seats)


# -- the shadow period --------------------------------------------------------------------------


@dataclass(kw_only=True, frozen=True)
class ShadowFact:
    """One shadow run the brain recorded: which agent and logic version worked which task, when."""

    task_id: str
    agent: str
    logic_version: str
    at: datetime


class _ShadowRunView(BaseModel):
    """What readiness reads of a `ShadowRun` (issue 17 A's `Task.shadow_runs`); other fields are ignored."""

    model_config = ConfigDict(extra="ignore")
    at: datetime
    agent: str
    logic_version: str | None = None


class _TaskView(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: str
    shadow_runs: list[_ShadowRunView] = Field(default_factory=list[_ShadowRunView])


class _TaskListView(BaseModel):
    model_config = ConfigDict(extra="ignore")
    tasks: list[_TaskView]


_TASKS = TypeAdapter(list[_TaskView] | _TaskListView)


async def shadow_runs(http: httpx.AsyncClient, url: str, token: str) -> list[ShadowFact] | str:
    """Every shadow run on the brain (`GET /v1/tasks`), or why they could not be read (the shadow items then fail).

    Read with views of only the fields it needs, so a brain that adds fields to its tasks does not break it.
    """
    try:
        response = await http.get(f"{url.rstrip('/')}/v1/tasks", headers={"Authorization": f"Bearer {token}"})
    except httpx.HTTPError as exc:
        return f"the brain is unreachable ({type(exc).__name__}): its shadow runs could not be read"
    if response.status_code != 200:
        return f"the brain answered GET /v1/tasks with {response.status_code}: its shadow runs could not be read"
    try:
        parsed = _TASKS.validate_json(response.content)
    except ValidationError:
        return "the brain's GET /v1/tasks answer is not a list of tasks: its shadow runs could not be read"
    tasks = parsed.tasks if isinstance(parsed, _TaskListView) else parsed
    return [
        ShadowFact(task_id=task.id, agent=run.agent, logic_version=run.logic_version or "", at=run.at)
        for task in tasks
        for run in task.shadow_runs
    ]


@dataclass(kw_only=True, frozen=True)
class RolloutFact:
    """What the brain's rollout of an agent says (`GET /v1/agents/{name}/rollout`)."""

    live_version: str | None
    rolled_back: tuple[str, ...] = ()
    candidate: str | None = None
    next: str = ""
    """What the candidate's next step needs, as the brain says."""


class _RolloutStateView(BaseModel):
    model_config = ConfigDict(extra="ignore")
    live_version: str | None = None
    rolled_back: list[str] = Field(default_factory=list[str])
    candidate: str | None = None


class _RolloutView(BaseModel):
    model_config = ConfigDict(extra="ignore")
    state: _RolloutStateView
    next: str = ""


async def rollouts(http: httpx.AsyncClient, url: str, token: str, agents: Sequence[str]) -> dict[str, RolloutFact]:
    """The brain's rollout of each of `agents` that has one (an agent none of whose versions claimed has none; a
    brain that cannot say leaves the agent out: its shadow item then goes by the shadow runs alone)."""
    found: dict[str, RolloutFact] = {}
    for agent in agents:
        try:
            response = await http.get(
                f"{url.rstrip('/')}/v1/agents/{agent}/rollout", headers={"Authorization": f"Bearer {token}"}
            )
            view = _RolloutView.model_validate_json(response.content) if response.status_code == 200 else None
        except (httpx.HTTPError, ValidationError):
            view = None
        if view is not None:
            found[agent] = RolloutFact(
                live_version=view.state.live_version,
                rolled_back=tuple(view.state.rolled_back),
                candidate=view.state.candidate,
                next=view.next,
            )
    return found


def _voter_item(name: str, agent: str, role: str, version: str, fact: RolloutFact | None) -> ReadinessItem:
    """A reviewer or captain agent's shadow item: where the brain's rollout has its configured version. A version not
    live yet holds the item (its votes are kept in shadow and count for nothing, so nothing runs on them); one
    rolled back fails it (its votes never count again)."""
    status = f"`swarm rollout status {agent}`"
    if fact is not None and fact.live_version == version:
        return _item(name, True, f"{version}: the brain's live version of {role} agent {agent}: its votes count")
    if fact is not None and version in fact.rolled_back:
        return _item(
            name,
            False,
            f"{version}: the brain rolled this logic version of {role} agent {agent} back: its votes never count "
            f"({status})",
            f"change agent {agent}'s logic (a new version votes in shadow first), or a human captain runs "
            f"`swarm readiness override --agent {agent} --reason ...` while no version of it is live",
        )
    if fact is not None and fact.candidate == version:
        return _item(name, True, f"{version}: {role} agent {agent} votes in shadow, kept and not counted ({fact.next})")
    return _item(
        name,
        True,
        f"{version}: not seen by the brain yet: {role} agent {agent}'s first votes are kept in shadow, not counted, "
        f"until its shadow period or a human captain's promotion ({status})",
    )


def check_shadow_periods(
    config: SwarmConfig,
    runs: Sequence[ShadowFact] | str,
    *,
    now: datetime,
    rollouts: Mapping[str, RolloutFact] | None = None,
) -> list[ReadinessItem]:
    """One item per configured agent, for the logic version going live (the configured one). `runs` is every
    shadow run the brain holds, or why they could not be read; `rollouts` the brain's rollout of each agent."""
    rollout = config.rollout
    if not config.agents:
        return [
            _item(
                "shadow_period",
                False,
                "no agent is configured ([[agents]]): no logic version has shadowed anything",
                "configure [[agents]] and run them in shadow (`swarm agent run --agent NAME --shadow`)",
            )
        ]
    items: list[ReadinessItem] = []
    for agent in config.agents:
        name = f"shadow_period:{agent.name}"
        version = logic_version(agent, config.models[agent.model])
        fact = (rollouts or {}).get(agent.name)
        if agent.role != "worker":  # (a reviewer or captain claims no task: its shadow period is of votes)
            items.append(_voter_item(name, agent.name, agent.role, version, fact))
            continue
        if fact is not None and fact.live_version == version:
            items.append(_item(name, True, f"{version}: the brain's live version of agent {agent.name} (rolled out)"))
            continue
        if fact is not None and version in fact.rolled_back:
            items.append(
                _item(
                    name,
                    False,
                    f"{version}: the brain rolled this logic version back (`swarm rollout status {agent.name}`)",
                    f"change agent {agent.name}'s logic (a new version starts its shadow period), {OVERRIDE_HINT}",
                )
            )
            continue
        if isinstance(runs, str):
            items.append(_item(name, False, f"{version}: {runs}", "pass --brain URL (or SWARM_BRAIN_URL) and a token"))
            continue
        mine = [run for run in runs if run.agent == agent.name and run.logic_version == version]
        tasks = len({run.task_id for run in mine})
        first = min((run.at for run in mine), default=None)
        days = 0.0 if first is None else (now - first).total_seconds() / 86400
        needs = f"needs {rollout.min_shadow_tasks} tasks over {rollout.shadow_days:g} days"
        if tasks >= rollout.min_shadow_tasks and days >= rollout.shadow_days:
            items.append(_item(name, True, f"{version}: {tasks} shadow tasks over {days:.1f} days ({needs})"))
            continue
        since = "none yet" if first is None else f"the first {days:.1f} days ago"
        items.append(
            _item(
                name,
                False,
                f"{version}: {tasks} shadow tasks, {since}; {needs}",
                f"let agent {agent.name} work in shadow (`swarm agent run --agent {agent.name} --shadow`), "
                f"{OVERRIDE_HINT}",
            )
        )
    return items
