"""Retention of the payments area's own rows (PostgreSQL and SQLite): the provider's
webhook events go 90 days after they arrived (``payment_events``, region-wide); a
visit's attempts to pay (failed, abandoned or paid) go with the visit, whoever removes
it (retention purge, erasure); the payment record stays (legal hold, P9)."""

from __future__ import annotations

import datetime as dt
import uuid

from konsil.compliance.retention.policy import DATA_CLASSES, PAYMENT_EVENT_DAYS
from konsil.compliance.retention.purge import purge
from konsil.platform.core.region import RegionContext
from konsil.tenants import removal
from konsil.tenants.payments.tables import PaymentAttempt, PaymentEvent
from konsil.tenants.tables import PaymentRecord
from tests.compliance.test_retention import (  # noqa: F401 (fixtures)
    AS_OF,
    SECOND,
    ctx,
    new_org,
    new_visit,
    only,
    retention_dsns,
    run,
    slug_of,
)


async def new_event(received_at: dt.datetime, status: str = "done") -> uuid.UUID:
    event_id = uuid.uuid4()
    await PaymentEvent.insert(
        PaymentEvent(
            id=event_id,
            event_id=f"evt_{event_id.hex}",
            type="payment_intent.succeeded",
            intent_id=f"pi_{event_id.hex[:12]}",
            status=status,
            attempts=1,
            received_at=received_at,
        )
    )
    return event_id


async def new_attempt(org_id: uuid.UUID, visit_id: uuid.UUID, number: int, status: str) -> uuid.UUID:
    attempt_id = uuid.uuid4()
    await PaymentAttempt.insert(
        PaymentAttempt(
            id=attempt_id,
            org_id=org_id,
            visit_id=visit_id,
            number=number,
            intent_id=f"pi_{attempt_id.hex}",
            status=status,
            amount_minor=50000,
            currency="nok",
            card_brand="visa",
            card_last4="0341",
            expires_at=AS_OF + dt.timedelta(days=30),
        )
    )
    return attempt_id


async def attempts_of(visit_id: uuid.UUID) -> set[uuid.UUID]:
    return {r["id"] for r in await PaymentAttempt.select(PaymentAttempt.id).where(PaymentAttempt.visit_id == visit_id)}


async def test_payment_events_go_90_days_after_they_arrived(ctx: RegionContext) -> None:  # noqa: F811
    assert "payment_events" in DATA_CLASSES
    cutoff = AS_OF - dt.timedelta(days=PAYMENT_EVENT_DAYS)
    kept = await new_event(cutoff + SECOND)
    at_the_line = await new_event(cutoff, status="received")
    gone = await new_event(cutoff - SECOND, status="failed")

    dry = only(await purge(ctx, run(dry_run=True)), "payment_events")
    assert dry.rows == {"payment_event": 1} and dry.cutoff == cutoff
    result = only(await purge(ctx, run()), "payment_events")

    assert result.outcome == "success" and result.rows == {"payment_event": 1}
    left = {
        r["id"]
        for r in await PaymentEvent.select(PaymentEvent.id).where(PaymentEvent.id.is_in([kept, at_the_line, gone]))
    }
    assert left == {kept, at_the_line}
    # A purge of one organisation covers them too (they belong to none), recorded under it.
    org_id = await new_org(ctx)
    late = await new_event(cutoff - SECOND)
    again = only(await purge(ctx, run(await slug_of(org_id))), "payment_events", org_id)
    assert again.outcome == "success" and again.rows == {"payment_event": 1}
    assert await PaymentEvent.count().where(PaymentEvent.id == late) == 0


async def test_a_visits_payment_attempts_go_with_it_and_its_payment_record_stays(ctx: RegionContext) -> None:  # noqa: F811
    org_id = await new_org(ctx, retention_days=30)
    old = await new_visit(org_id, AS_OF - dt.timedelta(days=31))
    recent = await new_visit(org_id, AS_OF - dt.timedelta(days=1))
    await new_attempt(org_id, old, 1, "failed")
    await new_attempt(org_id, old, 2, "canceled")  # abandoned after a decline
    kept_attempt = await new_attempt(org_id, recent, 1, "open")
    record_id = uuid.uuid4()
    await PaymentRecord.insert(
        PaymentRecord(
            id=record_id,
            org_id=org_id,
            visit_id=old,
            provider_reference="pi_paid",
            amount_minor=50000,
            currency="nok",
            keep_until=AS_OF + dt.timedelta(days=1800),
        )
    )

    dry = only(await purge(ctx, run(await slug_of(org_id), dry_run=True)), "visits", org_id)
    assert dry.rows["visit"] == 1 and dry.rows["payment_attempt"] == 2
    result = only(await purge(ctx, run(await slug_of(org_id))), "visits", org_id)

    assert result.outcome == "success" and result.rows["visit"] == 1 and result.rows["payment_attempt"] == 2
    assert await attempts_of(old) == set() and await attempts_of(recent) == {kept_attempt}
    assert await PaymentRecord.count().where(PaymentRecord.id == record_id) == 1, "payment records are under legal hold"

    # An erasure removes visits by the same cascade: the attempts go with them.
    cascade = await removal.delete_visits(ctx, org_id, [recent])
    assert cascade.rows["visit"] == 1 and cascade.rows["payment_attempt"] == 1
    assert await attempts_of(recent) == set()
    nothing = await removal.delete_visits(ctx, org_id, [uuid.uuid4()])
    assert "payment_attempt" not in nothing.rows
