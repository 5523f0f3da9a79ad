"""Data-subject requests (P17): file, find the subject's records, export them
(access, portability), rectify, erase, reject.

A request is filed by the organisation (the controller) on the subject's behalf,
with the subject's e-mail or phone. The identifier is stored sealed with the
organisation's key, plus its blind index; records are found by the blind indexes
members, visits and payment records carry (no plaintext search). Filing never
looks at records, so its answer is the same whether or not the subject exists.

Every step runs in one transaction with its access-log entries: a search, an
export or a change of the subject's records logs one entry per record's data
subject (``member:<id>``, ``visit:<id>``, ``payment:<id>``); the request itself is
logged as ``dsr:<id>``. Payment records are under legal hold (P9): an erasure
leaves them and says so.

The "who accessed my data" extract (NEN 7513 ch. 5, Normen innsyn i logg) is the
access-log part of an access request, as a PDF the person reads: see
``access_extract``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
from piccolo.custom_types import Combinable

from konsil.compliance.access_log.chain import EntryRecord
from konsil.compliance.access_log.service import AccessEvent, append_many
from konsil.compliance.access_log.tables import AccessLogEntry
from konsil.compliance.dsr import overview
from konsil.compliance.dsr.overview import complaint_note, legal_for
from konsil.compliance.dsr.schemas import (
    EXPORT_FORMAT,
    EXPORT_VERSION,
    AccessData,
    CallData,
    ExportOrganisation,
    ExportRequest,
    Found,
    FulfilmentOut,
    MemberData,
    PaymentData,
    Rectification,
    RelayReceiptData,
    RequestDetail,
    RequestIn,
    RequestOut,
    SubjectExport,
    TelemetryData,
    VisitData,
)
from konsil.compliance.dsr.tables import DataSubjectRequest
from konsil.compliance.reports.access_extract import access_extract_pdf
from konsil.compliance.reports.labels import date_text
from konsil.media_nodes.receipts import ResidencyReceipt
from konsil.platform.core import clock, database, errors
from konsil.platform.core.keys.cipher import FieldDecryptionError, FieldRef, OrgCipher
from konsil.platform.core.region import RegionContext
from konsil.tenants import members, removal, visits
from konsil.tenants.actors import Actor, _event, record
from konsil.tenants.tables import (
    ApiToken,
    Call,
    CallRelayReceipt,
    CallTelemetry,
    Member,
    PaymentRecord,
    Room,
    Visit,
)

DUE_AFTER = dt.timedelta(days=28)  # P17: a full answer within 4 weeks
LIST_LIMIT = 500
OPEN = "received"


def dsr_subject(request_id: uuid.UUID) -> str:
    return f"dsr:{request_id}"


def payment_subject(payment_id: uuid.UUID) -> str:
    return f"payment:{payment_id}"


def _for(actor: Actor, kind: str) -> Actor:
    return actor.for_purpose(f"data-subject request ({kind})")


def to_out(row: dict[str, Any], now: dt.datetime | None = None) -> RequestOut:
    now = now or clock.now()
    return RequestOut(
        id=row["id"],
        kind=row["kind"],
        identifier_kind=row["identifier_kind"],
        received_at=row["received_at"],
        due_at=row["due_at"],
        status=row["status"],
        overdue=row["status"] == OPEN and row["due_at"] < now,
        completed_at=row["completed_at"],
        fulfilled_by=row["fulfilled_by"],
        outcome=json.loads(row["outcome"]) if row["outcome"] else {},
    )


# --- filing and listing ---------------------------------------------------------------------


def identifier_index(cipher: OrgCipher, kind: str, value: str) -> str:
    """The same blind index members, visits and payment records carry."""
    return members.email_index(cipher, value) if kind == "email" else members.phone_index(cipher, value)


async def file(ctx: RegionContext, actor: Actor, org: dict[str, Any], data: RequestIn) -> RequestOut:
    """Record a request. Looks at no records: the answer is the same for a subject the
    organisation knows and one it does not."""
    kind, value = data.identifier
    request_id = uuid.uuid4()
    now = clock.now()
    cipher = await ctx.keys.cipher(org["id"])
    row = {
        "id": request_id,
        "org_id": org["id"],
        "kind": data.kind,
        "identifier_kind": kind,
        "identifier": cipher.seal(FieldRef(org["id"], "data_subject_request", "identifier", request_id), value),
        "identifier_index": identifier_index(cipher, kind, value),
        "received_at": now,
        "due_at": now + DUE_AFTER,
        "status": OPEN,
        "filed_by": actor.actor[:80],
        "completed_at": None,
        "fulfilled_by": "",
        "outcome": "",
    }
    async with database.transaction(ctx.engine):
        await DataSubjectRequest.insert(DataSubjectRequest(**row)).run()
        await record(
            ctx,
            _for(actor, data.kind),
            org["id"],
            "create",
            "data_subject_request",
            request_id,
            dsr_subject(request_id),
        )
    return to_out(row, now)


async def list_requests(org_id: uuid.UUID, status: str | None = None) -> list[RequestOut]:
    """The organisation's requests, earliest due first (open ones before closed)."""
    where: Combinable = DataSubjectRequest.org_id == org_id
    if status is not None:
        where &= DataSubjectRequest.status == status
    rows = await DataSubjectRequest.select().where(where).order_by(DataSubjectRequest.due_at).limit(LIST_LIMIT).run()
    now = clock.now()
    shown = [to_out(row, now) for row in rows]
    return sorted(shown, key=lambda r: (r.status != OPEN, r.due_at))


