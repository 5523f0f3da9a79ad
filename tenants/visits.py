"""Visits and calls: a visitor arrives through a room's join page, waits, is
admitted by the room's expert, and they talk; the record keeps who, when and how
long (P4). Each visit stands alone (P8) and expires with the organisation's
retention (P7). Live events go to the organisation's channels (tenants/signaling.py).
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, NamedTuple

import msgspec

from konsil.media_nodes import receipts
from konsil.media_nodes.receipts import ReceiptStatus, ResidencyReceipt
from konsil.platform.core import clock, database, errors
from konsil.platform.core.authz import MANAGERS, token_hash
from konsil.platform.core.keys.cipher import FieldDecryptionError, FieldRef, OrgCipher
from konsil.platform.core.keys.region_signing import KeySet, Signature, Verifier
from konsil.platform.core.region import RegionContext
from konsil.platform.pages.rendering import format_phone
from konsil.tenants import members, records
from konsil.tenants.actors import Actor, record, record_reads
from konsil.tenants.identity import store as identity_store
from konsil.tenants.messaging import alerts
from konsil.tenants.payments.shown import UNPAID, VisitPayment, payment_subject, payments_of
from konsil.tenants.schemas import PersonName, Phone
from konsil.tenants.tables import Call, CallRelayReceipt, CallTelemetry, Room, Visit

log = logging.getLogger("konsil.visits")


class VisitorForm(msgspec.Struct, forbid_unknown_fields=True):
    name: PersonName
    consent: bool
    phone: Phone | None = None


class WaitingVisit(msgspec.Struct):
    id: uuid.UUID
    room: str
    name: str
    phone: str | None
    arrived_at: dt.datetime
    status: str
    away_since: dt.datetime | None = None  # the visitor's page has had no socket open since
    phone_display: str | None = None  # the phone number grouped as people write it (+47 406 12 345)
    # The fee of a room that asks one: paid or not, card brand and last 4 only (P4); None where no fee.
    payment: VisitPayment | None = None
    # Who the visitor proved to be with a national eID (rooms with an identity check), the
    # national ID number masked; None without one (tenants/identity/store.py).
    identity: identity_store.IdentityShown | None = None


class CallOut(msgspec.Struct):
    id: uuid.UUID
    visit_id: uuid.UUID
    room: str
    started_at: dt.datetime
    ended_at: dt.datetime | None
    duration_seconds: int | None
    # The visitor's name, in "calls today" only (an access-logged read of the visit);
    # None where the stored name failed its integrity check (that failure is logged).
    visitor_name: str | None = None
    # The visit's fee (calls today only): paid, refunded, card brand and last 4 only (P4); None where no fee.
    payment: VisitPayment | None = None


def visit_subject(visit_id: uuid.UUID) -> str:
    return f"visit:{visit_id}"


def dashboard_channel(org_id: uuid.UUID) -> str:
    return f"org:{org_id}:dashboard"


def visit_channel(visit_id: uuid.UUID) -> str:
    return f"visit:{visit_id}"


def call_channel(call_id: uuid.UUID) -> str:
    return f"call:{call_id}"


def publish(ctx: RegionContext, channel: str, event: dict[str, Any]) -> None:
    if ctx.live is not None:
        ctx.live.publish(msgspec.json.encode(event), [channel])


async def arrive(
    ctx: RegionContext, org: records.Organisation, room: records.Room, form: VisitorForm, source: str
) -> tuple[uuid.UUID, str]:
    """A visitor fills in the form: a new visit, waiting, or checking in first when the
    room asks for an eID check or a fee (tenants/checkin.py). Returns (visit id, visitor
    token)."""
    if not form.consent:
        raise errors.bad_request("please agree to the processing described above to continue")
    visit_id = uuid.uuid4()
    token = secrets.token_urlsafe(32)
    now = clock.now()
    cipher = await ctx.keys.cipher(org.id)

    def seal(column: str, value: str) -> str:
        return cipher.seal(FieldRef(org.id, "visit", column, visit_id), value)

    actor = Actor(f"visitor:{visit_id}", "visitor", f"visitor:{visit_id}", source, "video consultation (consent)")
    async with database.transaction(ctx.engine):
        await Visit.insert(
            Visit(
                id=visit_id,
                org_id=org.id,
                room_id=room.id,
                name=seal("name", form.name),
                phone=seal("phone", form.phone) if form.phone else None,
                # The blind index members use: a data-subject request finds the visit by phone.
                phone_index=members.phone_index(cipher, form.phone) if form.phone else None,
                status="checking_in" if room.checkin_steps() else "waiting",
                token_hash=token_hash(token),
                consented_at=now,
                arrived_at=now,
                expires_at=now + dt.timedelta(days=org.retention_days),
            )
        ).run()
        await record(ctx, actor, org.id, "create", "visit", visit_id, visit_subject(visit_id))
    if not room.checkin_steps():
        await entered_waiting_list(ctx, org, room, visit_id)
    return visit_id, token


async def entered_waiting_list(
    ctx: RegionContext, org: records.Organisation, room: records.Room, visit_id: uuid.UUID
) -> None:
    """A visit has just joined its room's waiting list (at once, or when its check-in
    steps were done): the dashboards show it. Nothing here may wait on a third party:
    the visitor's check-in never waits for an alert."""
    publish(ctx, dashboard_channel(org.id), {"type": "waiting-changed", "room_id": str(room.id)})
    # The room's expert's text alert: a row and a background task only (never raises).
    await alerts.visitor_waiting(ctx, org, room, visit_id)


