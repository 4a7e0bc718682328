"""Email: pages sent over SMTP, in plain text, with links that open a confirmation page.

smtplib blocks, so each page is sent in a worker thread, every socket operation bounded by the
configured timeout. A link in a mail only ever shows a form (mail scanners follow links); the
answer is given when the human confirms there. The password appears in no error and no log.
"""

from __future__ import annotations

import contextlib
import smtplib
import ssl
from datetime import UTC
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

import anyio.to_thread
import httpx

from shared_protocol.config import SwarmConfig
from shared_protocol.secrets import Secret, SecretResolver
from shared_protocol.wake import EmailConfig

from ..exceptions import ConfigError
from .base import BuildChannels, ChannelError, ChannelKind, ChannelSet, Delivery, Page, read_secret


class EmailChannel:
    """Mails each page to `page.target`. `ssl_context` overrides the system's trust store (a private CA)."""

    name = "email"

    def __init__(
        self, config: EmailConfig, *, password: Secret | None = None, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        if not config.host:
            raise ConfigError("email.host is empty: the email channel cannot send anything")
        if not config.from_addr:
            raise ConfigError("email.from_addr is empty: set the address pages are sent from")
        if config.username and not password:
            raise ConfigError("email.username is set but email.password is not")
        self._config = config
        self._password = password
        self._ssl_context = ssl_context or ssl.create_default_context()

    async def send(self, page: Page) -> Delivery:
        if not page.target:
            raise ChannelError("the page has no address to send to", channel=self.name)
        try:
            message = email_message(page, from_addr=self._config.from_addr, to=page.target)
        except ValueError as exc:  # a header with a line break in it, or an address that cannot be one
            raise ChannelError(f"cannot write the mail: {exc}", channel=self.name) from exc
        try:
            await anyio.to_thread.run_sync(self._deliver, message, page.target)
        except (smtplib.SMTPException, OSError) as exc:
            raise self._error(exc) from exc
        return Delivery(channel=self.name, target=page.target, provider_id=str(message["Message-ID"]))

    def _deliver(self, message: EmailMessage, to: str) -> None:
        config = self._config
        if config.security == "tls":
            smtp = smtplib.SMTP_SSL(config.host, config.port, timeout=config.timeout_s, context=self._ssl_context)
        else:
            smtp = smtplib.SMTP(config.host, config.port, timeout=config.timeout_s)
        try:
            if config.security == "starttls":
                smtp.starttls(context=self._ssl_context)
            if config.username and self._password:
                smtp.login(config.username, self._password.reveal())
            smtp.send_message(message, from_addr=config.from_addr, to_addrs=[to])
        finally:
            # The mail is accepted once DATA is answered: a failing QUIT must not turn that into an error.
            with contextlib.suppress(smtplib.SMTPException, OSError):
                smtp.quit()
            smtp.close()

    def _error(self, exc: smtplib.SMTPException | OSError) -> ChannelError:
        where = f"{self._config.host}:{self._config.port}"
        if isinstance(exc, smtplib.SMTPRecipientsRefused):
            code, reply = next(iter(exc.recipients.values()), (-1, b""))
            return self._refusal(f"{where} refused the recipient", code, reply)
        if isinstance(exc, smtplib.SMTPAuthenticationError):
            return self._refusal(f"{where} refused the login of {self._config.username}", exc.smtp_code, exc.smtp_error)
        if isinstance(exc, smtplib.SMTPResponseException):
            return self._refusal(f"{where} refused the mail", exc.smtp_code, exc.smtp_error)
        if isinstance(exc, smtplib.SMTPServerDisconnected):
            # Also what a read timeout becomes ("Connection unexpectedly closed: timed out").
            return ChannelError(f"{where}: {self._redact(str(exc))}", channel=self.name, retryable=True)
        if isinstance(exc, smtplib.SMTPException):
            # No STARTTLS or no AUTH where the configuration needs them: retrying cannot help.
            return ChannelError(f"{where}: {self._redact(str(exc))}", channel=self.name)
        if isinstance(exc, ssl.SSLCertVerificationError):
            return ChannelError(
                f"{where}: the server's certificate is not trusted: {exc.verify_message}", channel=self.name
            )
        reason = self._redact(exc.strerror or str(exc)) or type(exc).__name__
        return ChannelError(f"cannot reach {where}: {reason}", channel=self.name, retryable=True)

    def _refusal(self, what: str, code: int, reply: bytes | str) -> ChannelError:
        text = reply.decode(errors="replace") if isinstance(reply, bytes) else reply
        # 4xx is a transient refusal (greylisting, a full mailbox, a busy server); 5xx is final.
        return ChannelError(
            f"{what}: {code} {self._redact(text)}".rstrip(),
            channel=self.name,
            retryable=not 500 <= code < 600,
            status=code if code > 0 else None,
        )

    def _redact(self, text: str) -> str:
        password = self._password.reveal() if self._password else ""
        return text.replace(password, "…") if password else text


class EmailFactory:
    """`[email]` → the `email` channel (SMTP), mailing the addresses in `to` by default."""

    kinds = (ChannelKind(name="email"),)

    def filled_in(self, config: SwarmConfig) -> bool:
        return bool(config.email.host)

    def prepare(self, config: SwarmConfig, secrets: SecretResolver) -> BuildChannels | None:
        email = config.email
        password = read_secret(secrets, email.password)
        if not email.host:
            return None

        def build(_http: httpx.AsyncClient) -> ChannelSet:  # (SMTP: no HTTP client)
            return ChannelSet(
                channels={"email": EmailChannel(email, password=password)}, recipients={"email": list(email.to)}
            )

        return build

    def problems(self, config: SwarmConfig) -> list[str]:
        return []


def email_message(page: Page, *, from_addr: str, to: str) -> EmailMessage:
    """The page as a plain-text mail with its own `Message-ID` (the delivery's provider id)."""
    message = EmailMessage()
    message["Subject"] = " ".join(page.title.split())
    message["From"] = from_addr
    message["To"] = to
    message["Date"] = formatdate(localtime=False)
    # The domain of the sender, not make_msgid's default (the host's FQDN, a DNS lookup that can hang).
    message["Message-ID"] = make_msgid(domain=from_addr.rpartition("@")[2] or "swarm.invalid")
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to the brain
    message.set_content(_body(page))
    return message


def _body(page: Page) -> str:
    lines = [page.summary, ""]
    lines += [f"{label}: {value}" for label, value in page.facts.items()]
    if page.deadline is not None:
        lines.append(f"Deadline: {page.deadline.astimezone(UTC):%Y-%m-%d %H:%M} UTC (unanswered, it is denied)")
    lines.append("")
    links = page.links
    if links is None:
        verbs = f"`swarm approve {page.subject_id}` or `swarm deny {page.subject_id}`"
        lines.append(f"Answer on Discord, or with {verbs}." if page.kind == "decision" else "Answer on Discord.")
    else:
        lines.append("Each link opens a confirmation page; nothing happens until you confirm there.")
        lines.append("")
        if links.approve:
            lines.append(f"Approve: {links.approve}")
        if links.deny:
            lines.append(f"Deny: {links.deny}")
        lines.append(f"Acknowledge (stop paging, answer later): {links.acknowledge}")
    lines += ["", "-- ", f"Swarm, page {page.page_id} (level {page.level + 1}, attempt {page.attempt})"]
    return "\n".join(lines) + "\n"
