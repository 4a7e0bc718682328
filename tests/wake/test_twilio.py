"""Twilio SMS and call pages against a fake Twilio over real HTTP; signatures against the official library."""

from __future__ import annotations

import base64
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from xml.etree import ElementTree

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from twilio.request_validator import RequestValidator

from brain_server.exceptions import ConfigError
from brain_server.wake.base import ChannelError, Page, PageLinks
from brain_server.wake.twilio import (
    SMS_MAX_CHARS,
    TWIML_MAX_CHARS,
    TwilioCallChannel,
    TwilioSmsChannel,
    gather_twiml,
    reply_twiml,
    twilio_signature,
    verify_twilio_signature,
)
from shared_protocol.secrets import Secret
from shared_protocol.wake import TwilioConfig
from tests.fakes.serve import serve_app
from tests.fakes.twilio import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio, post_gather

pytestmark = pytest.mark.anyio

FROM = "+15005550006"
TO = "+15551234567"
BRAIN = "https://brain.example.com"
LINKS = PageLinks(
    approve=f"{BRAIN}/answer/approve-tok",
    deny=f"{BRAIN}/answer/deny-tok",
    acknowledge=f"{BRAIN}/answer/ack-tok",
    gather=f"{BRAIN}/twilio/gather?t=gather-tok&lvl=2",
)
DECISION = Page(
    page_id="pg_1",
    kind="decision",
    subject_id="dec_1",
    title="Decision needs a human: rewrite billing",
    summary="The agent wants to drop the invoices table. Confidence 0.41.",
    facts={"agent": "claude", "body": "laptop"},
    target=TO,
    links=LINKS,
)
ALERT = replace(
    DECISION,
    kind="alert",
    subject_id="alr_1",
    title="Alert: the audit chain is broken",
    links=replace(LINKS, approve=None, deny=None),
)


@dataclass
class Twilio:
    fake: FakeTwilio
    config: TwilioConfig
    http: httpx.AsyncClient

    def sms(self, token: str = AUTH_TOKEN) -> TwilioSmsChannel:
        return TwilioSmsChannel(self.http, self.config, Secret(token, source="env:TWILIO_AUTH_TOKEN"))

    def call(self, token: str = AUTH_TOKEN) -> TwilioCallChannel:
        return TwilioCallChannel(self.http, self.config, Secret(token, source="env:TWILIO_AUTH_TOKEN"))


@pytest.fixture
async def twilio() -> AsyncIterator[Twilio]:
    fake = FakeTwilio()
    async with serve_app(fake) as base_url, httpx.AsyncClient() as http:
        config = TwilioConfig(account_sid=ACCOUNT_SID, from_number=FROM, api_base=base_url)
        yield Twilio(fake, config, http)


def _says(twiml: str) -> list[str]:
    return [say.text or "" for say in ElementTree.fromstring(twiml).iter("Say")]


# --- SMS ----------------------------------------------------------------------------------------


async def test_an_sms_page_is_posted_as_a_form_with_basic_auth_and_returns_the_message_sid(twilio: Twilio) -> None:
    delivery = await twilio.sms().send(DECISION)

    [request] = twilio.fake.requests
    assert request.resource == "Messages"
    assert request.path_account_sid == ACCOUNT_SID
    assert request.content_type.startswith("application/x-www-form-urlencoded")
    assert request.authorization == "Basic " + base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
    assert request.form["To"] == TO
    assert request.form["From"] == FROM
    [message] = twilio.fake.messages
    assert delivery.channel == "sms"
    assert delivery.target == TO
    assert delivery.provider_id == message["sid"]
    assert message["sid"].startswith("SM")
    assert message["status"] == "queued"


async def test_an_sms_carries_the_title_summary_and_the_three_answer_links(twilio: Twilio) -> None:
    await twilio.sms().send(DECISION)

    body = twilio.fake.requests[0].form["Body"]
    assert body.startswith(DECISION.title + "\n" + DECISION.summary)
    assert f"Approve: {LINKS.approve}" in body
    assert f"Deny: {LINKS.deny}" in body
    assert f"Acknowledge: {LINKS.acknowledge}" in body


async def test_an_alert_sms_carries_only_the_acknowledge_link(twilio: Twilio) -> None:
    await twilio.sms().send(ALERT)

    body = twilio.fake.requests[0].form["Body"]
    assert f"Acknowledge: {LINKS.acknowledge}" in body
    assert "Approve" not in body
    assert "Deny" not in body


