"""Paying a room's fee at check-in (P3), by the region's own Stripe account.

The visitor's payment page makes (or finds) the visit's current attempt: a payment at
the provider, created with an idempotency key per visit and attempt, so a reload never
makes a second one. The visitor's card goes from their browser to Stripe's script, which
hands back a token; ``pay`` confirms the payment with it. A declined card ends the
attempt (the payment is canceled at the provider) and the visitor may try again: a new
attempt. 3-D Secure is finished in the browser, then ``check`` reads the payment's state.

Whatever reports a payment — the visitor's page or a webhook, in any order, any number
of times — ``apply`` takes the payment's current state from the provider and moves the
attempt forward only (never back from succeeded or refunded); the first to see it
succeed writes the payment record (kept 5 years, P9) and tells check-in the step is
done (``checkin.step_done``, itself once only). Webhook events are stored by their id
and processed by a background task (``EVENT_TASK``) with retries.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from typing import Any, Literal

import msgspec
from piccolo.columns import Column
from piccolo.table import Table

from konsil.platform.core import clock, database, errors
from konsil.platform.core.authz import MANAGERS
from konsil.platform.core.keys.cipher import FieldRef
from konsil.platform.core.payments import (
    IntentState,
    PaymentDeclined,
    PaymentProvider,
    PaymentUnavailable,
    WebhookEvent,
)
from konsil.platform.core.region import RegionContext, RetryLater
from konsil.tenants import checkin, members, records, rooms
from konsil.tenants.actors import Actor, record
from konsil.tenants.payments.shown import payment_subject
from konsil.tenants.payments.tables import PaymentAttempt, PaymentEvent
from konsil.tenants.tables import Organisation, PaymentRecord, Room, Visit

log = logging.getLogger("konsil.payments")

EVENT_TASK = "konsil.payments.event"
# The events that can change a payment; others are acknowledged and ignored.
HANDLED_EVENTS = frozenset(
    {
        "payment_intent.succeeded",
        "payment_intent.payment_failed",
        "payment_intent.requires_action",
        "payment_intent.processing",
        "payment_intent.canceled",
        "charge.refunded",
        "charge.succeeded",
        "charge.failed",
    }
)
# A payment record is kept this long (bookkeeping law: 5 years; P9), erasure or not.
KEEP_FOR = dt.timedelta(days=5 * 366)
# The event task's tries before it gives up (with backoff: 30 s, 1 min, 2 min, ... 1 h).
MAX_EVENT_ATTEMPTS = 8
# An attempt left "confirming" this long (its process died mid-way) may be confirmed again.
STUCK_AFTER = dt.timedelta(minutes=2)
# An event still "received" this long past its next try lost its task: the sweep hands it out again.
STALE_AFTER = dt.timedelta(minutes=5)
STALE_PER_SWEEP = 200

ACTIVE = ("open", "confirming", "requires_action", "processing")
DONE = ("succeeded", "refunded")

Outcome = Literal["open", "paid", "action", "declined", "processing", "unavailable"]


class PaymentView(msgspec.Struct, kw_only=True):
    """What the visitor's page needs: the fee, and where the payment stands."""

    outcome: Outcome
    amount_minor: int
    currency: str
    client_secret: str = ""  # only while the browser must finish a 3-D Secure check
    card_brand: str = ""
    card_last4: str = ""


class PaymentOut(msgspec.Struct, kw_only=True):
    """A visit's payment as members see it: never more of the card than brand and last 4 (P4)."""

    visit_id: uuid.UUID
    paid: bool
    amount_minor: int | None = None
    currency: str | None = None
    card_brand: str = ""
    card_last4: str = ""
    refunded: bool = False
    paid_at: dt.datetime | None = None
    refunded_at: dt.datetime | None = None


def provider_of(ctx: RegionContext) -> PaymentProvider:
    if ctx.payments is None:
        raise errors.AppError(503, "unavailable", "this region takes no card payments (no payment provider is set up)")
    return ctx.payments


# --- attempts -----------------------------------------------------------------------------------