async def visit_for_token(org: records.Organisation, visit_id: uuid.UUID, token: str | None) -> records.Visit:
    """The visit a visitor token opens: only its own (404 otherwise, revealing nothing)."""
    if not token:
        raise errors.not_found("no such visit")
    row = await Visit.select().where((Visit.id == visit_id) & (Visit.org_id == org.id)).first().run()
    if row is None or not secrets.compare_digest(row["token_hash"], token_hash(token)):
        raise errors.not_found("no such visit")
    return records.Visit.of(row)


def _shown(cipher: OrgCipher, visit: records.Visit, rooms: dict[uuid.UUID, str]) -> WaitingVisit:
    """A visit as the expert sees it; raises FieldDecryptionError rather than show it wrong."""
    name = cipher.open(FieldRef(visit.org_id, "visit", "name", visit.id), visit.name)
    phone = cipher.open(FieldRef(visit.org_id, "visit", "phone", visit.id), visit.phone) if visit.phone else None
    return WaitingVisit(
        id=visit.id,
        room=rooms[visit.room_id],
        name=name,
        phone=phone,
        arrived_at=visit.arrived_at,
        status=visit.status,
        away_since=visit.away_since,
        phone_display=format_phone(phone) if phone else None,
    )


async def _visible_rooms(org: records.Organisation, member_id: uuid.UUID, role: str) -> dict[uuid.UUID, str]:
    query = Room.select(Room.id, Room.slug).where(Room.org_id == org.id)
    if role not in MANAGERS:
        query = query.where(Room.expert_id == member_id)
    return {row["id"]: row["slug"] for row in await query.run()}


async def _payments(
    ctx: RegionContext, actor: Actor, org: records.Organisation, visits: list[tuple[uuid.UUID, uuid.UUID]]
) -> dict[uuid.UUID, VisitPayment]:
    """The payments of these (visit, room) pairs: each record shown is an access-logged
    read; a visit of a room that asks a fee and has no record is shown unpaid."""
    if not visits:
        return {}
    room_ids = list({room_id for _, room_id in visits})
    with_fee = {
        row["id"]
        for row in await Room.select(Room.id)
        .where((Room.org_id == org.id) & Room.id.is_in(room_ids) & Room.fee_amount.is_not_null())
        .run()
    }
    found = await payments_of(org.id, [visit_id for visit_id, _ in visits])
    await record_reads(
        ctx,
        actor,
        org.id,
        "payment_record",
        [(record_id, payment_subject(record_id)) for record_id, _ in found.values()],
    )
    shown: dict[uuid.UUID, VisitPayment] = {visit_id: paid for visit_id, (_, paid) in found.items()}
    for visit_id, room_id in visits:
        if visit_id not in shown and room_id in with_fee:
            shown[visit_id] = UNPAID
    return shown


