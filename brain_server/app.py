"""The brain's HTTP API: JSON under `/v1`, bearer tokens, errors as `{code, message}`.

The route table below is the contract: method, path, the roles allowed, the handler. Every
request is authenticated before its body is read (401 for a missing, unknown or revoked
token, 403 for a wrong role), its body is read no further than its route's cap (413,
`_payload`; read before the handler runs, whether or not the handler takes a body), then
validated whole before anything is written (422 naming the field). A body handler then
checks, before anything else, that the token may act as the agent the request names (`_Api.as_agent`,
`auth.claim_agent`/`acting_agent`: 403; usage records: `auth.usage_agents`, 422) and speaks for the body it names
(`_Api.as_body`: 403, or the token's binding on first use).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast, get_args

from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from shared_protocol import ProtocolModel
from shared_protocol.brain import (
    AbandonRequest,
    AnswerRequest,
    AuditBatch,
    BrainErrorCode,
    CancelRequest,
    ClaimRequest,
    DecisionList,
    DecisionOverrideRequest,
    DecisionRequest,
    ErrorBody,
    KillRequest,
    OutcomeRequest,
    OverrideRequest,
    ParkRequest,
    PauseRequest,
    ReadinessRequest,
    RebindRequest,
    RegisterRequest,
    RenewRequest,
    ResumeRequest,
    ResumeTaskRequest,
    Role,
    RolloutAction,
    TaskList,
    TaskRequest,
    TaskState,
    UndoRequest,
    UsageBatch,
    VoteRequest,
)
from shared_protocol.config import AGENT_NAME_RULE, is_agent_name
from shared_protocol.decisions import AnswerKind, DecisionState
from shared_protocol.privacy import PrivacyRequest
from shared_protocol.telemetry import DEFAULT_KPI_WINDOW_S, MAX_KPI_WINDOW_S

from ._payload import declared_too_large, read_body
from ._sse import EventStreamResponse
from .auth import (
    ANY_ROLE,
    APPROVERS,
    BODY,
    CAPTAIN,
    LISTENERS,
    METRICS_READERS,
    OVERRIDERS,
    USAGE_POSTERS,
    VOTERS,
    Principal,
    acting_agent,
    audit_agents,
    authenticate,
    authenticate_request,
    check_pairing,
    claim_agent,
    own_body,
    speak_for,
    usage_agents,
)
from .dashboard.api import DashboardApi
from .dashboard.pages import page_routes
from .dashboard.snapshots import PageSnapshots
from .exceptions import ApiError, Forbidden, InvalidRequest, StateBroken
from .metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from .privacy import reveal_reply
from .service import Brain
from .sessions import request_credentials, session_routes, session_rules
from .wake.answers import answer_link, twilio_gather
from .wake.intake import RefusalLog
from .wake.interactions import DiscordInteractions

logger = logging.getLogger(__name__)

_IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,255}")

M = TypeVar("M", bound=BaseModel)
Handler = Callable[[Request, Principal], Awaitable[Response]]

MAX_TASK_PAGE = 1000
"""The most tasks one page of `GET /v1/tasks?limit=` holds."""

MAX_TASK_OFFSET = 10**12
"""The largest `offset` of `GET /v1/tasks` (SQLite's OFFSET takes a 64-bit integer: a larger one made a 500)."""


def _single(request: Request, name: str) -> str | None:
    """The query parameter `name` as sent once, or None when absent; sent twice or more is refused (which one counts
    would be a guess)."""
    values = request.query_params.getlist(name)
    if len(values) > 1:
        raise InvalidRequest(f"{name} must be given once (got {len(values)} values)", field=name)
    return values[0] if values else None


def _whole(request: Request, name: str, low: int, high: int | None) -> int | None:
    """The query parameter `name` as a whole number from `low` to `high` (None: no bound), or None when absent."""
    raw = _single(request, name)
    if raw is None:
        return None
    # (the length first: `int` of over 4,300 digits raises ValueError, a 500)
    if (
        not (raw.isascii() and raw.isdigit() and len(raw) <= 20)
        or int(raw) < low
        or (high is not None and int(raw) > high)
    ):
        bounds = f"from {low} to {high}" if high is not None else f"of at least {low}"
        raise InvalidRequest(f"{name} must be a whole number {bounds} (got {raw!r})", field=name)
    return int(raw)


def json_response(model: BaseModel, status: int = 200) -> Response:
    return Response(model.model_dump_json(exclude_none=False), status_code=status, media_type="application/json")


def error_response(body: ErrorBody, status: int) -> Response:
    return Response(body.model_dump_json(exclude_none=True), status_code=status, media_type="application/json")


async def parse(request: Request, model: type[M]) -> M:
    """The request body as `model`, or `InvalidRequest` naming the first bad field. An empty body is `{}`.

    The body was read by `_route`, up to the route's cap (`PayloadTooLarge` beyond it).
    """
    raw: bytes = request.state.body
    try:
        return model.model_validate_json(raw or b"{}")
    except ValidationError as exc:
        errors = exc.errors()
        first = errors[0]
        if first["type"] == "json_invalid":
            raise InvalidRequest(
                f"the request body is not JSON: {first['msg']}", code=BrainErrorCode.INVALID_JSON
            ) from None
        field = ".".join(str(part) for part in first["loc"]) or None
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in errors)
        raise InvalidRequest(f"invalid request: {problems}", field=field) from None


