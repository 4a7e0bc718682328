"""A fake Discord REST API: it checks that requests have Discord's real shapes and answers as Discord does.

Serves, under `/api` (webhook URLs) and `/api/v10` (the bot API):

    POST /api/webhooks/{id}/{token}                               execute webhook (a message object with ?wait=true)
    GET  /api/webhooks/{id}/{token}                               get webhook with token
    PUT  /api/v10/applications/{app}/commands                     bulk overwrite global commands
    PUT  /api/v10/applications/{app}/guilds/{guild}/commands      bulk overwrite guild commands

A body Discord would refuse gets Discord's 400 `{"code": 50035, "message": "Invalid Form Body", "errors":
{...}}`, naming the field. Like Discord, a webhook a user created (`webhook_application_id = None`) drops
interactive components and still answers 200. The next responses can be scripted: `rate_limit`,
`server_error`, `fail_next`. Run it with `tests.fakes.serve.serve_app`.
"""

from __future__ import annotations

import itertools
import json
import math
import time
import unicodedata
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

APP_ID = "1187654321098765432"
BOT_TOKEN = "MTE4NzY1NDMyMTA5ODc2NTQzMg.GfakeB.bot-token-secret-0123456789abcdefghij"
WEBHOOK_ID = "1190000000000000001"
WEBHOOK_TOKEN = "wh-token-secret-Zx9yW8vU7tS6rQ5pO4nM3lK2jI1hG0fEdCbA-0123456789abcdef"
CHANNEL_ID = "1190000000000000002"
GUILD_ID = "1190000000000000003"

_TRUE = ("true", "True", "1")
_EMBED_LIMITS = {"title": 256, "description": 4096}
_BUTTON_STYLES = range(1, 7)  # primary, secondary, success, danger, link, premium
_OPTION_TYPES = range(1, 12)  # SUB_COMMAND … ATTACHMENT


@dataclass
class Recorded:
    """One request as the fake received it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    """Parsed JSON, or the raw text when it is not JSON."""


class _Errors:
    """Discord's nested `errors` object: `{"embeds": {"0": {"title": {"_errors": [{code, message}]}}}}`."""

    def __init__(self) -> None:
        self.tree: dict[str, Any] = {}

    def add(self, path: tuple[str | int, ...], code: str, message: str) -> None:
        node = self.tree
        for part in path:
            node = node.setdefault(str(part), {})
        node.setdefault("_errors", []).append({"code": code, "message": message})

    def length(self, path: tuple[str | int, ...], value: object, low: int, high: int) -> None:
        if not isinstance(value, str):
            self.add(path, "BASE_TYPE_STRING", "Must be a string.")
        elif not low <= len(value) <= high:
            self.add(path, "BASE_TYPE_BAD_LENGTH", f"Must be between {low} and {high} in length.")

    def response(self) -> JSONResponse | None:
        if not self.tree:
            return None
        return JSONResponse({"code": 50035, "message": "Invalid Form Body", "errors": self.tree}, status_code=400)


def _command_name_ok(name: object) -> bool:
    """`^[-_'\\p{L}\\p{N}]{1,32}$`, lowercase wherever a letter has a lowercase form."""
    if not isinstance(name, str) or not 1 <= len(name) <= 32 or name != name.lower():
        return False
    return all(c in "-_'" or unicodedata.category(c)[0] in "LN" for c in name)