async def waiting_list(
    ctx: RegionContext, actor: Actor, org: records.Organisation, member_id: uuid.UUID, role: str
) -> list[WaitingVisit]:
    """Visitors waiting in the member's rooms (all rooms for owners and admins); each
    one shown is an access-logged read of that visit's personal data."""
    rooms = await _visible_rooms(org, member_id, role)
    if not rooms:
        return []
    await _gone_for_good(org.id)
    rows = (
        await Visit.select()
        .where((Visit.org_id == org.id) & Visit.room_id.is_in(list(rooms)) & (Visit.status == "waiting"))
        .order_by(Visit.arrived_at)
        .run()
    )
    cipher = await ctx.keys.cipher(org.id)
    shown = []
    for visit in map(records.Visit.of, rows):
        try:
            shown.append(_shown(cipher, visit, rooms))
        except FieldDecryptionError:
            await record(ctx, actor, org.id, "read", "visit", visit.id, visit_subject(visit.id), "failure")
            continue  # never shown wrong; the failure is in the log
    await record_reads(ctx, actor, org.id, "visit", [(v.id, visit_subject(v.id)) for v in shown])
    room_of = {row["id"]: row["room_id"] for row in rows}
    paid = await _payments(ctx, actor, org, [(v.id, room_of[v.id]) for v in shown])
    identities = await identity_store.shown(ctx, actor, org.id, [v.id for v in shown])
    return [msgspec.structs.replace(v, identity=identities.get(v.id), payment=paid.get(v.id)) for v in shown]


async def _visit_in_rooms(org: records.Organisation, visit_id: uuid.UUID, rooms: dict[uuid.UUID, str]) -> records.Visit:
    row = await Visit.select().where((Visit.id == visit_id) & (Visit.org_id == org.id)).first().run()
    if row is None or row["room_id"] not in rooms:
        raise errors.not_found("no such visit")
    return records.Visit.of(row)


async def open_visit(
    ctx: RegionContext, actor: Actor, org: records.Organisation, visit_id: uuid.UUID, member_id: uuid.UUID, role: str
) -> WaitingVisit:
    """One visit's details for the room's expert: an access-logged read."""
    rooms = await _visible_rooms(org, member_id, role)
    visit = await _visit_in_rooms(org, visit_id, rooms)
    cipher = await ctx.keys.cipher(org.id)
    try:
        shown = _shown(cipher, visit, rooms)
    except FieldDecryptionError as exc:
        await record(ctx, actor, org.id, "read", "visit", visit_id, visit_subject(visit_id), "failure")
        raise errors.AppError(
            500, "integrity_error", f"this visit's record failed its integrity check ({exc.reason}); it was not shown"
        ) from None
    await record(ctx, actor, org.id, "read", "visit", visit_id, visit_subject(visit_id))
    identities = await identity_store.shown(ctx, actor, org.id, [visit_id])
    return msgspec.structs.replace(shown, identity=identities.get(visit_id))


def relay_unavailable(ctx: RegionContext, org: records.Organisation) -> str | None:
    """Why a new call of ``org`` could not connect right now, else None: it must go
    through a relay and the region's registry has no healthy node (or no TURN secret)."""
    return ctx.relays.unavailable() if org.relay_only else None