class _NoFields(ProtocolModel):
    """The body of a route that takes none: empty or `{}`; anything else is refused by `parse` (422)."""


def _agent_name(request: Request) -> str:
    """The `{name}` of an agent route, or `InvalidRequest` for a name no agent can have."""
    name: str = request.path_params["name"]
    if not is_agent_name(name):
        raise InvalidRequest(f"agent name {name!r}: {AGENT_NAME_RULE}", field="name")
    return name


class _Api:
    """Handlers: each parses, calls the brain once, and answers with a model."""

    def __init__(self, brain: Brain, refusals: RefusalLog) -> None:
        self.brain = brain
        self.refusals = refusals

    async def as_body(self, who: Principal, body_id: str) -> None:
        """The one body-id check of every body handler: `who` may act as `body_id` (see `auth.speak_for`).

        A refusal (a token naming a body not its own, or one another token holds) changes nothing but the brain's
        log, where it is written at a bounded rate."""
        try:
            await speak_for(self.brain.state, who, body_id, at=self.brain.now())
        except Forbidden as refused:
            await self._refused(who, refused, target=body_id)
            raise

    async def as_agent(self, who: Principal, agent: str, awaitable: Awaitable[str]) -> str:
        """The agent check of a body handler (`awaitable`: `auth.claim_agent` or `auth.acting_agent`), before
        `as_body` (it writes nothing): the agent the request acts as. A refusal is logged like a body refusal, at a
        bounded rate."""
        try:
            return await awaitable
        except Forbidden as refused:
            await self._refused(who, refused, target=who.body_id, detail={"agent": agent, "bound": who.agent})
            raise

    async def _refused(
        self, who: Principal, refused: Forbidden, *, target: str | None, detail: dict[str, Any] | None = None
    ) -> None:
        entry = who.entry("body_refused", at=self.brain.now(), reason=refused.message, target=target, detail=detail)
        await self.refusals.record(entry)

    async def status(self, request: Request, who: Principal) -> Response:
        return json_response(await self.brain.status(for_body=who.sees_only, agent=who.agent))

    async def kill(self, request: Request, who: Principal) -> Response:
        payload = await parse(request, KillRequest)
        return json_response(await self.brain.set_kill(who, engaged=True, reason=payload.reason))

    async def resume(self, request: Request, who: Principal) -> Response:
        payload = await parse(request, ResumeRequest)
        return json_response(await self.brain.set_kill(who, engaged=False, reason=payload.reason))

    async def pause_agent(self, request: Request, who: Principal) -> Response:
        agent = _agent_name(request)
        payload = await parse(request, PauseRequest)
        pause, created = await self.brain.pause_agent(who, agent, payload.reason)
        return json_response(pause, 201 if created else 200)

    async def resume_agent(self, request: Request, who: Principal) -> Response:
        agent = _agent_name(request)
        payload = await parse(request, PauseRequest)
        return json_response(await self.brain.resume_agent(who, agent, payload.reason))

    async def rollout(self, request: Request, who: Principal) -> Response:
        return json_response(await self.brain.rollouts.report(_agent_name(request)))

    async def rollout_promote(self, request: Request, who: Principal) -> Response:
        agent = _agent_name(request)
        payload = await parse(request, RolloutAction)
        reason = self.brain.privacy.protect(payload.reason)  # ([privacy])
        return json_response(await self.brain.rollouts.promote(who, agent, reason))

    async def rollout_rollback(self, request: Request, who: Principal) -> Response:
        agent = _agent_name(request)
        payload = await parse(request, RolloutAction)
        reason = self.brain.privacy.protect(payload.reason)  # ([privacy])
        return json_response(await self.brain.rollouts.rollback(who, agent, reason))

    async def register(self, request: Request, who: Principal) -> Response:
        payload = await parse(request, RegisterRequest)
        check_pairing(who, payload.verify_key, payload.pairing)  # (before the token is bound to the body)
        await self.as_body(who, payload.body_id)
        return json_response(await self.brain.register(payload, by=who, agent=who.agent))

    async def deregister(self, request: Request, who: Principal) -> Response:
        body_id = request.path_params["body_id"]
        await self.as_body(who, body_id)
        return json_response(await self.brain.deregister(who, body_id))

    async def rebind(self, request: Request, who: Principal) -> Response:
        payload = await parse(request, RebindRequest)
        return json_response(await self.brain.rebind(who, request.path_params["body_id"], payload))

    async def heartbeat(self, request: Request, who: Principal) -> Response:
        body_id = request.path_params["body_id"]
        await self.as_body(who, body_id)
        return json_response(await self.brain.heartbeat(body_id, agent=who.agent))

    async def events(self, request: Request, who: Principal) -> Response:
        # A bound token that names no body hears its own body's events, never every body's; an unbound one
        # must name its body (and is bound to it).
        body_id = _single(request, "body_id") or who.body_id
        if who.role == "reviewer":
            # A reviewer agent waits for decisions to review: it hears every body's `decision` events (it reads
            # every decision already) and the kill switch, and speaks for no body.
            if _single(request, "body_id"):
                raise InvalidRequest(
                    "a reviewer token speaks for no body: GET /v1/events without body_id", field="body_id"
                )
            body_id = None
        elif body_id is not None:
            await self.as_body(who, body_id)
        elif who.role == "body":
            raise InvalidRequest(
                "a body token must name its body: GET /v1/events?body_id=<its body id>", field="body_id"
            )
        authorization = request.headers.get("authorization")

        async def authorized() -> bool:
            try:
                await authenticate(self.brain.state, authorization, LISTENERS)
            except ApiError:
                return False
            return True

        return EventStreamResponse(
            hub=self.brain.hub,
            body_id=body_id,
            agent=who.agent,
            kill_state=lambda: self.brain.kill_state(who.agent),
            keepalive_s=self.brain.settings.keepalive_s,
            authorized=authorized,
        )

    async def audit(self, request: Request, who: Principal) -> Response:
        payload = await parse(request, AuditBatch)
        await audit_agents(self.brain.state, who, payload.events)
        await self.as_body(who, payload.body_id)
        return json_response(await self.brain.ingest_audit(payload))

    async def request_decision(self, request: Request, who: Principal) -> Response:
        payload = await parse(request, DecisionRequest)
        await self.as_agent(who, payload.agent, acting_agent(self.brain.state, who, payload.agent, doing="ask"))
        await self.as_body(who, payload.body_id)
        decision, created = await self.brain.ask(who, payload)
        return json_response(decision, 201 if created else 200)

    async def decision(self, request: Request, who: Principal) -> Response:
        # A body reads its own decisions only: others' are not found, not forbidden.
        return json_response(await self.brain.decision(request.path_params["decision_id"], for_body=who.sees_only))

    def answer(self, verb: AnswerKind) -> Handler:
        """`approve` and `deny`: a human's vote."""

        async def handler(request: Request, who: Principal) -> Response:
            payload = await parse(request, AnswerRequest)
            decision_id = request.path_params["decision_id"]
            return json_response(await self.brain.answer(who, decision_id, verb, payload.reason))

        return handler

    async def override(self, request: Request, who: Principal) -> Response:
        payload = await parse(request, DecisionOverrideRequest)
        decision_id = request.path_params["decision_id"]
        return json_response(
            await self.brain.override(
                who, decision_id, payload.action, payload.reason, logic_version=payload.logic_version
            )
        )

    async def vote(self, request: Request, who: Principal) -> Response:
        payload = await parse(request, VoteRequest)
        return json_response(await self.brain.vote(who, request.path_params["decision_id"], payload))

    async def decisions(self, request: Request, who: Principal) -> Response:
        state = _single(request, "state") or None
        if state is not None and state not in get_args(DecisionState):
            raise InvalidRequest(
                f"state must be one of {', '.join(get_args(DecisionState))} (got {state!r})", field="state"
            )
        found = await self.brain.decisions(state=cast(DecisionState | None, state), for_body=who.sees_only)
        return json_response(DecisionList(found))

    async def acknowledge(self, request: Request, who: Principal) -> Response:
        payload = await parse(request, AnswerRequest)
        escalation = await self.brain.acknowledge(who, request.path_params["subject_id"], payload.reason)
        return Response(escalation.model_dump_json(), media_type="application/json")

    async def create_task(self, request: Request, who: Principal) -> Response:
        payload = await parse(request, TaskRequest)
        key = request.headers.get("idempotency-key")
        if key is not None and not _IDEMPOTENCY_KEY.fullmatch(key):
            raise InvalidRequest("Idempotency-Key must be 1 to 255 visible ASCII characters", field="Idempotency-Key")
        task, created = await self.brain.queue_task(who, payload, idempotency_key=key)
        return json_response(task, 201 if created else 200)

    async def claim_task(self, request: Request, who: Principal) -> Response:
        payload = await parse(request, ClaimRequest)
        claim = claim_agent(self.brain.state, who, agent=payload.agent, mode=payload.mode)
        payload = payload.model_copy(update={"agent": await self.as_agent(who, payload.agent, claim)})
        await self.as_body(who, payload.body_id)
        return json_response(await self.brain.claim_task(who, payload))

    async def outcome(self, request: Request, who: Principal) -> Response:
        payload = await parse(request, OutcomeRequest)
        task_id = request.path_params["task_id"]
        return json_response(await self.brain.report_outcome(who, task_id, payload, holder=own_body(who)))

    async def renew(self, request: Request, who: Principal) -> Response:
        payload = await parse(request, RenewRequest)
        task_id = request.path_params["task_id"]
        return json_response(await self.brain.renew_lease(task_id, payload, holder=own_body(who)))

    async def tasks(self, request: Request, who: Principal) -> Response:
        state = _single(request, "state") or None
        if state is not None and state not in get_args(TaskState):
            raise InvalidRequest(
                f"state must be one of {', '.join(get_args(TaskState))} (got {state!r})", field="state"
            )
        agent = _single(request, "agent") or None
        limit = _whole(request, "limit", 1, MAX_TASK_PAGE)
        offset = _whole(request, "offset", 0, MAX_TASK_OFFSET)
        if offset is not None and limit is None:
            raise InvalidRequest(
                "offset needs limit: a page is the limit newest tasks after the offset newest", field="offset"
            )
        # A body lists the tasks it claimed (now or last) only, as it reads them one by one.
        if limit is not None:
            page, total = await self.brain.task_page(
                limit=limit,
                offset=offset or 0,
                state=cast(TaskState | None, state),
                agent=agent,
                for_body=who.sees_only,
            )
            return json_response(TaskList(tasks=page, total=total))
        tasks = await self.brain.tasks(state=cast(TaskState | None, state), agent=agent, for_body=who.sees_only)
        # (without `total`: the whole list's answer is as it was, for clients built before pages, whose TaskList
        # refuses a field it does not know)
        listed = TaskList(tasks=tasks).model_dump_json(exclude={"total"})
        return Response(listed, media_type="application/json")

    async def task(self, request: Request, who: Principal) -> Response:
        # A body reads the tasks it claimed only: others are not found, not forbidden.
        return json_response(await self.brain.task(request.path_params["task_id"], for_body=who.sees_only))

    async def proposals(self, request: Request, who: Principal) -> Response:
        return json_response(await self.brain.proposals(request.path_params["task_id"]))

    async def park(self, request: Request, who: Principal) -> Response:
        payload = await parse(request, ParkRequest)
        task_id = request.path_params["task_id"]
        return json_response(await self.brain.park_task(who, task_id, payload, holder=own_body(who)))

    async def resume_task(self, request: Request, who: Principal) -> Response:
        payload = await parse(request, ResumeTaskRequest)
        task_id = request.path_params["task_id"]
        return json_response(await self.brain.resume_task(who, task_id, payload, holder=own_body(who)))

    async def abandon(self, request: Request, who: Principal) -> Response:
        payload = await parse(request, AbandonRequest)
        task_id = request.path_params["task_id"]
        return json_response(await self.brain.abandon_parked_task(who, task_id, payload, holder=own_body(who)))

    async def cancel(self, request: Request, who: Principal) -> Response:
        payload = await parse(request, CancelRequest)
        return json_response(await self.brain.cancel_task(who, request.path_params["task_id"], payload))

    async def record_usage(self, request: Request, who: Principal) -> Response:
        payload = await parse(request, UsageBatch)
        usage_agents(who, payload.records)
        if who.role == "reviewer":
            return json_response(await self.brain.record_review_usage(who, payload))
        if payload.body_id is not None:
            await self.as_body(who, payload.body_id)
            body_id = payload.body_id
        else:
            body_id = own_body(who)
        return json_response(await self.brain.record_usage(body_id, payload))

    async def usage(self, request: Request, who: Principal) -> Response:
        agent = _single(request, "agent") or None
        task_id = _single(request, "task_id") or None
        sent = _single(request, "by_task")
        by_task = "true" if sent is None else sent
        if by_task not in ("true", "false"):
            raise InvalidRequest(f"by_task must be true or false (got {by_task!r})", field="by_task")
        totals = await self.brain.usage(for_body=who.sees_only, agent=agent, task_id=task_id, by_task=by_task == "true")
        return json_response(totals)

    async def record_readiness(self, request: Request, who: Principal) -> Response:
        payload = await parse(request, ReadinessRequest)
        return json_response(await self.brain.record_readiness(who, payload), 201)

    async def readiness(self, request: Request, who: Principal) -> Response:
        return json_response(await self.brain.readiness())

    async def override_readiness(self, request: Request, who: Principal) -> Response:
        payload = await parse(request, OverrideRequest)
        return json_response(await self.brain.override_readiness(who, payload), 201)

    async def kpi(self, request: Request, who: Principal) -> Response:
        raw = _single(request, "since_s")
        window_s = DEFAULT_KPI_WINDOW_S
        if raw is not None:
            if not (raw.isascii() and raw.isdigit() and len(raw) <= 20) or not 1 <= int(raw) <= MAX_KPI_WINDOW_S:
                raise InvalidRequest(
                    f"since_s must be a whole number of seconds from 1 to {MAX_KPI_WINDOW_S} (got {raw!r})",
                    field="since_s",
                )
            window_s = int(raw)
        return json_response(await self.brain.telemetry.kpi(window_s=window_s))

    async def metrics(self, request: Request, who: Principal) -> Response:
        return Response(await self.brain.metrics.render(), media_type=METRICS_CONTENT_TYPE)

    async def privacy_erase(self, request: Request, who: Principal) -> Response:
        payload = await parse(request, PrivacyRequest)
        return json_response(await self.brain.erase_subject(who, payload))

    async def privacy_unerase(self, request: Request, who: Principal) -> Response:
        payload = await parse(request, PrivacyRequest)
        return json_response(await self.brain.unerase_subject(who, payload))

    async def privacy_export(self, request: Request, who: Principal) -> Response:
        payload = await parse(request, PrivacyRequest)
        return json_response(await self.brain.export_subject(payload))

    async def privacy_migrate(self, request: Request, who: Principal) -> Response:
        await parse(request, _NoFields)  # (a body that is not JSON, or has fields, is refused before data is rewritten)
        return json_response(await self.brain.migrate_privacy(who))

    async def undo(self, request: Request, who: Principal) -> Response:
        payload = await parse(request, UndoRequest)
        target_id = request.path_params["target_id"]
        result = await self.brain.reverse(
            who, target_id, payload.reason, force=payload.force, dry_run=payload.dry_run, as_action=payload.as_action
        )
        return json_response(result)


