"""Encryption evidence (GDPR 32(1)(a), HIPAA 164.312(a)(2)(iv) and (e), Normen FA 54).

- ``sealed_columns``: every ``EncryptedText`` column of every table holding the
  organisation's rows (the tables removed with it, and its payment records) is scanned
  in SQL, in this region's database: a value counts as sealed when it has the shape of a
  field envelope (``kf1:<data key id>:<base64 of nonce, ciphertext and tag>``) and names
  one of the organisation's own field data keys. Values are never decrypted or read
  into the process; rows that fail are named by table, column and row id only.
- ``transport_encrypted``: a live TLS handshake with the region's public address
  (certificate and host name verified, TLS 1.2 or later; TLS 1.0 and 1.1 must be
  refused) and the address of the region's key service (HTTPS unless on loopback).
- ``calls_end_to_end``: the calls of the period: each call's start and its visitor's
  join are in the access log; media runs browser to browser over DTLS-SRTP (WebRTC has
  no unencrypted media), the region's TURN relays forward only encrypted packets, and
  no media or recording path exists on the server.
"""

from __future__ import annotations

import asyncio
import ssl
import uuid
import warnings
from typing import Any
from urllib.parse import urlsplit

import msgspec
from piccolo.table import Table

from konsil.compliance.access_log.tables import AccessLogEntry
from konsil.compliance.evidence.common import NAMED, failed, listing, not_applicable, observation, passed, plural
from konsil.compliance.evidence.model import Check, Observation, Scope
from konsil.platform.core import database
from konsil.platform.core.keys.cipher import FORMAT
from konsil.platform.core.keys.tables import EncryptedText
from konsil.platform.core.region import RegionContext
from konsil.tenants.tables import Organisation, PaymentRecord

COLLECTOR = "encryption"
DESCRIPTION = (
    "Scanned every encrypted column of the organisation's rows in the region's database for "
    "values that are not sealed envelopes, made a TLS handshake with the region's public "
    "address, and matched the calls of the period with their access-log entries."
)
PROBE_TIMEOUT = 5.0
LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})

# A sealed field: "kf1:" (4 characters), a data key id (32 hex), ":" (at 37), then base64
# of at least the nonce and tag (28 bytes: 40 characters); the key must be one of the
# organisation's field keys.
_PREFIX = f"{FORMAT}:"
_SEPARATOR_AT = len(_PREFIX) + 32 + 1
_MIN_BODY = 40


def sealed_predicate(column: str, postgres: bool) -> str:
    """SQL that is true when ``column`` holds a sealed envelope under the organisation's
    field keys; its one placeholder is the organisation id."""
    body = f"substr({column}, {_SEPARATOR_AT + 1})"
    body_ok = f"{body} ~ '^[A-Za-z0-9+/]+=?=?$'" if postgres else f"{body} NOT GLOB '*[^A-Za-z0-9+/=]*'"
    # The column comes from the table definitions, never from input.
    return (
        f"(substr({column}, 1, {len(_PREFIX)}) = '{_PREFIX}' AND substr({column}, {_SEPARATOR_AT}, 1) = ':' "  # noqa: S608
        f"AND length({column}) >= {_SEPARATOR_AT + _MIN_BODY} AND (length({column}) - {_SEPARATOR_AT}) % 4 = 0 "
        f"AND {body_ok} AND substr({column}, {len(_PREFIX) + 1}, 32) IN "
        "(SELECT k.id FROM tenant_data_key k WHERE k.org_id = {} AND k.purpose = 'field'))"
    )


class ColumnScan(msgspec.Struct, kw_only=True):
    table: str
    column: str
    values: int  # values present (not NULL)
    sealed: int
    plaintext: int  # values that are not a sealed envelope under the organisation's keys
    plaintext_ids: list[str]  # the first NAMED rows holding one, by id


class TlsProbe(msgspec.Struct, kw_only=True):
    url: str
    https: bool
    reached: bool = False
    protocol: str | None = None
    cipher: str | None = None
    certificate_verified: bool = False
    # True: refused, False: accepted, None: could not be tried from here.
    old_protocols_refused: bool | None = None
    hsts: str | None = None  # the Strict-Transport-Security header, if the address sends one
    error: str | None = None


