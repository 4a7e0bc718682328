"""Test helpers: a clock, a per-role client, audit chains, a server-sent event reader, a live brain, and a URL
for each kind of state engine."""

from __future__ import annotations

import atexit
import hashlib
import json
import shutil
import tempfile
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import anyio
import httpx

from brain_server import BrainSettings, SqliteStateEngine, issue_token, run
from brain_server.state import sqlite_path, sqlite_url
from brain_server.wake.setup import WakeSetup
from shared_protocol import AuditEvent
from shared_protocol.audit import attestation, attestation_key
from shared_protocol.brain import Role, Task
from shared_protocol.verdict import CheckReport, pytest_start

START = datetime(2030, 1, 1, tzinfo=UTC).timestamp()

ENGINE_URLS: dict[str, Callable[[Path], str]] = {
    "memory": lambda _: "memory://",
    "sqlite": lambda directory: sqlite_url(new_database(directory / "brain.db")),
}
"""A new, empty database of each registered kind of engine, in a test's directory."""

_TEMPLATE: list[Path] = []


def new_database(path: Path) -> Path:
    """`path`, where nothing is yet: a new, empty brain database, copied from one this process created and migrated
    through the engine once (a migration commits some sixty times, each a flush to disk: a tenth of a second or
    more for every test that opens a new database). A file already there is left as it is."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(_template(), path)
    return path


def _template() -> Path:
    if not _TEMPLATE:
        directory = Path(tempfile.mkdtemp(prefix="swarm-test-brain-"))
        atexit.register(shutil.rmtree, directory, True)
        db = directory / "brain.db"

        async def create() -> None:
            await (await SqliteStateEngine.open(db)).close()

        with ThreadPoolExecutor(1) as pool:  # (its own event loop: the caller may be inside one)
            pool.submit(anyio.run, create).result()
        assert not Path(f"{db}-wal").exists(), "the closed template still has a WAL: copying the file alone loses it"
        _TEMPLATE.append(db)
    return _TEMPLATE[0]


def engine_url(scheme: str, directory: Path) -> str:
    """The URL of a new database of the engine `scheme` names (a kind without a line above fails its tests)."""
    return ENGINE_URLS[scheme](directory)


class Clock:
    """Time that moves only when a test says so."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


Issuer = Callable[[Role, str, str | None], Awaitable[str]]
"""Issues a token of a role with a label (bound to an agent, if one is named), and returns it."""


class BrainClient:
    """An httpx client plus the token of each role; `as_=None` sends no token."""

    def __init__(self, client: httpx.AsyncClient, tokens: dict[str, str], *, issue: Issuer | None = None) -> None:
        self.client = client
        self.tokens = tokens
        self._issue = issue

    async def add_token(self, name: str, role: Role = "body", *, agent: str | None = None) -> str:
        """Another token, sent with `as_=name` (a second body needs its own: a body token speaks for one body);
        with `agent`, bound to that agent (an autonomous agent's token: it claims shadow or live work as it)."""
        assert self._issue is not None, "this client cannot issue tokens"
        self.tokens[name] = await self._issue(role, name, agent)
        return self.tokens[name]

    def headers(self, as_: str | None) -> dict[str, str]:
        if as_ is None:
            return {}
        token = self.tokens.get(as_, as_)
        return {"Authorization": f"Bearer {token}"}

    async def get(self, path: str, *, as_: str | None) -> httpx.Response:
        return await self.client.get(path, headers=self.headers(as_))

    async def post(self, path: str, body: Any = None, *, as_: str | None) -> httpx.Response:
        return await self.client.post(path, json=body, headers=self.headers(as_))


def ok(response: httpx.Response, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.text)
    return response.json()


REVIEWER_LV = "lv-reviewer000001"
"""The logic version the tests' reviewer agents vote at (`live_reviewers` makes it live)."""