async def _current(visit_id: uuid.UUID) -> dict[str, Any] | None:
    row: dict[str, Any] | None = (
        await PaymentAttempt.select()
        .where(PaymentAttempt.visit_id == visit_id)
        .order_by(PaymentAttempt.number, ascending=False)
        .first()
        .run()
    )
    return row


async def _by_intent(intent_id: str) -> dict[str, Any] | None:
    row: dict[str, Any] | None = (
        await PaymentAttempt.select().where(PaymentAttempt.intent_id == intent_id).first().run()
    )
    return row


async def current_attempt(
    ctx: RegionContext, org: records.Organisation, room: records.Room, visit: records.Visit
) -> dict[str, Any]:
    """The visit's attempt to pay that is still open, made when there is none (the page
    was opened for the first time, or the last card was declined)."""
    if room.fee_amount is None or not room.fee_currency:
        raise errors.conflict("this room asks no fee")
    row = await _current(visit.id)
    if row is not None and row["status"] not in ("failed", "canceled"):
        return row
    number = row["number"] + 1 if row is not None else 1
    provider = provider_of(ctx)
    state = await provider.create_intent(
        room.fee_amount,
        room.fee_currency,
        f"konsil-visit-{visit.id}-pay-{number}",
        {"org_id": str(org.id), "visit_id": str(visit.id), "attempt": str(number)},
    )
    now = clock.now()
    attempt: dict[str, Any] = {
        "id": uuid.uuid4(),
        "org_id": org.id,
        "visit_id": visit.id,
        "number": number,
        "intent_id": state.id,
        "status": "open",
        "amount_minor": state.amount_minor,
        "currency": state.currency,
        "created_at": now,
        "updated_at": now,
        "expires_at": visit.expires_at,
    }
    # Two page loads at once get the same payment (same idempotency key): one row.
    inserted = await _insert_new(
        PaymentAttempt(_data={getattr(PaymentAttempt, k): v for k, v in attempt.items()}), PaymentAttempt.intent_id
    )
    if not inserted:
        found = await _by_intent(state.id)
        assert found is not None
        return found
    return attempt


def _view(row: dict[str, Any], outcome: Outcome, secret: str = "") -> PaymentView:
    return PaymentView(
        outcome=outcome,
        amount_minor=row["amount_minor"],
        currency=row["currency"],
        client_secret=secret,
        card_brand=row.get("card_brand") or "",
        card_last4=row.get("card_last4") or "",
    )


async def view(ctx: RegionContext, org: records.Organisation, room: records.Room, visit: records.Visit) -> PaymentView:
    """Where the visit's payment stands, for its page (an open attempt is made if needed)."""
    row = await current_attempt(ctx, org, room, visit)
    if row["status"] in DONE:
        return _view(row, "paid")
    if row["status"] in ("requires_action", "processing", "confirming"):
        return await check(ctx, org, room, visit)
    return _view(row, "open")


async def pay(
    ctx: RegionContext,
    org: records.Organisation,
    room: records.Room,
    visit: records.Visit,
    token: str,
    email: str | None,
) -> PaymentView:
    """Pay the fee with the card behind ``token`` (made by stripe.js in the visitor's browser)."""
    provider = provider_of(ctx)
    row = await current_attempt(ctx, org, room, visit)
    if row["status"] != "open":
        return await check(ctx, org, room, visit)
    claimed = (
        await PaymentAttempt.update({PaymentAttempt.status: "confirming", PaymentAttempt.updated_at: clock.now()})
        .where((PaymentAttempt.id == row["id"]) & (PaymentAttempt.status == "open"))
        .returning(PaymentAttempt.id)
        .run()
    )
    if not claimed:  # a second click while the first is under way
        return await check(ctx, org, room, visit)
    try:
        card_reference, card = await provider.card_of_token(token)
    except (PaymentDeclined, PaymentUnavailable):
        await _set(row["id"], ("confirming",), status="open")
        raise
    cipher = await ctx.keys.cipher(org.id)
    sealed = cipher.seal(FieldRef(org.id, "payment_attempt", "payer_email", row["id"]), email) if email else None
    await _set(row["id"], ("confirming",), card_brand=card.brand, card_last4=card.last4, payer_email=sealed)
    try:
        state = await provider.confirm(row["intent_id"], card_reference)
    except PaymentUnavailable:
        # Whether Stripe took it is unknown: the page asks again (check), never pays twice.
        await _set(row["id"], ("confirming",), status="processing")
        return _view({**row, "card_brand": card.brand, "card_last4": card.last4}, "processing")
    except PaymentDeclined:
        await _set(row["id"], ("confirming",), status="failed", payer_email=None, decline_reason="refused")
        await provider.cancel(row["intent_id"])
        return _view(row, "declined")
    return await _outcome(ctx, row["intent_id"], state)


