"""The region's mailer (platform/core/mail.py) against a real SMTP server in this process
(aiosmtpd): plain SMTP to a local relay, STARTTLS and implicit TLS with a login, and the
failures an operator meets (wrong password, server down, untrusted certificate, a server
without STARTTLS), each a MailNotSent whose reason names the cause and never the
recipient. Without a server, the embedded default writes mails to its outbox folder."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import ipaddress
import logging
import ssl
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import msgspec
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from konsil.platform.cli.launcher import mail_lines
from konsil.platform.core.mail import (
    Mail,
    MailNotSent,
    NoMailer,
    OutboxMailer,
    RecipientRefused,
    SmtpMailer,
    build_mailer,
    outbox_folder,
)
from konsil.platform.core.settings import ConfigError, Settings, SmtpSettings, load_settings
from tests.conftest import bare_region, free_port

RECIPIENT = "ingrid.berg@klinikk.example"
MAIL = Mail(
    to=RECIPIENT,
    subject="Invitasjon til Legesenteret på Konsil",
    text="Hei,\n\nÅpne lenken: http://127.0.0.1/invitations/abc\n",
    html='<p>Hei,</p><p><a href="http://127.0.0.1/invitations/abc">lenke</a></p>',
    language="nb",
)


@dataclass
class Inbox:
    """What the SMTP server received: (envelope sender, recipients, parsed message)."""

    received: list[tuple[str, list[str], Any]] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.received.append((envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 OK"


def _authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (b"konsil", b"s3cret-pass")
    return AuthResult(success=ok, handled=False)


@dataclass
class Certificate:
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    """A self-signed certificate for 127.0.0.1 (a private relay's, trusted with ca_file)."""
    folder = tmp_path_factory.mktemp("tls")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mail.test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return Certificate(folder / "cert.pem", folder / "key.pem")


@pytest.fixture
def server() -> Iterator[tuple[Inbox, int]]:
    """A plain SMTP server (a relay on the same host: no TLS, no login)."""
    inbox, port = Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


def smtp(port: int, **values: Any) -> SmtpSettings:
    base: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "security": "none",
        "from_address": "Konsil <no-reply@eu.konsil.example>",
        "timeout_seconds": 5,
    }
    return SmtpSettings(**{**base, **values})


async def test_a_mail_goes_to_a_local_relay_as_text_with_an_html_alternative(server: tuple[Inbox, int]) -> None:
    inbox, port = server
    await SmtpMailer(smtp(port)).send(MAIL)
    [(sender, recipients, message)] = inbox.received
    assert sender == "no-reply@eu.konsil.example" and recipients == [RECIPIENT]
    assert message["Subject"] == MAIL.subject and message["Content-Language"] == "nb"
    assert message["Auto-Submitted"] == "auto-generated" and message["Message-ID"].endswith("@eu.konsil.example>")
    assert "Åpne lenken: http://127.0.0.1/invitations/abc" in message.get_body(("plain",)).get_content()
    assert 'href="http://127.0.0.1/invitations/abc"' in message.get_body(("html",)).get_content()


async def test_starttls_with_a_login_and_a_private_ca(certificate: Certificate) -> None:
    inbox, port = Inbox(), free_port()
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=port,
        tls_context=certificate.server_context(),
        require_starttls=True,
        authenticator=_authenticator,
        auth_require_tls=True,
    )
    controller.start()
    try:
        settings = smtp(
            port, security="starttls", username="konsil", password="s3cret-pass", ca_file=str(certificate.cert)
        )
        await SmtpMailer(settings).send(MAIL)
        assert [r for _, r, _ in inbox.received] == [[RECIPIENT]]
        # A wrong password: refused, and the reason says so without the recipient.
        with pytest.raises(MailNotSent) as refused:
            await SmtpMailer(msgspec.structs.replace(settings, password="wrong")).send(MAIL)
        assert "refused the login (535)" in refused.value.reason and RECIPIENT not in refused.value.reason
        # Without the private CA the certificate is not trusted: nothing is sent in the clear.
        with pytest.raises(MailNotSent) as untrusted:
            await SmtpMailer(msgspec.structs.replace(settings, ca_file="")).send(MAIL)
        assert "cannot be trusted" in untrusted.value.reason
        assert len(inbox.received) == 1
    finally:
        controller.stop()


async def test_implicit_tls_with_a_password_read_from_the_key_service(certificate: Certificate) -> None:
    inbox, port = Inbox(), free_port()
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=port,
        server_hostname="127.0.0.1",
        ssl_context=certificate.server_context(),
        authenticator=_authenticator,
        auth_require_tls=False,  # aiosmtpd sees only STARTTLS as TLS; this connection is TLS throughout
    )
    controller.start()
    try:
        reads = []

        async def from_vault() -> str:
            reads.append(1)
            return "s3cret-pass"

        settings = smtp(
            port, security="tls", username="konsil", password_path="konsil/smtp", ca_file=str(certificate.cert)
        )
        mailer = SmtpMailer(settings, from_vault)
        await mailer.send(MAIL)
        await mailer.send(MAIL)
        assert len(inbox.received) == 2 and reads == [1], "the password is read once, when first needed"
    finally:
        controller.stop()