async def live_reviewers(api: BrainClient, names: list[str], version: str = REVIEWER_LV) -> None:
    """A human captain's readiness override for each reviewer agent of `names` at `version`, as a user sets it up
    (`swarm readiness override --agent NAME`): its first vote counts, without a shadow period of its own."""
    for name in names:
        override = {"agent": name, "logic_version": version, "reason": "reviewed by hand", "for_s": 30 * 86_400}
        ok(await api.post("/v1/readiness/overrides", override, as_="captain"), 201)


def refused(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.text)
    data = response.json()
    assert data["code"] == code, data
    return data


def audit_event(body_id: str, seq: int, prev_mac: str, *, salt: str = "") -> AuditEvent:
    """An event whose `mac` is a stand-in (the brain only checks linkage, never recomputes a MAC)."""
    mac = hashlib.sha256(f"{body_id}|{seq}|{prev_mac}|{salt}".encode()).hexdigest()
    return AuditEvent(
        seq=seq,
        id=f"act_{body_id}_{seq}",
        ts=datetime.fromtimestamp(START + seq, UTC).isoformat(timespec="microseconds"),
        kind="tool_call",
        body_id=body_id,
        agent="claude",
        session="ses_1",
        tool="write_file",
        arguments={"path": f"f{seq}.txt"},
        rationale="testing",
        outcome="ok",
        prev_mac=prev_mac,
        mac=mac,
    )


def verify_key(body_id: str) -> str:
    """The verification key a test's body `body_id` registers (derived from a stand-in audit key, as a body's is)."""
    return attestation_key(f"audit key of {body_id}".encode(), body_id)


def registration(body_id: str, **changes: Any) -> dict[str, Any]:
    """A `POST /v1/bodies/register` body of `body_id`, with its verification key."""
    body = {"body_id": body_id, "workspace": "/w", "hostname": "h", "version": "1", "verify_key": verify_key(body_id)}
    return {**body, **changes}


def rerun_event(
    body_id: str,
    seq: int,
    prev_mac: str,
    *,
    action_id: str,
    at: float,
    argv: list[str],
    exit_code: int = 0,
    task_id: str | None = None,
    attest: bool = True,
    report: CheckReport | Literal["as_the_body"] | None = "as_the_body",
    **changes: Any,
) -> AuditEvent:
    """A body's audit event of a `run_command` (the runner's re-run of task `task_id`'s acceptance command, unless
    `changes` say otherwise), written at `at` (a timestamp), attested under the body's `verify_key` (`attest`).
    `report`: the pytest report in its `detail` (by default, for a pytest argv, the one a body's reporter gives a
    run of one test that ends with `exit_code`; None: none)."""
    if report == "as_the_body":
        report = None
        if pytest_start(argv) is not None:
            report = CheckReport(
                verdict="passed" if exit_code == 0 else "failed",
                reason="" if exit_code == 0 else "1 failed and 0 errors of 1 collected",
                collected=1,
                passed=1 if exit_code == 0 else 0,
                failed=0 if exit_code == 0 else 1,
                session_status=exit_code,
                exit_code=exit_code,
                finished=True,
            )
    detail: dict[str, Any] = {"exit_code": exit_code, "timed_out": False}
    if report is not None:
        detail["report"] = report.model_dump(mode="json")
    event = audit_event(body_id, seq, prev_mac, salt=action_id).model_copy(
        update={
            "id": action_id,
            "ts": datetime.fromtimestamp(at, UTC).isoformat(timespec="microseconds"),
            "agent": "w1",
            "tool": "run_command",
            "arguments": {"argv": argv, "rationale": "verify"},
            "detail": detail,
            "task_id": task_id,
        }
    )
    event = event.model_copy(update=changes)
    return event.model_copy(update={"attest": attestation(verify_key(body_id), event)}) if attest else event


def audit_chain(body_id: str, count: int) -> list[AuditEvent]:
    events: list[AuditEvent] = []
    prev = "genesis-" + body_id
    for seq in range(1, count + 1):
        event = audit_event(body_id, seq, prev)
        events.append(event)
        prev = event.mac
    return events