async def settled(visit: records.Visit) -> PaymentView | None:
    """The visit's payment if it is paid (read here only, nothing asked of the provider)."""
    row = await _current(visit.id)
    return _view(row, "paid") if row is not None and row["status"] in DONE else None


async def check(ctx: RegionContext, org: records.Organisation, room: records.Room, visit: records.Visit) -> PaymentView:
    """The visitor is back (from 3-D Secure, a reload): the payment's state at the
    provider, applied now so they do not wait for the webhook."""
    row = await _current(visit.id)
    if row is None:
        return await view(ctx, org, room, visit)
    if row["status"] in DONE:
        return _view(row, "paid")
    if row["status"] in ("failed", "canceled"):
        return _view(row, "declined")
    try:
        state = await provider_of(ctx).retrieve(row["intent_id"])
    except PaymentUnavailable:
        return _view(row, "unavailable")
    return await _outcome(ctx, row["intent_id"], state)


async def _outcome(ctx: RegionContext, intent_id: str, state: IntentState) -> PaymentView:
    await apply(ctx, intent_id, state)
    row = await _by_intent(intent_id)
    assert row is not None
    status = row["status"]
    if status in DONE:
        return _view(row, "paid")
    if status in ("failed", "canceled"):
        return _view(row, "declined")
    if status == "requires_action":
        return _view(row, "action", state.client_secret)
    if status in ("processing", "confirming"):
        return _view(row, "processing")
    return _view(row, "open")


async def _insert_new(row: Table, unique: Column) -> bool:
    """Insert ``row`` unless a row with the same ``unique`` value exists; True if inserted."""
    table = type(row)
    key: Column = table._meta.primary_key
    done = await table.insert(row).on_conflict(target=unique, action="DO NOTHING").returning(key).run()
    return bool(done)


async def _set(attempt_id: uuid.UUID, when: tuple[str, ...], **values: Any) -> bool:
    """Change an attempt only while its status is one of ``when`` (race-safe)."""
    changes = {getattr(PaymentAttempt, k): v for k, v in values.items()}
    changes[PaymentAttempt.updated_at] = clock.now()
    done = (
        await PaymentAttempt.update(changes)
        .where((PaymentAttempt.id == attempt_id) & PaymentAttempt.status.is_in(list(when)))
        .returning(PaymentAttempt.id)
        .run()
    )
    return bool(done)


# --- applying a payment's state -----------------------------------------------------------------


async def apply(ctx: RegionContext, intent_id: str, state: IntentState) -> None:
    """Bring our side in line with the payment's current state at the provider. Only
    forward: succeeded and refunded are never undone; whatever reports it, the record is
    written once and check-in told once."""
    row = await _by_intent(intent_id)
    if row is None:
        return  # not a payment of this region's visits
    attempt_id = row["id"]
    if state.status == "succeeded":
        await _succeeded(ctx, row, state)
        return
    if state.status == "failed":
        if await _set(attempt_id, ACTIVE, status="failed", payer_email=None, decline_reason="declined"):
            await _cancel_quietly(ctx, intent_id)
        return
    if state.status == "canceled":
        await _set(attempt_id, ACTIVE, status="canceled", payer_email=None)
        return
    if state.status == "requires_action":
        await _set(attempt_id, ("open", "confirming", "processing"), status="requires_action")
        return
    if state.status == "processing":
        await _set(attempt_id, ("open", "confirming"), status="processing")
        return
    # "open" at the provider: a confirmation that never arrived (its process died) may be retried.
    if row["status"] in ("confirming", "processing") and row["updated_at"] < clock.now() - STUCK_AFTER:
        await _set(attempt_id, ("confirming", "processing"), status="open")