def _open_routes(brain: Brain, api: _Api) -> list[Route]:
    """`GET /healthz` (no token: liveness and nothing else), and `GET /metrics` without a token when the brain is
    configured so (`[metrics] public`)."""

    async def healthz(request: Request) -> Response:
        try:
            await brain.state.kill_state()  # (a read: a database deleted, replaced or damaged is found here)
        except StateBroken:
            return Response('{"ok":false}', status_code=503, media_type="application/json")
        return Response('{"ok":true}', media_type="application/json")

    routes = [Route("/healthz", healthz, methods=["GET"])]
    if brain.settings.metrics_public:

        async def metrics(request: Request) -> Response:
            return Response(await brain.metrics.render(), media_type=METRICS_CONTENT_TYPE)

        routes.append(Route("/metrics", metrics, methods=["GET"]))
    else:
        routes.append(_route(brain, "GET", "/metrics", METRICS_READERS, api.metrics))
    return routes


def _wake_routes(brain: Brain, refusals: RefusalLog) -> list[Route]:
    """Endpoints called by Discord, Twilio and the links in pages: each checks its own proof, not a bearer token."""
    interactions = DiscordInteractions(brain, refusals)

    async def discord(request: Request) -> Response:
        return await interactions.handle(request)

    async def gather(request: Request) -> Response:
        return await twilio_gather(brain, request, refusals)

    async def link(request: Request) -> Response:
        return await answer_link(brain, request, refusals)

    return [
        Route("/discord/interactions", discord, methods=["POST"]),
        Route("/twilio/gather", gather, methods=["POST"]),
        Route("/wake/{token}", link, methods=["GET", "POST"]),
    ]