async def get_row(org_id: uuid.UUID, request_id: uuid.UUID) -> dict[str, Any]:
    row = (
        await DataSubjectRequest.select()
        .where((DataSubjectRequest.id == request_id) & (DataSubjectRequest.org_id == org_id))
        .first()
        .run()
    )
    if row is None:
        raise errors.not_found("no such data-subject request")
    return row


def _open_identifier(cipher: OrgCipher, row: dict[str, Any]) -> str:
    return cipher.open(FieldRef(row["org_id"], "data_subject_request", "identifier", row["id"]), row["identifier"])


# --- finding the subject's records ----------------------------------------------------------


@dataclass
class Records:
    """The subject's rows in one organisation."""

    members: list[dict[str, Any]] = field(default_factory=list)
    visits: list[dict[str, Any]] = field(default_factory=list)
    calls: list[dict[str, Any]] = field(default_factory=list)
    telemetry: list[dict[str, Any]] = field(default_factory=list)
    receipts: list[dict[str, Any]] = field(default_factory=list)
    payments: list[dict[str, Any]] = field(default_factory=list)

    def found(self) -> Found:
        return Found(
            members=len(self.members),
            visits=len(self.visits),
            calls=len(self.calls),
            telemetry=len(self.telemetry),
            relay_receipts=len(self.receipts),
            payments=len(self.payments),
        )

    def subjects(self) -> list[tuple[str, uuid.UUID, str]]:
        """(object type, id, subject reference) of each record a person is the subject of."""
        return [
            *(("member", m["id"], members.subject(m["id"])) for m in self.members),
            *(("visit", v["id"], visits.visit_subject(v["id"])) for v in self.visits),
            *(("payment_record", p["id"], payment_subject(p["id"])) for p in self.payments),
        ]


async def find(org_id: uuid.UUID, identifier_kind: str, index: str) -> Records:
    """Every record of the subject in this organisation, by blind index. A visit's
    calls, their telemetry and relay receipts go with the visit; payment records are
    found by the payer's index or by the visit they paid for."""
    found = Records()
    if identifier_kind == "email":
        found.members = await Member.select().where((Member.org_id == org_id) & (Member.email_index == index)).run()
        paid_by: Combinable = PaymentRecord.payer_email_index == index
    else:
        found.members = await Member.select().where((Member.org_id == org_id) & (Member.phone_index == index)).run()
        found.visits = (
            await Visit.select()
            .where((Visit.org_id == org_id) & (Visit.phone_index == index))
            .order_by(Visit.arrived_at)
            .run()
        )
        paid_by = PaymentRecord.payer_phone_index == index
    visit_ids = [v["id"] for v in found.visits]
    if visit_ids:
        found.calls = (
            await Call.select()
            .where((Call.org_id == org_id) & Call.visit_id.is_in(visit_ids))
            .order_by(Call.started_at)
            .run()
        )
        found.telemetry = (
            await CallTelemetry.select()
            .where((CallTelemetry.org_id == org_id) & CallTelemetry.visit_id.is_in(visit_ids))
            .order_by(CallTelemetry.at)
            .run()
        )
        paid_by |= PaymentRecord.visit_id.is_in(visit_ids)
    call_ids = [c["id"] for c in found.calls]
    if call_ids:
        found.receipts = (
            await CallRelayReceipt.select()
            .where((CallRelayReceipt.org_id == org_id) & CallRelayReceipt.call_id.is_in(call_ids))
            .run()
        )
    found.payments = (
        await PaymentRecord.select()
        .where((PaymentRecord.org_id == org_id) & paid_by)
        .order_by(PaymentRecord.created_at)
        .run()
    )
    return found