async def _cancel_quietly(ctx: RegionContext, intent_id: str) -> None:
    if ctx.payments is None:
        return
    try:
        await ctx.payments.cancel(intent_id)
    except Exception as exc:  # best effort: a failed payment cannot be completed anyway
        log.warning("payments: a failed payment could not be canceled (%s)", type(exc).__name__)


async def _succeeded(ctx: RegionContext, row: dict[str, Any], state: IntentState) -> None:
    org_id: uuid.UUID = row["org_id"]
    now = clock.now()
    refunded = state.amount_refunded >= state.amount_minor > 0
    async with database.transaction(ctx.engine):
        won = await _set(row["id"], (*ACTIVE, "failed", "canceled"), status="succeeded", decline_reason="")
        if won:
            await _write_record(ctx, row, state, now)
    if refunded:
        await _refunded(ctx, row, state, now)
    visit_row = await Visit.select().where(Visit.id == row["visit_id"]).first().run()
    if visit_row is None or visit_row["status"] != "checking_in":
        return
    org_row = await Organisation.select().where(Organisation.id == org_id).first().run()
    room_row = await Room.select().where(Room.id == visit_row["room_id"]).first().run()
    if org_row is None or room_row is None:
        return
    try:
        org, room = records.Organisation.of(org_row), records.Room.of(room_row)
        await checkin.step_done(ctx, org, room, row["visit_id"], "payment")
    except errors.AppError as exc:  # the room no longer asks a fee, the visit is gone
        log.info("payments: a paid visit did not move on (%s)", exc.status)


async def _write_record(ctx: RegionContext, row: dict[str, Any], state: IntentState, now: dt.datetime) -> None:
    org_id: uuid.UUID = row["org_id"]
    record_id = uuid.uuid4()
    cipher = await ctx.keys.cipher(org_id)
    email: str | None = None
    if row.get("payer_email"):
        email = cipher.open(FieldRef(org_id, "payment_attempt", "payer_email", row["id"]), row["payer_email"])
    visit_row = await Visit.select(Visit.phone_index).where(Visit.id == row["visit_id"]).first().run()
    await PaymentRecord.insert(
        PaymentRecord(
            id=record_id,
            org_id=org_id,
            visit_id=row["visit_id"],
            provider="stripe",
            provider_reference=state.id,
            amount_minor=state.amount_minor,
            currency=state.currency,
            card_brand=row.get("card_brand") or "",
            card_last4=row.get("card_last4") or "",
            payer_email=cipher.seal(FieldRef(org_id, "payment_record", "payer_email", record_id), email)
            if email
            else None,
            payer_email_index=members.email_index(cipher, email) if email else None,
            payer_phone_index=visit_row["phone_index"] if visit_row else None,
            created_at=now,
            keep_until=now + KEEP_FOR,
        )
    ).run()
    # The receipt address now lives in the record only.
    await PaymentAttempt.update({PaymentAttempt.payer_email: None}).where(PaymentAttempt.id == row["id"]).run()
    system = Actor("system", "system", "system", ctx.source, "card payment of a room's fee")
    await record(ctx, system, org_id, "create", "payment_record", record_id, payment_subject(record_id))


async def _refunded(ctx: RegionContext, row: dict[str, Any], state: IntentState, now: dt.datetime) -> None:
    await _set(row["id"], ("succeeded",), status="refunded")
    await (
        PaymentRecord.update({PaymentRecord.refunded_minor: state.amount_refunded, PaymentRecord.refunded_at: now})
        .where((PaymentRecord.provider_reference == state.id) & PaymentRecord.refunded_at.is_null())
        .run()
    )


# --- members: a visit's payment, refunds -------------------------------------------------------


async def _record_of(org: records.Organisation, visit_id: uuid.UUID) -> dict[str, Any] | None:
    row: dict[str, Any] | None = (
        await PaymentRecord.select()
        .where((PaymentRecord.org_id == org.id) & (PaymentRecord.visit_id == visit_id))
        .order_by(PaymentRecord.created_at, ascending=False)
        .first()
        .run()
    )
    return row


