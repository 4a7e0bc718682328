"""A fake Twilio REST API (2010-04-01): Messages and Calls, checked the way Twilio checks them.

`FakeTwilio` is an ASGI app (serve it with `serve_app`): it demands HTTP Basic auth with its account
SID and auth token, the same SID in the path, a form-encoded body, the required fields and E.164
numbers, and answers with Twilio's error JSON otherwise. Inline TwiML must parse as XML with a
`<Response>` root, as Twilio needs when the call is answered. `post_gather` plays Twilio's side of a
`<Gather>`: the digits POSTed to the action URL, signed with the official twilio library.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any, Literal
from urllib.parse import parse_qsl
from xml.etree import ElementTree

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from twilio.request_validator import RequestValidator

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "twilio-auth-token-0123456789abcdef"
API_VERSION = "2010-04-01"
E164_DIGITS = range(2, 16)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

_SCRIPTED_ERRORS = {
    429: (20429, "Too Many Requests"),
    500: (20500, "Internal Server Error"),
    502: (20502, "Bad Gateway"),
    503: (20503, "Service Unavailable"),
}


@dataclass(kw_only=True)
class TwilioRequest:
    """One request as the fake received it (recorded before any check, so refused ones are here too)."""

    resource: Literal["Messages", "Calls"]
    path_account_sid: str
    content_type: str
    authorization: str | None
    form: dict[str, str]
    """The last value of each field; `pairs` keeps repeats."""
    pairs: list[tuple[str, str]] = field(default_factory=list[tuple[str, str]])


class FakeTwilio:
    """Twilio's Messages and Calls resources. `fail_next` scripts errors (429, 5xx) for the next requests."""

    def __init__(self, *, account_sid: str = ACCOUNT_SID, auth_token: str = AUTH_TOKEN) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.requests: list[TwilioRequest] = []
        self.created: list[dict[str, Any]] = []
        """Every resource answered with 201."""
        self._scripted: list[tuple[int, str | None]] = []
        base = f"/{API_VERSION}/Accounts/{{account_sid}}"
        self.app = Starlette(
            routes=[
                Route(f"{base}/Messages.json", self._messages, methods=["POST"]),
                Route(f"{base}/Calls.json", self._calls, methods=["POST"]),
            ]
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)

    def fail_next(self, status: int, *, times: int = 1, retry_after: str | None = None) -> None:
        """Answer the next `times` authenticated requests with `status` (429, 500, 502 or 503) and Twilio's JSON,
        with a `Retry-After` header if given."""
        self._scripted += [(status, retry_after)] * times

    @property
    def messages(self) -> list[dict[str, Any]]:
        return [r for r in self.created if r["sid"].startswith("SM")]

    @property
    def calls(self) -> list[dict[str, Any]]:
        return [r for r in self.created if r["sid"].startswith("CA")]

    async def _messages(self, request: Request) -> JSONResponse:
        received, refusal = await self._receive(request, "Messages")
        if refusal is not None:
            return refusal
        form = received.form
        to, from_, body = form.get("To", ""), form.get("From", ""), form.get("Body", "")
        if not to:
            return _error(400, 21604, "A 'To' phone number is required.")
        if not from_:
            return _error(400, 21603, "A 'From' phone number is required.")
        if not body and not form.get("MediaUrl"):
            return _error(400, 21602, "Message body is required.")
        if not _e164(to):
            return _error(400, 21211, f"Invalid 'To' Phone Number: {to}")
        if not _e164(from_):
            return _error(400, 21212, f"Invalid 'From' Phone Number: {from_}")
        if len(body) > 1600:
            return _error(400, 21617, "The concatenated message body exceeds the 1600 character limit.")
        sid = "SM" + secrets.token_hex(16)
        resource = {
            **self._resource_common(sid, "Messages"),
            "body": body,
            "from": from_,
            "to": to,
            "num_media": "0",
            "num_segments": str(-(-len(body) // 153) if len(body) > 160 else 1),
            "messaging_service_sid": None,
            "error_code": None,
            "error_message": None,
            "date_sent": None,
            "subresource_uris": {"media": f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{sid}/Media.json"},
        }
        self.created.append(resource)
        return JSONResponse(resource, status_code=201)

    async def _calls(self, request: Request) -> JSONResponse:
        received, refusal = await self._receive(request, "Calls")
        if refusal is not None:
            return refusal
        form = received.form
        to, from_, twiml = form.get("To", ""), form.get("From", ""), form.get("Twiml", "")
        if not to:
            return _error(400, 21201, "No 'To' number is specified")
        if not from_:
            return _error(400, 21213, "No 'From' number is specified")
        if not twiml and not form.get("Url") and not form.get("ApplicationSid"):
            return _error(400, 21205, "Either a 'Url', 'ApplicationSid' or 'Twiml' parameter is required.")
        if not _e164(to):
            return _error(400, 21211, f"Invalid 'To' Phone Number: {to}")
        if not _e164(from_):
            return _error(400, 21212, f"Invalid 'From' Phone Number: {from_}")
        if twiml:
            if len(twiml) > 4000:
                return _error(400, 32018, "Twiml size exceeded maximum allowed value of 4000 characters")
            try:
                root = ElementTree.fromstring(twiml)
            except ElementTree.ParseError:
                return _error(400, 12100, "Document parse failure")
            if root.tag != "Response":
                return _error(400, 12100, "Document parse failure: the root element must be <Response>")
        sid = "CA" + secrets.token_hex(16)
        resource = {
            **self._resource_common(sid, "Calls"),
            "from": from_,
            "from_formatted": from_,
            "to": to,
            "to_formatted": to,
            "answered_by": None,
            "caller_name": None,
            "duration": None,
            "start_time": None,
            "end_time": None,
            "parent_call_sid": None,
            "phone_number_sid": None,
            "queue_time": "0",
            "subresource_uris": {
                "recordings": f"/{API_VERSION}/Accounts/{self.account_sid}/Calls/{sid}/Recordings.json",
            },
        }
        self.created.append(resource)
        return JSONResponse(resource, status_code=201)

    async def _receive(
        self, request: Request, resource: Literal["Messages", "Calls"]
    ) -> tuple[TwilioRequest, JSONResponse | None]:
        content_type = request.headers.get("content-type", "")
        raw = (await request.body()).decode()
        # Like Twilio, read only a form body: anything else reaches the checks as an empty form.
        pairs = parse_qsl(raw, keep_blank_values=True) if content_type.startswith(_FORM) else []
        received = TwilioRequest(
            resource=resource,
            path_account_sid=request.path_params["account_sid"],
            content_type=content_type,
            authorization=request.headers.get("authorization"),
            form=dict(pairs),
            pairs=pairs,
        )
        self.requests.append(received)
        if _basic_auth(received.authorization) != (self.account_sid, self.auth_token):
            return received, _error(
                401, 20003, "Authenticate", headers={"WWW-Authenticate": 'Basic realm="Twilio API"'}
            )
        if received.path_account_sid != self.account_sid:
            path = request.url.path
            return received, _error(404, 20404, f"The requested resource {path} was not found")
        if self._scripted:
            status, retry_after = self._scripted.pop(0)
            code, message = _SCRIPTED_ERRORS.get(status, (status * 100, "Error"))
            headers = {"Retry-After": retry_after} if retry_after is not None else None
            return received, _error(status, code, message, headers=headers)
        return received, None

    def _resource_common(self, sid: str, resource: str) -> dict[str, Any]:
        now = formatdate(usegmt=True)
        return {
            "sid": sid,
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "status": "queued",
            "direction": "outbound-api",
            "date_created": now,
            "date_updated": now,
            "price": None,
            "price_unit": "USD",
            "uri": f"/{API_VERSION}/Accounts/{self.account_sid}/{resource}/{sid}.json",
        }


_FORM = "application/x-www-form-urlencoded"


def _e164(number: str) -> bool:
    return number.startswith("+") and number[1:].isdigit() and number[1] != "0" and len(number) - 1 in E164_DIGITS


def _basic_auth(header: str | None) -> tuple[str, str] | None:
    scheme, _, credentials = (header or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, _, password = base64.b64decode(credentials, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return user, password


def _error(status: int, code: int, message: str, *, headers: dict[str, str] | None = None) -> JSONResponse:
    body = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    return JSONResponse(body, status_code=status, headers=headers)


async def post_gather(
    http: httpx.AsyncClient,
    url: str,
    auth_token: str,
    digits: str,
    *,
    to: str,
    from_: str,
    call_sid: str,
    account_sid: str = ACCOUNT_SID,
    signature: str | None = None,
) -> httpx.Response:
    """POST a `<Gather>` result to `url` as Twilio does, signed by the official library with `auth_token`.

    `to` and `from_` are the call's: on a page, `from_` is the Twilio number and `to` the human.
    `signature` replaces the computed one (a forged request).
    """
    params = {
        "AccountSid": account_sid,
        "ApiVersion": API_VERSION,
        "CallSid": call_sid,
        "CallStatus": "in-progress",
        "Called": to,
        "Caller": from_,
        "Digits": digits,
        "Direction": "outbound-api",
        "FinishedOnKey": "",
        "From": from_,
        "To": to,
        "msg": "Gather End",
    }
    computed = RequestValidator(auth_token).compute_signature(url, params)
    headers = {
        "X-Twilio-Signature": computed if signature is None else signature,
        "I-Twilio-Idempotency-Token": secrets.token_hex(16),
        "User-Agent": "TwilioProxy/1.1",
    }
    return await http.post(url, data=params, headers=headers)