def _deleted(
    ctx: RegionContext, actor: Actor, org_id: uuid.UUID, object_type: str, object_id: uuid.UUID, visit_id: uuid.UUID
) -> AccessEvent:
    return _event(ctx, actor, org_id, "delete", object_type, object_id, visits.visit_subject(visit_id), "success")


async def _log_each(
    ctx: RegionContext, actor: Actor, org_id: uuid.UUID, action: str, records: Records, outcome: str = "success"
) -> None:
    await append_many(
        [_event(ctx, actor, org_id, action, kind, oid, subject, outcome) for kind, oid, subject in records.subjects()]
    )


async def _integrity_failure(
    ctx: RegionContext, actor: Actor, org_id: uuid.UUID, object_type: str, object_id: uuid.UUID, subject: str
) -> errors.AppError:
    await record(ctx, actor, org_id, "read", object_type, object_id, subject, "failure")
    return errors.AppError(
        500,
        "integrity_error",
        f"a stored {object_type.replace('_', ' ')} failed its integrity check and was not shown; "
        "the failure is in the access log",
    )


async def detail(ctx: RegionContext, actor: Actor, org: dict[str, Any], request_id: uuid.UUID) -> RequestDetail:
    """A request with its identifier and how many records of the subject were found
    (an access-logged read of the identifier and search of the records)."""
    row = await get_row(org["id"], request_id)
    actor = _for(actor, row["kind"])
    cipher = await ctx.keys.cipher(org["id"])
    async with database.transaction(ctx.engine):
        try:
            identifier = _open_identifier(cipher, row)
        except FieldDecryptionError:
            raise await _integrity_failure(
                ctx, actor, org["id"], "data_subject_request", request_id, dsr_subject(request_id)
            ) from None
        records = await find(org["id"], row["identifier_kind"], row["identifier_index"])
        await record(ctx, actor, org["id"], "read", "data_subject_request", request_id, dsr_subject(request_id))
        await _log_each(ctx, actor, org["id"], "search", records)
    out = to_out(row)
    return RequestDetail(**msgspec.structs.asdict(out), identifier=identifier, found=records.found())


# --- access and portability: the export ----------------------------------------------------


def _receipt(row: dict[str, Any]) -> RelayReceiptData:
    body = msgspec.json.decode(row["body"], type=ResidencyReceipt)
    return RelayReceiptData(
        body.region, body.jurisdiction, list(body.relays), body.issued_at, row["signature"], row.get("key_id") or ""
    )


async def _who_accessed(org_id: uuid.UUID, refs: list[str]) -> list[AccessData]:
    if not refs:
        return []
    rows = (
        await AccessLogEntry.select(
            AccessLogEntry.at,
            AccessLogEntry.actor,
            AccessLogEntry.actor_role,
            AccessLogEntry.on_behalf_of,
            AccessLogEntry.action,
            AccessLogEntry.object_type,
            AccessLogEntry.object_id,
            AccessLogEntry.purpose,
            AccessLogEntry.outcome,
            AccessLogEntry.source,
        )
        .where((AccessLogEntry.org_id == org_id) & AccessLogEntry.subject_ref.is_in(refs))
        .order_by(AccessLogEntry.seq)
        .run()
    )
    return [AccessData(**row) for row in rows]