def _out(visit_id: uuid.UUID, row: dict[str, Any] | None) -> PaymentOut:
    if row is None:
        return PaymentOut(visit_id=visit_id, paid=False)
    return PaymentOut(
        visit_id=visit_id,
        paid=True,
        amount_minor=row["amount_minor"],
        currency=row["currency"],
        card_brand=row["card_brand"],
        card_last4=row["card_last4"],
        refunded=row["refunded_at"] is not None,
        paid_at=row["created_at"],
        refunded_at=row["refunded_at"],
    )


async def payment_of_visit(
    ctx: RegionContext, actor: Actor, org: records.Organisation, visit_id: uuid.UUID, member_id: uuid.UUID, role: str
) -> PaymentOut:
    """A visit's payment: paid or not, card brand and last 4 only (P4). Access-logged.
    An expert sees the payments of their own rooms' visits only (as an identity's
    reveal); owners and administrators those of the organisation, also of visits gone."""
    if role in MANAGERS:
        await _visit_of(org, visit_id)
    else:
        await rooms.visit_for_member(org.id, visit_id, member_id, role)
    row = await _record_of(org, visit_id)
    if row is not None:
        await record(ctx, actor, org.id, "read", "payment_record", row["id"], payment_subject(row["id"]))
    return _out(visit_id, row)


async def _visit_of(org: records.Organisation, visit_id: uuid.UUID) -> None:
    found = await Visit.exists().where((Visit.id == visit_id) & (Visit.org_id == org.id))
    paid = await PaymentRecord.exists().where((PaymentRecord.org_id == org.id) & (PaymentRecord.visit_id == visit_id))
    if not found and not paid:
        raise errors.not_found("no such visit")


async def refund(ctx: RegionContext, actor: Actor, org: records.Organisation, visit_id: uuid.UUID) -> PaymentOut:
    """Give a visit's whole payment back (owners and admins). Idempotent: a refunded
    payment is answered as it is; Stripe gets one idempotency key per payment."""
    await _visit_of(org, visit_id)
    row = await _record_of(org, visit_id)
    if row is None:
        raise errors.conflict("this visit has no payment to refund")
    if row["refunded_at"] is None:
        state = await provider_of(ctx).refund(row["provider_reference"], f"konsil-refund-{row['id']}")
        if state.amount_refunded < state.amount_minor:
            raise errors.AppError(502, "refund_pending", "the payment service has not completed the refund yet")
        attempt = await _by_intent(row["provider_reference"])
        if attempt is not None:
            await _refunded(ctx, attempt, state, clock.now())
        else:
            back: dict[Column | str, Any] = {
                PaymentRecord.refunded_minor: state.amount_refunded,
                PaymentRecord.refunded_at: clock.now(),
            }
            await (
                PaymentRecord.update(back)
                .where((PaymentRecord.id == row["id"]) & PaymentRecord.refunded_at.is_null())
                .run()
            )
        await record(ctx, actor, org.id, "update", "payment_record", row["id"], payment_subject(row["id"]))
        row = await _record_of(org, visit_id)
    return _out(visit_id, row)


# --- webhooks -----------------------------------------------------------------------------------


async def receive(ctx: RegionContext, event: WebhookEvent) -> str:
    """A verified webhook: stored by its event id and handed to a background task. A
    replay of an event already processed does nothing; one not yet processed is handed
    over again (the task is idempotent), so nothing is lost to a crash in between."""
    if event.type not in HANDLED_EVENTS or not event.intent_id:
        return "ignored"
    row_id = uuid.uuid4()
    inserted = await _insert_new(
        PaymentEvent(
            id=row_id,
            event_id=event.id[:255],
            type=event.type[:64],
            intent_id=event.intent_id[:100],
            status="received",
            attempts=0,
            received_at=clock.now(),
        ),
        PaymentEvent.event_id,
    )
    if not inserted:
        found = await PaymentEvent.select().where(PaymentEvent.event_id == event.id[:255]).first().run()
        if found is None or found["status"] != "received":
            return "duplicate"
        row_id = found["id"]
    if ctx.tasks is None:
        raise errors.AppError(503, "unavailable", "the region's background tasks are not running; send it again")
    ctx.tasks.submit(EVENT_TASK, run_id=row_id)
    return "accepted"