async def collect(region: RegionContext, scope: Scope) -> Observation:
    scans = await scan_columns(region, scope.org_id)
    probe = await probe_tls(region.region.public_url)
    key_service = _key_service_transport(region)
    calls = await _calls(region, scope)
    checks = [
        _sealed_columns(scans),
        _transport_encrypted(probe, key_service),
        _calls_end_to_end(calls),
    ]
    evidence: dict[str, Any] = {
        "columns": msgspec.to_builtins(scans),
        "public_address": msgspec.to_builtins(probe),
        "key_service": key_service,
        "calls": calls,
    }
    return observation(scope, COLLECTOR, "TEST", DESCRIPTION, checks, evidence)


# --- sealed columns -------------------------------------------------------------------------


def encrypted_columns(region: RegionContext) -> list[tuple[type[Table], list[EncryptedText]]]:
    """The encrypted columns of every table with the organisation's rows."""
    tables: list[type[Table]] = list(dict.fromkeys([*region.organisation_tables, PaymentRecord]))
    found: list[tuple[type[Table], list[EncryptedText]]] = []
    for table in tables:
        columns = [c for c in table._meta.columns if isinstance(c, EncryptedText)]
        if columns and hasattr(table, "org_id"):
            found.append((table, columns))
    return found


async def _scan(table: type[Table], column: EncryptedText, org_id: uuid.UUID, postgres: bool) -> ColumnScan:
    name, key = table._meta.tablename, table._meta.primary_key._meta.db_column_name
    col = f'"{column._meta.db_column_name}"'
    sealed = sealed_predicate(col, postgres)
    # Names come from the table definitions, never from input.
    counts = await table.raw(
        f"SELECT count({col}) AS n, sum(CASE WHEN {sealed} THEN 1 ELSE 0 END) AS sealed "  # noqa: S608
        f'FROM "{name}" WHERE org_id = {{}}',
        org_id,
        org_id,
    ).run()
    values, ok = int(counts[0]["n"] or 0), int(counts[0]["sealed"] or 0)
    ids: list[str] = []
    if values > ok:
        rows = await table.raw(
            f'SELECT CAST("{key}" AS TEXT) AS id FROM "{name}" '  # noqa: S608
            f"WHERE org_id = {{}} AND {col} IS NOT NULL AND NOT {sealed} ORDER BY 1 LIMIT {NAMED}",
            org_id,
            org_id,
        ).run()
        ids = [str(row["id"]) for row in rows]
    return ColumnScan(
        table=name, column=column._meta.name, values=values, sealed=ok, plaintext=values - ok, plaintext_ids=ids
    )


async def scan_columns(region: RegionContext, org_id: uuid.UUID) -> list[ColumnScan]:
    postgres = database.is_postgres(region.engine)
    return [
        await _scan(table, column, org_id, postgres)
        for table, columns in encrypted_columns(region)
        for column in columns
    ]


def _sealed_columns(scans: list[ColumnScan]) -> Check:
    values = sum(s.values for s in scans)
    sealed = sum(s.sealed for s in scans)
    figures: dict[str, Any] = {
        "columns": len(scans),
        "values": values,
        "sealed": sealed,
        "plaintext": values - sealed,
        "sealed_share": round(sealed / values, 6) if values else 1.0,
    }
    bad = [s for s in scans if s.plaintext]
    if bad:
        named = [
            f"{s.table}.{s.column} ({s.plaintext}: row{'s' if len(s.plaintext_ids) > 1 else ''} "
            f"{', '.join(s.plaintext_ids)}{' …' if s.plaintext > len(s.plaintext_ids) else ''})"
            for s in bad
        ]
        return failed(
            "sealed_columns",
            f"{plural(values - sealed, 'value')} in encrypted columns {'is' if values - sealed == 1 else 'are'} "
            f"not sealed with the organisation's keys: {listing(named)}.",
            **figures,
        )
    return passed(
        "sealed_columns",
        f"All {plural(values, 'value')} in {plural(len(scans), 'encrypted column')} are sealed envelopes under "
        "the organisation's own data keys (envelope format and data key checked in the database; "
        "nothing was decrypted).",
        **figures,
    )


# --- transport --------------------------------------------------------------------------------