def notes(region_id: str, org: dict[str, Any]) -> list[str]:
    """The export's notes (English, as the rest of the format): retention, legal hold,
    no recordings, the ``accessed_by`` list, and the subject's rights and where to
    complain, from the legal wording of the organisation's jurisdiction and country."""
    legal = legal_for(region_id, org.get("country") or "", "en", org["name"], org["retention_days"])
    return [
        "Visits, calls and their troubleshooting data are deleted automatically after the organisation's "
        "retention period (organisation.retention_days).",
        "Payment records are kept for 5 years because the law requires it; an erasure request does not remove them.",
        "Calls are end-to-end encrypted and never recorded: no audio or video is stored.",
        "accessed_by lists every access to these records from the access log (pseudonymous references).",
        legal.rights,
        complaint_note(legal),
    ]


# Opens one sealed field of an exported record: (table, column, row id, stored value).
FieldOpener = Callable[[str, str, uuid.UUID, str | None], str | None]
# What a masked export shows in place of every sealed field.
SEALED = "[sealed]"


def _opener(cipher: OrgCipher, org_id: uuid.UUID) -> FieldOpener:
    """Decrypts; raises _Unreadable (naming the failing record) rather than export a
    wrong value."""

    def opened(table: str, column: str, rid: uuid.UUID, stored: str | None) -> str | None:
        if stored is None:
            return None
        try:
            return cipher.open(FieldRef(org_id, table, column, rid), stored)
        except FieldDecryptionError as exc:
            raise _Unreadable(table, rid, exc.reason) from None

    return opened


def _masked(table: str, column: str, rid: uuid.UUID, stored: str | None) -> str | None:
    return None if stored is None else SEALED


def _build(
    ctx: RegionContext,
    opened: FieldOpener,
    org: dict[str, Any],
    row: dict[str, Any],
    identifier: str,
    records: Records,
    rooms: dict[uuid.UUID, str],
    accessed: list[AccessData],
) -> SubjectExport:
    telemetry: dict[uuid.UUID, list[TelemetryData]] = {}
    for t in records.telemetry:
        telemetry.setdefault(t["call_id"], []).append(
            TelemetryData(t["participant"], t["kind"], t["at"], msgspec.Raw(t["data"].encode()))
        )
    receipts = {r["call_id"]: _receipt(r) for r in records.receipts}
    calls: dict[uuid.UUID, list[CallData]] = {}
    for c in records.calls:
        calls.setdefault(c["visit_id"], []).append(
            CallData(
                c["id"],
                c["expert_id"],
                c["started_at"],
                c["ended_at"],
                c["duration_seconds"],
                telemetry.get(c["id"], []),
                receipts.get(c["id"]),
            )
        )
    return SubjectExport(
        format=EXPORT_FORMAT,
        version=EXPORT_VERSION,
        generated_at=clock.now(),
        organisation=ExportOrganisation(
            org["slug"],
            org["name"],
            ctx.region.id,
            ctx.region.jurisdiction,
            org["retention_days"],
            org.get("country") or "",
        ),
        request=ExportRequest(
            row["id"],
            row["kind"],
            row["identifier_kind"],
            identifier,
            row["received_at"],
            row["due_at"],
            row["status"],
        ),
        members=[
            MemberData(
                m["id"],
                opened("member", "name", m["id"], m["name"]) or "",
                opened("member", "email", m["id"], m["email"]) or "",
                opened("member", "phone", m["id"], m["phone"]),
                m["role"],
                m["created_at"],
            )
            for m in records.members
        ],
        visits=[
            VisitData(
                v["id"],
                rooms.get(v["room_id"], ""),
                opened("visit", "name", v["id"], v["name"]) or "",
                opened("visit", "phone", v["id"], v["phone"]),
                v["status"],
                v["consented_at"],
                v["arrived_at"],
                v["admitted_at"],
                v["ended_at"],
                v["expires_at"],
                calls.get(v["id"], []),
            )
            for v in records.visits
        ],
        payments=[
            PaymentData(
                p["id"],
                p["visit_id"],
                p["provider"],
                p["provider_reference"],
                p["amount_minor"],
                p["currency"],
                p["card_brand"],
                p["card_last4"],
                opened("payment_record", "payer_name", p["id"], p["payer_name"]),
                opened("payment_record", "payer_email", p["id"], p["payer_email"]),
                p["created_at"],
                p["keep_until"],
            )
            for p in records.payments
        ],
        accessed_by=accessed,
        notes=notes(ctx.region.id, org),
    )