async def test_an_sms_without_links_is_the_title_and_summary(twilio: Twilio) -> None:
    await twilio.sms().send(replace(DECISION, links=None))

    assert twilio.fake.requests[0].form["Body"] == f"{DECISION.title}\n{DECISION.summary}"


async def test_a_long_summary_is_shortened_so_the_sms_fits_and_keeps_every_link(twilio: Twilio) -> None:
    await twilio.sms().send(replace(DECISION, summary="word " * 1000))

    body = twilio.fake.requests[0].form["Body"]
    assert len(body) <= SMS_MAX_CHARS
    assert "...\nApprove: " in body
    assert body.endswith(f"Acknowledge: {LINKS.acknowledge}")
    assert len(twilio.fake.messages) == 1  # Twilio accepted it


# --- calls --------------------------------------------------------------------------------------


async def test_a_call_page_carries_inline_twiml_that_gathers_one_digit(twilio: Twilio) -> None:
    delivery = await twilio.call().send(DECISION)

    [request] = twilio.fake.requests
    assert request.resource == "Calls"
    assert (request.form["To"], request.form["From"]) == (TO, FROM)
    assert "Url" not in request.form
    root = ElementTree.fromstring(request.form["Twiml"])
    assert root.tag == "Response"
    gather, after = list(root)
    assert gather.tag == "Gather"
    assert gather.attrib == {
        "input": "dtmf",
        "numDigits": "1",
        "action": LINKS.gather,
        "method": "POST",
        "timeout": "10",
    }
    [say] = list(gather)
    assert say.tag == "Say"
    assert DECISION.title in (say.text or "")
    assert DECISION.summary in (say.text or "")
    assert (say.text or "").endswith("Press 1 to approve, 2 to deny.")
    assert (after.tag, after.text) == ("Say", "No answer was recorded.")
    [call] = twilio.fake.calls
    assert delivery.channel == "call"
    assert delivery.provider_id == call["sid"]
    assert call["sid"].startswith("CA")


async def test_an_alert_call_asks_for_1_to_acknowledge(twilio: Twilio) -> None:
    await twilio.call().send(ALERT)

    says = _says(twilio.fake.requests[0].form["Twiml"])
    assert says[0].endswith("Press 1 to acknowledge.")
    assert "approve" not in says[0]


async def test_a_call_without_links_reads_the_page_and_asks_for_the_answer_on_discord(twilio: Twilio) -> None:
    await twilio.call().send(replace(DECISION, links=None))

    root = ElementTree.fromstring(twilio.fake.requests[0].form["Twiml"])
    assert root.find("Gather") is None
    [say] = _says(twilio.fake.requests[0].form["Twiml"])
    assert DECISION.summary in say
    assert "Discord" in say


async def test_twiml_escapes_whatever_the_page_says(twilio: Twilio) -> None:
    hostile = "Ship it</Say></Gather><Dial>+19005550000</Dial><Say>& \"quoted\" 'too'\x01"
    page = replace(DECISION, title="<Response>", summary=hostile)

    await twilio.call().send(page)

    twiml = twilio.fake.requests[0].form["Twiml"]
    root = ElementTree.fromstring(twiml)
    assert root.find(".//Dial") is None
    assert [element.tag for element in root.iter()] == ["Response", "Gather", "Say", "Say"]
    assert hostile.replace("\x01", "") in _says(twiml)[0]
    assert root.find("Gather").attrib["action"] == LINKS.gather  # type: ignore[union-attr]  # "&" in the URL
    assert len(twilio.fake.calls) == 1


async def test_a_long_summary_is_shortened_so_the_twiml_fits(twilio: Twilio) -> None:
    twiml = gather_twiml(replace(DECISION, summary="&<>" * 5000))
    assert len(twiml) <= TWIML_MAX_CHARS
    assert _says(twiml)[0].endswith("Press 1 to approve, 2 to deny.")

    await twilio.call().send(replace(DECISION, summary="&<>" * 5000))
    assert len(twilio.fake.calls) == 1


def test_reply_twiml_says_the_text_escaped() -> None:
    twiml = reply_twiml("Approved <dec_1> & logged")
    root = ElementTree.fromstring(twiml)
    assert root.tag == "Response"
    assert [(e.tag, e.text) for e in root] == [("Say", "Approved <dec_1> & logged")]


# --- errors -------------------------------------------------------------------------------------