def _old_protocol_context() -> ssl.SSLContext | None:
    """A client that offers only TLS 1.0 and 1.1, to see whether the server takes them;
    None where this machine's TLS library cannot offer them at all."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            context.minimum_version = ssl.TLSVersion.TLSv1
            context.maximum_version = ssl.TLSVersion.TLSv1_1
            context.set_ciphers("DEFAULT:@SECLEVEL=0")
    except (ssl.SSLError, ValueError):
        return None
    return context


async def _hsts(writer: asyncio.StreamWriter, reader: asyncio.StreamReader, netloc: str) -> str | None:
    writer.write(f"HEAD / HTTP/1.1\r\nHost: {netloc}\r\nConnection: close\r\n\r\n".encode("ascii", "replace"))
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), PROBE_TIMEOUT)
    for line in head.decode("latin-1").split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "strict-transport-security":
            return value.strip()[:200]
    return None


async def probe_tls(url: str) -> TlsProbe:
    """Connect to ``url`` as a browser would (system trust store, host name checked, TLS
    1.2 at least), then once more offering only TLS 1.0/1.1, which must be refused."""
    parts = urlsplit(url)
    probe = TlsProbe(url=url, https=parts.scheme == "https")
    host = parts.hostname or ""
    if not probe.https or not host:
        return probe
    port = parts.port or 443
    context = ssl.create_default_context()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=context, server_hostname=host), PROBE_TIMEOUT
        )
    except ssl.SSLCertVerificationError as exc:
        probe.reached = True
        probe.error = f"the certificate did not verify ({exc.verify_message})"
    except ssl.SSLError as exc:
        probe.reached = True
        probe.error = f"no TLS 1.2 or later handshake ({exc.reason or type(exc).__name__})"
    except (OSError, TimeoutError) as exc:
        probe.error = f"the address could not be reached ({type(exc).__name__})"
    else:
        ssl_object = writer.get_extra_info("ssl_object")
        probe.reached = probe.certificate_verified = True
        probe.protocol = ssl_object.version() if ssl_object else None
        probe.cipher = ssl_object.cipher()[0] if ssl_object and ssl_object.cipher() else None
        try:
            probe.hsts = await _hsts(writer, reader, parts.netloc)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            probe.hsts = None  # not an HTTP answer we could read: recorded as absent
        finally:
            writer.close()
    if probe.reached:
        probe.old_protocols_refused = await _old_protocols_refused(host, port)
    return probe


async def _old_protocols_refused(host: str, port: int) -> bool | None:
    """Offer only TLS 1.0/1.1 on a fresh connection: a server that aborts the handshake
    (an alert, or closing the connection) refuses them. None: not tried (this machine's
    TLS library cannot offer them, or the address did not take the connection)."""
    context = _old_protocol_context()
    if context is None:
        return None
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), PROBE_TIMEOUT)
    except (OSError, TimeoutError):
        return None
    try:
        await asyncio.wait_for(writer.start_tls(context), PROBE_TIMEOUT)
    except (ssl.SSLError, ConnectionError, asyncio.IncompleteReadError):
        return True
    except TimeoutError:
        return None
    finally:
        writer.close()
    return False


def _key_service_transport(region: RegionContext) -> dict[str, Any]:
    """How the region reaches its key service (it carries data keys in the clear inside)."""
    vault = region.region.vault
    if vault.backend != "vault":
        return {"backend": vault.backend, "url_scheme": None, "loopback": True, "encrypted_or_local": True}
    parts = urlsplit(vault.url)
    loopback = (parts.hostname or "") in LOOPBACK
    return {
        "backend": vault.backend,
        "url_scheme": parts.scheme,
        "loopback": loopback,
        "encrypted_or_local": parts.scheme == "https" or loopback,
    }


def _transport_encrypted(probe: TlsProbe, key_service: dict[str, Any]) -> Check:
    figures: dict[str, Any] = {
        "https": probe.https,
        "protocol": probe.protocol,
        "certificate_verified": probe.certificate_verified,
        "old_protocols_refused": probe.old_protocols_refused,
        "hsts": probe.hsts is not None,
        "key_service_encrypted_or_local": key_service["encrypted_or_local"],
    }
    problems: list[str] = []
    if not probe.https:
        problems.append(f"the region's public address {probe.url} is plain HTTP")
    elif probe.error:
        problems.append(f"the region's public address {probe.url}: {probe.error}")
    elif probe.protocol not in ("TLSv1.2", "TLSv1.3"):
        problems.append(f"the region's public address negotiated {probe.protocol}")
    if probe.old_protocols_refused is False:
        problems.append("the public address also accepts TLS 1.0 or 1.1")
    if not key_service["encrypted_or_local"]:
        problems.append("the region reaches its key service over plain HTTP on the network")
    if problems:
        return failed("transport_encrypted", f"Not every connection is encrypted: {listing(problems)}.", **figures)
    old = (
        "TLS 1.0 and 1.1 were refused"
        if probe.old_protocols_refused
        else "whether TLS 1.0 and 1.1 are refused could not be tried from here"
    )
    keys = "over HTTPS or on the same host" if key_service["backend"] == "vault" else "in the process (local keyring)"
    return passed(
        "transport_encrypted",
        f"The region's public address answered with {probe.protocol} and a certificate that verified; {old}; "
        f"{'it sends HSTS' if probe.hsts else 'it sends no HSTS header'}. The key service is reached {keys}. "
        "Call media is DTLS-SRTP, the only media transport WebRTC has.",
        **figures,
    )


# --- calls ------------------------------------------------------------------------------------

_CALLS = """
SELECT CAST(c.id AS TEXT) AS id,
       CASE WHEN s.object_id IS NULL THEN 0 ELSE 1 END AS start_logged,
       CASE WHEN j.object_id IS NULL THEN 0 ELSE 1 END AS join_logged,
       CASE WHEN r.call_id IS NULL THEN 0 ELSE 1 END AS receipt