async def test_failures_name_their_cause_and_never_the_recipient(
    server: tuple[Inbox, int], caplog: pytest.LogCaptureFixture
) -> None:
    inbox, port = server
    caplog.set_level(logging.WARNING, logger="konsil.mail")
    with pytest.raises(MailNotSent) as down:
        await SmtpMailer(smtp(free_port())).send(MAIL)
    assert "cannot reach the SMTP server 127.0.0.1:" in down.value.reason
    with pytest.raises(MailNotSent) as no_tls:
        await SmtpMailer(smtp(port, security="starttls")).send(MAIL)
    assert "does not offer STARTTLS" in no_tls.value.reason
    assert inbox.received == []

    async def vault_down() -> str:
        raise RuntimeError("the region's Vault does not answer")

    with pytest.raises(MailNotSent) as no_password:
        await SmtpMailer(smtp(port, security="starttls", username="konsil", password_path="p"), vault_down).send(MAIL)
    assert "could not be read from the region's Vault" in no_password.value.reason
    assert caplog.records and all(RECIPIENT not in r.getMessage() for r in caplog.records)


async def test_the_embedded_default_writes_mails_to_its_outbox(tmp_path: Path) -> None:
    settings = Settings(mode="embedded", data_dir=str(tmp_path), regions=[bare_region("eu")])
    mailer = build_mailer(settings, settings.regions[0])
    assert isinstance(mailer, OutboxMailer) and mailer.folder == tmp_path / "outbox-eu"
    await mailer.send(MAIL)
    [written] = list((tmp_path / "outbox-eu").glob("*.eml"))
    assert stat.S_IMODE(written.stat().st_mode) == 0o600 and stat.S_IMODE(written.parent.stat().st_mode) == 0o700
    message = email.message_from_bytes(written.read_bytes(), policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    plain = message.get_body(("plain",))
    assert message["To"] == RECIPIENT and plain is not None and "Åpne lenken" in plain.get_content()
    # konsil up says where.
    assert mail_lines(settings) == [
        f"  mail of eu      written to {(tmp_path / 'outbox-eu').resolve()}/ (no SMTP server configured)"
    ]


async def test_services_mode_without_a_server_sends_nothing_and_says_which_setting() -> None:
    settings = Settings(mode="services", regions=[bare_region("eu")])
    mailer = build_mailer(settings, settings.regions[0])
    assert isinstance(mailer, NoMailer) and outbox_folder(settings, settings.regions[0]) is None
    with pytest.raises(MailNotSent, match=r"regions\.eu\.smtp\.host"):
        await mailer.send(MAIL)
    assert mail_lines(settings) == []


def test_bad_smtp_settings_are_one_line_naming_the_key(tmp_path: Path) -> None:
    region = """
[[regions]]
id = "eu"
jurisdiction = "EU"
public_url = "http://127.0.0.1:8101"
listen = "127.0.0.1:8101"
database = "sqlite:///x.db"
internal_secret = "0123456789abcdef"
[regions.smtp]
"""
    cases = {
        'host = "mail.example"': "regions.eu.smtp: from_address is required when host is set",
        'host = "m"\nfrom_address = "a@b.example"\nsecurity = "none"\nusername = "u"': "needs security = starttls",
        'host = "m"\nfrom_address = "a@b.example"\nsecurity = "ssl"': "regions.eu.smtp.security",
        'host = "m"\nfrom_address = "a@b.example"\nport = 0': "regions.eu.smtp.port",
    }
    for lines, expected in cases.items():
        path = tmp_path / "konsil.toml"
        path.write_text(region + lines + "\n")
        with pytest.raises(ConfigError, match=expected.replace(".", r"\.")):
            load_settings(path, environ={})
    path.write_text(region + 'host = "smtp.example"\nfrom_address = "Konsil <no-reply@example.org>"\n')
    loaded = load_settings(path, environ={"KONSIL_REGIONS__EU__SMTP__PASSWORD": "from-the-environment"})
    assert loaded.region("eu").smtp.password == "from-the-environment"
    assert loaded.region("eu").smtp.port == 587 and loaded.region("eu").smtp.security == "starttls"


@dataclass
class Refusing:
    """A server that answers RCPT with ``answer`` ("550 ..." or "450 ...")."""

    answer: str

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        return self.answer


@pytest.mark.parametrize(
    ("answer", "permanent"),
    [("550 5.1.1 No such mailbox", True), ("450 4.2.1 Mailbox busy, try later", False)],
)
async def test_a_refused_recipient_is_told_apart_from_an_outage(answer: str, permanent: bool) -> None:
    port = free_port()
    controller = Controller(Refusing(answer), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        mailer = SmtpMailer(SmtpSettings(host="127.0.0.1", port=port, security="none", from_address="k@konsil.example"))
        with pytest.raises(MailNotSent) as failed:
            await mailer.send(MAIL)
    finally:
        controller.stop()
    # A 5xx is for good (the address must change); a 4xx may pass (try again later).
    assert isinstance(failed.value, RecipientRefused) is permanent
    assert "refused the recipient" in failed.value.reason and RECIPIENT not in failed.value.reason