def _route(
    brain: Brain, method: str, path: str, allowed: frozenset[Role], handler: Handler, *, max_bytes: int | None = None
) -> Route:
    """A bearer-token route whose request body is capped at `max_bytes` (default `[brain] max_request_bytes`)."""
    cap = brain.settings.max_request_bytes if max_bytes is None else max_bytes

    async def endpoint(request: Request) -> Response:
        # A bearer token, or (the human roles only) a dashboard session with its CSRF header: `auth`.
        credentials = request_credentials(request, brain.settings)
        who = await authenticate_request(
            brain.state, credentials, allowed, at=brain.now(), rules=session_rules(brain.settings)
        )
        if (too_large := declared_too_large(request, cap)) is not None:
            raise too_large  # (whether or not the handler reads a body: nothing over the cap is taken)
        # Read here, whether or not the handler parses it: a streamed body (no Content-Length) over the cap is
        # refused before the handler acts, on a route that takes no body (a heartbeat) as on any other.
        request.state.body = await read_body(request, cap)
        response = await handler(request, who)
        body: bytes | memoryview = getattr(response, "body", b"")  # (an event stream has none)
        if b"[pii:" in body:
            # What the brain stores protected reads as written by those allowed to read it (`privacy.py`).
            response.body = reveal_reply(brain.privacy, bytes(body))
            response.headers["content-length"] = str(len(response.body))
        return response

    return Route(path, endpoint, methods=[method], name=f"{method} {path}")


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc.body(), exc.status)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: BrainErrorCode.NOT_FOUND, 405: BrainErrorCode.METHOD_NOT_ALLOWED}.get(
        exc.status_code, BrainErrorCode.INVALID_REQUEST
    )
    return error_response(ErrorBody(code=code, message=str(exc.detail)), exc.status_code)