async def admit(
    ctx: RegionContext, actor: Actor, org: records.Organisation, visit_id: uuid.UUID, member_id: uuid.UUID, role: str
) -> CallOut:
    """The expert admits a waiting visitor: the call starts. Not while the call could
    not connect (relay only, and no healthy relay in the region): 503, and the visitor
    keeps waiting."""
    unavailable = relay_unavailable(ctx, org)
    if unavailable is not None:
        raise errors.AppError(
            503,
            "unavailable",
            f"{unavailable.capitalize()}; the call would not connect, so the visitor keeps "
            "waiting. Try again in a minute.",
        )
    rooms = await _visible_rooms(org, member_id, role)
    visit = await _visit_in_rooms(org, visit_id, rooms)
    if visit.status != "waiting":
        raise errors.conflict(f"this visit is {visit.status}, not waiting")
    call_id = uuid.uuid4()
    now = clock.now()
    async with database.transaction(ctx.engine):
        updated = (
            await Visit.update({Visit.status: "admitted", Visit.admitted_at: now})
            .where((Visit.id == visit_id) & (Visit.status == "waiting"))
            .returning(Visit.id)
            .run()
        )
        if not updated:
            raise errors.conflict("this visit was admitted or ended meanwhile")
        await Call.insert(
            Call(
                id=call_id,
                org_id=org.id,
                room_id=visit.room_id,
                visit_id=visit_id,
                expert_id=member_id,
                started_at=now,
                expires_at=visit.expires_at,
            )
        ).run()
        await record(ctx, actor, org.id, "create", "call", call_id, visit_subject(visit_id))
    publish(ctx, visit_channel(visit_id), {"type": "admitted", "call_id": str(call_id)})
    publish(ctx, dashboard_channel(org.id), {"type": "waiting-changed"})
    return CallOut(
        id=call_id,
        visit_id=visit_id,
        room=rooms.get(visit.room_id, ""),
        started_at=now,
        ended_at=None,
        duration_seconds=None,
    )


async def call_by_id(org_id: uuid.UUID, call_id: uuid.UUID) -> records.Call | None:
    return records.Call.maybe(await Call.select().where((Call.id == call_id) & (Call.org_id == org_id)).first().run())


async def call_of_visit(visit: records.Visit) -> records.Call | None:
    return records.Call.maybe(
        await Call.select().where((Call.visit_id == visit.id) & (Call.org_id == visit.org_id)).first().run()
    )


async def end_call(ctx: RegionContext, actor: Actor, org_id: uuid.UUID, call_id: uuid.UUID) -> CallOut | None:
    """End a call (by either side). Idempotent: an ended call stays as it was."""
    call = await call_by_id(org_id, call_id)
    if call is None:
        raise errors.not_found("no such call")
    if call.ended_at is not None:
        return None
    now = clock.now()
    duration = max(0, int((now - call.started_at).total_seconds()))
    async with database.transaction(ctx.engine):
        await (
            Call.update({Call.ended_at: now, Call.duration_seconds: duration})
            .where((Call.id == call_id) & Call.ended_at.is_null())
            .run()
        )
        await Visit.update({Visit.status: "ended", Visit.ended_at: now}).where(Visit.id == call.visit_id).run()
        await record(ctx, actor, org_id, "update", "call", call_id, visit_subject(call.visit_id))
    publish(ctx, call_channel(call_id), {"from": "server", "msg": {"type": "ended"}})
    publish(ctx, visit_channel(call.visit_id), {"type": "ended"})
    publish(ctx, dashboard_channel(org_id), {"type": "calls-changed"})
    return CallOut(
        id=call_id,
        visit_id=call.visit_id,
        room="",
        started_at=call.started_at,
        ended_at=now,
        duration_seconds=duration,
    )


# A waiting visitor whose page has had no socket open this long has left: the tab was
# closed or the network is gone. A reload or a short network break comes back sooner.
AWAY_LIMIT = dt.timedelta(minutes=10)
PRESENCE_REFRESH_SECONDS = 60.0  # a waiting page's socket says it is still there


async def visitor_present(ctx: RegionContext, visit: records.Visit, present: bool) -> None:
    """The waiting visitor's page opened (``present``) or lost its socket: the waiting
    list shows who is away, and since when."""
    waiting = (Visit.id == visit.id) & (Visit.status == "waiting")
    if present:
        changed = (
            await Visit.update({Visit.away_since: None})
            .where(waiting & Visit.away_since.is_not_null())
            .returning(Visit.id)
        )
    else:
        changed = (
            await Visit.update({Visit.away_since: clock.now()})
            .where(waiting & Visit.away_since.is_null())
            .returning(Visit.id)
        )
    if changed:
        publish(ctx, dashboard_channel(visit.org_id), {"type": "waiting-changed"})


