"""`POST /discord/interactions`: Discord slash commands and buttons, verified, authorised, audited.

Order of checks, each refusal logged (`interaction_refused`) and changing nothing:

1. Ed25519 signature of `X-Signature-Timestamp` + the raw body against the application's
   public key: 401 on failure (Discord probes the endpoint with bad signatures and expects it).
2. The timestamp within 5 minutes of the brain's clock: 401 (a captured request goes stale).
3. PING → PONG.
4. The interaction id not seen before (kept past the 5-minute window): 401 (a replay).
5. The user is listed: `captain_ids` may do everything; `user_ids` and members of `role_ids`
   may approve, deny, acknowledge, see the status and stop everything (`/kill-autonomous`:
   stopping is always safe); `/resume` and `/captain-override` are for captains only. An
   unlisted user gets an ephemeral "not allowed" (the request itself is genuine Discord).

`/captain-override <decision_id> veto|force <reason>` is `swarm override` for a human captain listed in
`[discord] captain_ids`: at once, audited with its reason (`override` in the brain's log, by
`discord:<username>`), and reversed only by another human captain (another Discord captain, or a captain's
token). A missing id, an action other than veto or force, or an empty reason gets an ephemeral answer naming
the problem, and changes nothing.

Discord wants an answer within 3 seconds. Every action is one SQLite transaction (milliseconds),
but if one takes longer than `DEFER_AFTER_S`, the endpoint answers "deferred" and edits the
original response through Discord's REST API when the action finishes.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, cast

import anyio
import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from shared_protocol.brain import Role
from shared_protocol.decisions import OverrideAction

from ..auth import Principal
from ..exceptions import ApiError, ConfigError
from ..state import LogEntry
from .discord import parse_custom_id
from .intake import BodyTooLarge, RefusalLog, read_body

if TYPE_CHECKING:
    from ..service import Brain

logger = logging.getLogger(__name__)

MAX_SKEW = timedelta(minutes=5)
REMEMBER_IDS = timedelta(minutes=10)
DEFER_AFTER_S = 2.0
EPHEMERAL = 64

PING, APPLICATION_COMMAND, MESSAGE_COMPONENT = 1, 2, 3
PONG, CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE, UPDATE_MESSAGE = 1, 4, 5, 7

CAPTAIN_ONLY = frozenset({"resume", "captain-override"})


@dataclass(kw_only=True, frozen=True)
class DiscordAccess:
    """Who may do what through Discord, and the key that proves a request came from Discord."""

    public_key: Ed25519PublicKey
    captain_ids: frozenset[str] = frozenset()
    user_ids: frozenset[str] = frozenset()
    role_ids: frozenset[str] = frozenset()
    application_id: str = ""
    api_base: str = "https://discord.com/api/v10"

    @classmethod
    def from_hex(cls, public_key: str, **kwargs: Any) -> DiscordAccess:
        """`ConfigError` naming `discord.public_key` when it is not a 32-byte hex Ed25519 key."""
        try:
            key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key))
        except ValueError:
            raise ConfigError("'discord.public_key' must be the application's public key: 64 hex characters") from None
        return cls(public_key=key, **kwargs)

    def role_of(self, user_id: str, roles: list[str]) -> Role | None:
        if user_id in self.captain_ids:
            return "captain"
        if user_id in self.user_ids or self.role_ids.intersection(roles):
            return "approver"
        return None


def signature_valid(key: Ed25519PublicKey, signature_hex: str, timestamp: str, body: bytes) -> bool:
    try:
        key.verify(bytes.fromhex(signature_hex), timestamp.encode() + body)
    except (InvalidSignature, ValueError):
        return False
    return True


class _Refused(Exception):
    def __init__(self, reason: str, detail: dict[str, Any] | None = None, *, listed_user: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail or {}
        self.listed_user = listed_user
        """A genuine request from a user on the allow-list: always logged. Every other refusal (forged, stale,
        replayed, a stranger's) is rate-limited, since anyone can produce those (see `RefusalLog`)."""


def _message(content: str, *, ephemeral: bool = False, kind: int = CHANNEL_MESSAGE) -> dict[str, Any]:
    data: dict[str, Any] = {"content": content[:2000], "allowed_mentions": {"parse": []}}
    if ephemeral:
        data["flags"] = EPHEMERAL
    return {"type": kind, "data": data}


def _options(data: dict[str, Any]) -> dict[str, str]:
    options = cast(list[dict[str, Any]], data.get("options") or [])
    return {str(o.get("name")): str(o.get("value", "")) for o in options}


Action = Callable[[], Awaitable[dict[str, Any]]]


class DiscordInteractions:
    """The endpoint's logic, on one brain."""

    def __init__(self, brain: Brain, refusals: RefusalLog) -> None:
        self.brain = brain
        self.refusals = refusals

    async def handle(self, request: Request) -> Response:
        access = self.brain.wake.discord
        if access is None:
            return JSONResponse(
                {"code": "not_found", "message": "Discord interactions are not configured ([discord] public_key)"},
                status_code=404,
            )
        try:
            body = await read_body(request)
        except BodyTooLarge as exc:
            await self._log_refusal(_Refused(str(exc)))
            return JSONResponse({"code": "invalid_request", "message": str(exc)}, status_code=413)
        try:
            payload = self._verified(access, request, body)
            if payload.get("type") == PING:
                return JSONResponse({"type": PONG})
            return JSONResponse(await self._dispatch(access, payload))
        except _Refused as refused:
            await self._log_refusal(refused)
            return JSONResponse({"code": "unauthorized", "message": refused.reason}, status_code=401)

    def _verified(self, access: DiscordAccess, request: Request, body: bytes) -> dict[str, Any]:
        signature = request.headers.get("x-signature-ed25519", "")
        timestamp = request.headers.get("x-signature-timestamp", "")
        if not signature_valid(access.public_key, signature, timestamp, body):
            raise _Refused("invalid request signature")
        try:
            sent = int(timestamp)  # Discord sends whole seconds; "nan" or "1e99" are not timestamps
        except ValueError:
            raise _Refused("invalid request timestamp") from None
        skew = abs(self.brain.now().timestamp() - sent)
        if skew > MAX_SKEW.total_seconds():
            raise _Refused("stale request timestamp", {"skew_s": round(skew)})
        try:
            payload = json.loads(body)
        except ValueError:
            raise _Refused("the body is not JSON") from None
        if not isinstance(payload, dict):
            raise _Refused("the body is not an interaction object")
        return cast(dict[str, Any], payload)

    async def _dispatch(self, access: DiscordAccess, payload: dict[str, Any]) -> dict[str, Any]:
        now = self.brain.now()
        interaction_id = str(payload.get("id", ""))
        if not interaction_id or not await self.brain.state.remember_interaction(
            interaction_id, now, forget_before=now - REMEMBER_IDS
        ):
            raise _Refused("replayed interaction", {"interaction_id": interaction_id})
        member = cast(dict[str, Any], payload.get("member") or {})
        user = cast(dict[str, Any], member.get("user") or payload.get("user") or {})
        user_id = str(user.get("id", ""))
        username = str(user.get("username") or user_id)
        roles = [str(r) for r in cast(list[Any], member.get("roles") or [])]
        data = cast(dict[str, Any], payload.get("data") or {})
        kind = payload.get("type")
        if kind == APPLICATION_COMMAND:
            command, options = str(data.get("name", "")), _options(data)
        elif kind == MESSAGE_COMPONENT:
            button = parse_custom_id(str(data.get("custom_id", "")))
            if button is None:
                return _message("This button does not belong to Swarm.", ephemeral=True)
            verb, subject = button
            command, options = ("acknowledge" if verb == "ack" else verb), {"id": subject}
        else:
            return _message(f"Unsupported interaction type {kind}.", ephemeral=True)
        role = access.role_of(user_id, roles)
        detail = {"interaction_id": interaction_id, "user_id": user_id, "command": command}
        if role is None or (command in CAPTAIN_ONLY and role != "captain"):
            needed = "a captain" if command in CAPTAIN_ONLY else "a listed user"
            await self._log_refusal(_Refused(f"/{command} needs {needed}", detail, listed_user=role is not None))
            return _message(
                f"You may not use /{command}: it needs {needed} ([discord] captain_ids, user_ids or role_ids).",
                ephemeral=True,
            )
        who = Principal(token_id=f"discord:{user_id}", role=role, label=f"discord:{username}")
        action = self._action(who, command, options, button=kind == MESSAGE_COMPONENT)
        return await self._within_deadline(action, payload)

    def _action(self, who: Principal, command: str, options: dict[str, str], *, button: bool) -> Action:
        brain = self.brain
        reason = options.get("reason", "")
        subject = options.get("id") or options.get("decision_id", "")
        mention = f"<@{who.token_id.removeprefix('discord:')}>"

        async def kill() -> dict[str, Any]:
            state = await brain.set_kill(who, engaged=True, reason=reason or "Discord /kill-autonomous")
            return _message(f"🛑 Kill switch engaged by {mention}: {state.reason}. Every body refuses new calls.")

        async def resume() -> dict[str, Any]:
            state = await brain.set_kill(who, engaged=False, reason=reason or "Discord /resume")
            return _message(f"▶️ Kill switch released by {mention}: {state.reason}.")

        def answer(verb: str) -> Action:
            async def run() -> dict[str, Any]:
                decision = await brain.answer(who, subject, verb, reason or f"Discord /{verb}")  # type: ignore[arg-type]
                text = f"Decision {decision.id} is now **{decision.state}** ({verb} by {mention})."
                if button:  # replace the page's buttons with the outcome, so nobody presses them again
                    return {"type": UPDATE_MESSAGE, "data": {"content": text, "components": []}}
                return _message(text)

            return run

        async def captain_override() -> dict[str, Any]:
            action = options.get("action", "").strip().lower()
            problem = (
                "give the decision's id (decision_id)"
                if not subject.strip()
                else f"action must be veto or force, not {action!r}"
                if action not in ("veto", "force")
                else "give a reason: a captain's override is audited with why"
                if not reason.strip()
                else None
            )
            if problem is not None:
                return _message(f"/captain-override: {problem}. Nothing was changed.", ephemeral=True)
            verb: OverrideAction = "veto" if action == "veto" else "force"
            decision = await brain.override(who, subject.strip(), verb, reason.strip())
            return _message(f"Decision {decision.id} is now **{decision.state}** ({action} by {mention}: {reason}).")

        async def acknowledge() -> dict[str, Any]:
            await brain.acknowledge(who, subject, reason or "Discord acknowledge")
            return _message(f"👀 {mention} acknowledged {subject}: paging stops (it still needs an answer).")

        async def status() -> dict[str, Any]:
            current = await brain.status()
            kill_line = "engaged" if current.kill.engaged else "released"
            connected = sum(1 for b in current.bodies if b.connected)
            text = (
                f"Kill switch: **{kill_line}**. Bodies: {connected} connected of {len(current.bodies)}. "
                f"Pending decisions: {current.pending_decisions}. Tasks: {current.queued_tasks} queued, "
                f"{current.claimed_tasks} claimed."
            )
            return _message(text, ephemeral=True)

        async def unknown() -> dict[str, Any]:
            return _message(f"Unknown command /{command}.", ephemeral=True)

        actions: dict[str, Action] = {
            "kill-autonomous": kill,
            "resume": resume,
            "captain-override": captain_override,
            "approve": answer("approve"),
            "deny": answer("deny"),
            "acknowledge": acknowledge,
            "status": status,
        }
        return actions.get(command, unknown)

    async def _within_deadline(self, action: Action, payload: dict[str, Any]) -> dict[str, Any]:
        """Run the action; if it outlasts `DEFER_AFTER_S`, answer "deferred" and edit the response when done."""
        done = anyio.Event()
        result: list[dict[str, Any]] = []

        async def run() -> None:
            try:
                result.append(await action())
            except ApiError as exc:
                result.append(_message(exc.message, ephemeral=True))
            except Exception:  # Discord still gets an answer, and the brain keeps serving
                logger.exception("Discord interaction failed")
                result.append(_message("The brain hit an internal error doing that; its log says why.", ephemeral=True))
            finally:
                done.set()

        group = self.brain.background
        if group is None:  # not running under `brain.running()` (tests of the handler alone): just await it
            await run()
            return result[0]
        group.start_soon(run)
        with anyio.move_on_after(DEFER_AFTER_S):
            await done.wait()
        if result:
            return result[0]
        group.start_soon(self._follow_up, done, result, str(payload.get("token", "")))
        return {"type": DEFERRED_CHANNEL_MESSAGE}

    async def _follow_up(self, done: anyio.Event, result: list[dict[str, Any]], token: str) -> None:
        await done.wait()
        access = self.brain.wake.discord
        if access is None or not access.application_id or not token or not result:
            return
        url = f"{access.api_base}/webhooks/{access.application_id}/{token}/messages/@original"
        try:
            async with httpx.AsyncClient(timeout=10) as http:
                response = await http.patch(url, json=result[0].get("data", {}))
            response.raise_for_status()
        except Exception as exc:  # noqa: BLE001 - a background task; the type only: the URL holds the token
            logger.warning("could not edit the deferred Discord response: %s", type(exc).__name__)

    async def _log_refusal(self, refused: _Refused) -> None:
        await self.refusals.record(
            LogEntry(
                at=self.brain.now(),
                action="interaction_refused",
                by="discord",
                reason=refused.reason,
                detail=refused.detail,
            ),
            proven=refused.listed_user,
        )