class _Unreadable(Exception):
    def __init__(self, table: str, row_id: uuid.UUID, reason: str) -> None:
        super().__init__(reason)
        self.table = table
        self.row_id = row_id


def _subject_of(table: str, row_id: uuid.UUID) -> str:
    if table == "member":
        return members.subject(row_id)
    if table == "visit":
        return visits.visit_subject(row_id)
    return payment_subject(row_id)


async def export(ctx: RegionContext, actor: Actor, org: dict[str, Any], request_id: uuid.UUID) -> SubjectExport:
    """Everything held about the subject, and who accessed it. Each record exported
    is logged ("export"); an access or portability request is then fulfilled."""
    row = await get_row(org["id"], request_id)
    if row["status"] == "rejected":
        raise errors.conflict("this request was rejected; file a new one to answer it")
    actor = _for(actor, row["kind"])
    cipher = await ctx.keys.cipher(org["id"])
    async with database.transaction(ctx.engine):
        records = await find(org["id"], row["identifier_kind"], row["identifier_index"])
        rooms = await _rooms(org["id"])
        accessed = await _who_accessed(org["id"], [subject for _, _, subject in records.subjects()])
        try:
            identifier = _open_identifier(cipher, row)
            result = _build(ctx, _opener(cipher, org["id"]), org, row, identifier, records, rooms, accessed)
        except FieldDecryptionError:
            raise await _integrity_failure(
                ctx, actor, org["id"], "data_subject_request", request_id, dsr_subject(request_id)
            ) from None
        except _Unreadable as bad:
            raise await _integrity_failure(
                ctx, actor, org["id"], bad.table, bad.row_id, _subject_of(bad.table, bad.row_id)
            ) from None
        await _log_each(ctx, actor, org["id"], "export", records)
        await record(ctx, actor, org["id"], "export", "data_subject_request", request_id, dsr_subject(request_id))
        if row["kind"] in ("access", "portability") and row["status"] == OPEN:
            await _complete(row, actor, {**_counts(records)})
            result.request.status = "completed"
    return result


async def _rooms(org_id: uuid.UUID) -> dict[uuid.UUID, str]:
    return {r["id"]: r["slug"] for r in await Room.select(Room.id, Room.slug).where(Room.org_id == org_id).run()}


async def masked_export(ctx: RegionContext, org: dict[str, Any], row: dict[str, Any]) -> tuple[SubjectExport, Records]:
    """The request's export as ``export`` would produce it now, built by the same code,
    with every sealed field (names, e-mails, phones, the identifier) shown as
    ``SEALED`` and nothing decrypted: compliance evidence checks its format without
    reading personal data. Writes nothing; the caller logs its search of the records."""
    records = await find(org["id"], row["identifier_kind"], row["identifier_index"])
    rooms = await _rooms(org["id"])
    accessed = await _who_accessed(org["id"], [subject for _, _, subject in records.subjects()])
    return _build(ctx, _masked, org, row, SEALED, records, rooms, accessed), records


def _counts(records: Records) -> dict[str, int]:
    return msgspec.structs.asdict(records.found())


async def _complete(row: dict[str, Any], actor: Actor, outcome: dict[str, Any]) -> None:
    await (
        DataSubjectRequest.update(
            {
                DataSubjectRequest.status: "completed",
                DataSubjectRequest.completed_at: clock.now(),
                DataSubjectRequest.fulfilled_by: actor.actor[:80],
                DataSubjectRequest.outcome: json.dumps(outcome, sort_keys=True),
            }
        )
        .where(DataSubjectRequest.id == row["id"])
        .run()
    )


def overview_text(data: SubjectExport, locale: str = "en") -> str:
    """The export as a plain-text overview a person can read, in ``locale``."""
    return overview.overview_text(data, locale)


# --- access: the "who accessed my data" extract ---------------------------------------------

EXTRACT_PURPOSE = "data-subject request (access log extract)"
EXTRACT_OBJECT = "access_log"
# What the extract calls the person themselves, and a visitor who is someone else.
YOU = "You"
OTHER_VISITOR = "visitor"
OTHER_VISITOR_NAME = "Another visitor"


