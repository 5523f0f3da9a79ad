"""The encryption collector: sealed columns, transport and end-to-end calls.

Transport is probed live: the region's public address is a real TLS server on loopback
(Python's ssl, as an ingress would terminate TLS) with a certificate made for the test
and trusted through ``SSL_CERT_FILE``; the failing cases are plain HTTP, a certificate
nobody trusts and a server that still takes TLS 1.1."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import ssl
import uuid
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from konsil.compliance.evidence import encryption
from konsil.compliance.evidence.model import Observation
from konsil.platform.core.region import RegionContext
from konsil.platform.core.settings import VaultSettings
from konsil.tenants.tables import Call, Member, Visit
from tests.compliance.evidence.conftest import (
    VISITOR_NAME,
    Org,
    assert_no_personal_data,
    new_org,
    new_request,
    new_visit,
    scope_of,
    with_region,
)

HSTS = "max-age=63072000; includeSubDomains"


async def collected(ctx: RegionContext, org: Org) -> Observation:
    observation = await encryption.collect(ctx, scope_of(org.id))
    assert_no_personal_data(observation, org.owner_email)
    return observation


# --- sealed columns ---------------------------------------------------------------------------


async def test_sealed_values_pass(ctx: RegionContext) -> None:
    org = await new_org(ctx)
    await new_visit(ctx, org)
    await new_request(ctx, org)
    check = (await collected(ctx, org)).check("sealed_columns")
    assert check.result == "pass", check
    # Owner name and e-mail, visitor name and phone, the request's identifier.
    assert check.figures["values"] == check.figures["sealed"] == 5 and check.figures["sealed_share"] == 1.0
    assert "nothing was decrypted" in check.reason


async def test_a_plaintext_value_in_a_sealed_column_is_named_by_row(ctx: RegionContext) -> None:
    org = await new_org(ctx)
    visit_id, _ = await new_visit(ctx, org)
    await Visit.update({Visit.name: VISITOR_NAME}).where(Visit.id == visit_id)

    observation = await collected(ctx, org)  # asserts the name itself appears nowhere

    check = observation.check("sealed_columns")
    assert check.result == "fail"
    assert check.figures["plaintext"] == 1 and check.figures["sealed_share"] == 0.75
    assert f"visit.name (1: row {visit_id})" in check.reason
    [scan] = [s for s in observation.evidence["columns"] if s["table"] == "visit" and s["column"] == "name"]
    assert scan["plaintext_ids"] == [str(visit_id)]


async def test_a_value_sealed_under_another_organisations_key_is_not_sealed_here(ctx: RegionContext) -> None:
    org, other = await new_org(ctx), await new_org(ctx)
    [theirs] = await Member.select(Member.email).where(Member.org_id == other.id)
    await Member.update({Member.email: theirs["email"]}).where(Member.id == org.owner_id)
    check = (await collected(ctx, org)).check("sealed_columns")
    assert check.result == "fail" and f"member.email (1: row {org.owner_id})" in check.reason


# --- transport ----------------------------------------------------------------------------------


def certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (its own CA): (certificate, key)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


@asynccontextmanager
async def tls_server(cert: Path, key: Path, *, old_protocols: bool = False) -> AsyncIterator[int]:
    """An HTTPS endpoint on loopback answering every request with HSTS; its port."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    if old_protocols:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            context.minimum_version = ssl.TLSVersion.TLSv1
        context.set_ciphers("DEFAULT:@SECLEVEL=0")

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(f"HTTP/1.1 200 OK\r\nStrict-Transport-Security: {HSTS}\r\nContent-Length: 0\r\n\r\n".encode())
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError, ssl.SSLError):
            pass  # a probe that only shakes hands, or is refused
        finally:
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=context)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


