"""Twilio: pages by SMS and by phone call, and the signature that proves a callback came from Twilio.

Both channels POST form-encoded to the 2010-04-01 REST API with HTTP Basic auth (account SID,
auth token). A call carries its TwiML inline, so Twilio fetches nothing from the brain until
the human presses a key; it then POSTs the digit to the page's `gather` link, signed with the
auth token (`verify_twilio_signature`), and plays back the brain's `reply_twiml`.

All TwiML is built with ElementTree, so nothing a page says can break out of its element.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit
from xml.etree.ElementTree import Element, SubElement, tostring

import httpx

from shared_protocol.config import SwarmConfig
from shared_protocol.secrets import Secret, SecretResolver
from shared_protocol.wake import TwilioConfig

from ..exceptions import ConfigError
from .base import BuildChannels, ChannelError, ChannelKind, ChannelSet, Delivery, Page, read_secret, retry_after_s

API_VERSION = "2010-04-01"
SMS_MAX_CHARS = 1600
"""Twilio refuses a longer message body (error 21617)."""
TWIML_MAX_CHARS = 4000
"""Twilio refuses longer inline TwiML (error 32018)."""

_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
"""Characters XML 1.0 cannot carry, escaped or not: dropped from anything spoken."""


class _TwilioChannel:
    """What the SMS and call channels share: the account, the REST request, and its errors."""

    name: str
    _resource: str

    def __init__(self, http: httpx.AsyncClient, config: TwilioConfig, auth_token: Secret) -> None:
        for key in ("account_sid", "from_number"):
            if not getattr(config, key):
                raise ConfigError(f"twilio.{key} is empty: the {self.name} channel cannot page anyone")
        if not auth_token:
            raise ConfigError(f"twilio.auth_token is empty: the {self.name} channel cannot authenticate")
        self._config = config
        self._http = http
        self._auth_token = auth_token
        self._url = f"{config.api_base.rstrip('/')}/{API_VERSION}/Accounts/{config.account_sid}/{self._resource}.json"

    async def _create(self, page: Page, form: dict[str, str]) -> Delivery:
        if not page.target:
            raise ChannelError("the page has no phone number to send to", channel=self.name)
        auth = httpx.BasicAuth(self._config.account_sid, self._auth_token.reveal())
        try:
            response = await self._http.post(self._url, data=form, auth=auth)
        except httpx.TransportError as exc:
            reason = self._redact(str(exc)) or type(exc).__name__
            raise ChannelError(f"cannot reach Twilio: {reason}", channel=self.name, retryable=True) from exc
        body = _json_object(response)
        if not response.is_success:
            raise self._error(response.status_code, body, retry_after=retry_after_s(response.headers))
        sid = body.get("sid")
        return Delivery(channel=self.name, target=page.target, provider_id=sid if isinstance(sid, str) else None)

    def _error(self, status: int, body: dict[str, Any], *, retry_after: float | None = None) -> ChannelError:
        # Twilio's errors are `{"code": 21211, "message": "...", "more_info": "...", "status": 400}`.
        code, message = body.get("code"), body.get("message")
        text = f"Twilio answered {status}"
        if isinstance(code, int):
            text += f" (error {code})"
        if isinstance(message, str) and message:
            text += f": {self._redact(message)}"
        retryable = status == 429 or status >= 500
        return ChannelError(
            text, channel=self.name, retryable=retryable, status=status, retry_after=retry_after if retryable else None
        )

    def _redact(self, text: str) -> str:
        return text.replace(self._auth_token.reveal(), "…")


class TwilioSmsChannel(_TwilioChannel):
    """Pages by SMS: the title, the summary, and the answer links (each opens a confirmation page)."""

    name = "sms"
    _resource = "Messages"

    async def send(self, page: Page) -> Delivery:
        return await self._create(page, {"To": page.target, "From": self._config.from_number, "Body": sms_body(page)})


class TwilioCallChannel(_TwilioChannel):
    """Pages by phone call: reads the page out and takes the answer as a key press (`gather_twiml`)."""

    name = "call"
    _resource = "Calls"

    async def send(self, page: Page) -> Delivery:
        return await self._create(
            page, {"To": page.target, "From": self._config.from_number, "Twiml": gather_twiml(page)}
        )


class TwilioFactory:
    """`[twilio]` → the `sms` channel (answer links) and the `call` channel (a digit on the keypad), both paging the
    numbers in `to` by default."""

    kinds = (ChannelKind(name="sms"), ChannelKind(name="call", answers="keypad"))

    def filled_in(self, config: SwarmConfig) -> bool:
        return bool(config.twilio.account_sid)

    def prepare(self, config: SwarmConfig, secrets: SecretResolver) -> BuildChannels | None:
        twilio = config.twilio
        token = read_secret(secrets, twilio.auth_token)
        if not twilio.account_sid or token is None:
            return None

        def build(http: httpx.AsyncClient) -> ChannelSet:
            channels = {"sms": TwilioSmsChannel(http, twilio, token), "call": TwilioCallChannel(http, twilio, token)}
            return ChannelSet(channels=channels, recipients={"sms": list(twilio.to), "call": list(twilio.to)})

        return build

    def problems(self, config: SwarmConfig) -> list[str]:
        twilio = config.twilio
        if bool(twilio.account_sid) == bool(twilio.auth_token):
            return []
        missing = "auth_token" if twilio.account_sid else "account_sid"
        return [f"[twilio] {missing} is empty (the other is set): no SMS and no calls"]


def sms_body(page: Page) -> str:
    """The SMS text, at most `SMS_MAX_CHARS`: the summary is shortened so that the links always fit."""
    links = "\n".join(f"{label}: {url}" for label, url in _answers(page))
    room = SMS_MAX_CHARS - (len(links) + 1 if links else 0)
    # "..." rather than "…": one non-GSM character would make every segment of the SMS shorter.
    head = _clip(f"{page.title}\n{page.summary}".strip(), room, ellipsis="...")
    return f"{head}\n{links}" if links else head


def gather_twiml(page: Page) -> str:
    """The call's TwiML: the page read out, then one key press posted to `page.links.gather`.

    Without links (the brain has no public URL) the call only reads the page out and asks for the
    answer on Discord. The summary is shortened until the document fits `TWIML_MAX_CHARS`.
    """
    twiml = ""
    for room in (1000, 400, 100, 0):
        twiml = _call_twiml(page, room)
        if len(twiml) <= TWIML_MAX_CHARS:
            break
    return twiml


def reply_twiml(text: str) -> str:
    """`<Response><Say>text</Say></Response>`: what the gather endpoint answers Twilio with."""
    response = Element("Response")
    SubElement(response, "Say").text = _speakable(text)
    return tostring(response, encoding="unicode")


def _call_twiml(page: Page, room: int) -> str:
    title = _speakable(_clip(page.title, 200)).rstrip(". ")
    spoken = " ".join(part for part in (f"{title}." if title else "", _speakable(_clip(page.summary, room))) if part)
    response = Element("Response")
    if page.links is None or page.links.gather is None:
        SubElement(response, "Say").text = f"{spoken} Please answer on Discord."
        return tostring(response, encoding="unicode")
    gather = SubElement(
        response,
        "Gather",
        {"input": "dtmf", "numDigits": "1", "action": page.links.gather, "method": "POST", "timeout": "10"},
    )
    prompt = "Press 1 to approve, 2 to deny." if page.kind == "decision" else "Press 1 to acknowledge."
    SubElement(gather, "Say").text = f"{spoken} {prompt}"
    SubElement(response, "Say").text = "No answer was recorded."
    return tostring(response, encoding="unicode")


def twilio_signature(auth_token: str, url: str, params: Mapping[str, str | Sequence[str]]) -> str:
    """The `X-Twilio-Signature` of a request: base64 HMAC-SHA1, keyed by the auth token, of the full URL
    followed by each POST parameter's name and value, names in code-point order, a repeated name's
    values sorted (an exact duplicate counted once, as twilio-python does)."""
    signed = url + "".join(name + value for name in sorted(params) for value in sorted(set(_values(params[name]))))
    digest = hmac.new(auth_token.encode(), signed.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def verify_twilio_signature(
    auth_token: str, url: str, params: Mapping[str, str | Sequence[str]], signature: str
) -> bool:
    """Whether `signature` signs this request. Twilio is not consistent about ports in the URL it signs,
    so, like its own validators, this accepts the URL without a port and with one (the default if none)."""
    expected = signature.encode()
    valid = False
    for candidate in _url_variants(url):
        # Every candidate is compared, in constant time, so timing does not tell which one matched.
        valid |= hmac.compare_digest(twilio_signature(auth_token, candidate, params).encode(), expected)
    return valid


def _url_variants(url: str) -> set[str]:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:  # not a number: only the URL as given can have been signed
        return {url}
    userinfo, at, hostport = parts.netloc.rpartition("@")
    host = hostport[: hostport.rindex(":")] if port is not None else hostport.removesuffix(":")
    default = 443 if parts.scheme == "https" else 80
    without_port = urlunsplit(parts._replace(netloc=f"{userinfo}{at}{host}"))
    with_port = urlunsplit(parts._replace(netloc=f"{userinfo}{at}{host}:{port or default}"))
    return {url, without_port, with_port}


def _values(value: str | Sequence[str]) -> Sequence[str]:
    return [value] if isinstance(value, str) else value


def _answers(page: Page) -> list[tuple[str, str]]:
    links = page.links
    if links is None:
        return []
    pairs = (("Approve", links.approve), ("Deny", links.deny), ("Acknowledge", links.acknowledge))
    return [(label, url) for label, url in pairs if url]


def _clip(text: str, limit: int, *, ellipsis: str = "…") -> str:
    if len(text) <= limit:
        return text
    if limit <= len(ellipsis):
        return ""
    return text[: limit - len(ellipsis)].rstrip() + ellipsis


def _speakable(text: str) -> str:
    return _NOT_XML.sub("", text)


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:  # not JSON (a proxy's HTML error page, an empty body)
        return {}
    return cast(dict[str, Any], body) if isinstance(body, dict) else {}
