"""Email pages against a real SMTP server (aiosmtpd) on 127.0.0.1: plain, STARTTLS, implicit TLS, login."""

from __future__ import annotations

import email
import email.policy
import logging
import socket
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from brain_server.exceptions import ConfigError
from brain_server.wake.base import ChannelError, Page, PageLinks
from brain_server.wake.email import EmailChannel
from shared_protocol.secrets import Secret
from shared_protocol.wake import EmailConfig
from tests.fakes.static_http import Tls, self_signed

pytestmark = pytest.mark.anyio

FROM = "swarm@brain.example.com"
TO = "oncall@example.com"
USERNAME = "swarm"
PASSWORD = "smtp-password-that-must-not-leak"
BRAIN = "https://brain.example.com"
LINKS = PageLinks(
    approve=f"{BRAIN}/answer/approve-tok",
    deny=f"{BRAIN}/answer/deny-tok",
    acknowledge=f"{BRAIN}/answer/ack-tok",
    gather=f"{BRAIN}/twilio/gather?t=gather-tok",
)
DECISION = Page(
    page_id="pg_1",
    kind="decision",
    subject_id="dec_1",
    title="Decision needs a human: rewrite billing",
    summary="The agent wants to drop the invoices table.",
    facts={"agent": "claude", "body": "laptop"},
    deadline=datetime(2030, 1, 2, 3, 4, tzinfo=UTC),
    target=TO,
    links=LINKS,
)
ALERT = replace(
    DECISION, kind="alert", subject_id="alr_1", deadline=None, links=replace(LINKS, approve=None, deny=None)
)


@dataclass
class Recorder:
    """An aiosmtpd handler that keeps every mail, and refuses the recipients in `refuse` with their reply."""

    refuse: dict[str, str] = field(default_factory=dict[str, str])
    envelopes: list[Envelope] = field(default_factory=list[Envelope])
    sessions: list[Session] = field(default_factory=list[Session])
    encrypted: list[bool] = field(default_factory=list[bool])
    """Per mail: whether it came over TLS (STARTTLS sets `session.ssl`; implicit TLS is the transport's)."""

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.envelopes.append(envelope)
        self.sessions.append(session)
        transport = server.transport
        over_tls = transport is not None and transport.get_extra_info("ssl_object") is not None
        self.encrypted.append(session.ssl is not None or over_tls)
        return "250 Message accepted for delivery"

    def message(self) -> EmailMessage:
        [envelope] = self.envelopes
        assert isinstance(envelope.content, bytes)
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed

    def text(self) -> str:
        """The body of the one mail received, with the wire's CRLF line ends as LF."""
        return self.message().get_content().replace("\r\n", "\n")


def _authenticate(server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        USERNAME.encode(),
        PASSWORD.encode(),
    )
    return AuthResult(success=ok, handled=False)


def _free_port() -> int:
    # aiosmtpd's Controller needs its port up front (it connects to it to check the server is up).
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Smtp:
    recorder: Recorder
    port: int


@contextmanager
def _serve(**kwargs: Any) -> Generator[Smtp]:
    recorder = Recorder()
    port = _free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    try:
        yield Smtp(recorder, port)
    finally:
        controller.stop()


@pytest.fixture
def smtp() -> Iterator[Smtp]:
    """Plain SMTP, no login."""
    with _serve() as server:
        yield server


@pytest.fixture
def smtp_login() -> Iterator[Smtp]:
    """Plain SMTP that offers a login (without TLS, for the test only); `session.authenticated` tells."""
    with _serve(authenticator=_authenticate, auth_require_tls=False) as server:
        yield server


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    """A self-signed certificate for 127.0.0.1: the server's context, and a client context that trusts it."""
    return self_signed(tmp_path_factory.mktemp("tls"), "127.0.0.1")


def _config(port: int, **overrides: Any) -> EmailConfig:
    defaults: dict[str, Any] = {"host": "127.0.0.1", "security": "none", "from_addr": FROM, "timeout_s": 5}
    return EmailConfig(port=port, **{**defaults, **overrides})


# --- delivery -----------------------------------------------------------------------------------


async def test_a_page_arrives_with_its_envelope_headers_and_answer_links(smtp: Smtp) -> None:
    delivery = await EmailChannel(_config(smtp.port)).send(DECISION)

    [envelope] = smtp.recorder.envelopes
    assert smtp.recorder.encrypted == [False]
    assert envelope.mail_from == FROM
    assert envelope.rcpt_tos == [TO]
    message = smtp.recorder.message()
    assert message["Subject"] == DECISION.title
    assert message["From"] == FROM
    assert message["To"] == TO
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Message-ID"] == delivery.provider_id
    assert message["Message-ID"].endswith("@brain.example.com>")
    assert message["Date"]
    assert message.get_content_type() == "text/plain"
    text = smtp.recorder.text()
    assert text.startswith(DECISION.summary)
    assert "agent: claude\nbody: laptop\n" in text
    assert "2030-01-02 03:04 UTC" in text
    assert "confirmation page" in text
    assert f"Approve: {LINKS.approve}\n" in text
    assert f"Deny: {LINKS.deny}\n" in text
    assert LINKS.acknowledge in text
    assert (delivery.channel, delivery.target) == ("email", TO)


async def test_an_alert_mail_has_only_the_acknowledge_link(smtp: Smtp) -> None:
    await EmailChannel(_config(smtp.port)).send(ALERT)

    text = smtp.recorder.text()
    assert LINKS.acknowledge in text
    assert "Approve" not in text
    assert "Deny" not in text