class FakeDiscord:
    """An ASGI app: pass it to `serve_app`, then use `webhook_url(base)` and `api_base(base)`."""

    def __init__(self) -> None:
        self.webhook_application_id: str | None = APP_ID
        """The application that owns the webhook; None: a user created it (its buttons are dropped)."""
        self.guild_ids = {GUILD_ID}
        """Servers the application was added to."""
        self.requests: list[Recorded] = []
        self.messages: list[dict[str, Any]] = []
        self.edits: list[dict[str, Any]] = []
        """Interaction responses edited after a deferral."""
        """Messages as Discord stored them."""
        self.commands: dict[str, list[dict[str, Any]]] = {}
        """Registered commands by scope: "global" or a guild id."""
        self._script: deque[Response] = deque()
        self._snowflakes = itertools.count(1_200_000_000_000_000_000)
        self._command_ids: dict[tuple[str, str], str] = {}
        self._app = Starlette(
            routes=[
                Route("/api/webhooks/{webhook_id}/{token}", self._webhook, methods=["GET", "POST"]),
                Route("/api/v10/applications/{app_id}/commands", self._commands, methods=["PUT"]),
                Route("/api/v10/applications/{app_id}/guilds/{guild_id}/commands", self._commands, methods=["PUT"]),
                Route("/api/v10/webhooks/{app_id}/{token}/messages/@original", self._edit_original, methods=["PATCH"]),
            ]
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._app(scope, receive, send)

    @staticmethod
    def webhook_url(base: str) -> str:
        return f"{base}/api/webhooks/{WEBHOOK_ID}/{WEBHOOK_TOKEN}"

    @staticmethod
    def api_base(base: str) -> str:
        return f"{base}/api/v10"

    # --- scripted failures ---------------------------------------------------------------

    def rate_limit(self, times: int = 1, *, retry_after: float = 0.25, body: bool = True) -> None:
        """The next `times` requests get a 429 as Discord sends it (body: False for one without JSON)."""
        headers = {
            "Retry-After": str(math.ceil(retry_after)),
            "X-RateLimit-Limit": "5",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": f"{time.time() + retry_after:.3f}",
            "X-RateLimit-Reset-After": f"{retry_after:.3f}",
            "X-RateLimit-Bucket": "abcd1234",
            "X-RateLimit-Scope": "user",
        }
        for _ in range(times):
            if body:
                content = {"message": "You are being rate limited.", "retry_after": retry_after, "global": False}
                self._script.append(JSONResponse(content, status_code=429, headers=headers))
            else:
                self._script.append(Response("Too Many Requests", status_code=429, headers=headers))

    def server_error(self, times: int = 1, *, status: int = 502) -> None:
        for _ in range(times):
            self._script.append(JSONResponse({"message": f"{status}: Server Error", "code": 0}, status_code=status))

    def fail_next(self, status: int, body: dict[str, Any]) -> None:
        """The next request gets this JSON answer (e.g. a 400 `{"code": 50035, ...}`)."""
        self._script.append(JSONResponse(body, status_code=status))

    # --- routes --------------------------------------------------------------------------

    async def _record(self, request: Request) -> Recorded:
        raw = (await request.body()).decode()
        try:
            body: Any = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            body = raw
        recorded = Recorded(
            method=request.method,
            path=request.url.path,
            query=dict(request.query_params),
            headers={key.lower(): value for key, value in request.headers.items()},
            body=body,
        )
        self.requests.append(recorded)
        return recorded

    async def _edit_original(self, request: Request) -> Response:
        """Edit Original Interaction Response: authorised by the interaction token in the path, no header."""
        recorded = await self._record(request)
        if request.path_params["app_id"] != APP_ID:
            return JSONResponse({"message": "Unknown Webhook", "code": 10015}, status_code=404)
        if not isinstance(recorded.body, dict):
            return JSONResponse({"message": "Cannot send an empty message", "code": 50006}, status_code=400)
        edited = {"id": self._snowflake(), "channel_id": CHANNEL_ID, "application_id": APP_ID, **recorded.body}
        self.edits.append(edited)
        return JSONResponse(edited)

    def _snowflake(self) -> str:
        return str(next(self._snowflakes))

    async def _webhook(self, request: Request) -> Response:
        recorded = await self._record(request)
        if self._script:
            return self._script.popleft()
        if request.path_params["webhook_id"] != WEBHOOK_ID:
            return JSONResponse({"message": "Unknown Webhook", "code": 10015}, status_code=404)
        if request.path_params["token"] != WEBHOOK_TOKEN:
            return JSONResponse({"message": "Invalid Webhook Token", "code": 50027}, status_code=401)
        if request.method == "GET":
            return JSONResponse(
                {
                    "type": 3 if self.webhook_application_id else 1,
                    "id": WEBHOOK_ID,
                    "name": "Swarm",
                    "avatar": None,
                    "channel_id": CHANNEL_ID,
                    "guild_id": GUILD_ID,
                    "application_id": self.webhook_application_id,
                    "token": WEBHOOK_TOKEN,
                }
            )
        return self._execute(recorded)

    def _execute(self, recorded: Recorded) -> Response:
        body = recorded.body
        if not recorded.headers.get("content-type", "").startswith("application/json") or not isinstance(body, dict):
            # Discord reads no JSON params from such a body: the message is empty.
            return JSONResponse({"message": "Cannot send an empty message", "code": 50006}, status_code=400)
        if not (body.get("content") or body.get("embeds") or body.get("components")):
            return JSONResponse({"message": "Cannot send an empty message", "code": 50006}, status_code=400)
        errors = _Errors()
        if "content" in body:
            errors.length(("content",), body["content"], 0, 2000)
        self._check_embeds(body.get("embeds", []), errors)
        self._check_components(body.get("components", []), errors)
        mentions = body.get("allowed_mentions", {"parse": []})
        if not isinstance(mentions, dict) or not set(mentions.get("parse", [])) <= {"roles", "users", "everyone"}:
            errors.add(
                ("allowed_mentions", "parse"), "BASE_TYPE_CHOICES", "Value must be one of roles, users, everyone."
            )
        if (refused := errors.response()) is not None:
            return refused
        components = body.get("components", [])
        if self.webhook_application_id is None:
            components = []  # what Discord does to interactive components from a user-created webhook
        message = {
            "id": self._snowflake(),
            "type": 0,
            "content": body.get("content", ""),
            "channel_id": CHANNEL_ID,
            "author": {"id": WEBHOOK_ID, "username": "Swarm", "avatar": None, "discriminator": "0000", "bot": True},
            "attachments": [],
            "embeds": [{"type": "rich", **embed} for embed in body.get("embeds", [])],
            "mentions": [],
            "mention_roles": [],
            "pinned": False,
            "mention_everyone": False,
            "tts": False,
            "timestamp": datetime.now(UTC).isoformat(),
            "edited_timestamp": None,
            "flags": 0,
            "components": components,
            "webhook_id": WEBHOOK_ID,
        }
        if self.webhook_application_id is not None:
            message["application_id"] = self.webhook_application_id
        self.messages.append(message)
        if recorded.query.get("wait") not in _TRUE:
            return Response(status_code=204)
        return JSONResponse(message)

    @staticmethod
    def _check_embeds(embeds: object, errors: _Errors) -> None:
        if not isinstance(embeds, list) or len(embeds) > 10:
            errors.add(("embeds",), "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length.")
            return
        for i, embed in enumerate(embeds):
            if not isinstance(embed, dict):
                errors.add(("embeds", i), "MODEL_TYPE_CONVERT", "Only dictionaries may be used in a ModelType")
                continue
            total = 0
            for key, limit in _EMBED_LIMITS.items():
                if key in embed:
                    errors.length(("embeds", i, key), embed[key], 1, limit)
                    total += len(str(embed[key]))
            fields = embed.get("fields", [])
            if not isinstance(fields, list) or len(fields) > 25:
                errors.add(("embeds", i, "fields"), "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
                fields = []
            for j, item in enumerate(fields):
                if not isinstance(item, dict):
                    errors.add(("embeds", i, "fields", j), "MODEL_TYPE_CONVERT", "Only dictionaries may be used")
                    continue
                errors.length(("embeds", i, "fields", j, "name"), item.get("name"), 1, 256)
                errors.length(("embeds", i, "fields", j, "value"), item.get("value"), 1, 1024)
                if not isinstance(item.get("inline", False), bool):
                    errors.add(
                        ("embeds", i, "fields", j, "inline"), "BASE_TYPE_BOOLEAN", "Must be either true or false."
                    )
                total += len(str(item.get("name", ""))) + len(str(item.get("value", "")))
            if "footer" in embed:
                errors.length(("embeds", i, "footer", "text"), embed["footer"].get("text"), 1, 2048)
                total += len(str(embed["footer"].get("text", "")))
            color = embed.get("color", 0)
            if not isinstance(color, int) or not 0 <= color <= 0xFFFFFF:
                errors.add(("embeds", i, "color"), "NUMBER_TYPE_MAX", "int value should be <= 16777215.")
            if "timestamp" in embed:
                try:
                    datetime.fromisoformat(embed["timestamp"])
                except (TypeError, ValueError):
                    errors.add(("embeds", i, "timestamp"), "DATE_TIME_TYPE_PARSE", "Could not parse timestamp.")
            if total > 6000:
                errors.add(("embeds", i), "MAX_EMBED_SIZE_EXCEEDED", "Embed size exceeds maximum size of 6000")

    @staticmethod
    def _check_components(rows: object, errors: _Errors) -> None:
        if not isinstance(rows, list) or len(rows) > 5:
            errors.add(("components",), "BASE_TYPE_MAX_LENGTH", "Must be 5 or fewer in length.")
            return
        seen: set[str] = set()
        for i, row in enumerate(rows):
            children = row.get("components") if isinstance(row, dict) else None
            if not isinstance(row, dict) or row.get("type") != 1 or not isinstance(children, list):
                errors.add(("components", i, "type"), "UNION_TYPE_CHOICES", "Value of field type must be one of (1,).")
                continue
            if not 1 <= len(children) <= 5:
                errors.add(
                    ("components", i, "components"), "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 5 in length."
                )
            for j, button in enumerate(children):
                path = ("components", i, "components", j)
                if not isinstance(button, dict) or button.get("type") != 2:
                    errors.add((*path, "type"), "UNION_TYPE_CHOICES", "Value of field type must be one of (2,).")
                    continue
                style = button.get("style")
                if style not in _BUTTON_STYLES:
                    errors.add((*path, "style"), "BASE_TYPE_CHOICES", "Value must be one of {1, 2, 3, 4, 5, 6}.")
                if "label" in button:
                    errors.length((*path, "label"), button["label"], 1, 80)
                if style == 5:
                    if "url" not in button or "custom_id" in button:
                        errors.add(path, "BUTTON_COMPONENT_INVALID_URL", "A link button needs a url, no custom_id.")
                    continue
                custom_id = button.get("custom_id")
                errors.length((*path, "custom_id"), custom_id, 1, 100)
                if custom_id in seen:
                    errors.add((*path, "custom_id"), "COMPONENT_CUSTOM_ID_DUPLICATED", "Component custom id duplicated")
                seen.add(str(custom_id))

    async def _commands(self, request: Request) -> Response:
        recorded = await self._record(request)
        if self._script:
            return self._script.popleft()
        if recorded.headers.get("authorization") != f"Bot {BOT_TOKEN}":
            return JSONResponse({"message": "401: Unauthorized", "code": 0}, status_code=401)
        guild_id = request.path_params.get("guild_id")
        if request.path_params["app_id"] != APP_ID or (guild_id is not None and guild_id not in self.guild_ids):
            return JSONResponse({"message": "Missing Access", "code": 50001}, status_code=403)
        commands = recorded.body
        errors = _Errors()
        if not isinstance(commands, list) or len(commands) > 100:
            errors.add((), "BASE_TYPE_MAX_LENGTH", "Must be a list of 100 or fewer commands.")
            return errors.response() or Response(status_code=500)
        names: set[tuple[int, str]] = set()
        for i, command in enumerate(commands):
            self._check_command(i, command, errors)
            if not isinstance(command, dict):
                continue
            key = (command.get("type", 1), command.get("name"))
            if key in names:
                errors.add(
                    (i, "name"), "APPLICATION_COMMANDS_DUPLICATE_NAME", "Application command names must be unique"
                )
            names.add(key)
        if (refused := errors.response()) is not None:
            return refused
        scope = guild_id or "global"
        stored = []
        for command in commands:
            ident = self._command_ids.setdefault((scope, command["name"]), self._snowflake())
            saved = {
                "id": ident,
                "application_id": APP_ID,
                "version": self._snowflake(),
                "default_member_permissions": None,
                "type": 1,
                "nsfw": False,
                "description_localizations": None,
                "name_localizations": None,
                **command,
            }
            if guild_id is not None:
                saved["guild_id"] = guild_id
            else:
                saved.update({"dm_permission": True, "contexts": None, "integration_types": [0]})
            stored.append(saved)
        self.commands[scope] = stored
        return JSONResponse(stored)

    @staticmethod
    def _check_command(i: int, command: object, errors: _Errors) -> None:
        if not isinstance(command, dict):
            errors.add((i,), "MODEL_TYPE_CONVERT", "Only dictionaries may be used in a ModelType")
            return
        if command.get("type", 1) not in (1, 2, 3):
            errors.add((i, "type"), "BASE_TYPE_CHOICES", "Value must be one of {1, 2, 3}.")
        if not _command_name_ok(command.get("name")):
            errors.add((i, "name"), "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid")
        errors.length((i, "description"), command.get("description"), 1, 100)
        options = command.get("options", [])
        if not isinstance(options, list) or len(options) > 25:
            errors.add((i, "options"), "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
            return
        seen: set[str] = set()
        optional_seen = False
        for j, option in enumerate(options):
            path = (i, "options", j)
            if not isinstance(option, dict):
                errors.add(path, "MODEL_TYPE_CONVERT", "Only dictionaries may be used in a ModelType")
                continue
            if option.get("type") not in _OPTION_TYPES:
                errors.add((*path, "type"), "BASE_TYPE_CHOICES", "Value must be one of {1, …, 11}.")
            name = option.get("name")
            if not _command_name_ok(name) or name in seen:
                errors.add((*path, "name"), "APPLICATION_COMMAND_INVALID_NAME", "Option name is invalid or repeated")
            seen.add(str(name))
            errors.length((*path, "description"), option.get("description"), 1, 100)
            required = option.get("required", False)
            if not isinstance(required, bool):
                errors.add((*path, "required"), "BASE_TYPE_BOOLEAN", "Must be either true or false.")
            if required and optional_seen:
                errors.add(
                    (*path, "required"),
                    "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
                    "Required options must be placed before non-required options",
                )
            optional_seen = optional_seen or not required
            for key, low in (("min_length", 0), ("max_length", 1)):
                if key in option and not (isinstance(option[key], int) and low <= option[key] <= 6000):
                    errors.add((*path, key), "NUMBER_TYPE_MAX", f"Must be between {low} and 6000.")