async def _gone_for_good(org_id: uuid.UUID) -> None:
    """Waiting visitors away longer than ``AWAY_LIMIT`` have left (read time is enough:
    only the waiting list shows them, and every replica agrees on it)."""
    now = clock.now()
    await Visit.update({Visit.status: "left", Visit.ended_at: now}).where(
        (Visit.org_id == org_id) & (Visit.status == "waiting") & (Visit.away_since < now - AWAY_LIMIT)
    )


async def leave(ctx: RegionContext, visit: records.Visit) -> None:
    """A waiting visitor leaves before being admitted."""
    if visit.status == "waiting":
        await (
            Visit.update({Visit.status: "left", Visit.ended_at: clock.now()})
            .where((Visit.id == visit.id) & (Visit.status == "waiting"))
            .run()
        )
        publish(ctx, dashboard_channel(visit.org_id), {"type": "waiting-changed"})


async def calls_today(
    ctx: RegionContext,
    actor: Actor,
    org: records.Organisation,
    member_id: uuid.UUID,
    role: str,
    since: dt.datetime | None = None,
) -> list[CallOut]:
    """Today's calls in the member's rooms with each visitor's name: every name shown
    is an access-logged read of that visit (as on the waiting list)."""
    rooms = await _visible_rooms(org, member_id, role)
    midnight = since or clock.now().replace(hour=0, minute=0, second=0, microsecond=0)
    rows = (
        await Call.select()
        .where((Call.org_id == org.id) & (Call.started_at >= midnight))
        .order_by(Call.started_at, ascending=False)
        .run()
    )
    calls = [call for call in map(records.Call.of, rows) if call.room_id in rooms]
    if not calls:
        return []
    stored = {
        row["id"]: row["name"]
        for row in await Visit.select(Visit.id, Visit.name)
        .where((Visit.org_id == org.id) & Visit.id.is_in([call.visit_id for call in calls]))
        .run()
    }
    cipher = await ctx.keys.cipher(org.id)
    names: dict[uuid.UUID, str] = {}
    for visit_id, sealed in stored.items():
        try:
            names[visit_id] = cipher.open(FieldRef(org.id, "visit", "name", visit_id), sealed)
        except FieldDecryptionError:
            await record(ctx, actor, org.id, "read", "visit", visit_id, visit_subject(visit_id), "failure")
    await record_reads(ctx, actor, org.id, "visit", [(visit_id, visit_subject(visit_id)) for visit_id in names])
    paid = await _payments(ctx, actor, org, [(call.visit_id, call.room_id) for call in calls])
    return [
        CallOut(
            id=call.id,
            visit_id=call.visit_id,
            room=rooms[call.room_id],
            started_at=call.started_at,
            ended_at=call.ended_at,
            duration_seconds=call.duration_seconds,
            visitor_name=names.get(call.visit_id),
            payment=paid.get(call.visit_id),
        )
        for call in calls
    ]


async def visitor_name(ctx: RegionContext, actor: Actor, org: records.Organisation, call: records.Call) -> str | None:
    """The name of a call's visitor for the expert's call page: an access-logged read of
    the visit; None when the stored name failed its integrity check (logged as such)."""
    row = await Visit.select(Visit.name).where((Visit.id == call.visit_id) & (Visit.org_id == org.id)).first().run()
    if row is None:
        return None
    cipher = await ctx.keys.cipher(org.id)
    subject = visit_subject(call.visit_id)
    try:
        name = cipher.open(FieldRef(org.id, "visit", "name", call.visit_id), row["name"])
    except FieldDecryptionError:
        await record(ctx, actor, org.id, "read", "visit", call.visit_id, subject, "failure")
        return None
    await record(ctx, actor, org.id, "read", "visit", call.visit_id, subject)
    return name