@pytest.fixture
def trusted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A certificate the probe trusts, as a public CA's would be."""
    cert, key = certificate(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    return cert, key


async def test_tls_1_2_or_later_with_a_trusted_certificate_passes(
    ctx: RegionContext, trusted: tuple[Path, Path]
) -> None:
    org = await new_org(ctx)
    async with tls_server(*trusted) as port:
        observation = await collected(with_region(ctx, public_url=f"https://127.0.0.1:{port}"), org)
    check = observation.check("transport_encrypted")
    assert check.result == "pass", check
    assert check.figures["protocol"] in ("TLSv1.2", "TLSv1.3") and check.figures["old_protocols_refused"] is True
    assert "TLS 1.0 and 1.1 were refused" in check.reason and "it sends HSTS" in check.reason
    assert observation.evidence["public_address"]["hsts"] == HSTS


async def test_plain_http_fails(ctx: RegionContext) -> None:
    org = await new_org(ctx)
    check = (await collected(with_region(ctx, public_url="http://127.0.0.1:9"), org)).check("transport_encrypted")
    assert check.result == "fail" and "http://127.0.0.1:9 is plain HTTP" in check.reason


async def test_a_server_that_still_takes_tls_1_1_fails(ctx: RegionContext, trusted: tuple[Path, Path]) -> None:
    org = await new_org(ctx)
    async with tls_server(*trusted, old_protocols=True) as port:
        check = (await collected(with_region(ctx, public_url=f"https://127.0.0.1:{port}"), org)).check(
            "transport_encrypted"
        )
    assert check.result == "fail" and check.figures["old_protocols_refused"] is False
    assert "also accepts TLS 1.0 or 1.1" in check.reason


async def test_an_untrusted_certificate_fails(ctx: RegionContext, tmp_path: Path) -> None:
    org = await new_org(ctx)
    async with tls_server(*certificate(tmp_path)) as port:
        check = (await collected(with_region(ctx, public_url=f"https://127.0.0.1:{port}"), org)).check(
            "transport_encrypted"
        )
    assert check.result == "fail" and "the certificate did not verify" in check.reason


async def test_a_key_service_over_plain_http_on_the_network_fails(
    ctx: RegionContext, trusted: tuple[Path, Path]
) -> None:
    org = await new_org(ctx)
    vault = VaultSettings(backend="vault", url="http://vault.eu.internal:8200", token="t")
    async with tls_server(*trusted) as port:
        check = (
            await encryption.collect(
                with_region(ctx, public_url=f"https://127.0.0.1:{port}", vault=vault), scope_of(org.id)
            )
        ).check("transport_encrypted")
    assert check.result == "fail" and "reaches its key service over plain HTTP" in check.reason


# --- calls --------------------------------------------------------------------------------------


async def test_calls_whose_start_and_join_are_logged_pass(ctx: RegionContext) -> None:
    org = await new_org(ctx)
    await new_visit(ctx, org)
    await new_visit(ctx, org)
    check = (await collected(ctx, org)).check("calls_end_to_end")
    assert check.result == "pass", check
    assert check.figures["calls"] == 2 and "DTLS-SRTP" in check.reason


async def test_a_call_without_its_entries_is_named(ctx: RegionContext) -> None:
    org = await new_org(ctx)
    visit_id, _ = await new_visit(ctx, org, admit=False)
    unlogged = uuid.uuid4()
    now = dt.datetime.now(dt.UTC)
    await Call.insert(
        Call(
            id=unlogged,
            org_id=org.id,
            room_id=org.room.id,
            visit_id=visit_id,
            expert_id=org.owner_id,
            started_at=now,
            expires_at=now + dt.timedelta(days=30),
        )
    )
    check = (await collected(ctx, org)).check("calls_end_to_end")
    assert check.result == "fail"
    assert check.figures["start_not_logged"] == 1 and check.figures["join_not_logged"] == 0
    assert str(unlogged) in check.reason


async def test_no_calls_is_not_applicable(ctx: RegionContext) -> None:
    org = await new_org(ctx)
    assert (await collected(ctx, org)).check("calls_end_to_end").result == "not_applicable"
