"""The payment webhook event task against localstripe (a real subprocess) on a real
PostgreSQL region database, run in process as the region service runs it: whatever goes
wrong while an event is processed (here a real database error) is tried again later,
within the task's own limit, and an event whose task was lost is handed out again by the
region's sweep, so no payment stays unnoticed."""

from __future__ import annotations

import datetime as dt
import logging
import secrets
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from konsil.platform.core import clock, database
from konsil.platform.core.region import RegionContext, RetryLater
from konsil.platform.core.settings import RegionSettings, Settings
from konsil.regions.container import build_region
from konsil.regions.tables import REGION_TABLES
from konsil.regions.tasks import TASKS, InProcessRunner
from konsil.tenants import records
from konsil.tenants.messaging.alerts import SWEEP_TASK
from konsil.tenants.payments import service
from konsil.tenants.payments.tables import PaymentEvent
from konsil.tenants.tables import PaymentRecord, Room, Visit
from tests.conftest import bindings_restored, wait_until_async
from tests.e2e.test_payments import PK, SK, WHSEC, localstripe
from tests.tenants.messaging.test_alerts import VISITOR, arrive, found, new_org

pytestmark = pytest.mark.e2e
__all__ = ["localstripe"]  # the module's localstripe server (a fixture)


@pytest.fixture(scope="module")
def events_dsn(pg_database: Callable[[str, str], str]) -> str:
    return pg_database("payments_events_eu", "region")


@pytest.fixture
async def region(localstripe: str, events_dsn: str, tmp_path: Path) -> AsyncIterator[RegionContext]:
    """An EU region taking card payments through localstripe, with the in-process runner."""
    raw = {
        "id": "eu",
        "jurisdiction": "EU/EEA",
        "public_url": "https://eu.konsil.example",
        "listen": "127.0.0.1:9",
        "database": events_dsn,
        "internal_secret": "region-secret-for-tests-only",
        "vault": {"backend": "local", "keyring_path": str(tmp_path / "keyring-eu")},
        "payments": {
            "provider": "stripe",
            "api_base": localstripe,
            "publishable_key": PK,
            "secret_key": SK,
            "webhook_secret": WHSEC,
        },
    }
    settings_of_region = msgspec.convert(raw, RegionSettings)
    settings = Settings(mode="embedded", discovery_key="discovery-key-for-tests", regions=[settings_of_region])
    with bindings_restored(REGION_TABLES):
        ctx = build_region(settings, settings_of_region, service_name="test")
        database.bind(REGION_TABLES, ctx.engine)
        await database.start(ctx.engine)
        await PaymentEvent.delete(force=True)
        runner = InProcessRunner(ctx)
        ctx.tasks = runner
        try:
            yield ctx
        finally:
            await runner.stop(grace_seconds=5)
            await ctx.keys.provider.close()
            await database.stop(ctx.engine)


async def paid_at_stripe(ctx: RegionContext, stripe: str) -> tuple[uuid.UUID, str]:
    """A visit in a room with a fee whose payment succeeded at Stripe while the visitor's
    page was closed: only the webhook's event can tell the region. (visit id, intent id)"""
    org = await new_org(ctx, phone=None)
    await Room.update({Room.fee_amount: 2500, Room.fee_currency: "eur"}).where(Room.id == org.room.id)
    room = records.Room.of(found(await Room.select().where(Room.id == org.room.id).first()))
    org.room = room
    visit_id = await arrive(ctx, org)
    visit = records.Visit.of(found(await Visit.select().where(Visit.id == visit_id).first()))
    attempt = await service.current_attempt(ctx, org.org, room, visit)
    intent = str(attempt["intent_id"])
    auth = {"authorization": f"Bearer {SK}"}
    async with httpx.AsyncClient(base_url=stripe, headers=auth, timeout=10) as api:
        card = {"card[number]": "4242424242424242", "card[exp_month]": "12", "card[exp_year]": "2030"}
        tok = (await api.post("/v1/tokens", data={**card, "card[cvc]": "123"})).json()
        assert (await api.post(f"/v1/payment_intents/{intent}", data={"payment_method": tok["card"]["id"]})).is_success
        confirmed = await api.post(f"/v1/payment_intents/{intent}/confirm")
        assert confirmed.json()["status"] == "succeeded", confirmed.text
    return visit_id, intent


