"""The brain's HTTP API, as the body and the CLI call it (httpx; every model from `shared_protocol.brain`).

The event stream can also be read in a thread of its own (`BlockingEvents`, real HTTP only): a body hears a kill
there while its event loop runs a call.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Literal, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError

from shared_protocol.brain import (
    AbandonRequest,
    AgentPause,
    AnswerRequest,
    AuditAck,
    AuditBatch,
    BrainStatus,
    CancelRequest,
    ClaimRequest,
    ClaimResponse,
    Decision,
    DecisionList,
    DecisionOverrideRequest,
    DecisionRequest,
    Deregistration,
    ErrorBody,
    HeartbeatResponse,
    KillRequest,
    KillState,
    OutcomeRequest,
    OverrideRequest,
    ParkRequest,
    PauseRequest,
    ReadinessOverride,
    ReadinessRequest,
    ReadinessStatus,
    RebindRequest,
    RebindResult,
    RegisterRequest,
    Registration,
    RenewRequest,
    RenewResponse,
    ResumeRequest,
    ResumeTaskRequest,
    ReversalResult,
    RolloutAction,
    RolloutReport,
    Task,
    TaskList,
    TaskProposals,
    TaskRequest,
    UndoRequest,
    UsageAck,
    UsageBatch,
    UsageTotals,
    VoteRequest,
)
from shared_protocol.privacy import (
    PrivacyErasure,
    PrivacyExport,
    PrivacyMigration,
    PrivacyRequest,
    PrivacyUnerasure,
)
from shared_protocol.telemetry import KpiReport

from .exceptions import SwarmError, UserError

M = TypeVar("M", bound=BaseModel)


class BrainUnavailable(SwarmError):
    """The brain could not be reached, or answered with something that is not its API."""


class BrainRejected(SwarmError):
    """The brain answered with an error: `error.code` says which (auth, conflict, chain gap…)."""

    def __init__(self, status: int, error: ErrorBody) -> None:
        super().__init__(f"brain refused ({status} {error.code.value}): {error.message}")
        self.status = status
        self.error = error


class _EventParser:
    """Server-sent events, a line at a time: `feed` returns (event, data) when a line ends one; a keepalive comment
    is ("keepalive", "")."""

    def __init__(self) -> None:
        self._event = "message"
        self._data: list[str] = []

    def feed(self, line: str) -> tuple[str, str] | None:
        if line.startswith(":"):
            return "keepalive", ""
        if line.startswith("event:"):
            self._event = line[6:].strip()
        elif line.startswith("data:"):
            self._data.append(line[5:].lstrip())
        elif line == "" and self._data:
            found = self._event, "\n".join(self._data)
            self._event = "message"
            self._data = []
            return found
        return None


class BlockingEvents:
    """The brain's event stream, read by blocking calls in the thread that iterates it; `close()`, from any thread,
    ends it (the socket is shut down, so a read waiting in that thread returns at once)."""

    def __init__(self, base_url: str, token: str, body_id: str, *, read_timeout_s: float) -> None:
        self._base_url = base_url
        self._token = token
        self._read_timeout_s = read_timeout_s
        self._params = {"body_id": body_id} if body_id else None
        self._lock = threading.Lock()
        self._socket: socket.socket | None = None
        self.closed = False

    def __iter__(self) -> Iterator[tuple[str, str]]:
        parser = _EventParser()
        # (made here, in the reading thread: a client's TLS set-up costs milliseconds the event loop need not pay)
        http = httpx.Client(
            base_url=self._base_url,
            headers={"Authorization": f"Bearer {self._token}"},
            timeout=httpx.Timeout(self._read_timeout_s, connect=5.0),
        )
        try:
            with http.stream("GET", "/v1/events", params=self._params) as response:
                if response.status_code >= 400:
                    response.read()
                    raise BrainRejected(response.status_code, ErrorBody.model_validate_json(response.content))
                self._hold(response)
                for line in response.iter_lines():
                    found = parser.feed(line)
                    if found is not None:
                        yield found
        except httpx.HTTPError as exc:
            raise BrainUnavailable(f"event stream lost: {exc!r}") from exc
        finally:
            with self._lock:
                self._socket = None
            http.close()

    def _hold(self, response: httpx.Response) -> None:
        """Keep the stream's socket, to shut it down from another thread (closing it would not wake a read)."""
        stream = response.extensions.get("network_stream")
        sock = stream.get_extra_info("socket") if stream is not None else None
        with self._lock:
            self._socket = sock if isinstance(sock, socket.socket) else None
            if self.closed:
                self._shut()

    def close(self) -> None:
        with self._lock:
            self.closed = True
            self._shut()

    def _shut(self) -> None:
        if self._socket is not None:
            with contextlib.suppress(OSError):  # (already gone: the read has ended or will)
                self._socket.shutdown(socket.SHUT_RDWR)


