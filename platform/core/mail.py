"""A region's e-mail: member invitations and password resets.

One small interface (``Mailer``) with the backend chosen by configuration
(``regions.<id>.smtp``, platform/core/settings.py):

- ``SmtpMailer``: the region's SMTP server (STARTTLS, implicit TLS, or none for a
  relay on the same host), with an optional login whose password may live in the
  region's Vault. The standard library's ``smtplib`` runs in a worker thread.
- ``OutboxMailer``: the embedded default without a server writes each mail as an
  ``.eml`` file (mode 0600) into a folder under the data directory, so a trial works
  without a mail server (``konsil up`` prints where).
- ``NoMailer``: services mode without a server; every send fails clearly.

A mail that does not go out raises ``MailNotSent`` with a reason an operator can act
on and no personal data in it (no address, no name): callers keep what they made (the
invitation or reset stays valid) and tell the person the mail could not be sent.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import secrets
import smtplib
import socket
import ssl
from collections.abc import Awaitable, Callable
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from pathlib import Path
from typing import Protocol

import msgspec

from konsil.platform.core.settings import RegionSettings, Settings, SmtpSettings

log = logging.getLogger("konsil.mail")

# The sender of a mail written to the outbox when no address is configured.
OUTBOX_SENDER = "Konsil <no-reply@localhost>"


class Mail(msgspec.Struct, frozen=True, kw_only=True):
    """One mail to one person: plain text, with an optional simple HTML alternative."""

    to: str
    subject: str
    text: str
    html: str | None = None
    language: str = "en"


class MailNotSent(Exception):
    """The mail did not go out. ``reason`` names the cause for the operator's log and
    never holds the recipient's address or any other personal data."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RecipientRefused(MailNotSent):
    """The mail server refused the recipient's address for good (a 5xx answer to RCPT:
    no such mailbox, a domain it will not deliver to): sending again cannot help, the
    address must change."""


class Mailer(Protocol):
    @property
    def description(self) -> str:
        """Where mails go, in words for operators (no secrets)."""
        ...

    async def send(self, mail: Mail) -> None:
        """Deliver ``mail`` or raise ``MailNotSent``."""
        ...


def build_message(mail: Mail, sender: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = mail.to
    message["Subject"] = mail.subject
    message["Date"] = format_datetime(dt.datetime.now(dt.UTC))
    domain = parseaddr(sender)[1].rpartition("@")[2] or "localhost"
    message["Message-ID"] = make_msgid(domain=domain)
    # An automatic message: no out-of-office replies (RFC 3834).
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(mail.text)
    if mail.html is not None:
        message.add_alternative(mail.html, subtype="html")
    message["Content-Language"] = mail.language  # after the content, which resets Content-* headers
    return message


PasswordSource = Callable[[], Awaitable[str]]


class SmtpMailer:
    """Sends through the region's SMTP server, one connection per mail."""

    def __init__(self, settings: SmtpSettings, password: PasswordSource | None = None) -> None:
        self.settings = settings
        self._password_source = password
        self._password: str | None = settings.password or None

    @property
    def description(self) -> str:
        security = {"starttls": "STARTTLS", "tls": "TLS", "none": "no encryption"}[self.settings.security]
        return f"the SMTP server {self.settings.host}:{self.settings.port} ({security})"

    async def _login_password(self) -> str:
        if self._password is not None or not self.settings.username:
            return self._password or ""
        if self._password_source is None:
            return ""
        try:
            self._password = await self._password_source()
        except Exception as exc:  # the key service's own errors name no person
            raise MailNotSent(f"the SMTP password could not be read from the region's Vault ({exc})") from None
        return self._password

    async def send(self, mail: Mail) -> None:
        password = await self._login_password()
        message = build_message(mail, self.settings.from_address)
        try:
            await asyncio.to_thread(self._deliver, message, password)
        except MailNotSent as exc:
            log.warning("a mail was not sent: %s", exc.reason)
            raise

    def _context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.settings.ca_file or None)

    def _deliver(self, message: EmailMessage, password: str) -> None:
        s = self.settings
        # The host's own name, without a DNS lookup (smtplib's default may wait on one).
        name = socket.gethostname() or "localhost"
        try:
            smtp: smtplib.SMTP
            if s.security == "tls":
                smtp = smtplib.SMTP_SSL(
                    s.host, s.port, local_hostname=name, timeout=s.timeout_seconds, context=self._context()
                )
            else:
                smtp = smtplib.SMTP(s.host, s.port, local_hostname=name, timeout=s.timeout_seconds)
            with smtp:
                smtp.ehlo()
                if s.security == "starttls":
                    smtp.starttls(context=self._context())
                    smtp.ehlo()
                if s.username:
                    smtp.login(s.username, password)
                smtp.send_message(message)
        except smtplib.SMTPRecipientsRefused as exc:
            if all(code >= 500 for code, _ in exc.recipients.values()):
                raise RecipientRefused(self._reason(exc)) from None
            raise MailNotSent(self._reason(exc)) from None  # 4xx: greylisted, mailbox busy; may pass
        except Exception as exc:
            raise MailNotSent(self._reason(exc)) from None

    def _reason(self, exc: Exception) -> str:
        """Why sending failed, without the recipient's address (smtplib puts it into
        some of its errors)."""
        s = self.settings
        where = f"{s.host}:{s.port}"
        if isinstance(exc, smtplib.SMTPAuthenticationError):
            return f"the SMTP server {where} refused the login ({exc.smtp_code})"
        if isinstance(exc, smtplib.SMTPRecipientsRefused):
            codes = sorted({str(code) for code, _ in exc.recipients.values()})
            return f"the SMTP server {where} refused the recipient ({', '.join(codes)})"
        if isinstance(exc, smtplib.SMTPSenderRefused):
            return f"the SMTP server {where} refused the sender address ({exc.smtp_code})"
        if isinstance(exc, smtplib.SMTPNotSupportedError):
            if "AUTH" in str(exc):
                return f"the SMTP server {where} offers no login (AUTH) on this connection"
            return f"the SMTP server {where} does not offer STARTTLS (set security to tls or check the port)"
        if isinstance(exc, smtplib.SMTPServerDisconnected):
            return f"the SMTP server {where} closed the connection"
        if isinstance(exc, smtplib.SMTPResponseException):
            return f"the SMTP server {where} answered {exc.smtp_code}"
        if isinstance(exc, ssl.SSLCertVerificationError):
            return f"the SMTP server {where} has a certificate that cannot be trusted ({exc.verify_message})"
        if isinstance(exc, ssl.SSLError):
            return f"TLS with the SMTP server {where} failed ({exc.reason or type(exc).__name__})"
        if isinstance(exc, TimeoutError):
            return f"the SMTP server {where} did not answer within {s.timeout_seconds:g} s"
        if isinstance(exc, OSError):
            return f"cannot reach the SMTP server {where} ({exc.strerror or type(exc).__name__})"
        return f"sending through the SMTP server {where} failed ({type(exc).__name__})"