FROM "call" c
LEFT JOIN (SELECT DISTINCT object_id FROM access_log_entry
           WHERE org_id = {} AND action = 'create' AND object_type = 'call') s
       ON s.object_id = CAST(c.id AS TEXT)
LEFT JOIN (SELECT DISTINCT object_id FROM access_log_entry
           WHERE org_id = {} AND action = 'create' AND object_type = 'visit') j
       ON j.object_id = CAST(c.visit_id AS TEXT)
LEFT JOIN (SELECT DISTINCT call_id FROM call_relay_receipt WHERE org_id = {}) r ON r.call_id = c.id
WHERE c.org_id = {} AND c.started_at >= {} AND c.started_at < {}
"""


async def _calls(region: RegionContext, scope: Scope) -> dict[str, Any]:
    org_id = scope.org_id
    rows = await AccessLogEntry.raw(_CALLS, org_id, org_id, org_id, org_id, scope.period_start, scope.period_end).run()
    unlogged = sorted(str(r["id"]) for r in rows if not (r["start_logged"] and r["join_logged"]))

    org = await Organisation.select(Organisation.relay_only).where(Organisation.id == org_id).first().run()
    return {
        "calls": len(rows),
        "start_not_logged": sum(1 for r in rows if not r["start_logged"]),
        "join_not_logged": sum(1 for r in rows if not r["join_logged"]),
        "unlogged_calls": len(unlogged),
        "unlogged_call_ids": unlogged[:NAMED],
        "with_residency_receipt": sum(1 for r in rows if r["receipt"]),
        "relay_only": org["relay_only"] if org else None,
        "relays": "media-node registry" if region.relays.registered else "configured ICE servers",
        "media": "DTLS-SRTP between the participants' browsers (WebRTC)",
        "server_side_media": False,
    }


def _calls_end_to_end(calls: dict[str, Any]) -> Check:
    count = int(calls["calls"])
    figures: dict[str, Any] = {
        "calls": count,
        "start_not_logged": calls["start_not_logged"],
        "join_not_logged": calls["join_not_logged"],
        "with_residency_receipt": calls["with_residency_receipt"],
        "relay_only": calls["relay_only"],
    }
    if not count:
        return not_applicable("calls_end_to_end", "The organisation had no call in the period.", **figures)
    unlogged = calls["unlogged_call_ids"]
    more = " …" if int(calls["unlogged_calls"]) > len(unlogged) else ""
    if unlogged:
        missing = int(calls["start_not_logged"]) + int(calls["join_not_logged"])
        return failed(
            "calls_end_to_end",
            f"Not every join is logged: {plural(missing, 'start or join', 'starts or joins')} of the period's "
            f"{plural(count, 'call')} {'has' if missing == 1 else 'have'} no access-log entry "
            f"(calls {', '.join(unlogged)}{more}).",
            **figures,
        )
    path = (
        "relayed only through the region's TURN relays, which forward encrypted packets and hold no media keys"
        if calls["relay_only"]
        else "direct between the browsers or through the region's TURN relays (relay only is off)"
    )
    return passed(
        "calls_end_to_end",
        f"For each of the period's {plural(count, 'call')}, the start and the visitor's join are in the access log; "
        f"media is DTLS-SRTP from browser to browser, {path}; the server has no media or recording path.",
        **figures,
    )