def _reason(exc: httpx.HTTPError) -> str:
    """Why a request got no answer, in words (`ConnectError('All connection attempts failed')` says little)."""
    if isinstance(exc, httpx.ConnectTimeout):
        return "no answer within the connect timeout"
    if isinstance(exc, httpx.TimeoutException):
        return "no answer within the timeout"
    text = str(exc) or type(exc).__name__
    seen: BaseException | None = exc
    for _ in range(8):  # (anyio's "All connection attempts failed" keeps the refusal as its context)
        seen = None if seen is None else seen.__cause__ or seen.__context__
        if isinstance(seen, OSError) and isinstance(seen.errno, int) and seen.errno > 0:
            text = os.strerror(seen.errno)  # (refused, unreachable: the system's own words)
        elif isinstance(seen, OSError) and seen.strerror:
            text = seen.strerror  # (an unknown host: getaddrinfo's words)
    return f"{text} ({type(exc).__name__})"


class BrainClient:
    def __init__(self, base_url: str, token: str, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._base_url = base_url.rstrip("/")
        self._token = token
        self.events_in_thread = transport is None
        """Whether `blocking_events` can be used: real HTTP (an in-process transport serves this event loop only)."""
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}"},
            transport=transport,
            timeout=httpx.Timeout(10.0, connect=5.0),
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, model: type[M], body: BaseModel | None = None) -> M:
        # Sent as the model's own JSON, so its size is what `len(model_dump_json())` says (the brain caps it).
        content = None if body is None else body.model_dump_json().encode()
        headers = None if body is None else {"Content-Type": "application/json"}
        try:
            response = await self._http.request(method, path, content=content, headers=headers)
        except httpx.HTTPError as exc:
            raise BrainUnavailable(f"brain {self._base_url} unreachable: {_reason(exc)}") from exc
        if response.status_code >= 400:
            try:
                error = ErrorBody.model_validate_json(response.content)
            except ValidationError:
                raise BrainUnavailable(f"brain answered {response.status_code} without an error body") from None
            raise BrainRejected(response.status_code, error)
        try:
            return model.model_validate_json(response.content)
        except ValidationError as exc:
            raise BrainUnavailable(f"brain answered something that is not a {model.__name__}") from exc

    async def status(self) -> BrainStatus:
        return await self._call("GET", "/v1/status", BrainStatus)

    async def register(self, request: RegisterRequest) -> Registration:
        return await self._call("POST", "/v1/bodies/register", Registration, request)

    async def heartbeat(self, body_id: str) -> HeartbeatResponse:
        return await self._call("POST", f"/v1/bodies/{body_id}/heartbeat", HeartbeatResponse)

    async def deregister(self, body_id: str) -> Deregistration:
        """A clean exit: the brain marks the body gone (no `body_lost` alert)."""
        return await self._call("POST", f"/v1/bodies/{body_id}/deregister", Deregistration)

    async def ship(self, batch: AuditBatch) -> AuditAck:
        return await self._call("POST", "/v1/audit", AuditAck, batch)

    async def rebind(self, body_id: str, token_id: str, reason: str) -> RebindResult:
        """A captain gives `body_id` to the body token `token_id` (the token that held it is revoked)."""
        request = RebindRequest(token_id=token_id, reason=reason)
        return await self._call("POST", f"/v1/bodies/{body_id}/rebind", RebindResult, request)

    async def kill(self, reason: str) -> KillState:
        return await self._call("POST", "/v1/kill", KillState, KillRequest(reason=reason))

    async def resume(self, reason: str) -> KillState:
        return await self._call("POST", "/v1/resume", KillState, ResumeRequest(reason=reason))

    async def privacy_erase(self, subject: str, reason: str) -> PrivacyErasure:
        """A captain destroys a data subject's key on the brain (the subject goes in the body, never the URL)."""
        return await self._call(
            "POST", "/v1/privacy/erase", PrivacyErasure, PrivacyRequest(subject=subject, reason=reason)
        )

    async def privacy_unerase(self, subject: str, reason: str) -> PrivacyUnerasure:
        """A captain lifts an erased subject's tombstone on the brain (a subject who came back)."""
        return await self._call(
            "POST", "/v1/privacy/unerase", PrivacyUnerasure, PrivacyRequest(subject=subject, reason=reason)
        )

    async def privacy_export(self, subject: str) -> PrivacyExport:
        """A captain reads what the brain holds about a data subject, decrypted."""
        return await self._call("POST", "/v1/privacy/export", PrivacyExport, PrivacyRequest(subject=subject))

    async def privacy_migrate(self) -> PrivacyMigration:
        """A captain has the brain encrypt the personal data of the audit events it stored in clear (once)."""
        return await self._call("POST", "/v1/privacy/migrate", PrivacyMigration, None)

    async def pause_agent(self, agent: str, reason: str) -> AgentPause:
        """A captain pauses one agent: the bodies of its tokens refuse as if killed until it is resumed."""
        return await self._call(
            "POST", f"/v1/agents/{quote(agent, safe='')}/pause", AgentPause, PauseRequest(reason=reason)
        )

    async def resume_agent(self, agent: str, reason: str) -> KillState:
        """A captain (a human) resumes a paused agent; the kill state its bodies obey now."""
        return await self._call(
            "POST", f"/v1/agents/{quote(agent, safe='')}/resume", KillState, PauseRequest(reason=reason)
        )

    async def rollout(self, agent: str) -> RolloutReport:
        """An agent's rollout: its live and candidate logic versions, the candidate's stage and metrics."""
        return await self._call("GET", f"/v1/agents/{quote(agent, safe='')}/rollout", RolloutReport)

    async def rollout_change(self, agent: str, change: Literal["promote", "rollback"], reason: str) -> RolloutReport:
        """A human captain promotes the candidate one stage, or rolls it back."""
        path = f"/v1/agents/{quote(agent, safe='')}/rollout/{change}"
        return await self._call("POST", path, RolloutReport, RolloutAction(reason=reason))

    async def create_decision(self, request: DecisionRequest) -> Decision:
        return await self._call("POST", "/v1/decisions", Decision, request)

    async def get_decision(self, decision_id: str) -> Decision | None:
        try:
            return await self._call("GET", f"/v1/decisions/{decision_id}", Decision)
        except BrainRejected as exc:
            if exc.status == 404:
                return None
            raise

    async def answer(self, decision_id: str, kind: str, reason: str) -> Decision:
        return await self._call("POST", f"/v1/decisions/{decision_id}/{kind}", Decision, AnswerRequest(reason=reason))

    async def vote(self, decision_id: str, request: VoteRequest) -> Decision:
        """`POST /v1/decisions/{id}/votes`: the voter is the token's (a reviewer's agent, or a human)."""
        return await self._call("POST", f"/v1/decisions/{quote(decision_id, safe='')}/votes", Decision, request)

    async def override(self, decision_id: str, request: DecisionOverrideRequest) -> Decision:
        """A captain's veto or force."""
        return await self._call("POST", f"/v1/decisions/{quote(decision_id, safe='')}/override", Decision, request)

    async def decisions(self, *, state: str | None = None) -> list[Decision]:
        """`GET /v1/decisions` (`state=pending`: the inbox, most valuable task first)."""
        query = f"?state={quote(state)}" if state else ""
        return (await self._call("GET", f"/v1/decisions{query}", DecisionList)).root

    async def claim(self, request: ClaimRequest) -> ClaimResponse:
        return await self._call("POST", "/v1/tasks/claim", ClaimResponse, request)

    async def outcome(self, task_id: str, request: OutcomeRequest) -> Task:
        return await self._call("POST", f"/v1/tasks/{task_id}/outcome", Task, request)

    async def renew(self, task_id: str, request: RenewRequest) -> RenewResponse:
        return await self._call("POST", f"/v1/tasks/{task_id}/renew", RenewResponse, request)

    async def park(self, task_id: str, request: ParkRequest) -> Task:
        """An agent's task waits for a decision: no lease, the claim token stays good for `resume_task`."""
        return await self._call("POST", f"/v1/tasks/{quote(task_id, safe='')}/park", Task, request)

    async def resume_task(self, task_id: str, request: ResumeTaskRequest) -> RenewResponse:
        return await self._call("POST", f"/v1/tasks/{quote(task_id, safe='')}/resume", RenewResponse, request)

    async def abandon_parked(self, task_id: str, reason: str) -> Task:
        """The body gives up a parked task of its own without its claim token (its runner lost the task's state)."""
        request = AbandonRequest(reason=reason)
        return await self._call("POST", f"/v1/tasks/{quote(task_id, safe='')}/abandon", Task, request)

    async def post_usage(self, batch: UsageBatch) -> UsageAck:
        return await self._call("POST", "/v1/usage", UsageAck, batch)

    async def create_task(self, request: TaskRequest) -> Task:
        return await self._call("POST", "/v1/tasks", Task, request)

    async def tasks(self, *, state: str | None = None, agent: str | None = None) -> list[Task]:
        """`GET /v1/tasks`, oldest first (a body token: the tasks its body claimed, now or last, only)."""
        query = "&".join(f"{key}={quote(value)}" for key, value in (("state", state), ("agent", agent)) if value)
        return (await self._call("GET", "/v1/tasks" + (f"?{query}" if query else ""), TaskList)).tasks

    async def task(self, task_id: str) -> Task:
        return await self._call("GET", f"/v1/tasks/{quote(task_id, safe='')}", Task)

    async def task_proposals(self, task_id: str) -> TaskProposals:
        """`GET /v1/tasks/{id}/proposals`: the task's decisions ranked (approval voting, Borda count)."""
        return await self._call("GET", f"/v1/tasks/{quote(task_id, safe='')}/proposals", TaskProposals)

    async def cancel_task(self, task_id: str, reason: str) -> Task:
        return await self._call(
            "POST", f"/v1/tasks/{quote(task_id, safe='')}/cancel", Task, CancelRequest(reason=reason)
        )

    async def readiness(self) -> ReadinessStatus:
        return await self._call("GET", "/v1/readiness", ReadinessStatus)

    async def record_readiness(self, request: ReadinessRequest) -> ReadinessStatus:
        """A captain keeps a `swarm readiness` report on the brain (the newest gates live work)."""
        return await self._call("POST", "/v1/readiness", ReadinessStatus, request)

    async def override_readiness(self, request: OverrideRequest) -> ReadinessOverride:
        """A human captain lets one agent's logic version work live without a passing report, until it expires."""
        return await self._call("POST", "/v1/readiness/overrides", ReadinessOverride, request)

    async def usage(self) -> UsageTotals:
        return await self._call("GET", "/v1/usage", UsageTotals)

    async def kpi(self, *, since_s: int | None = None) -> KpiReport:
        """The KPIs over the last `since_s` seconds (default: the brain's, 7 days)."""
        query = "" if since_s is None else f"?since_s={since_s}"
        return await self._call("GET", f"/v1/kpi{query}", KpiReport)

    async def undo(
        self, target_id: str, reason: str, *, force: bool = False, dry_run: bool = False, as_action: str | None = None
    ) -> ReversalResult:
        """Reverse the brain updates of an action or a decision (`nothing_to_reverse` 404 when it has none), kept
        under `as_action` (the workspace's undo action) so that undoing that id redoes both sides."""
        request = UndoRequest(reason=reason, force=force, dry_run=dry_run, as_action=as_action)
        return await self._call("POST", f"/v1/undo/{target_id}", ReversalResult, request)

    async def events(self, body_id: str, *, read_timeout_s: float) -> AsyncIterator[tuple[str, str]]:
        """Server-sent events as (event, data); a keepalive comment yields ("keepalive", ""). `body_id` "": a
        reviewer's stream, which names no body."""
        timeout = httpx.Timeout(read_timeout_s, connect=5.0)
        params = {"body_id": body_id} if body_id else None
        try:
            async with self._http.stream("GET", "/v1/events", params=params, timeout=timeout) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise BrainRejected(response.status_code, ErrorBody.model_validate_json(response.content))
                parser = _EventParser()
                async for line in response.aiter_lines():
                    found = parser.feed(line)
                    if found is not None:
                        yield found
        except httpx.HTTPError as exc:
            raise BrainUnavailable(f"event stream lost: {exc!r}") from exc

    def blocking_events(self, body_id: str, *, read_timeout_s: float) -> BlockingEvents:
        """The event stream as `events` gives it, to be read in a thread of its own (`events_in_thread` only)."""
        if not self.events_in_thread:
            raise UserError("this client's transport serves its event loop only: read `events` there")
        return BlockingEvents(self._base_url, self._token, body_id, read_timeout_s=read_timeout_s)


def kill_state_from(data: str) -> KillState:
    return KillState.model_validate_json(data)


__all__ = ["BlockingEvents", "BrainClient", "BrainRejected", "BrainUnavailable", "kill_state_from"]