def _backoff(attempts: int) -> float:
    """Seconds before the event task's next try after its ``attempts``-th."""
    return min(3600.0, 30.0 * 2.0 ** (attempts - 1))


async def event_task(ctx: RegionContext, region: str, run_id: uuid.UUID) -> dict[str, Any]:
    """Process one stored event: read the payment's current state from Stripe (the event
    may be old or out of order) and apply it. Whatever goes wrong (Stripe does not
    answer, the keys or the database are unavailable) is retried with backoff; it gives
    up (status failed) after ``MAX_EVENT_ATTEMPTS``. A run lost on the way (its worker
    died, its retry was never scheduled) is handed out again by ``resubmit_stale``."""
    counted = (
        await PaymentEvent.update({PaymentEvent.attempts: PaymentEvent.attempts + 1})
        .where((PaymentEvent.id == run_id) & (PaymentEvent.status == "received"))
        .returning(PaymentEvent.event_id, PaymentEvent.intent_id, PaymentEvent.attempts)
        .run()
    )
    if not counted:
        return {"event": str(run_id), "skipped": "no such event or already processed"}
    row = counted[0]
    attempts: int = row["attempts"]
    intent_id: str = row["intent_id"]
    try:
        if await _by_intent(intent_id) is None:
            await _finish(run_id, "ignored")
            return {"event": str(run_id), "status": "ignored"}
        state = await provider_of(ctx).retrieve(intent_id)
        await apply(ctx, intent_id, state)
        await _finish(run_id, "done")
    except Exception as exc:
        # Only the event's id and the error's kind are logged: an error's text may hold personal data.
        if attempts >= MAX_EVENT_ATTEMPTS:
            log.error("payments: event %s given up after %d tries (%s)", row["event_id"], attempts, type(exc).__name__)
            await _finish(run_id, "failed")
            return {"event": str(run_id), "status": "failed"}
        log.warning(
            "payments: event %s try %d failed (%s); tried again later", row["event_id"], attempts, type(exc).__name__
        )
        raise RetryLater(_backoff(attempts), f"payment event: {type(exc).__name__}") from None
    return {"event": str(run_id), "status": "done", "payment": state.status}


async def resubmit_stale(ctx: RegionContext, limit: int = STALE_PER_SWEEP) -> int:
    """Hand out again the events still "received" whose task is overdue: never run (the
    task runner was down when the webhook came), or lost between its tries (a worker or
    the region service stopped while it waited for its retry). An event is overdue once
    ``STALE_AFTER`` has passed beyond the time of its next try; the number handed out.
    Run by the region's periodic sweep. A run handed out twice is harmless: applying a
    payment's state is idempotent, and an event is processed (finished) once."""
    if ctx.tasks is None:
        return 0
    now = clock.now()
    rows = (
        await PaymentEvent.select(PaymentEvent.id, PaymentEvent.attempts, PaymentEvent.received_at)
        .where((PaymentEvent.status == "received") & (PaymentEvent.received_at < now - STALE_AFTER))
        .order_by(PaymentEvent.received_at)
        .limit(limit)
        .run()
    )
    handed = 0
    for row in rows:
        # Its tries so far, each with its backoff and up to STALE_AFTER of work and waiting.
        tries = row["attempts"]
        due = row["received_at"] + dt.timedelta(seconds=sum(_backoff(n) for n in range(1, tries + 1)))
        if now < due + STALE_AFTER * (tries + 1):
            continue
        ctx.tasks.submit(EVENT_TASK, run_id=row["id"])
        handed += 1
    if handed:
        log.info("payments: %d stale webhook event(s) handed out again", handed)
    return handed


async def _finish(run_id: uuid.UUID, status: str) -> None:
    await (
        PaymentEvent.update({PaymentEvent.status: status, PaymentEvent.done_at: clock.now()})
        .where((PaymentEvent.id == run_id) & (PaymentEvent.status == "received"))
        .run()
    )