class OutboxMailer:
    """Writes each mail as an ``.eml`` file into ``folder`` (0700; files 0600): the
    embedded default's mail when no SMTP server is configured."""

    def __init__(self, folder: Path, sender: str = "") -> None:
        self.folder = folder
        self.sender = sender or OUTBOX_SENDER

    @property
    def description(self) -> str:
        return f"the outbox folder {self.folder}"

    async def send(self, mail: Mail) -> None:
        message = build_message(mail, self.sender)
        try:
            await asyncio.to_thread(self._write, message.as_bytes())
        except OSError as exc:
            reason = f"the mail could not be written to {self.folder} ({exc.strerror or type(exc).__name__})"
            log.warning("a mail was not sent: %s", reason)
            raise MailNotSent(reason) from None

    def _write(self, data: bytes) -> Path:
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
        path = self.folder / f"{stamp}-{secrets.token_hex(4)}.eml"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        return path


class NoMailer:
    """Services mode without an SMTP server: nothing can be mailed, and each attempt
    says which setting is missing."""

    def __init__(self, region_id: str) -> None:
        self.region_id = region_id

    @property
    def description(self) -> str:
        return f"nowhere: no SMTP server is configured (regions.{self.region_id}.smtp.host)"

    async def send(self, mail: Mail) -> None:
        reason = f"no SMTP server is configured (regions.{self.region_id}.smtp.host)"
        log.warning("a mail was not sent: %s", reason)
        raise MailNotSent(reason)


def outbox_folder(settings: Settings, region: RegionSettings) -> Path | None:
    """The folder a region writes its mails to instead of sending them, if it does: the
    configured ``outbox``, or in the embedded default without an SMTP server
    ``<data_dir>/outbox-<region>``."""
    smtp = region.smtp
    if smtp.host:
        return None
    if smtp.outbox:
        return Path(smtp.outbox)
    if settings.mode == "embedded":
        return Path(settings.data_dir) / f"outbox-{region.id}"
    return None


def build_mailer(settings: Settings, region: RegionSettings, password: PasswordSource | None = None) -> Mailer:
    """The region's mailer by its settings; ``password`` reads the SMTP password from
    the region's Vault when ``smtp.password_path`` names it."""
    smtp = region.smtp
    if smtp.host:
        return SmtpMailer(smtp, password)
    folder = outbox_folder(settings, region)
    if folder is not None:
        return OutboxMailer(folder, smtp.from_address)
    return NoMailer(region.id)