async def test_a_wrong_auth_token_is_a_final_error_that_never_shows_the_token(
    twilio: Twilio, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "wrong-token-that-must-not-leak"

    with pytest.raises(ChannelError) as caught:
        await twilio.sms(wrong).send(DECISION)

    error = caught.value
    assert (error.channel, error.status, error.retryable) == ("sms", 401, False)
    assert "20003" in str(error)
    assert "Authenticate" in str(error)  # Twilio's own message
    for secret in (wrong, AUTH_TOKEN, base64.b64encode(f"{ACCOUNT_SID}:{wrong}".encode()).decode()):
        assert secret not in str(error)
        assert secret not in repr(error.args)
        assert secret not in caplog.text


async def test_an_invalid_number_is_a_final_error(twilio: Twilio) -> None:
    with pytest.raises(ChannelError) as caught:
        await twilio.call().send(replace(DECISION, target="555-1234"))

    assert (caught.value.status, caught.value.retryable) == (400, False)
    assert "21211" in str(caught.value)


@pytest.mark.parametrize("status", [429, 500, 503])
async def test_rate_limits_and_server_errors_are_retryable(twilio: Twilio, status: int) -> None:
    twilio.fake.fail_next(status)

    with pytest.raises(ChannelError) as caught:
        await twilio.sms().send(DECISION)

    assert (caught.value.status, caught.value.retryable) == (status, True)
    assert AUTH_TOKEN not in str(caught.value)
    await twilio.sms().send(DECISION)  # the next attempt goes through
    assert len(twilio.fake.messages) == 1


async def test_an_unreachable_twilio_is_retryable() -> None:
    async with httpx.AsyncClient() as http:
        # Port 9 on loopback (discard) has no listener here: the connection is refused.
        config = TwilioConfig(account_sid=ACCOUNT_SID, from_number=FROM, api_base="http://127.0.0.1:9")
        with pytest.raises(ChannelError) as caught:
            await TwilioSmsChannel(http, config, Secret(AUTH_TOKEN)).send(DECISION)

    assert (caught.value.status, caught.value.retryable) == (None, True)
    assert AUTH_TOKEN not in str(caught.value)


async def test_a_page_without_a_number_is_refused_before_any_request(twilio: Twilio) -> None:
    with pytest.raises(ChannelError) as caught:
        await twilio.sms().send(replace(DECISION, target=""))

    assert not caught.value.retryable
    assert twilio.fake.requests == []


@pytest.mark.parametrize(
    ("config", "token"),
    [
        (TwilioConfig(account_sid="", from_number=FROM), AUTH_TOKEN),
        (TwilioConfig(account_sid=ACCOUNT_SID, from_number=""), AUTH_TOKEN),
        (TwilioConfig(account_sid=ACCOUNT_SID, from_number=FROM), ""),
    ],
)
async def test_an_incomplete_configuration_is_refused_when_the_channel_is_made(
    config: TwilioConfig, token: str
) -> None:
    async with httpx.AsyncClient() as http:
        with pytest.raises(ConfigError):
            TwilioSmsChannel(http, config, Secret(token))


# --- signatures ---------------------------------------------------------------------------------

DOCS_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"


def _docs_params(number: str) -> dict[str, str]:
    return {"CallSid": "CA1234567890ABCDE", "Caller": number, "Digits": "1234", "From": number, "To": "+18005551212"}


@pytest.mark.parametrize(
    ("number", "signature"),
    [
        # The worked example of twilio.com/docs/usage/security ("Validating requests"), two versions of it.
        ("+14158675310", "GvWf1cFY/Q7PnoempGyD5oXAezc="),
        ("+12349013030", "0/KCTR6DLpKmkAf8muzZqo1nDgQ="),
        ("+14158675309", "RSOYDt4T1cUTdK1PDd93/VVr8B8="),  # twilio-python's tests
    ],
)
def test_the_signature_matches_twilios_documented_examples(number: str, signature: str) -> None:
    assert twilio_signature("12345", DOCS_URL, _docs_params(number)) == signature
    assert verify_twilio_signature("12345", DOCS_URL, _docs_params(number), signature)


def test_repeated_parameters_are_signed_each_value_in_order() -> None:
    # twilio-python's vector for `Digits=5678&Digits=1234`.
    params = {"Sid": "CA123", "SidAccount": "AC123", "Digits": ["5678", "1234"]}
    assert twilio_signature("12345", DOCS_URL, params) == "IK+Dwps556ElfBT0I3Rgjkr1wJU="


@pytest.mark.parametrize(
    ("url", "params"),
    [
        ("https://brain.example.com/twilio/gather?t=abc", {"Digits": "1", "CallSid": "CA1", "To": "+15551234567"}),
        ("https://brain.example.com/twilio/gather", {}),
        ("http://127.0.0.1:8080/twilio/gather?a=1&a=2", {"Digits": "", "msg": "Gather End"}),
        ("https://brain.example.com/g", {"Body": "héllo wörld ✓", "From": "+4915112345678"}),
        ("https://brain.example.com/g", {"b": "2", "a": "1", "B": "3", "_": "4", "a1": "5"}),
    ],
)
def test_the_signature_is_the_one_the_official_library_computes(url: str, params: dict[str, str]) -> None:
    token = "0123456789abcdef0123456789abcdef"
    expected = RequestValidator(token).compute_signature(url, params)

    assert twilio_signature(token, url, params) == expected
    assert verify_twilio_signature(token, url, params, expected)


@pytest.mark.parametrize(
    ("url", "signature"),
    [
        # twilio-python's port vectors: Twilio may sign the URL with the port or without it.
        (DOCS_URL, "kvajT1Ptam85bY51eRf/AJRuM3w="),  # signed as https://mycompany.com:443/...
        (DOCS_URL.replace("https", "http"), "0ZXoZLH/DfblKGATFgpif+LLRf4="),  # signed as http://...:80/...
        (DOCS_URL.replace(".com", ".com:1234"), "RSOYDt4T1cUTdK1PDd93/VVr8B8="),  # signed without the port
        (DOCS_URL.replace(".com", ".com:1234").replace("https", "http"), "Zmvh+3yNM1Phv2jhDCwEM3q5ebU="),
    ],
)
def test_verification_accepts_the_url_with_and_without_its_port(url: str, signature: str) -> None:
    params = _docs_params("+14158675309")
    assert RequestValidator("12345").validate(url, params, signature)  # the official library agrees
    assert verify_twilio_signature("12345", url, params, signature)


def test_verification_refuses_a_changed_request_a_wrong_token_or_a_junk_signature() -> None:
    params = _docs_params("+14158675309")
    good = "RSOYDt4T1cUTdK1PDd93/VVr8B8="

    assert not verify_twilio_signature("12345", DOCS_URL, {**params, "Digits": "1"}, good)
    assert not verify_twilio_signature("12345", DOCS_URL + "&x=1", params, good)
    assert not verify_twilio_signature("54321", DOCS_URL, params, good)
    assert not verify_twilio_signature("12345", DOCS_URL, params, "")
    assert not verify_twilio_signature("12345", DOCS_URL, params, "ünïcødé")


async def test_post_gather_is_signed_so_that_verification_accepts_it_and_rejects_a_forgery() -> None:
    received: list[tuple[str, dict[str, str], bool]] = []

    async def gather(request: Request) -> Response:
        form = {key: str(value) for key, value in (await request.form()).items()}
        valid = verify_twilio_signature(
            AUTH_TOKEN, str(request.url), form, request.headers.get("X-Twilio-Signature", "")
        )
        received.append((str(request.url), form, valid))
        if not valid:
            return Response(status_code=403)
        return Response(reply_twiml("Approved."), media_type="application/xml")

    app = Starlette(routes=[Route("/twilio/gather", gather, methods=["POST"])])
    async with serve_app(app) as base_url, httpx.AsyncClient() as http:
        url = f"{base_url}/twilio/gather?t=gather-tok"
        answered = await post_gather(http, url, AUTH_TOKEN, "1", to=TO, from_=FROM, call_sid="CA" + "1" * 32)
        forged = await post_gather(
            http, url, AUTH_TOKEN, "1", to=TO, from_=FROM, call_sid="CA" + "1" * 32, signature="forged="
        )

    assert answered.status_code == 200
    assert _says(answered.text) == ["Approved."]
    assert forged.status_code == 403
    url_seen, form, valid = received[0]
    assert valid
    assert url_seen == url
    assert (form["Digits"], form["To"], form["From"], form["AccountSid"]) == ("1", TO, FROM, ACCOUNT_SID)


@pytest.mark.parametrize(
    ("header", "expected"), [("7", 7.0), ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0), (None, None), ("soon", None)]
)
async def test_a_rate_limit_carries_twilios_retry_after(
    twilio: Twilio, header: str | None, expected: float | None
) -> None:
    twilio.fake.fail_next(429, retry_after=header)

    with pytest.raises(ChannelError) as caught:
        await twilio.sms().send(DECISION)

    assert (caught.value.status, caught.value.retry_after) == (429, expected)