def extract_filename(request_id: uuid.UUID) -> str:
    """The PDF's file name: the request's random id, never the person's name or identifier."""
    return f"access-log-extract-{request_id}.pdf"


async def _entries_about(org_id: uuid.UUID, refs: list[str]) -> list[EntryRecord]:
    """Every access-log entry of this organisation about one of ``refs``, in chain
    order: the same entries the export lists under ``accessed_by``, whole."""
    if not refs:
        return []
    rows = (
        await AccessLogEntry.select()
        .where((AccessLogEntry.org_id == org_id) & AccessLogEntry.subject_ref.is_in(refs))
        .order_by(AccessLogEntry.seq)
        .run()
    )
    # strict=False: SQLite (the embedded default) hands back ids as text.
    return [msgspec.convert(row, EntryRecord, strict=False) for row in rows]


def _ids(refs: set[str], prefix: str) -> list[uuid.UUID]:
    found = []
    for ref in refs:
        if ref.startswith(prefix):
            try:
                found.append(uuid.UUID(ref.removeprefix(prefix)))
            except ValueError:
                continue
    return found


async def _names(
    ctx: RegionContext,
    actor: Actor,
    cipher: OrgCipher,
    org_id: uuid.UUID,
    entries: list[EntryRecord],
    own: set[str],
) -> dict[str, str]:
    """Names the extract shows for the pseudonymous actors of ``entries``: "You" for
    the person themselves; the organisation's own members by name and its connected
    systems by their label (the patient has a right to know which user looked, NEN
    7513 ch. 5 and Normen; who works there is the organisation's to tell). Konsil's
    staff and the system keep their role and code only. Each member name opened is a
    read of that member's data, logged as such."""
    refs = {e.actor for e in entries} | {e.on_behalf_of for e in entries}
    names = {ref: YOU for ref in refs & own}
    member_ids = _ids(refs - own, "member:")
    if member_ids:
        staff = (
            await Member.select(Member.id, Member.name)
            .where((Member.org_id == org_id) & Member.id.is_in(member_ids))
            .run()
        )
        reads: list[AccessEvent] = []
        for m in staff:
            member_id = uuid.UUID(str(m["id"]))
            ref = FieldRef(org_id, "member", "name", member_id)
            try:
                names[members.subject(member_id)] = cipher.open(ref, m["name"])
                outcome = "success"
            except FieldDecryptionError:
                outcome = "failure"  # shown by role and code instead
            reads.append(_event(ctx, actor, org_id, "read", "member", member_id, members.subject(member_id), outcome))
        await ctx.access_log.append_many(reads)
    token_ids = _ids(refs, "token:")
    if token_ids:
        tokens = (
            await ApiToken.select(ApiToken.id, ApiToken.label)
            .where((ApiToken.org_id == org_id) & ApiToken.id.is_in(token_ids))
            .run()
        )
        names.update({f"token:{t['id']}": t["label"] for t in tokens if t["label"]})
    return names


def _without_other_visitors(entry: EntryRecord, own: set[str]) -> EntryRecord:
    """The entry as shown: a visitor other than the person is no one's business here,
    so their pseudonym (which names their visit) is replaced. Visitors act only on
    their own visit today; this keeps it so if that ever changes."""
    changes = {
        name: OTHER_VISITOR
        for name in ("actor", "on_behalf_of")
        if getattr(entry, name).startswith("visitor:") and getattr(entry, name) not in own
    }
    return msgspec.structs.replace(entry, **changes) if changes else entry


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _subject_label(identifier_kind: str, identifier: str, records: Records) -> str:
    """Whose data, in the person's words: which records of theirs, found how."""
    parts = [
        _count(n, one, many)
        for n, one, many in (
            (len(records.visits), "visit (with its calls)", "visits (with their calls)"),
            (len(records.members), "member account", "member accounts"),
            (len(records.payments), "payment record", "payment records"),
        )
        if n
    ]
    by = f"your {'phone number' if identifier_kind == 'phone' else 'e-mail address'} {identifier}"
    if not parts:
        return f"Your records found by {by}: none are held"
    held = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return f"Your records: {held}, found by {by}"