def batch(body_id: str, events: list[AuditEvent]) -> dict[str, Any]:
    return {"body_id": body_id, "events": [e.model_dump(mode="json") for e in events]}


def decision_request(body_id: str = "body-a", **changes: Any) -> dict[str, Any]:
    request: dict[str, Any] = {
        "summary": "rewrite the billing module",
        "rationale": "the tests fail on refunds",
        "confidence": 0.9,
        "impact": {"files": 1, "api_calls": 0, "usd": 0},
        "options": ["rewrite", "patch"],
        "agent": "claude",
        "body_id": body_id,
    }
    request.update(changes)
    return request


@dataclass(kw_only=True, frozen=True)
class SseEvent:
    name: str
    data: Any


async def sse_events(response: httpx.Response) -> AsyncIterator[SseEvent]:
    """Parse text/event-stream; comments come out as events named `:`."""
    name, data = "message", ""
    async for line in response.aiter_lines():
        if line.startswith(":"):
            yield SseEvent(name=":", data=line[1:].strip())
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data += line[5:].strip()
        elif line == "" and data:
            yield SseEvent(name=name, data=json.loads(data))
            name, data = "message", ""


async def issue_in(db: Path, role: Role, label: str, agent: str | None = None) -> str:
    """A token issued through an engine of its own on `db`, as the CLI does while a brain serves the file."""
    state = await SqliteStateEngine.open(db)
    try:
        return await issue_token(state, role=role, label=label, at=datetime.now(UTC), agent=agent)
    finally:
        await state.close()


@dataclass(kw_only=True, frozen=True)
class LiveBrain:
    url: str
    db: Path
    tokens: dict[str, str]
    stop: anyio.Event
    """Set it to shut the brain down as SIGTERM would."""

    async def add_token(self, name: str, role: Role = "body", *, agent: str | None = None) -> str:
        """Another token (labelled `name`, bound to `agent` if given), in `tokens[name]` for every client."""
        self.tokens[name] = await issue_in(self.db, role, name, agent)
        return self.tokens[name]

    @asynccontextmanager
    async def client(self) -> AsyncGenerator[BrainClient]:
        """A client on its own connection pool."""
        async with httpx.AsyncClient(base_url=self.url, timeout=10) as client:
            yield BrainClient(
                client, self.tokens, issue=lambda role, label, agent: issue_in(self.db, role, label, agent)
            )


@asynccontextmanager
async def live_brain(settings: BrainSettings, *, wake: WakeSetup | None = None) -> AsyncGenerator[LiveBrain]:
    """The daemon (`brain_server.run`: uvicorn, sweeper, SQLite file) on 127.0.0.1, an ephemeral port."""
    db = sqlite_path(settings.database_url)
    assert db is not None, "a live brain here is on a SQLite file, where tokens are issued beside it"
    state = await SqliteStateEngine.open(new_database(db))  # (as the CLI issues them while a brain serves the file)
    try:
        now = datetime.now(UTC)
        tokens = {
            role: await issue_token(state, role=role, label=f"{role}-1", at=now)
            for role in ("body", "approver", "captain")
        }
    finally:
        await state.close()
    ready = anyio.Event()
    stop = anyio.Event()
    urls: list[str] = []

    def on_ready(url: str) -> None:
        urls.append(url)
        ready.set()

    live = settings.model_copy(update={"host": "127.0.0.1", "port": 0})
    async with anyio.create_task_group() as group:
        group.start_soon(lambda: run(live, on_ready=on_ready, stop=stop, handle_signals=False, wake=wake))
        with anyio.fail_after(10):
            await ready.wait()
        try:
            yield LiveBrain(url=urls[0], db=db, tokens=tokens, stop=stop)
        finally:
            stop.set()


def row_of(task: Task | None) -> Task | None:
    """`task` without its history (which only grows: a reversal adds to it, never takes from it)."""
    return None if task is None else task.model_copy(update={"history": []})