async def _internal_error(request: Request, exc: Exception) -> Response:
    logger.error("unhandled error in %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(ErrorBody(code=BrainErrorCode.INTERNAL_ERROR, message="internal error"), 500)


def build_app(brain: Brain) -> Starlette:
    """The ASGI app for a brain that is running (`async with brain.running():`)."""
    refusals = RefusalLog(brain.state, brain.now)
    api = _Api(brain, refusals)
    dashboard = DashboardApi(brain)
    # (what every open page polls every 5 s: one computation per 2 s for all the pages of a role)
    pages = PageSnapshots(brain.hub, clock=lambda: brain.now().timestamp())
    routes = [
        _route(brain, "GET", "/v1/status", ANY_ROLE, pages.shared(api.status)),
        _route(brain, "POST", "/v1/kill", CAPTAIN, api.kill),
        _route(brain, "POST", "/v1/resume", CAPTAIN, api.resume),
        _route(brain, "POST", "/v1/agents/{name}/pause", CAPTAIN, api.pause_agent),
        _route(brain, "POST", "/v1/agents/{name}/resume", CAPTAIN, api.resume_agent),
        _route(brain, "GET", "/v1/agents/{name}/rollout", ANY_ROLE, api.rollout),
        _route(brain, "POST", "/v1/agents/{name}/rollout/promote", CAPTAIN, api.rollout_promote),
        _route(brain, "POST", "/v1/agents/{name}/rollout/rollback", CAPTAIN, api.rollout_rollback),
        _route(brain, "POST", "/v1/bodies/register", BODY, api.register),
        _route(brain, "POST", "/v1/bodies/{body_id}/heartbeat", BODY, api.heartbeat),
        _route(brain, "POST", "/v1/bodies/{body_id}/deregister", BODY, api.deregister),
        _route(brain, "POST", "/v1/bodies/{body_id}/rebind", CAPTAIN, api.rebind),
        _route(brain, "GET", "/v1/events", LISTENERS, api.events),
        _route(brain, "POST", "/v1/audit", BODY, api.audit, max_bytes=brain.settings.max_audit_request_bytes),
        _route(brain, "POST", "/v1/decisions", BODY, api.request_decision),
        _route(brain, "GET", "/v1/decisions", ANY_ROLE, pages.shared(api.decisions)),
        _route(brain, "GET", "/v1/decisions/{decision_id}", ANY_ROLE, api.decision),
        _route(brain, "POST", "/v1/decisions/{decision_id}/votes", VOTERS, api.vote),
        _route(brain, "POST", "/v1/decisions/{decision_id}/approve", APPROVERS, api.answer("approve")),
        _route(brain, "POST", "/v1/decisions/{decision_id}/deny", APPROVERS, api.answer("deny")),
        _route(brain, "POST", "/v1/decisions/{decision_id}/override", OVERRIDERS, api.override),
        _route(brain, "POST", "/v1/tasks", APPROVERS, api.create_task),
        _route(brain, "GET", "/v1/tasks", ANY_ROLE, pages.shared(api.tasks)),
        _route(brain, "POST", "/v1/tasks/claim", BODY, api.claim_task),
        _route(brain, "GET", "/v1/tasks/{task_id}", ANY_ROLE, api.task),
        _route(brain, "GET", "/v1/tasks/{task_id}/proposals", VOTERS, api.proposals),
        _route(brain, "POST", "/v1/tasks/{task_id}/renew", BODY, api.renew),
        _route(brain, "POST", "/v1/tasks/{task_id}/park", BODY, api.park),
        _route(brain, "POST", "/v1/tasks/{task_id}/resume", BODY, api.resume_task),
        _route(brain, "POST", "/v1/tasks/{task_id}/outcome", BODY, api.outcome),
        _route(brain, "POST", "/v1/tasks/{task_id}/abandon", BODY, api.abandon),
        _route(brain, "POST", "/v1/tasks/{task_id}/cancel", APPROVERS, api.cancel),
        _route(
            brain,
            "POST",
            "/v1/usage",
            USAGE_POSTERS,
            api.record_usage,
            max_bytes=brain.settings.max_audit_request_bytes,
        ),
        _route(brain, "GET", "/v1/usage", ANY_ROLE, pages.shared(api.usage)),
        _route(brain, "POST", "/v1/readiness", CAPTAIN, api.record_readiness),
        _route(brain, "GET", "/v1/readiness", ANY_ROLE, api.readiness),
        _route(brain, "POST", "/v1/readiness/overrides", CAPTAIN, api.override_readiness),
        _route(brain, "POST", "/v1/escalations/{subject_id}/acknowledge", APPROVERS, api.acknowledge),
        _route(brain, "POST", "/v1/undo/{target_id}", APPROVERS, api.undo),
        _route(brain, "POST", "/v1/privacy/erase", CAPTAIN, api.privacy_erase),
        _route(brain, "POST", "/v1/privacy/unerase", CAPTAIN, api.privacy_unerase),
        _route(brain, "POST", "/v1/privacy/export", CAPTAIN, api.privacy_export),
        _route(brain, "POST", "/v1/privacy/migrate", CAPTAIN, api.privacy_migrate),
        _route(brain, "GET", "/v1/kpi", APPROVERS, pages.shared(api.kpi)),
        _route(brain, "GET", "/v1/dashboard/stream", APPROVERS, dashboard.stream),
        *session_routes(brain),
        *page_routes(),
        *_open_routes(brain, api),
        *_wake_routes(brain, refusals),
    ]
    return Starlette(
        routes=routes,
        exception_handlers={ApiError: _api_error, HTTPException: _http_error, Exception: _internal_error},
    )