async def access_extract(ctx: RegionContext, actor: Actor, org: dict[str, Any], request_id: uuid.UUID) -> bytes:
    """The "who accessed my data" extract of the request's subject as a PDF (NEN 7513
    ch. 5, Normen innsyn i logg): every access-log entry about their records (the
    entries the export lists under ``accessed_by``), with who, on whose behalf, what,
    why, when and the outcome, for the person to read.

    Producing it is logged first ("export" of the access log, one entry per record of
    the subject and one for the request), in the same transaction as the read, so the
    extract lists its own making. It does not complete the request: an access request
    asks for the person's data as well (GDPR 15(1) and (3)); the export or the overview
    answers it, and lists the same accesses. The PDF is drawn after the transaction, in
    a thread, so the organisation's log is not held locked while it is."""
    row = await get_row(org["id"], request_id)
    if row["status"] == "rejected":
        raise errors.conflict("this request was rejected; file a new one to answer it")
    actor = actor.for_purpose(EXTRACT_PURPOSE)
    org_id = org["id"]
    cipher = await ctx.keys.cipher(org_id)
    try:
        identifier = _open_identifier(cipher, row)
    except FieldDecryptionError:
        raise await _integrity_failure(
            ctx, actor, org_id, "data_subject_request", request_id, dsr_subject(request_id)
        ) from None
    async with database.transaction(ctx.engine):
        records = await find(org_id, row["identifier_kind"], row["identifier_index"])
        subjects = records.subjects()
        made = [*((oid, ref) for _, oid, ref in subjects), (request_id, dsr_subject(request_id))]
        await ctx.access_log.append_many(
            [_event(ctx, actor, org_id, "export", EXTRACT_OBJECT, oid, ref, "success") for oid, ref in made]
        )
        entries = await _entries_about(org_id, [ref for _, _, ref in subjects])
        own = {_own_actor(kind, oid) for kind, oid, _ in subjects if kind in ("member", "visit")}
        names = await _names(ctx, actor, cipher, org_id, entries, own)
    shown = [_without_other_visitors(e, own) for e in entries]
    if any(e.actor == OTHER_VISITOR for e in shown):
        names[OTHER_VISITOR] = OTHER_VISITOR_NAME
    return await asyncio.to_thread(
        access_extract_pdf,
        shown,
        org_name=org["name"],
        region=f"{ctx.region.id} ({ctx.region.jurisdiction})",
        subject_label=_subject_label(row["identifier_kind"], identifier, records),
        generated_at=clock.now(),
        request_ref=f"received {date_text(row['received_at'])} (reference {str(request_id)[:8]})",
        actor_names=names,
    )


def _own_actor(kind: str, object_id: uuid.UUID) -> str:
    """How the person themselves appears as an actor: as the member, or as the visitor
    of their visit."""
    return members.subject(object_id) if kind == "member" else f"visitor:{object_id}"


# --- rectification --------------------------------------------------------------------------


def _fulfillable(row: dict[str, Any], kind: str) -> None:
    if row["kind"] != kind:
        raise errors.conflict(f"this is an {row['kind']} request, not {kind}")
    if row["status"] == "rejected":
        raise errors.conflict("this request was rejected; file a new one to answer it")


async def rectify(
    ctx: RegionContext, actor: Actor, org: dict[str, Any], request_id: uuid.UUID, change: Rectification
) -> FulfilmentOut:
    """Correct the subject's name and/or phone on every member and visit record that
    holds it (sealed again, blind index renewed); each change is logged."""
    row = await get_row(org["id"], request_id)
    _fulfillable(row, "rectification")
    actor = _for(actor, "rectification")
    cipher = await ctx.keys.cipher(org["id"])
    org_id = org["id"]
    changed = {"members": 0, "visits": 0}
    async with database.transaction(ctx.engine):
        records = await find(org_id, row["identifier_kind"], row["identifier_index"])
        for table, rows, key in ((Member, records.members, "members"), (Visit, records.visits, "visits")):
            name = table._meta.tablename
            for r in rows:
                values: dict[Any, Any] = {}
                if isinstance(change.name, str):
                    values[table.name] = cipher.seal(FieldRef(org_id, name, "name", r["id"]), change.name)
                if change.phone is not msgspec.UNSET:
                    phone = change.phone
                    values[table.phone] = (
                        cipher.seal(FieldRef(org_id, name, "phone", r["id"]), phone) if phone else None
                    )
                    values[table.phone_index] = members.phone_index(cipher, phone) if phone else None
                await table.update(values).where(table.id == r["id"]).run()
                changed[key] += 1
        await _log_each(ctx, actor, org_id, "update", Records(members=records.members, visits=records.visits))
        outcome = {
            **changed,
            "fields": ",".join(f for f in ("name", "phone") if getattr(change, f) is not msgspec.UNSET),
        }
        if row["status"] == OPEN:
            await _complete(row, actor, outcome)
        await record(ctx, actor, org_id, "update", "data_subject_request", request_id, dsr_subject(request_id))
        row = await get_row(org_id, request_id)
    return FulfilmentOut(to_out(row), changed)


