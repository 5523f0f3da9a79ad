"""Check-in steps (tenants/checkin.py): a room that asks for an eID check and a fee keeps
its visitor off the waiting list until both are done, sends the visitor's page to the
next step, and moves the visit onto the waiting list exactly once; the room settings
behind it are validated at the edge."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest

from konsil.regions import container
from konsil.regions.container import build_region
from konsil.regions.tables import REGION_TABLES
from konsil.tenants import checkin, organisations, rooms
from konsil.tenants.tables import Room, Visit
from tests.conftest import Stack, bindings_restored

pytestmark = pytest.mark.e2e


@pytest.fixture
def practice(stack: Stack) -> dict[str, Any]:
    made = stack.signup("eu")
    owner = stack.login(stack.region_url("eu"), made["slug"], made["owner"]["email"])
    return {**made, "client": owner}


def test_room_settings_for_fee_and_identity_check_are_validated(stack: Stack, practice: dict[str, Any]) -> None:
    """The session's regions have no payment provider: a fee is refused with a clear 409
    (the fee itself is checked in tests/e2e/test_payments.py, on a region with localstripe)."""
    slug, client = practice["slug"], practice["client"]
    base = f"/api/v1/orgs/{slug}/rooms"
    fee = {"amount_minor": 50000, "currency": "nok", "description": "Consultation"}
    refused = client.post(base, json={"slug": "paid", "title": "Paid", "fee": fee, "identity_check": "no_bankid"})
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"] == "payments_unavailable" and "payment provider" in refused.json()["message"]
    made = client.post(base, json={"slug": "paid", "title": "Paid", "identity_check": "no_bankid"})
    assert made.status_code == 201, made.text
    room = made.json()
    assert room["fee"] is None and room["identity_check"] == "no_bankid"
    listed = {r["slug"]: r for r in client.get(base).json()}
    assert listed["paid"]["identity_check"] == "no_bankid"
    for bad in (
        {"fee": {"amount_minor": 0, "currency": "nok"}},
        {"fee": {"amount_minor": 50000, "currency": "btc"}},
        {"fee": {"amount_minor": 50000, "currency": "nok", "description": "x" * 121}},
        {"identity_check": "fi_tupas"},
    ):
        refused = client.patch(f"{base}/{room['id']}", json=bad)
        assert refused.status_code == 400, (bad, refused.text)
    assert client.patch(f"{base}/{room['id']}", json={"fee": fee}).status_code == 409
    blank = client.patch(
        f"{base}/{room['id']}", json={"fee": {"amount_minor": 8353, "currency": "sek", "description": " "}}
    )
    assert blank.status_code == 400, blank.text
    freed = client.patch(f"{base}/{room['id']}", json={"fee": None, "identity_check": ""})
    assert freed.status_code == 200, freed.text
    assert freed.json()["fee"] is None and freed.json()["identity_check"] == ""


async def test_a_visitor_checks_in_before_the_waiting_list(stack: Stack, practice: dict[str, Any]) -> None:
    slug, client = practice["slug"], practice["client"]
    made = await asyncio.to_thread(
        client.post,
        f"/api/v1/orgs/{slug}/rooms",
        json={
            "slug": "checked",
            "title": "Checked",
            "identity_check": "no_bankid",
        },
    )
    assert made.status_code == 201, made.text
    base = stack.region_url("eu")
    visitor = httpx.AsyncClient(base_url=base)
    arrived = await visitor.post(f"/{slug}/checked/visits", data={"name": "Kari Nordmann", "consent": "yes"})
    assert arrived.status_code == 303, arrived.text
    visit_path = arrived.headers["location"]
    visit_id = uuid.UUID(visit_path.rsplit("/", 1)[1])

    async def waiting() -> list[Any]:
        answer = await asyncio.to_thread(client.get, f"/api/v1/orgs/{slug}/visits/waiting")
        return list(answer.json())

    assert await waiting() == [], "a visit checking in is on no waiting list"
    page = await visitor.get(visit_path)
    assert page.status_code == 303 and page.headers["location"] == f"{visit_path}/identity"

    region = stack.settings.for_region("eu").region("eu")
    with bindings_restored(REGION_TABLES):
        ctx = build_region(stack.settings, region, service_name="cli")
        await container.start(ctx)
        try:
            org = await organisations.get(slug)
            assert org is not None
            # The session's regions take no card payments (the API refuses a fee there): the
            # fee is set in the database, as a region with a provider would have it.
            await (
                Room.update({Room.fee_amount: 30000, Room.fee_currency: "nok"})
                .where((Room.org_id == org.id) & (Room.slug == "checked"))
                .run()
            )
            room = await rooms.by_slug(org, "checked")
            assert checkin.steps_for(room) == ["identity", "payment"]
            assert await checkin.step_done(ctx, org, room, visit_id, "identity") is False
            page = await visitor.get(visit_path)
            assert page.status_code == 303 and page.headers["location"] == f"{visit_path}/payment"
            # The webhook and the visitor's return both report the payment: one moves the visit.
            moved = await asyncio.gather(
                checkin.step_done(ctx, org, room, visit_id, "payment"),
                checkin.step_done(ctx, org, room, visit_id, "payment"),
            )
            assert sorted(moved) == [False, True]
            assert await checkin.step_done(ctx, org, room, visit_id, "payment") is False
            row = (
                await Visit.select(Visit.status, Visit.paid_at, Visit.identity_checked_at)
                .where(Visit.id == visit_id)
                .first()
                .run()
            )
            assert row is not None and row["status"] == "waiting" and row["paid_at"] and row["identity_checked_at"]
            # Two more visitors have done their eID check when the room stops asking a fee:
            # one pays anyway (a late webhook), the other opens their page. Neither is
            # stranded off the waiting list (a review found the first one was).
            late, opener = httpx.AsyncClient(base_url=base), httpx.AsyncClient(base_url=base)
            paths = []
            for browser in (late, opener):
                joined = await browser.post(f"/{slug}/checked/visits", data={"name": "Ola", "consent": "yes"})
                paths.append(joined.headers["location"])
                await checkin.step_done(ctx, org, room, uuid.UUID(paths[-1].rsplit("/", 1)[1]), "identity")
            freed = await asyncio.to_thread(client.patch, f"/api/v1/orgs/{slug}/rooms/{room.id}", json={"fee": None})
            assert freed.status_code == 200, freed.text
            free_room = await rooms.by_slug(org, "checked")
            late_id = uuid.UUID(paths[0].rsplit("/", 1)[1])
            assert await checkin.step_done(ctx, org, free_room, late_id, "payment") is True
            page = await opener.get(paths[1])
            assert page.status_code == 200, "the visitor waits instead of being sent to a payment"
            statuses = await Visit.select(Visit.status).where(
                Visit.id.is_in([late_id, uuid.UUID(paths[1].rsplit("/", 1)[1])])
            )
            assert [r["status"] for r in statuses] == ["waiting", "waiting"]
            await late.aclose()
            await opener.aclose()
        finally:
            await container.stop(ctx)
            await visitor.aclose()
    assert [w["status"] for w in await waiting()] == ["waiting"] * 3
    page = await httpx.AsyncClient(base_url=base, cookies=arrived.cookies).get(visit_path)
    assert page.status_code == 200