async def call_for_member(
    org: records.Organisation, call_id: uuid.UUID, member_id: uuid.UUID, role: str
) -> records.Call:
    call = await call_by_id(org.id, call_id)
    if call is None or (role not in MANAGERS and call.expert_id != member_id):
        raise errors.not_found("no such call")
    return call


async def record_relay(ctx: RegionContext, actor: Actor, call: records.Call, node_id: str) -> None:
    """Issue (or extend) the call's residency receipt, signed with the region's own key
    (``ctx.signer``): this region and the relay nodes that carried it. The access log
    references the receipt. Raises ``SigningUnavailable`` (nothing stored) when the
    region cannot sign now. A stored receipt that no longer verifies is left as it is,
    as evidence, rather than extended and signed again over what was changed."""
    existing = await CallRelayReceipt.select().where(CallRelayReceipt.call_id == call.id).first().run()
    relays: list[str] = []
    if existing:
        stored = _stored_receipt(existing)
        if stored is not None and node_id in stored.relays:
            return
        status = receipts.check(await ctx.signer.key_set(), stored, _stored_signature(existing))
        if stored is None or status != "valid":
            log.error(
                "call %s: its stored residency receipt is %s; not extended with relay %s", call.id, status, node_id
            )
            return
        relays = stored.relays
    receipt = ResidencyReceipt(
        call_id=str(call.id),
        region=ctx.region.id,
        jurisdiction=ctx.region.jurisdiction,
        relays=[*relays, node_id],
        issued_at=clock.now().isoformat(),
    )
    signed = receipts.signed_bytes(receipt)
    signature = await ctx.signer.sign(signed)
    body = signed.decode()
    receipt_id = existing["id"] if existing else uuid.uuid4()
    async with database.transaction(ctx.engine):
        if existing:
            await (
                CallRelayReceipt.update(
                    {
                        CallRelayReceipt.body: body,
                        CallRelayReceipt.signature: signature.value,
                        CallRelayReceipt.key_id: signature.kid,
                    }
                )
                .where(CallRelayReceipt.id == receipt_id)
                .run()
            )
        else:
            await CallRelayReceipt.insert(
                CallRelayReceipt(
                    id=receipt_id,
                    org_id=call.org_id,
                    call_id=call.id,
                    body=body,
                    signature=signature.value,
                    key_id=signature.kid,
                    expires_at=call.expires_at,
                )
            ).run()
        await record(ctx, actor, call.org_id, "create", "residency_receipt", receipt_id, visit_subject(call.visit_id))


def _stored_receipt(row: dict[str, Any]) -> ResidencyReceipt | None:
    """The stored receipt; None when its body is no receipt at all (changed in the database)."""
    try:
        return msgspec.json.decode(row["body"], type=ResidencyReceipt)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def _stored_signature(row: dict[str, Any]) -> Signature | None:
    """The stored signature; None for a receipt stored before receipts named their key."""
    return Signature(kid=row["key_id"], value=row["signature"]) if row.get("key_id") else None


def stored_receipt(row: dict[str, Any]) -> tuple[ResidencyReceipt | None, Signature | None]:
    """A stored receipt row as ``receipt_status`` reads it: the receipt (None: its body is
    no receipt at all) and its signature (None: stored before receipts named their key)."""
    return _stored_receipt(row), _stored_signature(row)


class ReceiptOut(msgspec.Struct):
    # Its canonical JSON is what was signed (docs/verifying.md); None when the stored
    # receipt is unreadable (changed in the database, so "invalid").
    receipt: ResidencyReceipt | None
    signature: Signature | None  # None: made before the region had a key of its own
    valid: bool
    status: ReceiptStatus
    note: str  # the status in words


def receipt_status(keys: KeySet | Verifier, row: dict[str, Any]) -> ReceiptOut:
    """A stored receipt row checked against the region's key set (a ``Verifier`` of it
    when checking many: its keys decoded once)."""
    receipt, signature = stored_receipt(row)
    status = receipts.check_with(keys if isinstance(keys, Verifier) else Verifier(keys), receipt, signature)
    return ReceiptOut(
        receipt=receipt, signature=signature, valid=status == "valid", status=status, note=receipts.NOTES[status]
    )