# --- erasure --------------------------------------------------------------------------------


async def erase(ctx: RegionContext, actor: Actor, org: dict[str, Any], request_id: uuid.UUID) -> FulfilmentOut:
    """Delete the subject's visits with their calls, telemetry and relay receipts (the
    visit cascade of ``tenants/removal.py``), and their member accounts, in this
    organisation only; payment records stay (legal hold, P9). All or nothing: a member
    account that cannot be removed (the last owner, or one still owning rooms) stops the
    erasure before anything is deleted."""
    row = await get_row(org["id"], request_id)
    _fulfillable(row, "erasure")
    actor = _for(actor, "erasure")
    org_id = org["id"]
    async with database.transaction(ctx.engine):
        records = await find(org_id, row["identifier_kind"], row["identifier_index"])
        visit_ids = [v["id"] for v in records.visits]
        cascade = await removal.delete_visits(ctx, org_id, visit_ids)
        visit_of_call = {c["id"]: c["visit_id"] for c in records.calls}
        events = [
            *(
                _deleted(ctx, actor, org_id, "residency_receipt", r["id"], visit_of_call[r["call_id"]])
                for r in records.receipts
            ),
            *(_deleted(ctx, actor, org_id, "call", c["id"], c["visit_id"]) for c in records.calls),
            *(_deleted(ctx, actor, org_id, "visit", v, v) for v in visit_ids),
        ]
        await append_many(events)
        for m in records.members:
            # Sessions, tokens and the control plane's login index go with the account.
            await members.remove(ctx, actor, org_id, m["id"])
        changed = {
            "members": len(records.members),
            "visits": cascade.rows["visit"],
            "calls": cascade.rows["call"],
            "telemetry": cascade.rows["call_telemetry"],
            "relay_receipts": cascade.rows["call_relay_receipt"],
            "payments_kept": len(records.payments),
        }
        if row["status"] == OPEN:
            await _complete(row, actor, changed)
        await record(ctx, actor, org_id, "delete", "data_subject_request", request_id, dsr_subject(request_id))
        row = await get_row(org_id, request_id)
    if visit_ids:
        visits.publish(ctx, visits.dashboard_channel(org_id), {"type": "waiting-changed"})
    return FulfilmentOut(to_out(row), changed)


# --- rejection ------------------------------------------------------------------------------


async def reject(
    ctx: RegionContext, actor: Actor, org: dict[str, Any], request_id: uuid.UUID, reason: str
) -> RequestOut:
    row = await get_row(org["id"], request_id)
    if row["status"] != OPEN:
        raise errors.conflict(f"this request is {row['status']} already")
    actor = _for(actor, row["kind"])
    async with database.transaction(ctx.engine):
        await (
            DataSubjectRequest.update(
                {
                    DataSubjectRequest.status: "rejected",
                    DataSubjectRequest.completed_at: clock.now(),
                    DataSubjectRequest.fulfilled_by: actor.actor[:80],
                    DataSubjectRequest.outcome: json.dumps({"reason": reason}),
                }
            )
            .where(DataSubjectRequest.id == request_id)
            .run()
        )
        await record(ctx, actor, org["id"], "update", "data_subject_request", request_id, dsr_subject(request_id))
        row = await get_row(org["id"], request_id)
    return to_out(row)