async def test_a_mail_without_links_says_where_else_to_answer(smtp: Smtp) -> None:
    await EmailChannel(_config(smtp.port)).send(replace(DECISION, links=None))

    text = smtp.recorder.text()
    assert "swarm approve dec_1" in text
    assert "http" not in text


async def test_a_title_with_line_breaks_cannot_add_headers(smtp: Smtp) -> None:
    await EmailChannel(_config(smtp.port)).send(replace(DECISION, title="Rewrite billing\r\nBcc: thief@example.com"))

    message = smtp.recorder.message()
    assert message["Bcc"] is None
    assert message["Subject"] == "Rewrite billing Bcc: thief@example.com"
    assert smtp.recorder.envelopes[0].rcpt_tos == [TO]


async def test_login_with_the_right_password(smtp_login: Smtp) -> None:
    channel = EmailChannel(_config(smtp_login.port, username=USERNAME), password=Secret(PASSWORD))

    await channel.send(DECISION)

    [session] = smtp_login.recorder.sessions
    assert session.authenticated


async def test_starttls_then_login(tls: Tls) -> None:
    with _serve(tls_context=tls.server, require_starttls=True, authenticator=_authenticate, auth_required=True) as smtp:
        config = _config(smtp.port, security="starttls", username=USERNAME)

        await EmailChannel(config, password=Secret(PASSWORD), ssl_context=tls.client).send(DECISION)

        [session] = smtp.recorder.sessions
        assert smtp.recorder.encrypted == [True]
        assert session.authenticated


async def test_implicit_tls(tls: Tls) -> None:
    with _serve(ssl_context=tls.server) as smtp:
        await EmailChannel(_config(smtp.port, security="tls"), ssl_context=tls.client).send(DECISION)

        assert smtp.recorder.encrypted == [True]


# --- errors -------------------------------------------------------------------------------------


async def test_a_wrong_password_fails_clearly_without_showing_it(
    smtp_login: Smtp, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="brain_server")
    wrong = "wrong-password-that-must-not-leak"
    channel = EmailChannel(_config(smtp_login.port, username=USERNAME), password=Secret(wrong))

    with pytest.raises(ChannelError) as caught:
        await channel.send(DECISION)

    error = caught.value
    assert (error.channel, error.status, error.retryable) == ("email", 535, False)
    assert USERNAME in str(error)
    for secret in (wrong, PASSWORD):
        assert secret not in str(error)
        assert secret not in repr(error.args)
        assert secret not in caplog.text
    assert smtp_login.recorder.envelopes == []


async def test_a_refused_recipient_is_a_final_error(smtp: Smtp) -> None:
    smtp.recorder.refuse[TO] = "550 5.1.1 No such user here"

    with pytest.raises(ChannelError) as caught:
        await EmailChannel(_config(smtp.port)).send(DECISION)

    assert (caught.value.status, caught.value.retryable) == (550, False)
    assert "No such user here" in str(caught.value)
    assert smtp.recorder.envelopes == []


async def test_a_temporary_refusal_is_retryable(smtp: Smtp) -> None:
    smtp.recorder.refuse[TO] = "450 4.2.1 Mailbox busy, try again later"

    with pytest.raises(ChannelError) as caught:
        await EmailChannel(_config(smtp.port)).send(DECISION)

    assert (caught.value.status, caught.value.retryable) == (450, True)


async def test_an_untrusted_certificate_is_a_final_error(tls: Tls) -> None:
    with _serve(tls_context=tls.server, require_starttls=True) as smtp:
        # The system's trust store does not know the test's self-signed certificate.
        with pytest.raises(ChannelError) as caught:
            await EmailChannel(_config(smtp.port, security="starttls")).send(DECISION)

        assert not caught.value.retryable
        assert smtp.recorder.envelopes == []


async def test_an_unreachable_server_is_retryable() -> None:
    channel = EmailChannel(_config(_free_port(), username=USERNAME), password=Secret(PASSWORD))

    with pytest.raises(ChannelError) as caught:
        await channel.send(DECISION)

    assert (caught.value.status, caught.value.retryable) == (None, True)
    assert PASSWORD not in str(caught.value)


async def test_a_server_that_never_greets_times_out_as_retryable() -> None:
    with socket.socket() as listener:
        # Listening without accepting: the connection opens (the kernel's backlog), no greeting ever comes.
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        config = _config(listener.getsockname()[1], timeout_s=0.3)

        with pytest.raises(ChannelError) as caught:
            await EmailChannel(config).send(DECISION)

    assert caught.value.retryable


async def test_a_page_without_an_address_is_refused_before_connecting() -> None:
    with pytest.raises(ChannelError) as caught:
        await EmailChannel(_config(_free_port())).send(replace(DECISION, target=""))

    assert not caught.value.retryable


@pytest.mark.parametrize(
    ("config", "password"),
    [
        (EmailConfig(host="", from_addr=FROM), None),
        (EmailConfig(host="smtp.example.com", from_addr=""), None),
        (EmailConfig(host="smtp.example.com", from_addr=FROM, username=USERNAME), None),
    ],
)
def test_an_incomplete_configuration_is_refused_when_the_channel_is_made(
    config: EmailConfig, password: Secret | None
) -> None:
    with pytest.raises(ConfigError):
        EmailChannel(config, password=password)