async def receipt_of(ctx: RegionContext, org: records.Organisation, call: records.Call) -> ReceiptOut:
    row = (
        await CallRelayReceipt.select()
        .where((CallRelayReceipt.call_id == call.id) & (CallRelayReceipt.org_id == org.id))
        .first()
        .run()
    )
    if row is None:
        raise errors.not_found("this call has no residency receipt (no relay was allocated to it)")
    return receipt_status(await ctx.signer.key_set(), row)


class TelemetryLimit(NamedTuple):
    every_seconds: float  # one sample per this many seconds on average
    burst: int  # samples that may come at once
    per_call: int  # samples of one participant in one call, at most


TELEMETRY_LIMITS = {
    # The call pages sample network quality every 5 s (TELEMETRY_SECONDS in call.js);
    # a little faster allows for timer jitter and the last sample at hang-up. 7,200
    # samples are ten hours of a call.
    "quality": TelemetryLimit(every_seconds=4.0, burst=5, per_call=7_200),
    # In-call actions are clicks (mute, camera, screen share) and permission changes.
    "action": TelemetryLimit(every_seconds=1.0, burst=30, per_call=2_000),
}


@dataclass
class _TelemetryBudget:
    tokens: float
    at: float  # time.monotonic() of the last refill
    stored: int  # this participant's samples of this kind in this call
    dropped: int = 0


# Per (call, participant, kind), shared by all sockets of this process, so reconnecting
# does not reset them. A budget starts from the rows already stored (a reconnect to
# another replica, or one evicted here), so the total holds across both.
_budgets: OrderedDict[tuple[uuid.UUID, str, str], _TelemetryBudget] = OrderedDict()
MAX_BUDGETS = 10_000


async def _telemetry_budget(call_id: uuid.UUID, participant: str, kind: str) -> _TelemetryBudget:
    key = (call_id, participant, kind)
    budget = _budgets.get(key)
    if budget is not None:
        _budgets.move_to_end(key)
        return budget
    stored = await CallTelemetry.count().where(
        (CallTelemetry.call_id == call_id) & (CallTelemetry.participant == participant) & (CallTelemetry.kind == kind)
    )
    budget = _budgets.setdefault(key, _TelemetryBudget(TELEMETRY_LIMITS[kind].burst, time.monotonic(), stored))
    while len(_budgets) > MAX_BUDGETS:
        _budgets.popitem(last=False)
    return budget


def _take(budget: _TelemetryBudget, limit: TelemetryLimit, kind: str) -> None:
    """Count one sample against the budget; raise 429 (the socket is told) when over."""
    now = time.monotonic()
    budget.tokens = min(limit.burst, budget.tokens + (now - budget.at) / limit.every_seconds)
    budget.at = now
    if budget.stored >= limit.per_call:
        why = f"this call has its {limit.per_call} {kind} samples already"
    elif budget.tokens < 1:
        why = f"at most one {kind} sample every {limit.every_seconds:g} s"
    else:
        budget.tokens -= 1
        budget.stored += 1
        return
    budget.dropped += 1
    if budget.dropped == 1:
        log.warning("call telemetry over its limit (%s); further %s samples are dropped", why, kind)
    raise errors.AppError(429, "too_many_requests", f"{why}; this one was not stored")


async def store_telemetry(call: records.Call, participant: str, kind: str, data: bytes) -> None:
    """Keep one sample, within the participant's budget for the call (429 past it)."""
    _take(await _telemetry_budget(call.id, participant, kind), TELEMETRY_LIMITS[kind], kind)
    await CallTelemetry.insert(
        CallTelemetry(
            id=uuid.uuid4(),
            org_id=call.org_id,
            call_id=call.id,
            visit_id=call.visit_id,
            participant=participant,
            kind=kind,
            data=data.decode(),
            expires_at=call.expires_at,
        )
    ).run()