async def stored_event(intent: str, received_ago: dt.timedelta = dt.timedelta(0), attempts: int = 0) -> uuid.UUID:
    """A verified webhook event as ``service.receive`` stores it (its task not handed out)."""
    event_id = uuid.uuid4()
    await PaymentEvent.insert(
        PaymentEvent(
            id=event_id,
            event_id=f"evt_{secrets.token_hex(8)}",
            type="payment_intent.succeeded",
            intent_id=intent,
            status="received",
            attempts=attempts,
            received_at=clock.now() - received_ago,
        )
    )
    return event_id


async def event(event_id: uuid.UUID) -> dict[str, Any]:
    return found(await PaymentEvent.select().where(PaymentEvent.id == event_id).first())


async def visit_status(visit_id: uuid.UUID) -> str:
    return str(found(await Visit.select(Visit.status).where(Visit.id == visit_id).first())["status"])


REFUSE_RECORDS = "ALTER TABLE payment_record ADD CONSTRAINT test_refuse_records CHECK (amount_minor < 0) NOT VALID"
ALLOW_RECORDS = "ALTER TABLE payment_record DROP CONSTRAINT test_refuse_records"


async def test_a_database_error_while_processing_is_tried_again_not_dropped(
    region: RegionContext, localstripe: str, caplog: pytest.LogCaptureFixture
) -> None:
    ctx = region
    visit_id, intent = await paid_at_stripe(ctx, localstripe)
    event_id = await stored_event(intent)
    await PaymentRecord.raw(REFUSE_RECORDS)  # the database refuses the payment record (a real error)
    try:
        with caplog.at_level(logging.INFO), pytest.raises(RetryLater) as again:
            await service.event_task(ctx, "eu", event_id)
        assert again.value.seconds == 30
        row = await event(event_id)
        assert row["status"] == "received" and row["attempts"] == 1
        assert await visit_status(visit_id) == "checking_in"
        assert "try 1 failed (CheckViolationError)" in caplog.text and VISITOR.split()[0] not in caplog.text
        # On its last try, the task gives up and says so.
        last = await stored_event(intent, attempts=service.MAX_EVENT_ATTEMPTS - 1)
        assert (await service.event_task(ctx, "eu", last))["status"] == "failed"
        assert (await event(last))["status"] == "failed"
    finally:
        await PaymentRecord.raw(ALLOW_RECORDS)
    # The retry, once the database takes the record: paid, on the waiting list.
    assert (await service.event_task(ctx, "eu", event_id))["status"] == "done"
    row = await event(event_id)
    assert row["status"] == "done" and row["attempts"] == 2
    assert await visit_status(visit_id) == "waiting"
    assert len(await PaymentRecord.select(PaymentRecord.id).where(PaymentRecord.visit_id == visit_id)) == 1


async def test_the_regions_sweep_hands_out_an_event_whose_task_was_lost(
    region: RegionContext, localstripe: str
) -> None:
    ctx = region
    visit_id, intent = await paid_at_stripe(ctx, localstripe)
    # Stored ten minutes ago, its task never run (the runner was down, the worker died).
    lost = await stored_event(intent, received_ago=dt.timedelta(minutes=10))
    # Not lost: just received, or waiting for its third try (30 + 60 s after two tries).
    fresh = await stored_event(intent)
    waiting = await stored_event(intent, received_ago=dt.timedelta(minutes=6), attempts=2)
    result = await TASKS[SWEEP_TASK](ctx, "eu", uuid.uuid4())
    assert result["payment_events_handed_out"] == 1

    async def done() -> bool | None:
        return (await event(lost))["status"] == "done" or None

    await wait_until_async(done, "the lost event processed", within=30)
    assert await visit_status(visit_id) == "waiting"
    assert (await event(fresh))["status"] == "received" and (await event(waiting))["attempts"] == 2
    # A sweep later hands out nothing more.
    assert (await TASKS[SWEEP_TASK](ctx, "eu", uuid.uuid4()))["payment_events_handed_out"] == 0
